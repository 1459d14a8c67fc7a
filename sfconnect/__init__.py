"""sfconnect: the Salesforce OAuth 2.0 web server flow, then SOQL through the SOAP partner API.

    app = sfconnect.create_app({"SF_CLIENT_ID": ..., ...})   # keys are environment variable names

Nothing happens at import time but definitions; create_app reads and checks the settings, wires the
extensions (Flask-Session, CSRF, Authlib, the partner client, the token vault) and the blueprints.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, session
from flask_session import Session
from flask_wtf.csrf import CSRFProtect

from . import oauth as oauth_flow
from . import views
from .redaction import install_log_redaction
from .settings import ConfigError, Settings, load_settings
from .tokens import (
    Connection,
    FileTokenStore,
    RedisTokenStore,
    TokenService,
    TokenVault,
    TrustPolicy,
)

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(settings: Mapping[str, object] | None = None) -> Flask:
    """Build the app. `settings` keys are environment variable names; they override env and .env.

    Raises ConfigError naming the variable when a setting is missing, malformed or contradictory.
    """
    config = load_settings(settings)
    install_log_redaction()
    app = Flask(__name__, template_folder=str(REPO / "templates"),
                static_folder=str(REPO / "static"))
    app.config.update(
        SECRET_KEY=config.secret_key,
        TESTING=config.env == "testing",
        SESSION_COOKIE_NAME="sfconnect_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=config.session_lifetime),
        SESSION_KEY_PREFIX="sfconnect:session:",
        SESSION_SERIALIZATION_FORMAT="json",
        # The logout form may sit in an open tab for hours; the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.extensions["sfconnect.settings"] = config

    token_store, store_check = _stores(app, config)
    Session(app)
    CSRFProtect(app)

    from .partner import PartnerClient  # the SOAP client: built once, shared by all threads

    partner = PartnerClient(config.partner_wsdl, oauth_flow.quiet_session("partner"))
    app.extensions["sfconnect.partner"] = partner
    app.extensions["sfconnect.identity_http"] = oauth_flow.quiet_session("identity")
    app.extensions["sfconnect.store_check"] = store_check
    oauth = oauth_flow.init_app(app, config)

    def endpoint_for(partner_url: str) -> str:
        if config.api_version:
            return partner_url.replace("{version}", config.api_version)
        return partner.endpoint(partner_url)

    app.extensions["sfconnect.tokens"] = TokenService(
        vault=TokenVault(token_store, config.token_key),
        trust=TrustPolicy([host.url for host in config.login_hosts], config.trusted_hosts),
        client_secret=config.client_secret,
        refresh=oauth.refresh, revoke=oauth.revoke, endpoint_for=endpoint_for,
    )
    views.init_app(app)
    if importlib.util.find_spec(f"{__name__}.exports") is not None:
        from . import exports

        exports.init_app(app)

    app.context_processor(_page_context)
    app.after_request(_security_headers(config))
    if config.secret_key_generated:
        log.warning("SECRET_KEY is not set: using a random one, so sessions end when the "
                    "process stops (ENV=%s)", config.env)
    return app


def _stores(app: Flask, config: Settings) -> tuple[object, Callable[[], None]]:
    """Configure Flask-Session and the token records on the same backend."""
    if config.session_type == "redis":
        import redis

        client = redis.Redis.from_url(config.redis_url, socket_timeout=5,
                                      socket_connect_timeout=5, health_check_interval=30)
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client)
        return RedisTokenStore(client, config.session_lifetime), client.ping

    from cachelib.file import FileSystemCache

    base = Path(config.session_file_dir)
    sessions = base / "sessions"
    sessions.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The non-deprecated form of Flask-Session's file store: cachelib's FileSystemCache, mode 0600.
    cache = FileSystemCache(str(sessions), threshold=10_000, mode=0o600,
                            default_timeout=config.session_lifetime)
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
    store = FileTokenStore(base / "tokens", config.session_lifetime)

    def check() -> None:
        for directory in (sessions, store.directory):
            probe = directory / ".healthz"
            probe.write_text("ok")
            probe.unlink()

    return store, check


def _page_context() -> dict[str, object]:
    """What every page shows in its header: the app's name and who is connected."""
    from flask import current_app

    return {"connection": Connection.from_session(session.get("sf")),
            "login_hosts": current_app.extensions["sfconnect.settings"].login_hosts}


def _security_headers(config: Settings) -> Callable[[Response], Response]:
    # Forms may lead to the login hosts: the Connect form redirects there.
    form_targets = " ".join(sorted({host.url for host in config.login_hosts}))
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
              f"form-action 'self' {form_targets}")

    def add(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return add
