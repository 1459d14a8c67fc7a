"""Shared fixtures: a local org and the app, each served over real HTTP on a free loopback port,
and a real Redis. What is not a fixture is in tests/helpers."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devorg import RunningServer, serve_in_thread
from tests.helpers.app import LateApp, RunningApp, gate_for
from tests.helpers.org import LocalOrg, mint_token, partner_url_template, start_org
from tests.helpers.paths import ARTIFACTS, REPO
from tests.helpers.servers import RedisServer, start_redis


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # In CI a skipped test is a failed test.
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (a skip is a failure here): {report.longrepr}"


@pytest.fixture(scope="module")
def live(local_org) -> Callable[..., object]:
    """`live(soql, **options)`: the first batch of `soql` from the shared local org, through
    PartnerClient with the app's own WSDL."""
    from sfconnect.salesforce.partner import PartnerClient

    client = PartnerClient(str(REPO / "sfconnect" / "salesforce" / "wsdl" / "partner.wsdl"),
                           gate_for(local_org.url), timeout=30)
    session_id = mint_token(local_org)
    endpoint = client.endpoint(partner_url_template(local_org))
    return lambda soql, **options: client.query(endpoint, session_id, soql, **options)


@pytest.fixture(scope="session")
def local_org() -> Iterator[LocalOrg]:
    """One local org for the whole run, with the admin controls on."""
    org = start_org()
    yield org
    org.server.shutdown()


@pytest.fixture
def fresh_org() -> Iterator[LocalOrg]:
    """A local org of the test's own, for tests that change its settings or fault switches."""
    org = start_org()
    yield org
    org.server.shutdown()


@pytest.fixture
def start_app(tmp_path) -> Iterator[Callable[..., RunningApp]]:
    """Start sfconnect against a local org: `start_app(org, **setting_overrides)`; with
    `tls=True` the app itself speaks https (its certificate: `running.server.certificate`)."""
    import sfconnect

    started: list[RunningServer] = []

    def start(org: LocalOrg, client_fields: dict | None = None, tls: bool = False,
              **overrides) -> RunningApp:
        holder = LateApp()
        server = serve_in_thread(holder, tls=tls)
        started.append(server)
        redirect_uri = f"{server.url}/oauth/callback"
        client = org.register(redirect_uri, **(client_fields or {}))
        settings = {
            "ENV": "testing",
            "SECRET_KEY": secrets.token_hex(32),
            "SF_LOGIN_URL": org.url,
            "SF_CLIENT_ID": client.client_id,
            "SF_CLIENT_SECRET": client.client_secret,
            "SF_REDIRECT_URI": redirect_uri,
            "SESSION_TYPE": "filesystem",
            "SESSION_FILE_DIR": str(tmp_path / "sessions"),
        }
        settings.update(overrides)
        app = sfconnect.create_app(settings)
        holder.target = app
        return RunningApp(server.url, app, client, org, server)

    yield start
    for server in started:
        server.shutdown()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A real Redis server of the test's own."""
    server = start_redis(tmp_path / "redis")
    yield server
    if server.process.poll() is None:
        server.stop()
