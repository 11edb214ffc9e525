"""A live loop with the browser view on an ephemeral loopback port, for the serve and browser tests."""

from __future__ import annotations

import threading
import time

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.live.loop import Loop
from realtime.outputs.browser.app import ServerThread, make_app
from realtime.outputs.browser.hub import FrameHub
from realtime.outputs.controls import Controls
from realtime.sources.demo import DemoSource
from realtime.sources.group import SourceSet


class LiveServer:
    """The demo model on the paced demo source, with the browser view on an ephemeral port."""

    def __init__(self, max_clients: int = 4) -> None:
        engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=1))
        self.hub = FrameHub(engine.info.labels, engine.provides)
        self.server = ServerThread(make_app(self.hub, max_clients), "127.0.0.1", 0).start()
        self.sources = SourceSet([DemoSource()])
        self.sources.start()
        self.loop = Loop(engine, self.sources, Controls(), outputs=[self.hub])
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        self.url = self.server.url
        deadline = time.time() + 10
        while self.hub.snapshot.sequence < 3 and time.time() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.loop.stop_requested = True
        self.thread.join(timeout=10)
        self.sources.stop()
        self.server.stop()
