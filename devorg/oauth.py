"""The org's OAuth 2.0 server: login, consent, token and revoke, as Salesforce answers them.

Built on Authlib's authorization server. Salesforce differs from RFC 6749 in its error codes and
texts, in its token response (no `expires_in`; `signature`, `instance_url`, `id`, `issued_at`) and
in that it accepts the JWT bearer grant without a client secret; the subclasses below add exactly
those differences and leave the protocol checks to Authlib. With the openid scope, the code and
refresh grants also answer an id_token (Authlib's OpenID Connect extensions, set up in oidc.py).

Long because it holds one small subclass per Authlib grant, plus the login and consent pages that
lead to them; each is short, and they share the org's error mapping.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    TokenMixin,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
    grants,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
)
from flask import request as flask_request
from joserfc import jwk
from joserfc.errors import JoseError

from . import oidc
from .config import ClientApp
from .state import AuthorizationCode, OrgState, TokenRecord

bp = Blueprint("devorg_oauth", __name__)

SALESFORCE_LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
# RFC 7636 caps a verifier at 128 characters (Authlib's pattern does too), but Salesforce takes
# longer ones: jsforce and the Salesforce CLI send 171 (base64url of 128 random bytes). The bound
# of 256 is this org's: Salesforce publishes none.
CODE_VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,256}$")
LOGIN_FAILED = ("Please check your username and password. If you still can't log in, "
                "contact your Salesforce administrator.")


# ---------------------------------------------------------------- errors in Salesforce's words

class SalesforceOAuthError(OAuth2Error):
    """An OAuth error with Salesforce's exact code and text; always HTTP 400, never a 401."""

    status_code = 400

    def __init__(self, error: str, description: str, **kwargs: Any) -> None:
        super().__init__(description=description, error=error, **kwargs)


def invalid_client_id() -> SalesforceOAuthError:
    """Unknown or missing client id, in Salesforce's words."""
    return SalesforceOAuthError("invalid_client_id", "client identifier invalid")


def redirect_uri_mismatch() -> SalesforceOAuthError:
    """A redirect URI that is not the registered one, in Salesforce's words."""
    return SalesforceOAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")


# What Salesforce says for an invalid_grant of each grant type when Authlib found the fault.
_INVALID_GRANT_TEXT = {
    "authorization_code": "invalid authorization code",
    "refresh_token": "expired access/refresh token",
    "password": "authentication failure",
    "client_credentials": "invalid client credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer": "invalid assertion",
}


def salesforce_error(error: OAuth2Error, grant_type: str | None) -> OAuth2Error:
    """Authlib's error rewritten with Salesforce's code and text (state and redirect kept)."""
    if isinstance(error, SalesforceOAuthError):
        return error
    code, text = error.error or "invalid_request", error.get_error_description() or ""
    if isinstance(error, UnsupportedGrantTypeError):
        code, text = "unsupported_grant_type", "grant type not supported"
    elif isinstance(error, UnsupportedResponseTypeError):
        code, text = "unsupported_response_type", "response type not supported"
    elif isinstance(error, UnsupportedTokenTypeError):
        code, text = "unsupported_token_type", "this token type is not supported"
    elif isinstance(error, AccessDeniedError):
        code, text = "access_denied", "end-user denied authorization"
    elif isinstance(error, InvalidScopeError):
        code, text = "invalid_scope", "the requested scope is not allowed"
    elif isinstance(error, InvalidClientError):
        code, text = "invalid_client", "invalid client credentials"
    elif isinstance(error, InvalidGrantError | UnauthorizedClientError):
        code, text = "invalid_grant", _INVALID_GRANT_TEXT.get(grant_type or "", "invalid grant")
    elif isinstance(error, InvalidRequestError):
        code, text = "invalid_request", text.lower().rstrip(".") or "invalid request"
    return SalesforceOAuthError(code, text, state=error.state, redirect_uri=error.redirect_uri)


# ---------------------------------------------------------------- Authlib's models over our state

class OrgClient(ClientMixin):
    """A ClientApp as Authlib sees it."""

    def __init__(self, app: ClientApp) -> None:
        self.app = app
        self.client_id = app.client_id

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> None:
        # Salesforce requires redirect_uri on every authorization request.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        allowed = scope_to_list(self.app.scopes) or []
        if not scope:
            return self.app.scopes
        wanted = scope_to_list(scope) or []
        if "full" in allowed or set(wanted) <= set(allowed):
            return " ".join(wanted)
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact match, as Salesforce: no prefix or pattern matching.
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.app.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        # Each grant checks its own switch and answers in Salesforce's words.
        return True


@dataclass
class OrgUser:
    """A signed-in user: the User record's Id and Username."""

    user_id: str
    username: str

    def get_user_id(self) -> str:
        return self.user_id


class RefreshHandle(TokenMixin):
    """A refresh token's live record, as Authlib's refresh and revoke code sees it."""

    def __init__(self, token: str, record: TokenRecord, kind: str) -> None:
        self.token = token
        self.record = record
        self.kind = kind  # "access_token" or "refresh_token"

    def check_client(self, client: OrgClient) -> bool:
        return client.client_id == self.record.client_id

    def get_scope(self) -> str:
        return self.record.scope

    def get_expires_in(self) -> int:
        return max(0, int(self.record.expires_at - time.time()))

    def is_expired(self) -> bool:
        return time.time() >= self.record.expires_at

    def is_revoked(self) -> bool:
        return self.record.revoked

    def get_user(self) -> str:
        return self.record.user_id


def _org() -> OrgState:
    return current_app.extensions["devorg"]


def _base_url() -> str:
    # The local org is both login and instance host, on whatever port it runs.
    return request.host_url.rstrip("/")


def find_user(org: OrgState, username: str | None) -> OrgUser | None:
    """The active seeded user with this username (case-insensitive), or None."""
    record = org.data.user_by_username(username or "")
    if record is None or record.get("IsActive") is False:
        return None
    return OrgUser(record["Id"], record["Username"])


def check_password(org: OrgState, username: str, password: str) -> OrgUser | None:
    """The user when the password is theirs (config.users holds the passwords), else None."""
    user = find_user(org, username)
    if user is None:
        return None
    for seed in org.config.users:
        if seed.username.lower() == user.username.lower():
            if hmac.compare_digest(seed.password.encode(), (password or "").encode()):
                return user
    return None


def user_by_id(org: OrgState, user_id: str) -> OrgUser | None:
    """The user with this Id, or None."""
    record = org.data.user_by_id(user_id)
    return OrgUser(record["Id"], record["Username"]) if record else None


def token_response(org: OrgState, record: TokenRecord, client: ClientApp, base: str) -> dict:
    """Salesforce's token JSON, keys in Salesforce's order, with no expires_in."""
    identity_url = f"{base}/id/{org.org_id}/{record.user_id}"
    issued_at = str(record.issued_at_ms)
    digest = hmac.new(client.client_secret.encode(), (identity_url + issued_at).encode(),
                      hashlib.sha256).digest()
    body: dict[str, str] = {"access_token": record.access_token}
    if record.refresh_token:
        body["refresh_token"] = record.refresh_token
    body.update(signature=base64.b64encode(digest).decode(), scope=record.scope,
                instance_url=base, id=identity_url, token_type="Bearer", issued_at=issued_at)
    return body


def _has_refresh_scope(scope: str) -> bool:
    return bool({"refresh_token", "offline_access", "full"} & set(scope_to_list(scope) or []))


# ---------------------------------------------------------------- the server and its grants

class _PlainHttpRequest(FlaskOAuth2Request):
    """Authlib's request minus its HTTPS check: the local org serves plain HTTP on any host."""

    def __init__(self, flask_request: Any) -> None:
        OAuth2Request.__init__(self, flask_request.method, "https://devorg.invalid/",
                               headers=flask_request.headers)
        self.uri = flask_request.url
        self._request = flask_request
        self.payload = FlaskOAuth2Payload(flask_request)


class OrgAuthorizationServer(AuthorizationServer):
    """Authlib's Flask server for one org, answering in Salesforce's words and shapes."""

    def __init__(self, org: OrgState) -> None:
        super().__init__()
        self.org = org

    def create_oauth2_request(self, request: Any) -> FlaskOAuth2Request:
        return _PlainHttpRequest(flask_request)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        grant_type = request.payload.grant_type if request is not None else None
        return super().handle_error_response(request, salesforce_error(error, grant_type))

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        # Authlib adds WWW-Authenticate to some 401s; Salesforce's token errors are plain 400s.
        headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
        if isinstance(payload, dict):
            # Salesforce writes compact JSON, keys in the order built.
            payload = json.dumps(payload, separators=(",", ":"))
        return super().handle_response(status_code, payload, headers)

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        # Salesforce tells an unknown client id apart from a wrong secret.
        client_id, _ = extract_basic_authorization(request.headers)
        client_id = client_id or request.form.get("client_id")
        if not client_id or self.query_client(client_id) is None:
            raise invalid_client_id()
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            raise SalesforceOAuthError("invalid_client", "invalid client credentials") from None

    def issue(self, client: OrgClient, user: OrgUser, scope: str, with_refresh: bool,
              family: str | None = None, refresh_token: str | None = None) -> dict:
        """Issue and store a token; the Salesforce-shaped response body."""
        record = self.org.tokens.issue(client.client_id, user.user_id, scope, with_refresh,
                                       family=family, refresh_token=refresh_token)
        return token_response(self.org, record, client.app, _base_url())

    def generate_salesforce_token(self, grant_type: str, client: OrgClient,
                                  user: OrgUser | None = None, scope: str | None = None,
                                  expires_in: int | None = None,
                                  include_refresh_token: bool = True) -> dict:
        """Authlib's token generator hook: issue through the TokenStore, never an expires_in."""
        allowed = client.get_allowed_scope(scope)
        if allowed is None:
            raise InvalidScopeError()
        if user is None:
            raise SalesforceOAuthError("invalid_grant", "authentication failure")
        # Salesforce issues refresh tokens only to the web server flow, when the scope allows.
        with_refresh = (include_refresh_token and grant_type == "authorization_code"
                        and _has_refresh_scope(allowed))
        return self.issue(client, user, allowed, with_refresh)


@dataclass
class OpenIDAuthorizationCode(AuthorizationCode):
    """A code with what OpenID Connect keeps with it: the request's nonce, the sign-in time."""

    nonce: str | None = None
    auth_time: int | None = None

    # Authlib's oidc AuthorizationCodeMixin, read by its OpenIDCode extension.
    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int | None:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """The web server flow: exact redirect URIs, single-use 15-minute codes."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: OrgClient) -> str:
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri or not client.check_redirect_uri(redirect_uri):
            raise redirect_uri_mismatch()
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        org: OrgState = self.server.org
        org.codes.save(OpenIDAuthorizationCode(
            code=code, client_id=request.client.client_id, user_id=request.user.user_id,
            redirect_uri=request.payload.redirect_uri, scope=request.scope,
            code_challenge=request.payload.data.get("code_challenge"),
            code_challenge_method=request.payload.data.get("code_challenge_method") or "S256",
            expires_at=time.time() + org.code_lifetime_s,
            nonce=request.payload.data.get("nonce"),
            auth_time=session.get("auth_time") or int(time.time()),
        ))

    def query_authorization_code(self, code: str, client: OrgClient) -> AuthorizationCode:
        record, status = self.server.org.codes.take(code, client.client_id)
        if status == "expired":
            # Salesforce says this for a used code as well as for an old one.
            raise SalesforceOAuthError("invalid_grant", "expired authorization code")
        if record is None:
            raise SalesforceOAuthError("invalid_grant", "invalid authorization code")
        if self.request.payload.redirect_uri != record.redirect_uri:
            raise redirect_uri_mismatch()
        return record

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        pass  # taken (deleted) already in query_authorization_code

    def authenticate_user(self, authorization_code: AuthorizationCode) -> OrgUser | None:
        return user_by_id(self.server.org, authorization_code.user_id)


class SalesforcePKCE(CodeChallenge):
    """PKCE as Salesforce does it: S256 only (the default method), and a client can demand it."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        client: OrgClient = grant.request.client
        if client.app.require_pkce and not grant.request.payload.data.get("code_challenge"):
            raise SalesforceOAuthError("invalid_request", "missing required code challenge")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        # Authlib's own check with Salesforce's texts; the comparison is Authlib's S256.
        verifier = grant.request.form.get("code_verifier")
        challenge = grant.request.authorization_code.code_challenge
        if not challenge and not verifier:
            return
        if not challenge:
            raise SalesforceOAuthError("invalid_grant", "unexpected code verifier")
        if not verifier:
            raise SalesforceOAuthError("invalid_request", "missing required code verifier")
        if (not CODE_VERIFIER_PATTERN.match(verifier)
                or not compare_s256_code_challenge(verifier, challenge)):
            raise SalesforceOAuthError("invalid_grant", "invalid code verifier")


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh, with Salesforce's optional rotation and reuse detection."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshHandle | None:
        tokens = self.server.org.tokens
        record = tokens.lookup_refresh(refresh_token)
        if record is None:
            family = tokens.was_rotated_out(refresh_token)
            if family is not None:
                # A rotated-out token came back: assume theft and kill the whole family.
                tokens.revoke_family(family)
            raise SalesforceOAuthError("invalid_grant", "expired access/refresh token")
        return RefreshHandle(refresh_token, record, "refresh_token")

    def authenticate_user(self, refresh_token: RefreshHandle) -> OrgUser | None:
        return user_by_id(self.server.org, refresh_token.record.user_id)

    def issue_token(self, user: OrgUser, refresh_token: RefreshHandle) -> dict:
        scope = self.request.payload.scope or refresh_token.get_scope()
        rotate = self.server.org.rotation
        return self.server.issue(self.request.client, user, scope, with_refresh=True,
                                 family=refresh_token.record.family,
                                 refresh_token=None if rotate else refresh_token.token)

    def create_token_response(self) -> tuple[int, dict, list]:
        status, body, headers = super().create_token_response()
        if not self.server.org.rotation:
            # Without rotation Salesforce returns no refresh_token; the old one stays valid.
            body.pop("refresh_token", None)
        return status, body, headers

    def revoke_old_credential(self, refresh_token: RefreshHandle) -> None:
        if self.server.org.rotation:
            self.server.org.tokens.rotate_out(refresh_token.token)


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):
    """The username-password flow; admins can block it, and Salesforce then says only
    "authentication failure"."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    _client: OrgClient | None = None

    def authenticate_token_endpoint_client(self) -> OrgClient:
        # Authlib sets request.client only after authenticate_user, which needs the client.
        if self._client is None:
            self._client = super().authenticate_token_endpoint_client()
        return self._client

    def authenticate_user(self, username: str, password: str) -> OrgUser:
        client = self.authenticate_token_endpoint_client()
        user = check_password(self.server.org, username, password)
        if not client.app.password_flow_enabled or user is None:
            raise SalesforceOAuthError("invalid_grant", "authentication failure")
        return user

    def validate_token_request(self) -> None:
        form = self.request.form
        if "username" not in form or "password" not in form:
            self.authenticate_token_endpoint_client()
            raise SalesforceOAuthError("invalid_grant", "authentication failure")
        super().validate_token_request()


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """The client credentials flow: runs as the app's integration ("Run As") user."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: OrgClient = self.request.client
        user = find_user(self.server.org, client.app.integration_username)
        if user is None:
            raise SalesforceOAuthError("invalid_grant", "no client credentials user enabled")
        self.request.user = user

    def generate_token(self, user: Any = None, **kwargs: Any) -> dict:
        return super().generate_token(user=self.request.user, **kwargs)


class SalesforceJWTBearerGrant(JWTBearerGrant):
    """The JWT bearer flow: an RS256 assertion signed with the app's certificate key, no secret."""

    def resolve_issuer_client(self, issuer: str) -> OrgClient:
        client = self.server.query_client(issuer)
        if client is None:
            raise invalid_client_id()
        return client

    def resolve_client_public_key(self, client: OrgClient) -> jwk.RSAKey:
        pem = client.app.certificate_pem
        if not pem:
            raise SalesforceOAuthError("invalid_grant", "invalid assertion")
        try:
            public_key = x509.load_pem_x509_certificate(pem.encode()).public_key()
            public_pem = public_key.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            return jwk.RSAKey.import_key(public_pem)
        except (ValueError, TypeError, JoseError):
            raise SalesforceOAuthError("invalid_grant", "invalid assertion") from None

    def get_audiences(self) -> list[str]:
        return [_base_url(), *SALESFORCE_LOGIN_HOSTS]

    def verify_claims(self, claims: Any) -> None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not set(self.get_audiences()) & {a.rstrip("/") for a in audiences if isinstance(a, str)}:
            raise SalesforceOAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp < time.time() - self.LEEWAY:
            # Salesforce's text for an expired assertion, odd as it reads.
            raise SalesforceOAuthError("invalid_grant", "expired authorization code")
        try:
            super().verify_claims({**claims, "aud": _base_url()})
        except InvalidGrantError:
            raise SalesforceOAuthError("invalid_grant", "invalid assertion") from None

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if self.request.user is None:  # Salesforce requires sub
            raise SalesforceOAuthError("invalid_grant", "invalid assertion")

    def authenticate_user(self, subject: str) -> OrgUser:
        user = find_user(self.server.org, subject)
        if user is None:
            raise SalesforceOAuthError("invalid_grant", "invalid assertion")
        return user

    def has_granted_permission(self, client: OrgClient, user: OrgUser) -> bool:
        return True  # admin-approved users are pre-authorized, as the flow requires


class SalesforceRevocation(RevocationEndpoint):
    """POST /services/oauth2/revoke: no client authentication, an empty 200 body."""

    def authenticate_endpoint_client(self, request: OAuth2Request) -> None:
        return None  # Salesforce revokes whoever holds the token

    def authenticate_token(self, request: OAuth2Request, client: None) -> RefreshHandle:
        token = request.form.get("token")
        if not token:
            raise SalesforceOAuthError("invalid_request", "token parameter required")
        handle = self.query_token(token, request.form.get("token_type_hint"))
        if handle is None:
            raise SalesforceOAuthError("unsupported_token_type", "this token type is not supported")
        return handle

    def query_token(self, token_string: str, token_type_hint: str | None) -> RefreshHandle | None:
        tokens = self.server.org.tokens
        record = tokens.lookup_refresh(token_string)
        if record is not None:
            return RefreshHandle(token_string, record, "refresh_token")
        record = tokens.lookup_access(token_string)
        if record is not None:
            return RefreshHandle(token_string, record, "access_token")
        return None

    def revoke_token(self, token: RefreshHandle, request: OAuth2Request) -> None:
        self.server.org.tokens.revoke(token.token)

    def create_endpoint_response(self, request: OAuth2Request) -> tuple[int, str, list]:
        status, _, _ = super().create_endpoint_response(request)
        return status, "", [("Content-Type", "text/html;charset=UTF-8")]


class SalesforceIntrospection(IntrospectionEndpoint):
    """POST /services/oauth2/introspect (RFC 7662): the client that holds a token asks about it,
    authenticated with its secret; Salesforce's fields."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> RefreshHandle | None:
        tokens = self.server.org.tokens
        kinds = (("refresh_token", tokens.lookup_refresh), ("access_token", tokens.lookup_access))
        if token_type_hint == "access_token":
            kinds = kinds[::-1]
        for kind, lookup in kinds:
            record = lookup(token_string)
            if record is not None:
                return RefreshHandle(token_string, record, kind)
        return None

    def check_permission(self, token: RefreshHandle, client: OrgClient,
                         request: OAuth2Request) -> bool:
        # Salesforce lets a connected app introspect the tokens issued to it.
        return token.check_client(client)

    def create_introspection_payload(self, token: RefreshHandle | None) -> dict:
        # A refresh token outlives its access token: only an access token's expiry counts.
        if token is None or token.is_revoked() or (token.kind == "access_token"
                                                   and token.is_expired()):
            return {"active": False}
        return self.introspect_token(token)

    def introspect_token(self, token: RefreshHandle) -> dict:
        org, record = self.server.org, token.record
        user = org.data.user_by_id(record.user_id) or {}
        issued_at = record.issued_at_ms // 1000
        payload = {"active": True, "scope": record.scope, "client_id": record.client_id,
                   "username": user.get("Username"),
                   "sub": f"{_base_url()}/id/{org.org_id}/{record.user_id}",
                   "token_type": token.kind}
        if token.kind == "access_token":
            payload["exp"] = int(record.expires_at)
        payload.update(iat=issued_at, nbf=issued_at)
        return payload


def build_server(app: Flask, org: OrgState) -> OrgAuthorizationServer:
    """Authlib's server for `org`, with every grant and endpoint Salesforce offers."""
    server = OrgAuthorizationServer(org)

    def query_client(client_id: str) -> OrgClient | None:
        client_app = org.clients.get(client_id or "")
        return OrgClient(client_app) if client_app else None

    def save_token(token: dict, request: OAuth2Request) -> None:
        pass  # the token generator stored it in the TokenStore already

    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_token_generator("default", server.generate_salesforce_token)
    server.register_grant(AuthorizationCodeGrant,
                          [SalesforcePKCE(required=False), oidc.OrgOpenIDCode()])
    server.register_grant(RefreshTokenGrant, [oidc.OrgOpenIDRefresh()])
    server.register_grant(PasswordGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(SalesforceJWTBearerGrant)
    server.register_endpoint(SalesforceRevocation)
    server.register_endpoint(SalesforceIntrospection)
    return server


def _server() -> OrgAuthorizationServer:
    return current_app.extensions["devorg.oauth"]


# ---------------------------------------------------------------- pages and routes

def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _csrf_ok() -> bool:
    sent = request.form.get("_csrf", "")
    return bool(sent) and hmac.compare_digest(sent.encode(), _csrf_token().encode())


def error_page(error: str, description: str, status: int = 400) -> Response:
    """Salesforce's OAuth error page: the error in its query-string form, never a redirect."""
    response = Response(render_template("devorg/error.html", error=error,
                                        description=description), status=status)
    return response


@bp.route("/services/oauth2/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    """Login, then consent, then back to the client with a code (or an error)."""
    org, server = _org(), _server()
    if request.method == "GET":
        org.counters.incr("authorize")
    user = user_by_id(org, session.get("user_id", ""))
    try:
        # The signed-in user, if any: OpenID Connect's prompt=none asks whether there is one.
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        sf_error = salesforce_error(error, None)
        if isinstance(error, InvalidClientError):
            return error_page("invalid_client_id", "client identifier invalid")
        if sf_error.redirect_uri:
            return server.handle_error_response(server.create_oauth2_request(None), sf_error)
        return error_page(sf_error.error, sf_error.get_error_description())

    prompts = set((request.args.get("prompt") or "").split())
    if request.method == "POST" and request.form.get("action") == "login":
        if not _csrf_ok():
            return error_page("invalid_request", "invalid or missing CSRF token", 403)
        user = check_password(org, request.form.get("username", ""),
                              request.form.get("password", ""))
        if user is None:
            return _login_page(grant, LOGIN_FAILED, 401)
        session.clear()  # a new session id for a new sign-in
        session["user_id"] = user.user_id
        session["auth_time"] = int(time.time())  # an id_token's auth_time
        session["fresh_login"] = True
        return redirect(request.full_path, 303)
    if user is None:
        return _login_page(grant)
    if request.method == "GET":
        fresh_login = session.pop("fresh_login", False)
        if "login" in prompts and not fresh_login:
            return _login_page(grant)

    client: OrgClient = grant.client
    if request.method == "POST" and request.form.get("action") in ("allow", "deny"):
        if not _csrf_ok():
            return error_page("invalid_request", "invalid or missing CSRF token", 403)
        allowed = request.form.get("action") == "allow"
        if allowed:
            org.approvals.add((user.user_id, client.client_id))
        return server.create_authorization_response(grant=grant,
                                                    grant_user=user if allowed else None)
    if (user.user_id, client.client_id) in org.approvals and "consent" not in prompts:
        # Salesforce remembers an approval and sends the user straight back.
        return server.create_authorization_response(grant=grant, grant_user=user)
    scopes = scope_to_list(grant.request.scope) or []
    return render_template("devorg/consent.html", app_name=client.app.name, scopes=scopes,
                           username=user.username, csrf=_csrf_token())


def _login_page(grant: Any, message: str | None = None, status: int = 200) -> Response:
    return Response(render_template("devorg/login.html", app_name=grant.client.app.name,
                                    message=message, csrf=_csrf_token(),
                                    username=request.form.get("username", "")), status=status)


@bp.post("/services/oauth2/token")
def token() -> Any:
    """The token endpoint, honouring the token_endpoint fault switch."""
    org = _org()
    org.counters.incr(f"token.{request.form.get('grant_type', '')}")
    fault = org.faults.token_endpoint
    if fault == "503":
        return Response("<html><body><h1>Service Unavailable</h1></body></html>", 503,
                        content_type="text/html;charset=UTF-8")
    if fault == "nonjson":
        return Response("<html><body><p>Maintenance in progress.</p></body></html>", 200,
                        content_type="text/html;charset=UTF-8")
    if fault == "slow":
        time.sleep(org.faults.token_delay_s)
    return _server().create_token_response()


@bp.post("/services/oauth2/introspect")
def introspect() -> Any:
    """RFC 7662 token introspection, for the client the token was issued to."""
    _org().counters.incr("introspect")
    return _server().create_endpoint_response("introspection")


@bp.post("/services/oauth2/revoke")
def revoke() -> Any:
    """Revoke an access token, or a refresh token with all its access tokens."""
    _org().counters.incr("revoke")
    return _server().create_endpoint_response("revocation")


def init_app(app: Flask, org: OrgState) -> None:
    """Build the org's authorization server and register its routes."""
    app.extensions["devorg.oauth"] = build_server(app, org)
    app.register_blueprint(bp)
    oidc.init_app(app, org)
