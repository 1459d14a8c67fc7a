"""Serve a WSGI app on a loopback port in a background thread (tests, benchmarks, app.py)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, make_server


@dataclass
class RunningServer:
    url: str
    port: int
    server: BaseWSGIServer
    thread: threading.Thread

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(wsgi_app, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Start a threaded server; port 0 picks a free port. Returns once it accepts connections."""
    server = make_server(host, port, wsgi_app, threaded=True)
    # A short poll interval: shutdown() waits for the loop to look, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"serve-{server.server_port}", daemon=True)
    thread.start()
    return RunningServer(f"http://{host}:{server.server_port}", server.server_port, server, thread)
