"""The org as an OpenID Connect provider: id_tokens, discovery, its keys, and userinfo.

The id_token of the code grant (and of a refresh of an openid grant) comes from Authlib's
`OpenIDCode` / `OpenIDToken` extensions; this module gives them what Authlib leaves to the
provider: the signing key and its `kid`, the issuer and audience, and the user's claims. Written
by hand because Authlib has no such part for Salesforce's shapes: the key set with rotation, the
discovery document (Salesforce's fields), and userinfo, which answers any live token with
Salesforce's non-standard claims and Salesforce's bare-text 403s (Authlib's `UserInfoEndpoint`
requires the openid scope and answers OAuth 401 JSON). Also the `id_token` fault switch's
spoilers: test controls that break one thing in every id_token (or userinfo) while set.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfo
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from joserfc import jwt
from joserfc.jwk import RSAKey

from .identity import identity_document
from .state import OrgState

bp = Blueprint("devorg_oidc", __name__)
admin_bp = Blueprint("devorg_oidc_admin", __name__, url_prefix="/__admin")

ID_TOKEN_ALG = "RS256"
# Authlib's default lifetime of an id_token; Salesforce does not publish its own.
ID_TOKEN_LIFETIME_S = 3600
# The claims of the userinfo document that also go into the id_token.
ID_TOKEN_USER_CLAIMS = ("sub", "name", "email", "email_verified", "given_name", "family_name",
                        "preferred_username", "nickname", "zoneinfo", "locale", "picture",
                        "profile", "updated_at")

# The values of the `id_token` fault switch, each named after the OpenID Foundation's Basic RP
# test it stands for (the OP side of it): one defect in every id_token, or in userinfo.
ID_TOKEN_SPOILERS = (
    "bad-sig",           # rp-id_token-bad-sig-rs256: the signature does not verify
    "issuer-mismatch",   # rp-id_token-issuer-mismatch: iss is another issuer
    "aud",               # rp-id_token-aud: aud is another client id
    "expired",           # exp (and iat) in the past
    "nonce",             # rp-nonce-invalid: a nonce other than the one sent
    "alg-none",          # rp-id_token-sig-none: an unsecured JWS, alg "none"
    "no-sub",            # rp-id_token-sub: no sub claim
    "no-iat",            # rp-id_token-iat: no iat claim
    "no-kid",            # rp-id_token-kid-absent-single-jwks: signed, but no kid in the header
    "userinfo-bad-sub",  # rp-userinfo-bad-sub-claim: userinfo answers another sub
)
SPOILED_ISSUER = "https://impostor.devorg.invalid"
SPOILED_AUDIENCE = "3MVG9SpoiledAudienceOfAnotherConnectedApp"
# A well-formed User Id that is no user of the org: userinfo's sub under "userinfo-bad-sub".
SPOILED_USER_ID = "005000000000000AAA"


class SigningKeys:
    """The org's id_token signing keys: the newest signs, every one stays in the JWKS (so tokens
    signed before a rotation still verify). The first key is made on first use, not at start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[RSAKey] = []

    @staticmethod
    def _new_key() -> RSAKey:
        return RSAKey.generate_key(2048, {"use": "sig", "alg": ID_TOKEN_ALG}, auto_kid=True)

    def current(self) -> RSAKey:
        """The key that signs new id_tokens."""
        with self._lock:
            if not self._keys:
                self._keys.append(self._new_key())
            return self._keys[-1]

    def rotate(self) -> RSAKey:
        """Add a new key and sign with it from now on; the old ones stay published."""
        key = self._new_key()
        with self._lock:
            if not self._keys:
                self._keys.append(self._new_key())
            self._keys.append(key)
        return key

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set, newest key first."""
        self.current()
        with self._lock:
            keys = list(reversed(self._keys))
        return {"keys": [_public_jwk(key) for key in keys]}


def _public_jwk(key: RSAKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    return {name: public[name] for name in ("kty", "n", "e", "alg", "use", "kid")}


class OpenIDProvider:
    """What the OpenID Connect parts of one org share: its keys and each grant's sign-in time."""

    def __init__(self) -> None:
        self.keys = SigningKeys()
        self._lock = threading.Lock()
        self._auth_times: dict[str, int] = {}  # token family -> when the user signed in

    def remember_auth_time(self, family: str, auth_time: int) -> None:
        """Keep when the user signed in for a grant, for the id_tokens of its refreshes."""
        with self._lock:
            self._auth_times[family] = auth_time

    def auth_time(self, family: str) -> int | None:
        """When the user of a grant signed in, if known."""
        with self._lock:
            return self._auth_times.get(family)


def provider() -> OpenIDProvider:
    """The OpenIDProvider of the current app."""
    return current_app.extensions["devorg.oidc"]


def _org() -> OrgState:
    return current_app.extensions["devorg"]


def _base_url() -> str:
    return request.host_url.rstrip("/")


def user_info(org: OrgState, user: dict, base: str) -> dict[str, Any]:
    """Salesforce's userinfo document for a User record: OpenID Connect's standard claims and
    Salesforce's own (user_id, organization_id, urls ...), keys in Salesforce's order."""
    identity = identity_document(org, user, base)
    name = identity["display_name"] or " ".join(
        part for part in (identity["first_name"], identity["last_name"]) if part)
    return {
        "sub": identity["id"],
        "user_id": identity["user_id"],
        "organization_id": identity["organization_id"],
        "preferred_username": identity["username"],
        "nickname": identity["nick_name"],
        "name": name,
        "email": identity["email"],
        "email_verified": identity["email_verified"],
        "given_name": identity["first_name"],
        "family_name": identity["last_name"],
        "zoneinfo": identity["timezone"],
        "photos": identity["photos"],
        # The user's page on the org, as Salesforce writes it (the local org has no such page).
        "profile": f"{base}/{identity['user_id']}",
        "picture": identity["photos"]["picture"],
        "address": {},
        "is_salesforce_integration_user": False,
        "urls": identity["urls"],
        "active": identity["active"],
        "user_type": identity["user_type"],
        "language": identity["language"],
        "locale": identity["locale"],
        "utcOffset": identity["utcOffset"],
        "updated_at": identity["last_modified_date"],
        "is_app_installed": identity["is_app_installed"],
    }


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_json(segment: str) -> dict[str, Any]:
    return json.loads(_b64url_decode(segment))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def spoil_id_token(id_token: str, spoiler: str | None, key: RSAKey) -> str:
    """Test control: `id_token` (signed by Authlib with `key`) with the one defect `spoiler` names
    (see ID_TOKEN_SPOILERS); unchanged when the switch is off or names a userinfo spoiler.

    Written by hand on purpose: no library makes broken tokens. The token is taken apart, the one
    header field or claim changed, and signed again with joserfc and the same key; only bad-sig
    and alg-none touch the signature itself."""
    if spoiler is None or spoiler == "userinfo-bad-sub":
        return id_token
    header_b64, payload_b64, signature_b64 = id_token.split(".")
    if spoiler == "bad-sig":
        # Flip the last byte: still base64url of the right length, no longer a valid signature.
        signature = bytearray(_b64url_decode(signature_b64))
        signature[-1] ^= 0xFF
        return f"{header_b64}.{payload_b64}.{_b64url(bytes(signature))}"
    header, claims = _b64url_json(header_b64), _b64url_json(payload_b64)
    if spoiler == "alg-none":
        # An unsecured JWS (RFC 7515 appendix A.5): no key signs it, so no kid either.
        header = {name: value for name, value in header.items() if name != "kid"}
        header["alg"] = "none"
        return f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}.{payload_b64}."
    if spoiler == "no-kid":
        header.pop("kid", None)
    elif spoiler == "issuer-mismatch":
        claims["iss"] = SPOILED_ISSUER
    elif spoiler == "aud":
        claims["aud"] = SPOILED_AUDIENCE
    elif spoiler == "expired":
        now = int(time.time())
        claims["iat"], claims["exp"] = now - 2 * ID_TOKEN_LIFETIME_S, now - ID_TOKEN_LIFETIME_S
    elif spoiler == "nonce":
        claims["nonce"] = f"spoiled-{secrets.token_urlsafe(12)}"
    elif spoiler == "no-sub":
        claims.pop("sub", None)
    elif spoiler == "no-iat":
        claims.pop("iat", None)
    return jwt.encode(header, claims, key, [header["alg"]])


class _SalesforceIDToken:
    """What Authlib's OpenIDToken asks the provider for, answered for this org."""

    def encode_id_token(self, token: dict, request: OAuth2Request) -> str:
        # Authlib signs; the `id_token` fault switch may then spoil the result (a test control).
        key = self.resolve_client_private_key(request.client)
        id_token = super().encode_id_token(token, request)  # type: ignore[misc]
        return spoil_id_token(id_token, _org().faults.id_token, key)

    def resolve_client_private_key(self, client: Any) -> RSAKey:
        return provider().keys.current()

    def get_client_algorithm(self, client: Any) -> str:
        return ID_TOKEN_ALG

    def get_encode_header(self, client: Any) -> dict[str, str]:
        return {"alg": ID_TOKEN_ALG, "kid": provider().keys.current().kid}

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        # iss is the login host, as the discovery document says; aud the client id, a string as
        # Salesforce writes it.
        now = int(time.time())
        return {"iss": _base_url(), "aud": client.get_client_id(), "iat": now,
                "exp": now + ID_TOKEN_LIFETIME_S}

    def generate_user_info(self, user: Any, scope: str) -> UserInfo:
        record = _org().data.user_by_id(user.get_user_id()) or {}
        claims = user_info(_org(), record, _base_url()) if record else {}
        return UserInfo({name: claims[name] for name in ID_TOKEN_USER_CLAIMS if name in claims})


class OrgOpenIDCode(_SalesforceIDToken, OpenIDCode):
    """Authlib's OpenIDCode for the web server flow: an id_token when the scope has openid, with
    the nonce and auth_time kept with the code."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # Salesforce does not refuse a nonce it saw before; the relying party checks its own.
        return False

    def process_token(self, grant: Any, response: Any) -> dict:
        token = super().process_token(grant, response)
        if "id_token" in token:
            record = _org().tokens.lookup_access(token["access_token"])
            code = grant.request.authorization_code
            if record is not None and code is not None and code.get_auth_time():
                provider().remember_auth_time(record.family, code.get_auth_time())
        return token


class OrgOpenIDRefresh(_SalesforceIDToken, OpenIDToken):
    """Authlib's OpenIDToken on the refresh grant: a new id_token (no nonce) when the grant had
    openid, its auth_time the original sign-in."""

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        claims = super().get_compatible_claims(request)
        handle = request.refresh_token
        auth_time = provider().auth_time(handle.record.family) if handle is not None else None
        if auth_time:
            claims["auth_time"] = auth_time
        return claims


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    # Salesforce also takes the token as an oauth_token (or access_token) parameter.
    return (request.values.get("oauth_token") or request.values.get("access_token")) or None


def _forbidden(text: str) -> Response:
    return Response(text, 403, content_type="text/plain;charset=UTF-8")


@bp.route("/services/oauth2/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """The token's user, in Salesforce's userinfo shape; 403 with Salesforce's text otherwise."""
    org = _org()
    org.counters.incr("userinfo")
    token = _bearer_token()
    if token is None:
        return _forbidden("Missing_OAuth_Token")
    record = org.tokens.lookup_access(token)
    user = org.data.user_by_id(record.user_id) if record is not None else None
    if user is None:
        return _forbidden("Bad_OAuth_Token")
    claims = user_info(org, user, _base_url())
    if org.faults.id_token == "userinfo-bad-sub":
        # Test control: a sub other than the id_token's (the user's identity URL, another Id).
        claims["sub"] = claims["sub"].rsplit("/", 1)[0] + "/" + SPOILED_USER_ID
    return jsonify(claims)


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """The discovery document, with Salesforce's fields, on this org's host."""
    base = _base_url()
    return jsonify({
        "issuer": base,
        "authorization_endpoint": f"{base}/services/oauth2/authorize",
        "token_endpoint": f"{base}/services/oauth2/token",
        "revocation_endpoint": f"{base}/services/oauth2/revoke",
        "userinfo_endpoint": f"{base}/services/oauth2/userinfo",
        "jwks_uri": f"{base}/id/keys",
        "introspection_endpoint": f"{base}/services/oauth2/introspect",
        "scopes_supported": ["api", "id", "profile", "email", "address", "phone", "web", "full",
                             "openid", "refresh_token", "offline_access"],
        # Salesforce also lists "token" and "token id_token" (implicit); this org serves neither.
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "display_values_supported": ["page", "popup", "touch"],
        # Salesforce also takes private_key_jwt; this org takes secrets only.
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["active", "address", "email", "email_verified", "family_name",
                             "given_name", "is_app_installed", "language", "locale", "name",
                             "nickname", "organization_id", "phone_number",
                             "phone_number_verified", "photos", "picture", "preferred_username",
                             "profile", "sub", "updated_at", "urls", "user_id", "user_type",
                             "zoneinfo"],
    })


@bp.get("/id/keys")
def jwks() -> Response:
    """The public keys that verify the org's id_tokens."""
    return jsonify(provider().keys.jwks())


@admin_bp.post("/rotate-signing-key")
def rotate_signing_key() -> Response:
    """Test control: sign new id_tokens with a new key; the old keys stay in the JWKS."""
    key = provider().keys.rotate()
    return jsonify({"kid": key.kid, "kids": [k["kid"] for k in provider().keys.jwks()["keys"]]})


def init_app(app: Flask, org: OrgState) -> None:
    """Register discovery, JWKS and userinfo (and the key rotation control when admin is on)."""
    app.extensions["devorg.oidc"] = OpenIDProvider()
    app.register_blueprint(bp)
    if org.config.admin_enabled:
        app.register_blueprint(admin_bp)
