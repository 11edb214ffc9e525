"""A TCP proxy in front of a real server that can turn slow or silent on demand: the faults a served
model's engine must survive without freezing the view."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SlowProxy:
    """Forwards 127.0.0.1:port to `upstream` (host:port). mode: "pass"; "trickle" (the server's answer one
    byte every `gap` seconds); "silent" (nothing forwarded, connections held open)."""

    def __init__(self, upstream: str, gap: float = 0.05) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream, self.gap, self.mode = (host, int(port)), gap, "pass"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            for source, sink, answer in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, answer), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answer: bool) -> None:
        try:
            while not self.closed:
                data = source.recv(65536)
                if not data:
                    break
                if self.mode == "silent":
                    continue  # swallowed: the other side waits for ever
                if self.mode == "trickle" and answer:
                    for i in range(len(data)):
                        sink.sendall(data[i : i + 1])
                        time.sleep(self.gap)
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()
