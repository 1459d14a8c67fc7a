"""Single-flight across processes: two sfconnect processes (tests/helpers/serve_app.py) on different
ports share one session store, the local org runs in the test process, and a burst of requests on
an expired session, split over both processes, causes exactly one refresh grant.

With SESSION_TYPE=redis the processes share a real Redis (a redis-py Lock around the refresh); with
the filesystem store they share a directory, as gunicorn workers on one host do (a file lock).
Refresh-token rotation is on, so a second refresh with the rotated-out token would not only be
wasted: the org would revoke the whole session and some of the burst would fail.
"""
from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest
import requests

from devorg import ClientApp
from tests.helpers.app import SERVE_APP
from tests.helpers.flow import sign_in
from tests.helpers.org import counters

SOQL = "SELECT Id, FirstName, LastName, Account.Name FROM Contact LIMIT 20"
BURST = 16


@dataclass
class AppProcess:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app_process(settings: dict[str, str], workdir: Path, name: str) -> AppProcess:
    """Start serve_app.py with `settings` as its environment; returns once it listens."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SF_", "SESSION_", "REDIS_")) and k not in ("ENV", "SECRET_KEY")}
    env.update(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "wb") as stderr:
        # cwd: a directory without a .env, so only `settings` configure the app.
        process = subprocess.Popen([sys.executable, str(SERVE_APP)], env=env, cwd=workdir,
                                   stdout=subprocess.PIPE, stderr=stderr)
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("listening "):
        process.kill()
        process.wait()
        pytest.fail(f"app process {name} did not start: {line!r}\n{log.read_text()}")
    return AppProcess(line.split()[1], process, log)


@pytest.fixture
def two_app_processes(fresh_org, redis_server, tmp_path, request) -> Iterator[list[AppProcess]]:
    """Two app processes sharing one store (the test's parameter: "redis" or "filesystem"),
    registered with the org as one client app that knows both callbacks."""
    client_id = "3MVG9test" + secrets.token_hex(12)
    client_secret = secrets.token_hex(32)
    settings = {
        "ENV": "testing",
        "SECRET_KEY": secrets.token_hex(32),
        "SF_LOGIN_URL": fresh_org.url,
        "SF_CLIENT_ID": client_id,
        "SF_CLIENT_SECRET": client_secret,
    }
    if request.param == "redis":
        settings.update(SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    else:
        settings.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=str(tmp_path / "shared"))
    processes: list[AppProcess] = []
    try:
        for name in ("a", "b"):
            processes.append(start_app_process(settings, tmp_path / name, name))
        fresh_org.state.register_client(ClientApp(
            client_id=client_id, client_secret=client_secret, name="sfconnect (two processes)",
            redirect_uris=[f"{p.url}/oauth/callback" for p in processes],
            integration_username="integration@devorg.local"))
        yield processes
    finally:
        for process in processes:
            process.stop()


def _rows(response: requests.Response) -> int:
    return len(lxml.html.fromstring(response.text).xpath("//table[@class='records']/tbody/tr"))


@pytest.mark.parametrize("two_app_processes", ["redis", "filesystem"], indirect=True)
def test_burst_over_two_processes_on_an_expired_session_refreshes_once(two_app_processes,
                                                                        fresh_org):
    first, second = two_app_processes
    requests.post(f"{fresh_org.url}/__admin/settings",
                  json={"refresh_token_rotation": True}).raise_for_status()
    browser = requests.Session()
    assert sign_in(browser, first.url).response.url == first.url + "/"
    cookie = browser.cookies.get("sfconnect_session")
    # The session signed in through the first process is the same session in the second.
    for app in (first, second):
        tab = requests.Session()
        tab.cookies.set("sfconnect_session", cookie)
        response = tab.get(f"{app.url}/query", params={"q": SOQL})
        assert response.status_code == 200, (app.url, response.text)
        assert _rows(response) == 20

    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    before = counters(fresh_org)
    start = threading.Barrier(BURST)

    def query(index: int) -> tuple[int, int]:
        tab = requests.Session()
        tab.cookies.set("sfconnect_session", cookie)
        app = (first, second)[index % 2]
        start.wait()
        response = tab.get(f"{app.url}/query", params={"q": SOQL}, allow_redirects=False)
        return response.status_code, _rows(response) if response.status_code == 200 else -1

    with ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(query, range(BURST)))
    assert results == [(200, 20)] * BURST, results
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - before.get("token.refresh_token", 0) == 1
    # Every request failed once on the dead token at most, then used the one fresh token.
    assert BURST < after["soap.query"] - before["soap.query"] <= 2 * BURST

    # A working session afterwards, in both processes, with no further refresh.
    for app in (first, second):
        tab = requests.Session()
        tab.cookies.set("sfconnect_session", cookie)
        response = tab.get(f"{app.url}/query", params={"q": SOQL})
        assert response.status_code == 200
        assert _rows(response) == 20
    assert counters(fresh_org).get("token.refresh_token", 0) == after["token.refresh_token"]
    for app in two_app_processes:
        assert "Traceback" not in app.log.read_text()
