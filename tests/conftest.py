"""Shared fixtures: a local org and the app, each served over real HTTP on a free loopback port."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import devorg
from devorg import ClientApp, OrgConfig, OrgState, RunningServer, serve_in_thread

# The browser fixtures (one Debian Chromium for the run) for every browser test.
pytest_plugins = ["browser_fixtures"]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "salesforce"
ARTIFACTS = REPO / "test-artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # In CI a skipped test is a failed test.
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (a skip is a failure here): {report.longrepr}"


class _LateApp:
    """A WSGI app whose target is set after the server has bound its port."""

    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


@dataclass
class LocalOrg:
    """A running local org: its base URL, its state, and its test controls."""

    url: str
    state: OrgState
    server: RunningServer

    def register(self, redirect_uri: str, **fields) -> ClientApp:
        """Register a fresh client app for `redirect_uri` and return it."""
        client = ClientApp(
            client_id=fields.pop("client_id", "3MVG9test" + secrets.token_hex(12)),
            client_secret=fields.pop("client_secret", secrets.token_hex(32)),
            name=fields.pop("name", "sfconnect (tests)"),
            redirect_uris=[redirect_uri],
            integration_username=fields.pop("integration_username", "integration@devorg.local"),
            **fields,
        )
        self.state.register_client(client)
        return client


def mint_token(org, username: str = "admin@devorg.local") -> str:
    """An access token for a seeded user, issued straight from the org's token store (setup for
    tests of what comes after the flow)."""
    user_id = org.state.data.user_by_username(username)["Id"]
    return org.state.tokens.issue(client_id="x", user_id=user_id, scope="api",
                                  with_refresh=False).access_token


def partner_url_template(org) -> str:
    """The org's partner endpoint as the identity service gives it, `{version}` unfilled."""
    return f"{org.url}/services/Soap/u/{{version}}/{org.state.org_id[:15]}"


def gate_for(*urls: str, purpose: str = "partner", timeout: float = 30):  # noqa: ANN201
    """The app's outbound gate for `purpose`, trusting the login hosts `urls` (the orgs' URLs)."""
    from sfconnect.auth.trust import TrustPolicy
    from sfconnect.http import token_gate

    return token_gate(purpose, TrustPolicy(urls), timeout)


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


def start_org(**config_fields) -> LocalOrg:
    config_fields.setdefault("admin_enabled", True)
    app = devorg.create_app(OrgConfig(**config_fields))
    server = serve_in_thread(app)
    return LocalOrg(server.url, devorg.org_of(app), server)


def module_org(contact_count: int):
    """A module-scoped fixture: a local org of the module's own with `contact_count` Contacts
    (`org = module_org(2500)` at the top of a test module)."""

    @pytest.fixture(scope="module")
    def org() -> Iterator[LocalOrg]:
        running = start_org(contact_count=contact_count)
        yield running
        running.server.shutdown()

    return org


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


@dataclass
class RunningApp:
    url: str
    app: object
    client: ClientApp
    org: LocalOrg
    server: RunningServer


@pytest.fixture
def start_app(tmp_path) -> Iterator[Callable[..., RunningApp]]:
    """Start sfconnect against a local org: `start_app(org, **setting_overrides)`."""
    import sfconnect

    started: list[RunningServer] = []

    def start(org: LocalOrg, client_fields: dict | None = None, **overrides) -> RunningApp:
        holder = _LateApp()
        server = serve_in_thread(holder)
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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    url: str
    port: int
    process: object

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_redis(workdir: Path, port: int | None = None) -> RedisServer:
    """Start a real redis-server on a loopback port; returns once it answers PING."""
    import shutil
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing (scripts/test.sh installs Debian's package)")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    return RedisServer(f"redis://127.0.0.1:{port}/0", port, process)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A real Redis server of the test's own."""
    server = start_redis(tmp_path / "redis")
    yield server
    if server.process.poll() is None:
        server.stop()
