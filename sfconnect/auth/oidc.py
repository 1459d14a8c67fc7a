"""OpenID Connect at sign-in: the login host's discovery document and keys, the id_token's checks,
and userinfo's `sub`.

When the scope has `openid`, the callback hands the token response here before anything uses the
tokens. Authlib does the checking: joserfc's `jwt.decode` verifies the signature with the
algorithm pinned to RS256 (`none` and HS* are refused), and Authlib's `CodeIDToken` checks iss,
aud (and azp), exp, iat, nonce and at_hash. Written by hand, because Authlib's client lacks them:
the key lookup (an unknown `kid` fetches the JWKS again at most once a minute; no `kid` is
accepted only while the JWKS has one key), the caches, and the comparison of userinfo's `sub`
with the id_token's. Every fetch goes through the "oidc" gate, so the trust policy applies.

Each verification reports every check's verdict (sfconnect.hooks.id_token_checked and
userinfo_checked), each claim judged on its own by the same Authlib and joserfc validators, so
the trace can show which checks passed; the decision itself is CodeIDToken.validate's.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from authlib.oidc.core import CodeIDToken
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingAlgorithmError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import GuestProtocol, Key, KeySet
from joserfc.jwt import JWTClaimsRegistry

from sfconnect import hooks
from sfconnect.errors import UpstreamError
from sfconnect.http import TokenGate

SERVICE = "oidc"
ID_TOKEN_ALG = "RS256"  # what Salesforce signs with; pinned, never read from the token
# Clock skew allowed on exp and iat (seconds).
LEEWAY_S = 60
# An unknown kid fetches the JWKS again at most this often (per JWKS), so a stream of forged
# kids cannot make the app hammer the login host.
JWKS_REFETCH_EVERY_S = 60.0
# The discovery document is fetched again after this long.
METADATA_TTL_S = 3600.0


# What a refresh's id_token must repeat of the sign-in's (OpenID Connect Core 12.2).
KEPT_CLAIMS = ("iss", "aud", "sub")


def kept_claims(claims: Mapping[str, object]) -> dict[str, object]:
    """The sign-in's claims a refresh's id_token is compared with, to keep with the tokens."""
    return {name: claims.get(name) for name in KEPT_CLAIMS}


def has_openid(scopes: str) -> bool:
    """Whether a scope string asks for OpenID Connect."""
    return "openid" in scopes.split()


def mask(value: object) -> str:
    """A secret-ish value for an error page: its first characters only."""
    text = str(value)
    return text if len(text) <= 6 else f"{text[:4]}…({len(text)} characters)"


class IdTokenRefused(Exception):
    """A check of the sign-in's id_token (or of userinfo's sub) failed: no sign-in."""

    def __init__(self, check: str, expected: str, received: str, status: int = 400,
                 code: str = "invalid_id_token") -> None:
        super().__init__(f"{check}: expected {expected}, received {received}")
        self.check = check
        self.expected = expected
        self.received = received
        self.status = status
        self.code = code

    @property
    def message(self) -> str:
        """What the error page says."""
        return (f"The sign-in's OpenID Connect check '{self.check}' failed: expected "
                f"{self.expected}, received {self.received}. You were not signed in, and the "
                "tokens just issued were revoked.")


@dataclass
class _Jwks:
    keys: KeySet
    fetched_at: float
    forced_at: float | None = None  # the last refetch an unknown kid caused


class OpenIDVerifier:
    """Discovery and JWKS of each login host (cached), and the sign-in's checks."""

    def __init__(self, http: TokenGate, client_id: str, leeway_s: int = LEEWAY_S,
                 refetch_every_s: float = JWKS_REFETCH_EVERY_S) -> None:
        self.http = http
        self.client_id = client_id
        self.leeway_s = leeway_s
        self.refetch_every_s = refetch_every_s
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[dict[str, Any], float]] = {}
        self._jwks: dict[str, _Jwks] = {}

    def _get_json(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.get(url, **kwargs)
        except requests.Timeout:
            raise UpstreamError(SERVICE, f"the {what} did not answer in time") from None
        except requests.RequestException:
            raise UpstreamError(SERVICE, f"the {what} could not be reached") from None
        return response

    def metadata(self, login_url: str) -> dict[str, Any]:
        """The login host's discovery document (cached); its issuer must be the login host."""
        with self._lock:
            cached = self._metadata.get(login_url)
        if cached is not None and time.monotonic() - cached[1] < METADATA_TTL_S:
            return cached[0]
        what = "discovery document"
        response = self._get_json(f"{login_url}/.well-known/openid-configuration", what,
                                  headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise UpstreamError(SERVICE, f"the {what} answered HTTP {response.status_code}")
        try:
            document = response.json()
            issuer, jwks_uri = document["issuer"], document["jwks_uri"]
            userinfo = document["userinfo_endpoint"]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError(SERVICE, f"the {what} is unreadable") from None
        if not all(isinstance(value, str) for value in (issuer, jwks_uri, userinfo)):
            raise UpstreamError(SERVICE, f"the {what} is unreadable")
        # OpenID Connect Discovery 4.3: the issuer is the URL the document was fetched from.
        if issuer.rstrip("/") != login_url.rstrip("/"):
            raise UpstreamError(SERVICE, f"the {what} of {login_url} names another issuer, "
                                f"{issuer!r}")
        with self._lock:
            self._metadata[login_url] = (document, time.monotonic())
        return document

    def _fetch_jwks(self, jwks_uri: str) -> KeySet:
        response = self._get_json(jwks_uri, "key set (JWKS)",
                                  headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise UpstreamError(SERVICE, f"the key set answered HTTP {response.status_code}")
        try:
            return KeySet.import_key_set(response.json())
        except (ValueError, TypeError, KeyError, JoseError):
            raise UpstreamError(SERVICE, "the key set (JWKS) is unreadable") from None

    def _key_set(self, jwks_uri: str) -> _Jwks:
        with self._lock:
            cached = self._jwks.get(jwks_uri)
        if cached is None:
            cached = _Jwks(self._fetch_jwks(jwks_uri), time.monotonic())
            with self._lock:
                self._jwks[jwks_uri] = cached
        return cached

    def _key_for(self, jwks_uri: str, kid: str | None) -> Key:
        """The published key the header names; an unknown kid refetches the JWKS (at most once
        per refetch_every_s); no kid is accepted only while exactly one key is published."""
        jwks = self._key_set(jwks_uri)
        if kid is None:
            if len(jwks.keys.keys) != 1:
                raise IdTokenRefused("kid", "a kid naming one of the published keys (the key "
                                     f"set has {len(jwks.keys.keys)})", "no kid")
            return jwks.keys.keys[0]
        known = {key.kid for key in jwks.keys.keys}
        if kid not in known:
            now = time.monotonic()
            if jwks.forced_at is not None and now - jwks.forced_at < self.refetch_every_s:
                raise IdTokenRefused("kid", "one of the published keys "
                                     f"({', '.join(sorted(map(str, known)))})", repr(kid))
            jwks = _Jwks(self._fetch_jwks(jwks_uri), now, forced_at=now)
            with self._lock:
                self._jwks[jwks_uri] = jwks
        try:
            return jwks.keys.get_by_kid(kid)
        except (ValueError, KeyError, JoseError):
            known = {key.kid for key in jwks.keys.keys}
            raise IdTokenRefused("kid", "one of the published keys "
                                 f"({', '.join(sorted(map(str, known)))})", repr(kid)) from None

    def verify_id_token(self, login_url: str, token: Mapping[str, object],
                        nonce: str | None, *, refresh: bool = False,
                        signed_in: Mapping[str, object] | None = None) -> dict[str, Any]:
        """The id_token's claims after every check; IdTokenRefused naming the one that failed.
        A refresh's id_token (`refresh=True`) carries no nonce (Core 12.2): none is checked, and
        its iss, aud and sub must be the sign-in's (`signed_in`, from `kept_claims`)."""
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise IdTokenRefused("id_token", "an id_token (the scope has openid)", "none")
        verdicts: dict[str, str] = {}
        try:
            claims = self._checked_claims(login_url, id_token, token, nonce, refresh, verdicts)
            for name in KEPT_CLAIMS if refresh and signed_in is not None else ():
                if claims.get(name) != signed_in.get(name):
                    verdicts[name] = "failed"
                    raise IdTokenRefused(name, f"the sign-in's {name} {signed_in.get(name)!r}",
                                         repr(claims.get(name)))
        except IdTokenRefused as refused:
            verdicts.setdefault(refused.check, "failed")
            hooks.report(hooks.id_token_checked, id_token=id_token, refresh=refresh,
                         verdicts=verdicts)
            raise
        hooks.report(hooks.id_token_checked, id_token=id_token, refresh=refresh,
                     verdicts=verdicts)
        return claims

    def _checked_claims(self, login_url: str, id_token: str, token: Mapping[str, object],
                        nonce: str | None, refresh: bool, verdicts: dict[str, str]
                        ) -> dict[str, Any]:
        if not nonce and not refresh:
            raise IdTokenRefused("nonce", "a nonce sent with this sign-in", "none was kept")
        metadata = self.metadata(login_url)
        access_token = str(token.get("access_token") or "")

        def resolve(guest: GuestProtocol) -> Key:
            kid = guest.headers().get("kid")
            return self._key_for(metadata["jwks_uri"], kid if isinstance(kid, str) else None)

        try:
            decoded = jwt.decode(id_token, resolve, algorithms=[ID_TOKEN_ALG])
        except (UnsupportedAlgorithmError, MissingAlgorithmError):
            verdicts["signature"] = "failed"
            raise IdTokenRefused("alg", ID_TOKEN_ALG, repr(_header_alg(id_token))) from None
        except BadSignatureError:
            raise IdTokenRefused("signature", f"a valid {ID_TOKEN_ALG} signature by a published "
                                 "key", "a signature that does not verify") from None
        except InvalidKeyIdError:
            verdicts["signature"] = "failed"
            raise IdTokenRefused("kid", "one of the published keys", "an unknown kid") from None
        except IdTokenRefused as refused:  # the key lookup's: no key to check the signature
            verdicts["signature"] = "failed"
            raise refused from None
        except JoseError as error:
            verdicts["signature"] = "failed"
            raise IdTokenRefused("format", "a signed JWT", error.error) from None
        verdicts["signature"] = "passed"

        issuer = metadata["issuer"]
        claims = CodeIDToken(
            decoded.claims, decoded.header,
            options={"iss": {"essential": True, "value": issuer},
                     "aud": {"essential": True, "value": self.client_id}},
            params={"nonce": nonce, "access_token": access_token, "client_id": self.client_id})
        verdicts.update(claim_verdicts(claims, self.leeway_s, refresh))
        try:
            claims.validate(leeway=self.leeway_s)
        except ClaimError as error:
            claim = "exp" if isinstance(error, ExpiredTokenError) else error.claim
            expected = {
                "iss": repr(issuer),
                "aud": f"an audience containing {self.client_id!r}",
                "azp": repr(self.client_id),
                "exp": f"a time after now (leeway {self.leeway_s} s)",
                "iat": f"a time no later than now (leeway {self.leeway_s} s)",
                "nbf": f"a time no later than now (leeway {self.leeway_s} s)",
                "nonce": mask(nonce),
                "sub": "the user's id",
                "at_hash": mask(create_half_hash(access_token, ID_TOKEN_ALG).decode()),
            }.get(claim, "a valid value")
            if isinstance(error, MissingClaimError):
                expected = f"the claim, which is required ({expected})"
            received = decoded.claims.get(claim)
            if claim in ("exp", "iat", "nbf") and isinstance(received, int | float):
                received = f"{received} ({_utc(received)}; now {_utc(time.time())})"
            shown = "none" if received is None else (
                mask(received) if claim in ("nonce", "at_hash") else
                received if isinstance(received, str) and claim in ("exp", "iat", "nbf")
                else repr(received))
            raise IdTokenRefused(claim, expected, shown) from None
        return dict(claims)

    def verify_refreshed_id_token(self, login_url: str, token: Mapping[str, object],
                                  signed_in: Mapping[str, object] | None) -> dict[str, Any]:
        """A refresh's id_token: the sign-in's checks but the nonce, then (Core 12.2) its iss,
        aud and sub must be the sign-in's id_token's (`signed_in`, from `kept_claims`)."""
        return self.verify_id_token(login_url, token, None, refresh=True, signed_in=signed_in)

    def check_userinfo(self, login_url: str, access_token: str, sub: str) -> dict[str, Any]:
        """userinfo for the access token; its sub must be the id_token's (Core 5.3.2)."""
        endpoint = self.http.trust.check(self.metadata(login_url)["userinfo_endpoint"])
        response = self._get_json(endpoint, "userinfo endpoint", headers={
            "Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        if response.status_code != 200:
            raise UpstreamError(SERVICE, f"userinfo answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise UpstreamError(SERVICE, "userinfo answered something unreadable") from None
        received = document.get("sub") if isinstance(document, dict) else None
        hooks.report(hooks.userinfo_checked, verdict="passed" if received == sub else "failed")
        if received != sub:
            raise IdTokenRefused("userinfo sub", f"the id_token's sub {sub!r}",
                                 "none" if received is None else repr(received), status=502,
                                 code="userinfo_sub_mismatch")
        return document


# The claim checks judged one by one for the trace, in the order /flow lists them.
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")


def claim_verdicts(claims: CodeIDToken, leeway_s: int, refresh: bool) -> dict[str, str]:
    """Each claim check on its own, with the validators CodeIDToken.validate runs (joserfc's
    registry for the registered claims, Authlib's IDToken for nonce, azp and at_hash): "passed",
    "failed", "absent" (an optional claim not sent) or "not checked" (no nonce at a refresh).
    For display only: the decision is CodeIDToken.validate's."""
    registry = JWTClaimsRegistry(None, leeway_s, **claims.options)
    checks = {
        "iss": lambda: registry.validate_iss(claims["iss"]),
        "aud": lambda: (registry.validate_aud(claims["aud"]), claims.validate_azp()),
        "exp": lambda: registry.validate_exp(claims["exp"]),
        "iat": lambda: registry.validate_iat(claims["iat"]),
        "nonce": claims.validate_nonce,
        "at_hash": claims.validate_at_hash,
        "sub": lambda: registry.validate_sub(claims["sub"]),
    }
    verdicts = {}
    for name, check in checks.items():
        if name in REQUIRED_CLAIMS and claims.get(name) is None:
            verdicts[name] = "failed"
        elif name == "nonce" and refresh:
            verdicts[name] = "not checked"
        elif name == "at_hash" and "at_hash" not in claims:
            verdicts[name] = "absent"
        else:
            try:
                check()
                verdicts[name] = "passed"
            except ClaimError:
                verdicts[name] = "failed"
    return verdicts


def unverified_part(jwt_text: str, index: int) -> object:
    """Part `index` of a JWT (0: the header, 1: the claims) as JSON, read without any
    verification: for messages and display only. ValueError or IndexError when it is none."""
    segment = jwt_text.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _header_alg(id_token: str) -> object:
    """The alg the (unverified) header names, for the error page only."""
    try:
        return unverified_part(id_token, 0)["alg"]  # type: ignore[index]
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
