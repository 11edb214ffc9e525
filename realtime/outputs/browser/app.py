"""aiohttp app: the page, an MJPEG stream, a JSON API; run on its own thread beside the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import asdict
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from realtime.maps.methods import usable_methods
from realtime.maps.query import class_id_in
from realtime.outputs.browser import guard, sockets
from realtime.outputs.browser.hub import ControlError, FrameHub
from realtime.view.overlay import STYLES

BOUNDARY = "gradcamframe"
DOOR = web.AppKey("door", sockets.Door)
DEFAULT_MAX_CLIENTS = 4
WAIT_S = 1.0  # a stream re-checks for shutdown at least this often
WRITE_TIMEOUT_S = 3.0  # a client that takes longer to accept one frame has stopped reading: it is dropped


class OneLineBadRequests(logging.Filter):
    """aiohttp logs every malformed request with its traceback: a client could flood the log. One line
    each instead, with what was wrong and no stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = " ".join(str(error.message or error).split())[:160]
            record.msg, record.args = f"bad request from a client: {error.code} {reason}", ()
            record.exc_info, record.exc_text = None, None
        return True


def _log_bad_requests_in_one_line() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineBadRequests) for f in logger.filters):
        logger.addFilter(OneLineBadRequests())


def page_url(host: str, port: int) -> str:
    reachable = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{reachable}]:{port}/" if ":" in reachable else f"http://{reachable}:{port}/"


class ServeAddressError(ValueError):
    """--serve got something that is not [HOST:]PORT."""


def parse_address(text: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); '0.0.0.0:8080' -> ('0.0.0.0', 8080). Loopback unless a host is given."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeAddressError(f"--serve {text!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080")
    return host, int(port)


def state_json(hub: FrameHub) -> dict[str, Any]:
    snap = hub.snapshot
    query, look = snap.controls.query, snap.controls.look
    class_id = class_id_in(query, hub.labels)  # the page numbers classes by the first model's labels
    return {
        "sequence": snap.sequence,
        "stats": {
            "display_fps": round(snap.stats.display_fps, 2),
            "model_ms": round(snap.stats.model_ms, 2),
            "latency_ms": round(snap.stats.latency_ms, 2),
        },
        "top": [{"id": i, "name": name, "probability": round(p, 4)} for i, name, p in snap.top],
        "explained": snap.explained,
        "controls": {**asdict(query), **asdict(look), "class": "auto" if class_id is None else class_id},
        "methods": usable_methods(hub.provides),
        "styles": list(STYLES),
        "layers": hub.layers,
        "kind": "detect" if snap.boxes or hub.detector else "classify",
        "boxes": [{"rank": slot, "name": name, "score": score, "box": box} for slot, name, score, box in snap.boxes],
        "frame": list(snap.frame),
    }


def make_app(
    hub: FrameHub, max_clients: int = DEFAULT_MAX_CLIENTS, policy: guard.Policy | None = None
) -> web.Application:
    """The browser view's routes behind the guard (loopback-only policy unless one is given)."""
    _log_bad_requests_in_one_line()
    door = sockets.Door()
    app = web.Application(middlewares=[door.middleware, guard.middleware(policy or guard.policy_for("127.0.0.1"))])
    app[DOOR] = door
    streaming = {"clients": 0}
    closing = asyncio.Event()  # set on shutdown, so open streams end instead of being cut

    fresh = asyncio.Condition()  # notified once per published frame: streams wait on it, no polling

    async def notify_streams() -> None:
        async with fresh:
            fresh.notify_all()

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:  # runs on the live loop's thread
            with contextlib.suppress(RuntimeError):  # the server already stopped; the loop goes on
                loop.call_soon_threadsafe(lambda: loop.create_task(notify_streams()))

        hub.add_listener(wake)

    async def on_shutdown(app: web.Application) -> None:
        closing.set()
        await notify_streams()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    page = resources.files("realtime.outputs.browser").joinpath("static/index.html").read_text(encoding="utf-8")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def stream(request: web.Request) -> web.StreamResponse:
        if streaming["clients"] >= max_clients:
            return web.json_response(
                {"error": f"stream is full ({max_clients} clients); close another tab or raise --max-clients"},
                status=503,
            )
        streaming["clients"] += 1
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                    "Cache-Control": "no-store",
                }
            )
            await response.prepare(request)
            sent = 0  # sequence 0 is "no frame yet": a client that comes early waits like any other
            while not closing.is_set():
                if hub.snapshot.sequence == sent:
                    async with fresh:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(fresh.wait(), WAIT_S)
                    continue
                latest = await asyncio.to_thread(hub.latest_jpeg)  # encoded once per frame, off the event loop
                if latest is None:
                    continue
                sent, data = latest
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                try:  # waits only for this client, and not for ever
                    await asyncio.wait_for(response.write(head.encode() + data + b"\r\n"), WRITE_TIMEOUT_S)
                except TimeoutError:  # stopped reading: free the slot for someone who will
                    if request.transport is not None:
                        request.transport.close()
                    return response
            return response
        except ConnectionResetError:  # the tab was closed
            return response
        finally:
            streaming["clients"] -= 1

    async def state(request: web.Request) -> web.Response:
        return web.json_response({**state_json(hub), "clients": streaming["clients"]})

    async def control(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError, LookupError):  # bad JSON or UTF-8, huge ints, deep nesting, bad charset
            return web.json_response({"error": "the body is not valid JSON (or nests too deep)"}, status=400)
        try:
            accepted = hub.request(body)
        except ControlError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"accepted": accepted})

    async def snapshot(request: web.Request) -> web.Response:
        data = await asyncio.to_thread(hub.latest_png)
        if data is None:
            return web.json_response({"error": "no frame yet"}, status=503)
        return web.Response(
            body=data,
            content_type="image/png",
            headers={"Content-Disposition": 'attachment; filename="gradcam_snapshot.png"'},
        )

    app.router.add_get("/", index)
    app.router.add_get("/stream.mjpg", stream)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/control", control)
    app.router.add_get("/api/snapshot.png", snapshot)
    return app


class ServerThread:
    """The app on its own event loop and thread; `stop` closes streams and the socket cleanly."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, keepalive_timeout=sockets.IDLE_S)
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gradcam-serve", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            sockets.quiet_repeats()
            assert self._runner.server is not None
            door = self.app.get(DOOR) or sockets.Door()
            self._server = self._loop.run_until_complete(self._loop.create_server(
                door.factory(self._runner.server), self.host, self.port, reuse_address=True))  # fmt: skip
            if self.port == 0:  # an ephemeral port: report the one the OS picked
                self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # report bind errors to the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        if self._server is not None:
            self._server.close()
        self._loop.run_until_complete(self._runner.cleanup())
        leftover = asyncio.all_tasks(self._loop)
        for task in leftover:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self._loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise OSError(f"cannot serve on {self.host}:{self.port}: {self._error}") from self._error
        return self

    @property
    def url(self) -> str:
        """An address a browser can open: a wildcard bind is reached on this machine's loopback, and an
        IPv6 literal goes in brackets."""
        return page_url(self.host, self.port)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10.0)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
