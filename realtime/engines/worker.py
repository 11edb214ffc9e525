"""One thread that owns a server client, and answers with a deadline for the whole answer.

tritonclient's HTTP client (gevent) works only on the thread that made it: called from the inference
thread after being made on the main one, it raises "Cannot switch to a different thread". Here every call
runs on the worker's own thread, whoever asks (the main thread, the inference thread, an API user's thread
pool), and the caller waits at most `deadline` seconds for the whole answer, however slowly a server sends
it. A worker that missed a deadline is abandoned (its daemon thread ends when its call does); the next call
gets a fresh one with a fresh client.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as WaitedTooLong  # the builtin's alias from Python 3.11
from typing import Any, TypeVar

Answer = TypeVar("Answer")


class DeadlineError(TimeoutError):
    """No whole answer within the deadline."""


class Closed(RuntimeError):
    """The engine was closed while a call waited (the program is ending)."""


class Worker:
    """A daemon thread with its own client; `ask` runs a function of the client on it."""

    def __init__(self, make_client: Callable[[], Any], name: str = "server-client") -> None:
        self._make_client = make_client
        self._jobs: queue.SimpleQueue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)  # never holds up the exit
        self._thread.start()

    def _serve(self) -> None:
        client = None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            function, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if client is None:
                    client = self._make_client()
                future.set_result(function(client))
            except BaseException as exc:  # handed to the caller, who decides
                future.set_exception(exc)

    def submit(self, function: Callable[[Any], Answer]) -> Future[Answer]:
        future: Future[Answer] = Future()
        self._jobs.put((function, future))
        return future

    def stop(self) -> None:
        """No more calls: the thread ends after the one it runs (if any)."""
        self._jobs.put(None)


def wait(future: Future[Answer], deadline: float, closing: threading.Event, step: float = 0.05) -> Answer:
    """The future's answer within `deadline` seconds; DeadlineError past it, Closed as soon as `closing` is set."""
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        if closing.is_set():
            future.cancel()
            raise Closed("closing")
        if left <= 0:
            future.cancel()
            raise DeadlineError(f"no answer within {deadline:.0f} s")
        try:
            return future.result(timeout=min(step, left))
        except WaitedTooLong:
            continue
