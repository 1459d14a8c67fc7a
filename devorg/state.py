"""The in-memory state of one local org: users, client apps, tokens, counters, fault switches.

Every module of devorg reads and writes the org only through an `OrgState`; it is shared by the
server's threads, so each mutable part guards itself with a lock.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass

from .config import ClientApp, OrgConfig


@dataclass
class TokenRecord:
    """One issued access token and, when the scope allows, its refresh token."""

    access_token: str
    refresh_token: str | None
    client_id: str
    user_id: str
    scope: str
    issued_at_ms: int
    expires_at: float  # epoch seconds; the access token dies then
    family: str  # all tokens descended from one authorization share a family
    revoked: bool = False  # the access token and its refresh token
    access_revoked: bool = False  # the access token alone (its refresh token lives on)


class Counters:
    """Thread-safe call counters, read by tests through the admin route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def incr(self, name: str, by: int = 1) -> None:
        """Count one call of `name`."""
        with self._lock:
            self._counts[name] += by

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts.clear()


@dataclass
class FaultSwitches:
    """Ways the admin can make the org misbehave, for tests and demos."""

    token_endpoint: str | None = None  # None, "503", "slow", "nonjson"
    token_delay_s: float = 5.0
    soap_endpoint: str | None = None  # None, "502", "empty"
    identity_endpoint: str | None = None  # None, "403", "500"
    # A base URL: every partner call answers 307 to it, the request's path kept.
    soap_redirect_to: str | None = None
    # A URL put in the identity's urls.partner in place of the org's own endpoint.
    identity_partner_url: str | None = None
    # One defect in every id_token (or in userinfo): None or one of oidc.ID_TOKEN_SPOILERS.
    id_token: str | None = None


class TokenStore:
    """Issues, finds, rotates and revokes tokens. Salesforce's tokens are opaque: so are ours."""

    def __init__(self, org_id: str, lifetime_s: int) -> None:
        self._org_id = org_id
        self.lifetime_s = lifetime_s
        self._lock = threading.RLock()
        self._by_access: dict[str, TokenRecord] = {}
        self._by_refresh: dict[str, TokenRecord] = {}
        self._rotated_out: dict[str, str] = {}  # old refresh token -> family
        self._dead_families: set[str] = set()

    def _new_access_token(self) -> str:
        # Salesforce's look: "<15-char org id>!<opaque>", about 110 characters in all.
        return f"{self._org_id[:15]}!{secrets.token_urlsafe(72)}"

    def issue(self, client_id: str, user_id: str, scope: str, with_refresh: bool,
              family: str | None = None, refresh_token: str | None = None) -> TokenRecord:
        """Issue a new access token; keep `refresh_token` if given (no rotation), else mint one."""
        with self._lock:
            if with_refresh and refresh_token is None:
                refresh_token = f"5Aep861{secrets.token_urlsafe(60)}"
            record = TokenRecord(
                access_token=self._new_access_token(),
                refresh_token=refresh_token if with_refresh else None,
                client_id=client_id, user_id=user_id, scope=scope,
                issued_at_ms=int(time.time() * 1000),
                expires_at=time.time() + self.lifetime_s,
                family=family or secrets.token_hex(8),
            )
            self._by_access[record.access_token] = record
            if record.refresh_token:
                self._by_refresh[record.refresh_token] = record
            return record

    def lookup_access(self, access_token: str | None) -> TokenRecord | None:
        """The live record of an access token, or None when unknown, expired or revoked."""
        if not access_token:
            return None
        with self._lock:
            record = self._by_access.get(access_token)
            if (record is None or record.revoked or record.access_revoked
                    or record.family in self._dead_families or time.time() >= record.expires_at):
                return None
            return record

    def lookup_refresh(self, refresh_token: str | None) -> TokenRecord | None:
        """The newest live record of a refresh token, or None."""
        if not refresh_token:
            return None
        with self._lock:
            record = self._by_refresh.get(refresh_token)
            if record is None or record.revoked or record.family in self._dead_families:
                return None
            return record

    def was_rotated_out(self, refresh_token: str) -> str | None:
        """The family of a refresh token that rotation already replaced, else None."""
        with self._lock:
            return self._rotated_out.get(refresh_token)

    def rotate_out(self, refresh_token: str) -> None:
        """Retire a refresh token that rotation replaced; its reuse is then detectable."""
        with self._lock:
            record = self._by_refresh.pop(refresh_token, None)
            if record is not None:
                self._rotated_out[refresh_token] = record.family

    def revoke_family(self, family: str) -> None:
        """Kill every access and refresh token descended from one authorization."""
        with self._lock:
            self._dead_families.add(family)

    def revoke(self, token: str) -> bool:
        """Revoke an access token, or a refresh token and every access token of its family."""
        with self._lock:
            if token in self._by_refresh:
                self.revoke_family(self._by_refresh[token].family)
                return True
            record = self._by_access.get(token)
            if record is not None:
                # Salesforce: revoking an access token leaves the refresh token usable.
                record.access_revoked = True
                return True
            return False

    def expire_all(self) -> None:
        """Every access token dies now; refresh tokens stay valid (a session timeout)."""
        with self._lock:
            for record in self._by_access.values():
                record.expires_at = 0.0


@dataclass
class AuthorizationCode:
    """One authorization code from the consent page, bound to its client, user and redirect URI."""

    code: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float  # epoch seconds

    def get_redirect_uri(self) -> str:
        """The redirect URI of the authorization request (Authlib's AuthorizationCodeMixin)."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """The granted scope (Authlib's AuthorizationCodeMixin)."""
        return self.scope


class CodeStore:
    """Authorization codes: single use, short-lived. Used and expired codes are remembered so the
    token endpoint can tell "expired authorization code" from "invalid authorization code"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, AuthorizationCode] = {}
        self._spent: set[str] = set()

    def save(self, code: AuthorizationCode) -> None:
        """Keep a freshly issued code."""
        with self._lock:
            self._live[code.code] = code

    def take(self, code: str, client_id: str) -> tuple[AuthorizationCode | None, str]:
        """Consume a code: (the code, "ok") or (None, "expired" | "invalid")."""
        with self._lock:
            if code in self._spent:
                return None, "expired"
            record = self._live.get(code)
            if record is None or record.client_id != client_id:
                return None, "invalid"
            # Taken at validation, so two racing exchanges of one code cannot both win.
            del self._live[code]
            self._spent.add(code)
            if time.time() >= record.expires_at:
                return None, "expired"
            return record, "ok"


class RequestLimitExceeded(Exception):
    """The org's daily API request allowance is used up (REQUEST_LIMIT_EXCEEDED)."""


class ApiUsage:
    """The org's API REQUESTS counter behind LimitInfoHeader and REQUEST_LIMIT_EXCEEDED."""

    def __init__(self, limit: int = 5_000_000) -> None:
        self.limit = limit  # tests lower it to see the fault
        self.current = 0
        self._lock = threading.Lock()

    def charge(self) -> int:
        """Count one API request; raise RequestLimitExceeded when over the limit."""
        with self._lock:
            if self.current >= self.limit:
                raise RequestLimitExceeded("TotalRequests Limit exceeded.")
            self.current += 1
            return self.current


class OrgState:
    """One org: its configuration, data, tokens, counters and fault switches."""

    def __init__(self, config: OrgConfig) -> None:
        from .cursors import CursorStore  # query locators, shared by SOAP and REST
        from .data import OrgData  # the seeded records (Accounts, Contacts, Users ...)

        self.config = config
        self.org_id = config.org_id
        self.clients: dict[str, ClientApp] = {c.client_id: c for c in config.clients}
        self.data = OrgData.seed(config)
        self.tokens = TokenStore(config.org_id, config.access_token_lifetime)
        self.counters = Counters()
        self.api_usage = ApiUsage()
        self.query_cursors = CursorStore(config.org_id)
        self.faults = FaultSwitches()
        self.rotation = config.refresh_token_rotation
        self.codes = CodeStore()
        self.code_lifetime_s = config.authorization_code_lifetime
        # (user_id, client_id) pairs a user has allowed: Salesforce skips consent for them.
        self.approvals: set[tuple[str, str]] = set()
        # Whether SOAP API login() is allowed (API 31.0 to 64.0). Salesforce ships new orgs with
        # it off; the local org keeps it on so that older SOAP clients connect.
        self.soap_login_enabled = True

    def register_client(self, client: ClientApp) -> None:
        """Add or replace a client app."""
        self.clients[client.client_id] = client

    @property
    def latest_version(self) -> str:
        """The newest API version the org serves, e.g. "66.0"."""
        return self.config.api_versions[-1]
