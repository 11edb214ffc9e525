"""Stopping safely: SIGTERM and Ctrl-C end the loop as the q key does."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from realtime.live.loop import Loop


@contextlib.contextmanager
def stop_on_signals(loop: Loop) -> Iterator[None]:
    """SIGTERM and Ctrl-C end the loop like the q key: the recording is finished, the summary printed.

    A second signal interrupts at once. Only the main thread can take signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        if loop.stop_requested:
            raise KeyboardInterrupt
        loop.stop_requested = True
        for engine in loop.engines:  # a served model's call waiting on a slow server gives up now
            close = getattr(engine, "close", None)
            if close is not None:
                close()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
