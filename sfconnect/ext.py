"""Typed accessors for the app's services, as flaskr's get_db: create_app registers each service
once (`register`), and code reads it back by name here, so no module repeats a key or guesses a
type. Each accessor takes the app when called outside a request (at start-up)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from sfconnect.auth.expiry import ExpirySweeper
    from sfconnect.auth.oauth import SalesforceOAuth
    from sfconnect.auth.oidc import OpenIDVerifier
    from sfconnect.auth.tokens import TokenService
    from sfconnect.http import TokenGate
    from sfconnect.salesforce.partner import PartnerClient
    from sfconnect.settings import Settings
    from sfconnect.store import Backend

_PREFIX = "sfconnect."


def register(app: Flask, name: str, service: object) -> None:
    """Make `service` the app's `name` (one of the accessors below)."""
    app.extensions[_PREFIX + name] = service


def _get(name: str, app: Flask | None) -> object:
    return (app or current_app).extensions[_PREFIX + name]


def settings(app: Flask | None = None) -> Settings:
    """The checked settings."""
    return _get("settings", app)  # type: ignore[return-value]


def backend(app: Flask | None = None) -> Backend:
    """Where sessions and records live (files or Redis)."""
    return _get("backend", app)  # type: ignore[return-value]


def tokens(app: Flask | None = None) -> TokenService:
    """Token records, refresh and revocation."""
    return _get("tokens", app)  # type: ignore[return-value]


def oauth(app: Flask | None = None) -> SalesforceOAuth:
    """The Authlib clients of the login hosts."""
    return _get("oauth", app)  # type: ignore[return-value]


def oidc(app: Flask | None = None) -> OpenIDVerifier:
    """The login hosts' OpenID Connect discovery, keys and the sign-in's id_token checks."""
    return _get("oidc", app)  # type: ignore[return-value]


def sweeper(app: Flask | None = None) -> ExpirySweeper:
    """When this process sweeps the records of ended sessions."""
    return _get("sweeper", app)  # type: ignore[return-value]


def partner(app: Flask | None = None) -> PartnerClient:
    """The SOAP partner API client."""
    return _get("partner", app)  # type: ignore[return-value]


def identity_http(app: Flask | None = None) -> TokenGate:
    """The gate for identity service calls."""
    return _get("identity_http", app)  # type: ignore[return-value]


def rest_http(app: Flask | None = None) -> TokenGate:
    """The gate for REST API calls."""
    return _get("rest_http", app)  # type: ignore[return-value]


def store_check(app: Flask | None = None) -> Callable[[], None]:
    """Raises when the session store cannot be used (the health check)."""
    return _get("store_check", app)  # type: ignore[return-value]
