"""The OAuth 2.0 web server flow with Salesforce: /login, /oauth/callback and /logout.

Authlib's Flask client does the protocol: one registered client per offered login host (so the
token exchange goes to the host the flow started at, never to one named by the callback), PKCE S256,
the one-time `state` kept server-side by Flask-Session, the code exchange with client_secret and
code_verifier. Authlib builds a fresh `OAuth2Session` (a requests.Session) for each call; ours
(`_OutboundOAuth2Session`) hands every prepared request to the app's outbound "oauth" session from
`sfconnect.http`, so token, refresh and revoke requests travel like every other outbound request.

A browser session holds up to MAX_CONNECTIONS token families alive, one per user and org
(sfconnect.auth.connection): connecting the same user of the same org again revokes the one it
replaces, a sixth revokes the one used longest ago, logout revokes them all, and they end with the
session (a request notes the session's use on its token records; `expiry.ExpirySweeper` revokes
the records of sessions that ended). `/login?login=<key>` starts at a configured login host,
`/login?my_domain=<url>` at a My Domain the user typed (only under Salesforce's own domains).
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from authlib.integrations.requests_client import OAuth2Session
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    request,
    session,
    url_for,
)

from sfconnect import ext, hooks
from sfconnect.auth import identity, oidc
from sfconnect.auth.connection import (
    MAX_CONNECTIONS,
    Connection,
    all_connections,
    is_sandbox,
    keep_connection,
    update_connection,
    with_session_tokens,
)
from sfconnect.auth.expiry import ExpirySweeper
from sfconnect.auth.tokens import TokenSet, verify_signature
from sfconnect.auth.trust import TrustPolicy, my_domain_origin
from sfconnect.errors import UpstreamError, error_page
from sfconnect.http import TokenGate, token_gate
from sfconnect.settings import LoginHost, Settings

bp = Blueprint("oauth", __name__)

# The longest SOQL Salesforce accepts; a pending query longer than this is not kept.
MAX_SOQL = 100_000
# Far above any real state, code or error text (a Salesforce code is about 90 characters): a
# longer one is refused before any lookup or token call, and the pending sign-in stays usable.
MAX_CALLBACK_PARAM = 4096
# When this browser session last noted its use on its token record (epoch seconds).
TOUCHED_KEY = "sf_touched_at"
# The My Domains this session started a sign-in at (their clients are made on demand).
MY_DOMAINS_KEY = "sf_my_domains"
# Salesforce's answers to revoking a token that is already invalid (e.g. an access token whose
# refresh token was revoked just before): the token is dead, which is what revoking wants.
ALREADY_INVALID = ("invalid_token", "unsupported_token_type")


class _OutboundOAuth2Session(OAuth2Session):
    """Authlib's OAuth2Session whose requests are sent by the app's outbound "oauth" session."""

    def __init__(self, *args, outbound: TokenGate, **kwargs) -> None:  # noqa: ANN002,ANN003
        super().__init__(*args, **kwargs)
        self.trust_env = False
        self.hooks = outbound.hooks
        self._outbound = outbound

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:  # noqa: ANN003
        return self._outbound.send(request, **kwargs)


class SalesforceLogin(FlaskOAuth2App):
    """Authlib's Flask OAuth 2 client for one Salesforce login host."""

    client_cls = _OutboundOAuth2Session

    def __init__(self, framework, name, login_host: LoginHost, **kwargs) -> None:  # noqa: ANN001
        super().__init__(framework, name, **kwargs)
        self.login_host = login_host

    def parse_id_token(self, token, nonce, **kwargs):  # noqa: ANN001, ANN003, ANN201, ARG002
        """Not here: the callback checks the id_token with sfconnect.auth.oidc (its keys and
        discovery come through the "oidc" gate, and a refused one has its tokens revoked)."""
        return None


class SalesforceOAuth:
    """The registered login hosts, and the token calls tokens.py needs (refresh, revoke)."""

    def __init__(self, app: Flask, settings: Settings, http: TokenGate) -> None:
        self.settings = settings
        self.http = http
        self.registry = OAuth(app)
        self.clients: dict[str, SalesforceLogin] = {}
        self._lock = threading.Lock()
        for host in settings.login_hosts:
            self._register(host)

    def _register(self, host: LoginHost) -> SalesforceLogin:
        with self._lock:
            if host.key not in self.clients:
                self.clients[host.key] = self.registry.register(
                    name=f"sf_{host.key}",
                    client_cls=SalesforceLogin,
                    login_host=host,
                    client_id=self.settings.client_id,
                    client_secret=self.settings.client_secret,
                    authorize_url=f"{host.url}/services/oauth2/authorize",
                    access_token_url=f"{host.url}/services/oauth2/token",
                    # scope goes on the authorize request only; a refresh keeps the granted scope.
                    authorize_params={"scope": self.settings.scopes},
                    client_kwargs={
                        "code_challenge_method": "S256",
                        "token_endpoint_auth_method": "client_secret_post",
                        "outbound": self.http,
                    },
                )
            return self.clients[host.key]

    def my_domain_client(self, typed: str) -> SalesforceLogin:
        """The client of a My Domain a user typed (made once per process, the same on every
        instance); ValueError saying why the domain is refused (trust.my_domain_origin)."""
        origin = my_domain_origin(typed)
        digest = hashlib.sha256(origin.encode()).hexdigest()[:10]
        host = urlsplit(origin).hostname
        return self._register(LoginHost(key=f"md{digest}", label=f"My Domain ({host})",
                                        url=origin))

    def client_for_url(self, login_url: str) -> SalesforceLogin | None:
        """The client of a login host, by its URL (a My Domain's is made again if needed: the
        callback or a refresh may reach another instance than the sign-in)."""
        found = next((c for c in self.clients.values() if c.login_host.url == login_url), None)
        if found is None:
            with contextlib.suppress(ValueError):
                found = self.my_domain_client(login_url)
        return found if found is not None and found.login_host.url == login_url else None

    def pending(self, state: str) -> SalesforceLogin | None:
        """The client whose authorization request issued `state` in this session, if any."""
        for url in session.get(MY_DOMAINS_KEY) or ():
            self.client_for_url(str(url))  # a My Domain's client, on whichever instance this is
        for client in list(self.clients.values()):
            if client.framework.get_state_data(session, state) is not None:
                return client
        return None

    def refresh(self, login_url: str, refresh_token: str) -> Mapping[str, object]:
        """The refresh_token grant at the host that issued the token (Authlib, our session)."""
        client = self.client_for_url(login_url)
        if client is None:
            raise OAuthError(error="invalid_grant",
                             description="the login host of this session is no longer configured")
        with upstream("oauth"):
            return client.fetch_access_token(grant_type="refresh_token",
                                             refresh_token=refresh_token, allow_redirects=False)

    def revoke(self, login_url: str, token: str) -> None:
        """POST the token to /services/oauth2/revoke; UpstreamError unless it is dead now (200, or
        Salesforce's 400 for a token that is already invalid)."""
        with upstream("oauth"):
            response = self.http.post(f"{login_url}/services/oauth2/revoke", data={"token": token},
                                      allow_redirects=False)
        if response.status_code == 200:
            return
        if response.status_code == 400 and _oauth_error(response) in ALREADY_INVALID:
            return
        raise UpstreamError("oauth", f"revoke answered HTTP {response.status_code}")


def _oauth_error(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@contextmanager
def upstream(service: str) -> Iterator[None]:
    """Turn transport failures and unreadable replies of one service into UpstreamError."""
    try:
        yield
    except OAuthError:
        raise
    except requests.Timeout:
        raise UpstreamError(service, "Salesforce did not answer in time") from None
    except requests.ConnectionError:
        raise UpstreamError(service, "Salesforce could not be reached") from None
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise UpstreamError(service, f"Salesforce answered HTTP {status}") from None
    except (requests.RequestException, ValueError):
        raise UpstreamError(service, "Salesforce answered something unreadable") from None


def init_app(app: Flask, settings: Settings, trust: TrustPolicy) -> SalesforceOAuth:
    """Register the login hosts with Authlib and the flow's routes."""
    oauth = SalesforceOAuth(app, settings, token_gate("oauth", trust, settings.http_timeouts))
    ext.register(app, "oauth", oauth)
    app.register_blueprint(bp)
    ext.register(app, "sweeper", ExpirySweeper())
    app.before_request(_note_connection_in_use)
    app.after_request(_sweep_now_and_then)
    return oauth


def _note_connection_in_use() -> None:
    """Each request extends the browser session; its token record's life is extended with it (one
    store write every few minutes per session), so the expiry sweep never ends a live session's
    token, and ends a dead session's."""
    connections = all_connections()
    if not connections:
        return
    vault = ext.tokens().vault
    now = time.time()
    touched = session.get(TOUCHED_KEY)
    if isinstance(touched, int | float) and 0 <= now - touched < vault.touch_every_s:
        return
    for connection in connections:
        vault.touch(connection.token_record)
    session[TOUCHED_KEY] = now


def _sweep_now_and_then(response: Response) -> Response:
    """Once a minute per process, after this response has been sent: revoke and forget the token
    records of browser sessions that ended."""
    sweeper = ext.sweeper()
    if sweeper.due():
        service = ext.tokens()
        response.call_on_close(lambda: sweeper.sweep(service))
    return response


def _single(name: str, max_length: int | None = None) -> str | None:
    """A query parameter given at most once (and at most `max_length` long); else 400."""
    values = request.args.getlist(name)
    if len(values) > 1:
        abort(400, description=f"The parameter {name!r} was given more than once.")
    if values and max_length is not None and len(values[0]) > max_length:
        abort(400, description=f"The parameter {name!r} is {len(values[0]):,} characters long, "
              f"more than a sign-in answer ever carries ({max_length:,}).")
    return values[0] if values else None


@bp.get("/login")
def login():  # noqa: ANN201
    """Start the web server flow at the chosen login host: Authlib makes the authorize URL and
    keeps its state and PKCE verifier in the session; the browser goes there (unless a pause hook,
    step-by-step mode, shows the URL first)."""
    typed = _single("my_domain")
    if typed:
        try:
            client = ext.oauth().my_domain_client(typed)
        except ValueError as why:
            # Refused before any redirect: the client secret would go to that host's token URL.
            return error_page(400, "INVALID_MY_DOMAIN", f"The My Domain {typed[:200]!r} was "
                              f"refused: {why}. Type your org's My Domain, e.g. "
                              "https://yourcompany.my.salesforce.com.", "My Domain refused")
        domains = [url for url in session.get(MY_DOMAINS_KEY) or () if url !=
                   client.login_host.url]
        session[MY_DOMAINS_KEY] = [client.login_host.url, *domains][:MAX_CONNECTIONS]
    else:
        host = ext.settings().login_host(_single("login"))
        if host is None:
            abort(400, description="That login host is not one this app is configured for.")
        client = ext.oauth().clients[host.key]
    soql = _single("q")
    if soql and len(soql) <= MAX_SOQL:
        session["pending_soql"] = soql  # shown again in the form once connected
    # What Authlib's authorize_redirect does, with a pause point before the redirect. With
    # `openid` in the scope Authlib adds a random `nonce`, kept with the state for the callback.
    redirect_uri = ext.settings().redirect_uri
    authorization = client.create_authorization_url(redirect_uri=redirect_uri)
    client.save_authorize_data(redirect_uri=redirect_uri, **authorization)
    return hooks.pause_at("authorize", {"url": authorization["url"]}) or redirect(
        authorization["url"])


@bp.get("/oauth/callback")
def callback():  # noqa: ANN201
    """Finish the flow: check state, exchange the code, store the tokens, meet the user."""
    state = _single("state", MAX_CALLBACK_PARAM)
    error = _single("error", MAX_CALLBACK_PARAM)
    description = _single("error_description", MAX_CALLBACK_PARAM)
    code = _single("code", MAX_CALLBACK_PARAM)
    if not state:
        return _refuse("The sign-in answer carries no state, so it cannot be matched to a "
                       "sign-in this browser started. Nothing was exchanged.")
    client = ext.oauth().pending(state)
    if client is None:
        return _refuse("The sign-in answer's state is unknown or was already used. Nothing was "
                       "exchanged; start again from Connect.")
    if error:
        client.framework.clear_state_data(session, state)
        return error_page(400, error, description or "", "Salesforce did not connect")
    if not code:
        client.framework.clear_state_data(session, state)
        return _refuse("The sign-in answer carries no authorization code.")
    authorization = client.framework.get_state_data(session, state) or {}
    paused = hooks.pause_at("token", {
        "login": client.login_host.url, "state": state, "code": code,
        "token_url": client.access_token_url, "redirect_uri": authorization.get("redirect_uri"),
        "code_verifier": authorization.get("code_verifier"), "nonce": authorization.get("nonce")})
    if paused is not None:
        # The state is used up now, as authorize_access_token would use it; the code and the
        # verifier wait with the paused step (see sfconnect.learn.steps), for its Continue.
        client.framework.clear_state_data(session, state)
        return paused

    settings = ext.settings()
    with upstream("oauth"):
        token = client.authorize_access_token(allow_redirects=False)
    verify_signature(token, settings.client_secret)
    tokens = TokenSet.from_response(token, client.login_host.url)
    try:
        tokens = check_openid(client.login_host.url, token, tokens, authorization.get("nonce"))
        who = identity.fetch_identity(ext.identity_http(), tokens)
        # Kept in a token record here: should the store refuse it, the tokens are revoked below.
        return signed_in(client.login_host.url, tokens, who)
    except oidc.IdTokenRefused as refused:
        return refuse_sign_in(tokens, refused)
    except Exception:
        # Tokens the app will not keep are revoked, so none is left alive unaccounted for.
        ext.tokens().revoke_tokens(tokens)
        raise


def check_openid(login_url: str, token: Mapping[str, object], tokens: TokenSet,
                 nonce: str | None) -> TokenSet:
    """With `openid` in the scopes: the id_token's checks, then userinfo's sub must match
    (oidc.IdTokenRefused names the check that failed); the tokens are returned with the
    sign-in's iss, aud and sub kept, for a refresh's id_token to be compared with. Without
    `openid`, the tokens as they are."""
    if not oidc.has_openid(ext.settings().scopes):
        return tokens
    verifier = ext.oidc()
    claims = verifier.verify_id_token(login_url, token, nonce)
    verifier.check_userinfo(login_url, tokens.access_token, claims["sub"])
    return replace(tokens, id_claims=oidc.kept_claims(claims))


def refuse_sign_in(tokens: TokenSet, refused: oidc.IdTokenRefused):  # noqa: ANN201
    """No sign-in: the tokens just issued are revoked, and the page names the failed check."""
    ext.tokens().revoke_tokens(tokens)
    return error_page(refused.status, refused.code, refused.message,
                      "The sign-in's identity could not be verified")


def signed_in(login_url: str, tokens: TokenSet, who: identity.Identity,  # noqa: ANN202
               record_id: str | None = None):
    """Keep who signed in with their token record (stored now unless `record_id` holds it
    already) as the active connection; back home with a new session id. A connection of the same
    user in the same org is replaced, and past MAX_CONNECTIONS the one used longest ago is
    dropped: both have their tokens revoked."""
    service = ext.tokens()
    if record_id is None:
        record_id = service.vault.create(tokens)
    else:
        service.vault.touch(record_id)  # its life counts from the sign-in, as a new record's
    connection = Connection(
        token_record=record_id, user_id=who.user_id, organization_id=who.organization_id,
        username=who.username, display_name=who.display_name, partner_url=who.partner_url,
        login_url=login_url, instance_url=tokens.instance_url, urls=who.urls,
        is_sandbox=is_sandbox(login_url, tokens.instance_url))
    for displaced in keep_connection(connection):
        if displaced.key != connection.key:
            flash(f"This browser keeps at most {MAX_CONNECTIONS} connections: "
                  f"{displaced.username} at {displaced.org_label}, used longest ago, was "
                  "disconnected and its tokens revoked.", "info")
        revoke_connection(displaced)
    session[TOUCHED_KEY] = time.time()
    hooks.report(hooks.connected, key=connection.key, label=connection.label)
    soql = session.pop("pending_soql", None)
    # A new session id at sign-in: an id planted before it (session fixation) is now worthless.
    current_app.session_interface.regenerate(session)
    return redirect(url_for("views.index", q=soql) if soql else url_for("views.index"))


def revoke_connection(connection: Connection) -> bool:
    """Revoke a connection's tokens and forget its record (the caller has dropped it from the
    session); a warning when Salesforce could not be reached. False then."""
    with hooks.acting_for(connection.key, connection.label):
        revoked = ext.tokens().disconnect(connection.token_record)
    if revoked:
        return True
    flash(f"Salesforce could not be reached to revoke the token of {connection.username} at "
          f"{connection.org_label}. It will expire on its own; you can also revoke it in "
          "Salesforce (Settings → Connected Apps OAuth Usage).", "warning")
    return False


@bp.post("/identity/refresh")
def refresh_identity():  # noqa: ANN201
    """Ask the identity service again who the user is (CSRF-protected: it rewrites the session).

    Goes through the same refresh-and-retry as every call: a 403 Bad_OAuth_Token from a token that
    expired meanwhile costs one refresh grant, then the identity call is made once more.
    """
    http = ext.identity_http()
    connection, who = with_session_tokens(lambda connection, tokens: (
        connection, identity.fetch_identity(http, tokens)))
    if (who.user_id, who.organization_id) != (connection.user_id, connection.organization_id):
        # The record's token belongs to someone else: nothing about this session can be trusted,
        # and every token it holds is revoked, not left alive.
        for each in all_connections():
            ext.tokens().disconnect(each.token_record)
        session.clear()
        abort(409, description="The identity service answered for another user than the one "
              "signed in here; you were signed out. Connect again.")
    update_connection(replace(
        connection, username=who.username, display_name=who.display_name,
        partner_url=who.partner_url, urls=who.urls))
    flash(f"Salesforce confirmed who you are: {who.display_name} ({who.username}).", "info")
    return redirect(url_for("views.index"))


def _refuse(message: str):  # noqa: ANN202
    return error_page(400, "invalid_state", message, "Sign-in refused")


@bp.post("/logout")
def logout():  # noqa: ANN201
    """Revoke every connection's tokens at Salesforce and clear the server-side session
    (CSRF-protected)."""
    connections = all_connections()
    revoked = True
    for connection in connections:
        with hooks.acting_for(connection.key, connection.label):
            revoked = ext.tokens().disconnect(connection.token_record) and revoked
    app = current_app._get_current_object()
    hooks.signing_out.send(app)  # step-by-step mode drops a sign-in paused after its exchange
    session.clear()
    if connections:
        if revoked:
            flash("You are signed out, and the app's Salesforce token"
                  + ("s were" if len(connections) > 1 else " was") + " revoked.", "info")
        else:
            flash("You are signed out here, but Salesforce could not be reached to revoke the "
                  "token. It will expire on its own; you can also revoke it in Salesforce "
                  "(Settings → Connected Apps OAuth Usage).", "warning")
    current_app.session_interface.regenerate(session)
    hooks.signed_out.send(app)  # ... and keeps its switch, which outlives the sign-in
    return redirect(url_for("views.index"))
