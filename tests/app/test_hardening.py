"""Hardening over real HTTP and real processes: HSTS on every response in production behind an
https redirect URI (and never otherwise), and `python app.py` removing its demo JWT key file when
stopped by SIGTERM or SIGINT."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers.paths import REPO
from tests.helpers.servers import free_port
from tests.helpers.wait import until

HSTS = "max-age=31536000; includeSubDomains"
HTTPS_CALLBACK = "https://sfconnect.example/oauth/callback"


def _responses(url: str) -> list[requests.Response]:
    """A page, a redirect, a 404, a 400, a static file and the health check."""
    http = requests.Session()
    return [
        http.get(url + "/"),
        http.get(url + "/query", params={"q": "SELECT Id FROM Contact"}, allow_redirects=False),
        http.get(url + "/export.csv", params={"q": "SELECT Id FROM Contact"},
                 allow_redirects=False),
        http.get(url + "/no-such-page"),
        http.post(url + "/logout", allow_redirects=False),  # 400: no CSRF token
        http.get(url + "/static/app.css"),
        http.get(url + "/healthz"),
    ]


def test_hsts_on_every_response_in_production_behind_https(start_app, local_org):
    running = start_app(local_org, ENV="production", SF_REDIRECT_URI=HTTPS_CALLBACK,
                        SECRET_KEY=secrets.token_hex(32))
    responses = _responses(running.url)
    assert {r.status_code for r in responses} >= {200, 302, 400, 404}
    for response in responses:
        assert response.headers.get("Strict-Transport-Security") == HSTS, response.url


@pytest.mark.parametrize("overrides", [
    {"ENV": "testing", "SF_REDIRECT_URI": HTTPS_CALLBACK},
    {"ENV": "development", "SF_REDIRECT_URI": HTTPS_CALLBACK},
    {"ENV": "production"},  # the redirect URI is the test server's http://127.0.0.1 callback
], ids=["testing", "development", "production-over-http"])
def test_no_hsts_outside_production_or_over_http(start_app, local_org, overrides):
    running = start_app(local_org, **overrides)
    for response in _responses(running.url):
        assert "Strict-Transport-Security" not in response.headers, response.url


def _keys(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("sfconnect-jwt-*.pem"))


def _reset_sigint() -> None:
    # As a terminal's foreground job has it, even when this test run ignores SIGINT (a
    # background job of a shell without job control); Python then turns it into KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_app_py_removes_its_demo_jwt_key_when_stopped(tmp_path, signum):
    port, org_port = free_port(), free_port()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SF_", "SESSION_", "REDIS_")) and k not in ("ENV", "SECRET_KEY")}
    # Every setting given here, empty SF_CLIENT_ID included: a .env cannot change them.
    env.update(TMPDIR=str(tmpdir), ENV="development", SF_CLIENT_ID="",
               SECRET_KEY=secrets.token_hex(32), SESSION_TYPE="filesystem",
               SESSION_FILE_DIR=str(tmp_path / "sessions"),
               SF_REDIRECT_URI=f"http://localhost:{port}/oauth/callback")
    log = tmp_path / "app.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--org-port", str(org_port)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            preexec_fn=_reset_sigint)

    def started() -> bool:
        if process.poll() is not None:
            pytest.fail(f"app.py did not start (exit {process.poll()}):\n{log.read_text()}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        except requests.ConnectionError:
            return False

    try:
        until(started, timeout=60,
              message=lambda: f"app.py did not start (exit {process.poll()}):\n{log.read_text()}")
        keys = _keys(tmpdir)
        assert len(keys) == 1, keys
        assert keys[0].stat().st_mode & 0o777 == 0o600

        process.send_signal(signum)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert _keys(tmpdir) == [], "the demo key outlived the process"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
