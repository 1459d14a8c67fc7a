"""Serve sfconnect in a process of its own, for tests that need several app processes.

    python tests/helpers/serve_app.py

Settings come from the environment (ENV, SECRET_KEY, SF_*, SESSION_TYPE, REDIS_URL ...), as in
production. Binds 127.0.0.1 on a free port, prints "listening <url>" on stdout once it accepts
connections, then serves with werkzeug's threaded server until it is terminated. SF_REDIRECT_URI,
when unset, is this server's own callback.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from werkzeug.serving import make_server  # noqa: E402

import sfconnect  # noqa: E402


class _LateApp:
    """A WSGI app whose target is set once the server knows its port (the redirect URI)."""

    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


def main() -> None:
    holder = _LateApp()
    server = make_server("127.0.0.1", 0, holder, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    overrides = {} if os.environ.get("SF_REDIRECT_URI") else {
        "SF_REDIRECT_URI": f"{url}/oauth/callback"}
    holder.target = sfconnect.create_app(overrides)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening", url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
