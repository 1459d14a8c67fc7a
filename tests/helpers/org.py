"""The local org in tests: starting one, its seeded users, tokens minted straight from its store,
and its counters (which calls reached it)."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import devorg
from devorg import ClientApp, OrgConfig, OrgState, RunningServer, serve_in_thread

# Seeded users of every local org: (username, password).
ADMIN = ("admin@devorg.local", "Welcome1!")
ZOE = ("zoë.müller@devorg.local", "Welcome1!")


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


def start_org(**config_fields) -> LocalOrg:
    """A local org of its own, served over HTTP on a free loopback port (admin controls on unless
    told otherwise); the caller shuts its server down."""
    config_fields.setdefault("admin_enabled", True)
    app = devorg.create_app(OrgConfig(**config_fields))
    server = serve_in_thread(app)
    return LocalOrg(server.url, devorg.org_of(app), server)


def module_org(contact_count: int):  # noqa: ANN201 - a pytest fixture
    """A module-scoped fixture: a local org of the module's own with `contact_count` Contacts
    (`org = module_org(2500)` at the top of a test module)."""

    @pytest.fixture(scope="module")
    def org() -> Iterator[LocalOrg]:
        running = start_org(contact_count=contact_count)
        yield running
        running.server.shutdown()

    return org


def user_id(org: LocalOrg, username: str = ADMIN[0]) -> str:
    """The Id of a seeded user."""
    return org.state.data.user_by_username(username)["Id"]


def mint_token(org: LocalOrg, username: str = ADMIN[0]) -> str:
    """An access token for a seeded user, issued straight from the org's token store (setup for
    tests of what comes after the flow)."""
    return org.state.tokens.issue(client_id="x", user_id=user_id(org, username), scope="api",
                                  with_refresh=False).access_token


def partner_url_template(org: LocalOrg) -> str:
    """The org's partner endpoint as the identity service gives it, `{version}` unfilled."""
    return f"{org.url}/services/Soap/u/{{version}}/{org.state.org_id[:15]}"


def counters(org: LocalOrg) -> dict[str, int]:
    """The org's counters right now (calls that reached it, by kind)."""
    return org.state.counters.snapshot()
