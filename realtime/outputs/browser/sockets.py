"""The browser view's door: how many connections it holds, for how long, and how loudly it complains.

A connection that has not sent a whole request header within HEADER_S is closed (a slow or silent client
holds nothing for long); aiohttp closes one idle between requests after IDLE_S. At most `cap` connections
are held: a new one beyond it takes the place of the oldest that has not asked for anything yet, and when
every one is busy (streams, requests in flight) it is closed at once. Failures that repeat (accept() out of
file descriptors, bad requests) log one line per kind per interval, never a traceback each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from realtime.quiet import Throttle

HEADER_S = 5.0  # seconds a new connection has to send its first request's header
IDLE_S = 5.0  # seconds an idle keep-alive connection is kept (aiohttp's default is an hour)
DEFAULT_CAP = 64  # connections held at once: the page, a few streams, the API; far below a process's descriptors


class Door:
    """Counts the connections; wraps aiohttp's protocol factory; a middleware marks a connection busy."""

    def __init__(self, cap: int = DEFAULT_CAP, header_s: float = HEADER_S, say: Throttle | None = None) -> None:
        self.cap, self.header_s = cap, header_s
        self.say = say or Throttle(lambda line: logging.getLogger("aiohttp.server").warning(line))
        self.waiting: OrderedDict[Any, asyncio.TimerHandle] = OrderedDict()  # transport -> its header deadline
        self.open = 0

    def factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Counted(make(), self)

    def arrived(self, transport: asyncio.BaseTransport) -> bool:
        """A new connection: held (True), or closed at once because every held one is busy."""
        if self.open >= self.cap:
            if not self.waiting:
                self.say("full", f"the browser view holds {self.cap} busy connections: a new one was closed")
                _abort(transport)
                return False
            oldest, timer = self.waiting.popitem(last=False)
            timer.cancel()
            _abort(oldest)  # the oldest that never asked for anything makes room
            self.say("evicted", f"the browser view holds {self.cap} connections: an idle one made room")
        self.open += 1
        loop = asyncio.get_running_loop()
        self.waiting[transport] = loop.call_later(self.header_s, self._too_slow, transport)
        return True

    def _too_slow(self, transport: asyncio.BaseTransport) -> None:
        if self.waiting.pop(transport, None) is not None:
            _abort(transport)

    def left(self, transport: asyncio.BaseTransport) -> None:
        self.open -= 1
        timer = self.waiting.pop(transport, None)
        if timer is not None:
            timer.cancel()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        timer = self.waiting.pop(request.transport, None)
        if timer is not None:  # a whole header came: no longer at the door
            timer.cancel()
        return await handler(request)


def _abort(transport: asyncio.BaseTransport) -> None:
    """Close at once, dropping anything unsent (a TCP transport's abort; close for any other)."""
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    else:
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's request handler, counted in and out by the door."""

    def __init__(self, inner: asyncio.Protocol, door: Door) -> None:
        self.inner, self.door, self.held = inner, door, False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.held = self.door.arrived(transport)
        if self.held:
            self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.held:
            self.door.left(self.transport)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.held:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.held else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class OneLinePerKind(logging.Filter):
    """asyncio's "socket.accept() out of system resource" and aiohttp's handler errors come once per event,
    each with a traceback: out of descriptors, that was hundreds of thousands of lines. One line per kind per
    interval instead, without the stack."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.throttle = Throttle(lambda line: None, interval, clock)  # decides; the logger says

    def filter(self, record: logging.LogRecord) -> bool:
        if self.throttle.passes(f"{record.name}:{record.msg}") is None:
            return False
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            why = f"{type(error).__name__}: {str(error)[:120]}"
            record.msg = f"{record.getMessage()} ({why}; the same is not logged again for {self.interval:.0f} s)"
            record.args, record.exc_info, record.exc_text = (), None, None
        return True


def quiet_repeats() -> None:
    """Install OneLinePerKind on the loggers the browser view's server writes to (once)."""
    for name in ("asyncio", "aiohttp.server", "aiohttp.web"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLinePerKind) for f in logger.filters):
            logger.addFilter(OneLinePerKind())
