"""Serve a WSGI app on a loopback port in a background thread (tests, benchmarks, app.py)."""
from __future__ import annotations

import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

from .keys import write_tls_certificate


@dataclass
class RunningServer:
    url: str
    port: int
    server: BaseWSGIServer
    thread: threading.Thread
    # The self-signed certificate to trust when the server speaks https, else None.
    certificate: Path | None = None
    # The directory of that certificate and its key, removed at shutdown.
    tls_dir: tempfile.TemporaryDirectory | None = None

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.tls_dir is not None:
            self.tls_dir.cleanup()


def tls_context(certificate: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server-side TLS context for a certificate and key file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate), str(key))
    return context


def serve_in_thread(wsgi_app, host: str = "127.0.0.1", port: int = 0, tls: bool = False,
                    ssl_context: ssl.SSLContext | None = None) -> RunningServer:
    """Start a threaded server; port 0 picks a free port. Returns once it accepts connections.

    `tls=True` serves https with a fresh self-signed certificate for localhost and 127.0.0.1
    (its path is `RunningServer.certificate`); `ssl_context` serves https with one's own."""
    certificate, tls_dir = None, None
    if tls and ssl_context is None:
        tls_dir = tempfile.TemporaryDirectory(prefix="devorg-tls-")
        certificate, key = write_tls_certificate(tls_dir.name)
        ssl_context = tls_context(certificate, key)
    server = make_server(host, port, wsgi_app, threaded=True, ssl_context=ssl_context)
    # A short poll interval: shutdown() waits for the loop to look, 0.5 s by default.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"serve-{server.server_port}", daemon=True)
    thread.start()
    scheme = "https" if ssl_context is not None else "http"
    return RunningServer(f"{scheme}://{host}:{server.server_port}", server.server_port, server,
                         thread, certificate, tls_dir)
