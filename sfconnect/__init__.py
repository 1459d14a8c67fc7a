"""sfconnect: the Salesforce OAuth 2.0 web server flow, then SOQL through the SOAP partner API.

    app = sfconnect.create_app({"SF_CLIENT_ID": ..., ...})   # keys are environment variable names

Nothing happens at import time but definitions; create_app reads and checks the settings, wires the
extensions (Flask-Session, CSRF, Authlib, the partner client, the token vault) and the blueprints.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response, request, session
from flask.sessions import SessionMixin
from flask_session import Session
from flask_wtf.csrf import CSRFProtect

from sfconnect import ext
from sfconnect.auth import oauth as oauth_flow
from sfconnect.auth.connection import MAX_CONNECTIONS, active_connection, all_connections
from sfconnect.auth.oidc import OpenIDVerifier
from sfconnect.auth.tokens import TokenService, TokenVault
from sfconnect.auth.trust import MY_DOMAIN_SUFFIXES, TrustPolicy
from sfconnect.errors import error_page, json_error
from sfconnect.http import token_gate
from sfconnect.redaction import install_log_redaction
from sfconnect.settings import ConfigError, Settings, load_settings
from sfconnect.store import Backend, StoreUnavailable
from sfconnect.web import crosssite, exports, orgs, views

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
    if config.session_file_dir is None:  # the default: the app's own instance folder
        config = replace(config, session_file_dir=str(Path(app.instance_path) / "sessions"))
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
    ext.register(app, "settings", config)

    backend = Backend(config)
    ext.register(app, "backend", backend)
    ext.register(app, "store_check", backend.check)
    _configure_sessions(app, backend)
    Session(app)
    store_errors = backend.errors
    app.session_interface = _GuardedSessions(app.session_interface, store_errors)
    CSRFProtect(app)
    # First of all before-request work (before the CSRF check reads the session): no store, no page.
    app.before_request_funcs.setdefault(None, []).insert(0, _require_store)
    for error in (StoreUnavailable, *store_errors):
        app.register_error_handler(error, _store_unavailable)
    crosssite.init_app(app)  # before the blueprints' hooks: another site's GET calls nothing

    # The SOAP client: built once, shared by all threads.
    from sfconnect.salesforce.partner import PartnerClient

    # Every outbound request passes a gate that checks its URL with this one policy.
    trust = TrustPolicy([host.url for host in config.login_hosts], config.trusted_hosts)
    partner = PartnerClient(config.partner_wsdl,
                            token_gate("partner", trust, config.http_timeouts),
                            timeout=config.http_timeout, api_version=config.api_version)
    ext.register(app, "partner", partner)
    ext.register(app, "identity_http", token_gate("identity", trust, config.http_timeouts))
    ext.register(app, "oidc", OpenIDVerifier(token_gate("oidc", trust, config.http_timeouts),
                                             config.client_id))
    oauth = oauth_flow.init_app(app, config, trust)

    ext.register(app, "tokens", TokenService(
        vault=TokenVault(backend.sealed("tokens")),
        trust=trust,
        client_secret=config.client_secret,
        refresh=oauth.refresh, revoke=oauth.revoke, endpoint_for=partner.endpoint,
        refresh_lock_s=config.refresh_lock_s,
    ))
    views.init_app(app)
    exports.init_app(app)
    orgs.init_app(app)
    if config.learning:
        # Only here: the learning features watch the core through sfconnect.hooks and the
        # outbound-exchange observers; the core never imports them.
        from sfconnect.learn import pages, steps

        pages.init_app(app, config)  # the trace, /flow, /flows, /compare, /setup, `flask sf`
        steps.init_app(app, config)  # step-by-step mode: the switch, the step pages, Continue

    app.context_processor(_page_context)
    app.after_request(_security_headers(config))
    if config.secret_key_generated:
        log.warning("SECRET_KEY is not set: using a random one, so sessions end when the "
                    "process stops (ENV=%s)", config.env)
    return app


def _configure_sessions(app: Flask, backend: Backend) -> None:
    """Flask-Session on the records' backend: the same Redis, or files beside the records."""
    if backend.redis is not None:
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=backend.redis)
        return
    from cachelib.file import FileSystemCache

    sessions = backend.folder / "sessions"
    sessions.mkdir(parents=True, exist_ok=True, mode=0o700)
    # The non-deprecated form of Flask-Session's file store: cachelib's FileSystemCache, mode 0600.
    cache = FileSystemCache(str(sessions), threshold=10_000, mode=0o600,
                            default_timeout=backend.settings.session_lifetime)
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)


class _UnavailableSession(dict, SessionMixin):
    """What a request gets when the session store cannot be read: empty, never saved."""

    store_unavailable = True


class _GuardedSessions:
    """Flask-Session's interface, for a store that can go away (Redis restarting): a request
    then gets an _UnavailableSession (and a 503 page) instead of a traceback, and the app serves
    again as soon as the store is back. Everything else is Flask-Session's."""

    def __init__(self, inner: object, errors: tuple[type[Exception], ...]) -> None:
        self.inner = inner
        self.errors = errors

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request_: object) -> SessionMixin:
        try:
            return self.inner.open_session(app, request_)
        except self.errors as error:
            log.warning("session store unavailable while reading a session: %s",
                        type(error).__name__)
            return _UnavailableSession()

    def save_session(self, app: Flask, session_: SessionMixin, response: Response) -> None:
        if getattr(session_, "store_unavailable", False):
            return
        try:
            self.inner.save_session(app, session_, response)
        except self.errors as error:
            log.warning("session store unavailable while saving a session: %s",
                        type(error).__name__)


def _require_store() -> None:
    # Static files and the health check work without a session.
    if getattr(session, "store_unavailable", False) and request.endpoint not in (
            "static", "views.healthz"):
        raise StoreUnavailable()


def _store_unavailable(error: Exception):  # noqa: ANN202
    """The session store is down: 503 with a message (JSON for the exports); no traceback."""
    log.warning("session store unavailable: %s", type(error).__name__)
    message = ("The app cannot reach its session store right now, so it cannot tell who you "
               "are. Nothing was sent to Salesforce. Try again in a moment.")
    if request.path.startswith("/export."):
        return json_error(503, "SESSION_STORE_UNAVAILABLE", message, row=None, column=None)
    return error_page(503, "session_store_unavailable", message, "Sessions are unavailable")


def _page_context() -> dict[str, object]:
    """What every page shows in its header: the app's name and who is connected (the active
    connection; a page made for another one says so itself)."""
    settings = ext.settings()
    return {"connection": active_connection(), "connections": all_connections(),
            "max_connections": MAX_CONNECTIONS, "login_hosts": settings.login_hosts,
            "learning": settings.learning}


def _security_headers(config: Settings) -> Callable[[Response], Response]:
    # Forms may lead to the login hosts: the Connect form redirects there (a My Domain typed by
    # the user is under Salesforce's My Domain domains, checked before the redirect).
    form_targets = " ".join([*sorted({host.url for host in config.login_hosts}),
                             *(f"https://*.{suffix}" for suffix in MY_DOMAIN_SUFFIXES)])
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
              f"form-action 'self' {form_targets}")
    # HSTS only where browsers reach the app over https in production: sent over plain http (a
    # developer's localhost) it would pin https on a host that cannot serve it.
    hsts = config.env == "production" and config.secure_cookies

    def add(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        if hsts:
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        # No Referer to any other origin (a code or a query in a URL never leaks, RFC 9700
        # 4.2); to this one, yes: on https Flask-WTF refuses a form without a same-origin Referer.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return add
