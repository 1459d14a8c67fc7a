"""Tokens: their own encrypted, versioned server-side record, refresh and revocation.

Flask-Session rewrites the whole session at the end of every request, so a request that started
before a refresh would write the old tokens back if they were ordinary session keys. The tokens
therefore live in a record of their own, keyed by a random id kept in the session, encrypted with
Fernet, and replaced only by compare-and-set on its version number (sfconnect.store). The session
holds the record id and who the user is, never a token.

`TokenService.call` runs a call with a connection's token and, on INVALID_SESSION_ID (SOAP),
Bad_OAuth_Token (identity) or 401 (REST), all raised as InvalidSession, refreshes once and retries
once (views reach it through sfconnect.auth.connection).

Single-flight: one refresh grant per record however many requests find the session expired at
once. Within a process a striped thread lock; across processes the store's own lock (a file lock
beside the records for the filesystem store, a redis-py Lock with a timeout for Redis); then a
re-read of the record: a waiter whose version is stale takes the tokens the winner stored.

With `openid`, the record keeps the sign-in's id_token iss, aud and sub (`id_claims`); a refresh
that answers a new id_token has it checked by the verifier (sfconnect.auth.oidc, no nonce) and
compared with them, and a refused one revokes the tokens: the user must connect again.

No token family is dropped alive: whatever replaces or forgets a record (log out, a new sign-in, a
failed refresh) also revokes its refresh token, then its access token. A record also ends with
its browser session (sfconnect.auth.expiry).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar

from authlib.integrations.base_client import OAuthError

from sfconnect import ext
from sfconnect.auth.expiry import (
    KEEP_AFTER_EXPIRY_S,
    SWEEP_BATCH,
    TOUCH_EVERY_S,
    FileExpiryIndex,
    RedisExpiryIndex,
    expiry_index_for,
)
from sfconnect.auth.oidc import IdTokenRefused
from sfconnect.auth.trust import TrustPolicy, check_instance_url
from sfconnect.errors import GateRefused, InvalidSession, NotConnected, UpstreamError
from sfconnect.store import LOCK_STRIPES, RECORD_ID, LockBusy, SealedRecords, stripe

if TYPE_CHECKING:
    from sfconnect.auth.connection import Connection

T = TypeVar("T")

# Token refresh errors that mean the grant is gone for good: the user must connect again.
DEAD_GRANT_ERRORS = ("invalid_grant", "invalid_client", "unauthorized_client", "inactive_user",
                     "inactive_org")
log = logging.getLogger(__name__)


class SignatureMismatch(OAuthError):
    """The token response's `signature` is not HMAC-SHA256(client_secret, id + issued_at)."""

    error = "invalid_signature"


def verify_signature(token: Mapping[str, object], client_secret: str) -> None:
    """Check Salesforce's token response signature in constant time; raise SignatureMismatch."""
    signature = token.get("signature")
    id_url, issued_at = token.get("id"), token.get("issued_at")
    if not (isinstance(signature, str) and isinstance(id_url, str) and issued_at is not None):
        raise SignatureMismatch(description="The token response has no signature to verify.")
    digest = hmac.new(client_secret.encode(), f"{id_url}{issued_at}".encode(),
                      hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest), signature.encode()):
        raise SignatureMismatch(description="The token response's signature does not match "
                                "its id and issued_at: it was not issued for this app's secret "
                                "or was altered on the way. It was refused.")


@dataclass(frozen=True)
class TokenSet:
    """What a token response gave us, plus the login host it came from."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    instance_url: str
    id_url: str
    issued_at: str
    login_url: str
    scope: str | None = None
    token_type: str = "Bearer"
    # The sign-in's id_token iss, aud and sub (with `openid`): a refresh's must repeat them.
    # Optional, so that records written before it still load.
    id_claims: dict[str, object] | None = field(default=None, repr=False)

    @classmethod
    def from_response(cls, token: Mapping[str, object], login_url: str) -> TokenSet:
        """Build from a verified token response; UpstreamError when a field is missing."""
        for name in ("access_token", "instance_url", "id", "issued_at"):
            if not isinstance(token.get(name), str | int) or token.get(name) == "":
                raise UpstreamError("oauth", f"the token response has no {name!r}")
        refresh = token.get("refresh_token")
        return cls(access_token=str(token["access_token"]),
                   refresh_token=str(refresh) if refresh else None,
                   instance_url=check_instance_url(str(token["instance_url"])),
                   id_url=str(token["id"]), issued_at=str(token["issued_at"]),
                   login_url=login_url, scope=_optional_str(token.get("scope")),
                   token_type=str(token.get("token_type") or "Bearer"))

    def refreshed(self, token: Mapping[str, object]) -> TokenSet:
        """The tokens after a refresh grant: new access token, rotated refresh token if sent."""
        fresh = TokenSet.from_response({**asdict_response(self), **token}, self.login_url)
        return replace(fresh, refresh_token=fresh.refresh_token or self.refresh_token,
                       id_claims=self.id_claims)


def asdict_response(tokens: TokenSet) -> dict[str, object]:
    """The token set spelled like a token response (for merging a refresh reply into it)."""
    return {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token,
            "instance_url": tokens.instance_url, "id": tokens.id_url,
            "issued_at": tokens.issued_at, "scope": tokens.scope,
            "token_type": tokens.token_type}


def _optional_str(value: object) -> str | None:
    return str(value) if value else None


@dataclass(frozen=True)
class StoredTokens:
    """A token record as read: its version and its decrypted tokens."""

    version: int
    tokens: TokenSet


class TokenVault:
    """Encrypts token sets into records of a store (file or Redis) and reads them back; notes in
    an expiry index when each record's browser session ends."""

    def __init__(self, records: SealedRecords, lifetime_s: int | None = None,
                 expiry: FileExpiryIndex | RedisExpiryIndex | None = None) -> None:
        self.records = records
        # The browser session's lifetime (the store is built with it).
        self.lifetime_s = lifetime_s or records.ttl_s
        self.expiry = expiry or expiry_index_for(records.records)
        self.touch_every_s = TOUCH_EVERY_S
        # Kept past the logical expiry, so that a sweep still finds the tokens to revoke.
        self._keep_s = self.lifetime_s + TOUCH_EVERY_S + KEEP_AFTER_EXPIRY_S

    def _ends_at(self) -> float:
        return time.time() + self.lifetime_s + self.touch_every_s

    def create(self, tokens: TokenSet) -> str:
        """Store a new record; return its id (for the session)."""
        record_id = secrets.token_urlsafe(32)
        # Indexed first: a record that exists is always one a sweep can find.
        self.expiry.set(record_id, self._ends_at())
        self.records.create(record_id, asdict(tokens), ttl_s=self._keep_s)
        return record_id

    def touch(self, record_id: str | None) -> bool:
        """The record's browser session is in use: its life counts from now. False when gone."""
        if not record_id or not RECORD_ID.match(record_id):
            return False
        if not self.records.touch(record_id, ttl_s=self._keep_s):
            return False
        self.expiry.set(record_id, self._ends_at())
        return True

    def load(self, record_id: str | None) -> StoredTokens | None:
        """The record's tokens, or None when absent, expired or unreadable with our key."""
        found = self.records.read(record_id)  # None too when the key changed: as if signed out
        if found is None:
            return None
        try:
            return StoredTokens(found.version, TokenSet(**found.document))
        except TypeError:
            return None

    def replace(self, record_id: str, expected_version: int, tokens: TokenSet) -> int | None:
        """Compare-and-set: the new version, or None when someone else wrote first."""
        return self.records.replace(record_id, expected_version, asdict(tokens),
                                    ttl_s=self._keep_s)

    def delete(self, record_id: str | None) -> None:
        """Forget a record (whoever calls this revokes its tokens: see TokenService)."""
        if record_id and RECORD_ID.match(record_id):
            self.records.delete(record_id)
            self.expiry.forget(record_id)

    def claim_expired(self, now: float, limit: int) -> list[str]:
        """Ids of up to `limit` records whose browser session ended by `now`, each claimed by one
        caller only (in whichever process); the caller revokes and deletes them or `release`s."""
        return self.expiry.claim(now, limit)

    def release(self, record_ids: list[str], ended_at: float) -> None:
        """Give claimed records back to the index, for the next sweep to claim."""
        for record_id in record_ids:
            self.expiry.set(record_id, ended_at)


class TokenService:
    """Calls with the user's token, refreshing once when the session is dead; revokes the tokens
    of every record it forgets (log out, a replaced sign-in, a dead grant, an ended session)."""

    def __init__(self, vault: TokenVault, trust: TrustPolicy, client_secret: str,
                 refresh: Callable[[str, str], Mapping[str, object]],
                 revoke: Callable[[str, str], None],
                 endpoint_for: Callable[[str], str], refresh_lock_s: float = 45.0) -> None:
        self.vault = vault
        self.trust = trust
        self._client_secret = client_secret
        self._refresh = refresh  # (login_url, refresh_token) -> token response
        self._revoke = revoke  # (login_url, token) -> None, raises on failure
        self._endpoint_for = endpoint_for  # partner URL template -> endpoint
        self.refresh_lock_s = refresh_lock_s
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def endpoint(self, connection: Connection) -> str:
        """The partner endpoint for this connection, checked against the trust policy."""
        return self.trust.check(self._endpoint_for(connection.partner_url))

    def call(self, connection: Connection, call: Callable[[str, str], T]) -> T:
        """Run `call(endpoint, session_id)`; on InvalidSession refresh once and retry once."""
        return self.with_tokens(connection, lambda tokens: call(
            self.endpoint(connection), tokens.access_token))

    def with_tokens(self, connection: Connection, use: Callable[[TokenSet], T]) -> T:
        """Run `use(tokens)`; on InvalidSession refresh once and run it once more.

        A second InvalidSession with a fresh token propagates: an error page, not a loop.
        """
        stored = self.vault.load(connection.token_record)
        if stored is None:
            raise NotConnected()
        try:
            return use(stored.tokens)
        except InvalidSession:
            tokens = self.refresh(connection.token_record, stale_version=stored.version)
        return use(tokens)

    def refresh(self, record_id: str, stale_version: int) -> TokenSet:
        """A fresh token set; one refresh grant per record even when many requests ask at once,
        in this process (a thread lock) and in others (the store's lock)."""
        with self._locks[stripe(record_id)]:
            try:
                with self.vault.records.lock(record_id, self.refresh_lock_s):
                    return self._refresh_locked(record_id, stale_version)
            except LockBusy:
                # The holder took longer than any refresh can: use its result if it wrote one.
                current = self.vault.load(record_id)
                if current is not None and current.version != stale_version:
                    return current.tokens
                raise UpstreamError("oauth", "another request was refreshing the Salesforce "
                                    "session and did not finish in time") from None

    def _refresh_locked(self, record_id: str, stale_version: int) -> TokenSet:
        current = self.vault.load(record_id)
        if current is None:
            raise NotConnected("Your Salesforce session has ended. Connect again.")
        if current.version != stale_version:
            return current.tokens  # another request refreshed while we waited
        tokens = current.tokens
        if not tokens.refresh_token:
            # The access token was refused, yet may answer elsewhere: revoked, not just dropped.
            self._forget(record_id, tokens)
            raise NotConnected("Your Salesforce session has expired and this app holds no "
                               "refresh token (scope refresh_token). Connect again.")
        try:  # the refresh goes through the gate, which checks the login host as it sends
            response = self._refresh(tokens.login_url, tokens.refresh_token)
        except OAuthError as error:
            if error.error in DEAD_GRANT_ERRORS:
                # The grant is gone, but its last access token may still be alive until it expires.
                self._forget(record_id, tokens)
                raise NotConnected("Your Salesforce session has ended "
                                   f"({error.error}). Connect again.") from None
            raise
        verify_signature(response, self._client_secret)
        fresh = tokens.refreshed(response)
        if response.get("id_token"):
            try:
                self._check_refreshed_id_token(fresh, response)
            except IdTokenRefused as refused:
                # Neither the old tokens nor the new ones are kept: both are revoked.
                self._forget(record_id, tokens)
                self.revoke_tokens(fresh)
                raise NotConnected(
                    f"The refresh's OpenID Connect check '{refused.check}' failed: expected "
                    f"{refused.expected}, received {refused.received}. The tokens were revoked; "
                    "connect again.") from None
        if self.vault.replace(record_id, current.version, fresh) is None:
            # Written meanwhile (a lock that expired under a stuck holder): the stored tokens win.
            latest = self.vault.load(record_id)
            if latest is None:
                raise NotConnected("Your Salesforce session has ended. Connect again.")
            return latest.tokens
        return fresh

    @staticmethod
    def _check_refreshed_id_token(fresh: TokenSet, response: Mapping[str, object]) -> None:
        # The verifier of the request's app, reached as the callback reaches it.
        ext.oidc().verify_refreshed_id_token(fresh.login_url, response, fresh.id_claims)

    def disconnect(self, record_id: str | None) -> bool:
        """Forget the record and revoke its tokens (refresh token, then access token).

        Returns False when a revocation could not be done; the record is forgotten either way.
        """
        stored = self.vault.load(record_id)
        if stored is None:
            self.vault.delete(record_id)
            return True
        return self._forget(record_id, stored.tokens)

    def _forget(self, record_id: str, tokens: TokenSet) -> bool:
        # Deleted first: no request picks up tokens that are being revoked.
        self.vault.delete(record_id)
        return self.revoke_tokens(tokens)

    def revoke_tokens(self, tokens: TokenSet) -> bool:
        """Revoke the refresh token (Salesforce ends its whole family with it), then the access
        token (in case the first could not be revoked, or there is none). Each is best effort;
        False when either could not be revoked."""
        revoked = True
        for token in (tokens.refresh_token, tokens.access_token):
            if not token:
                continue
            try:  # through the gate: an untrusted login host is refused there (GateRefused)
                self._revoke(tokens.login_url, token)
            except (UpstreamError, GateRefused, OAuthError):
                revoked = False
        return revoked

    def sweep_expired(self, now: float | None = None, limit: int = SWEEP_BATCH) -> int:
        """Revoke and forget the token records whose browser session ended by `now` (default:
        the current time), at most `limit` of them; how many were swept. Safe to run in several
        processes at once: each record is claimed by one. A record whose tokens could not be
        revoked is forgotten all the same (as at log out), and the sweep stops there."""
        now = time.time() if now is None else now
        claimed = self.vault.claim_expired(now, limit)
        for done, record_id in enumerate(claimed, start=1):
            if not self.disconnect(record_id):
                log.warning("the tokens of an ended session could not be revoked")
                # Most likely Salesforce is unreachable: the rest wait for the next sweep rather
                # than each wait for its timeouts now.
                self.vault.release(claimed[done:], now)
                return done
        return len(claimed)
