"""Tokens: their own encrypted, versioned server-side record, refresh and revocation.

Flask-Session rewrites the whole session at the end of every request, so a request that started
before a refresh would write the old tokens back if they were ordinary session keys. The tokens
therefore live in a record of their own, keyed by a random id kept in the session, encrypted with
Fernet, and replaced only by compare-and-set on its version number. The session holds the record id
and who the user is, never a token.

`call_with_session(call)` is what views and exports use: it runs `call(partner_endpoint,
session_id)` with the current user's token and, on INVALID_SESSION_ID (SOAP), Bad_OAuth_Token
(identity) or 401 (REST), all raised as InvalidSession, refreshes once and retries once;
`with_session_tokens(use)` does the same for calls that need the whole token set (identity).

Single-flight: one refresh grant per record however many requests find the session expired at
once. Within a process a striped thread lock; across processes the store's own lock (a file lock
beside the records for the filesystem store, a redis-py Lock with a timeout for Redis); then a
re-read of the record: a waiter whose version is stale takes the tokens the winner stored.

No token family is dropped alive: whatever replaces or forgets a record (log out, a new sign-in, a
failed refresh) also revokes its refresh token, then its access token. A record also ends with
its browser session: it carries a logical expiry (the session lifetime after its last use, noted at
most every TOUCH_EVERY_S), is kept KEEP_AFTER_EXPIRY_S longer, and a sweep (`ExpirySweeper`, at
most once a minute per process, after a response) claims ended records in an expiry index
(`FileExpiryIndex`, `RedisExpiryIndex`), revokes their tokens and deletes them; a claim succeeds in
one process only.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from authlib.integrations.base_client import OAuthError
from cryptography.fernet import Fernet, InvalidToken

from sfconnect.auth.trust import TrustPolicy, check_instance_url
from sfconnect.errors import GateRefused, InvalidSession, NotConnected, UpstreamError

T = TypeVar("T")

# Token refresh errors that mean the grant is gone for good: the user must connect again.
DEAD_GRANT_ERRORS = ("invalid_grant", "invalid_client", "unauthorized_client", "inactive_user",
                     "inactive_org")
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_LOCK_STRIPES = 64
# A token record's use is noted (a store write) at most this often per browser session; its
# logical expiry is the session lifetime plus this after the last note, so it never ends before
# the browser session it belongs to.
TOUCH_EVERY_S = 300
# How long a record is kept after its logical expiry, so that a sweep still finds it (to revoke its
# tokens) after the app had no request for a while.
KEEP_AFTER_EXPIRY_S = 86_400
SWEEP_EVERY_S = 60
SWEEP_BATCH = 100  # records per sweep: one sweep never holds a worker thread for long
log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The session store (Redis, or the session directory) cannot be used right now."""


class RefreshBusy(Exception):
    """Another request (maybe in another process) held the refresh lock for too long."""


def _stripe(record_id: str) -> int:
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % _LOCK_STRIPES


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
        return replace(fresh, refresh_token=fresh.refresh_token or self.refresh_token)


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


class FileTokenStore:
    """Token records as files: written atomically (temp file + rename), compare-and-set under an
    exclusive file lock, so threads and processes sharing the directory agree on versions."""

    def __init__(self, directory: str | os.PathLike, ttl_s: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ttl_s = ttl_s
        self._lock_path = self.directory / ".lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _path(self, record_id: str) -> Path:
        if not _RECORD_ID.match(record_id):
            raise ValueError("malformed token record id")
        return self.directory / f"{record_id}.json"

    @contextlib.contextmanager
    def refresh_lock(self, record_id: str, hold_s: float) -> Iterator[None]:
        """Exclusive across the processes sharing this directory (gunicorn workers on one host).

        A file lock per stripe of record ids (fcntl.flock on its own open file, so threads of one
        process exclude each other too); lock files are never deleted, so no waiter can lock an
        unlinked file. Waits at most `hold_s`, the longest a refresh can hold it, then RefreshBusy.
        """
        self._path(record_id)  # validates the id
        path = self.directory / f".refresh-{_stripe(record_id):02d}.lock"
        deadline = time.monotonic() + hold_s
        with open(path, "a") as lock_file:
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RefreshBusy() from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def read(self, record_id: str) -> tuple[int, bytes] | None:
        """(version, ciphertext) of a live record, or None."""
        try:
            document = json.loads(self._path(record_id).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if document.get("expires_at", 0) < time.time():
            self.delete(record_id)
            return None
        return int(document["version"]), document["fernet"].encode()

    def _write(self, record_id: str, version: int, ciphertext: bytes,
               ttl_s: int | None = None) -> None:
        document = {"version": version, "expires_at": time.time() + (ttl_s or self.ttl_s),
                    "fernet": ciphertext.decode()}
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
            os.replace(temp, self._path(record_id))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def create(self, record_id: str, ciphertext: bytes, ttl_s: int | None = None) -> None:
        """Write version 1 of a new record, kept `ttl_s` (default: the store's ttl_s)."""
        with self._locked():
            self._write(record_id, 1, ciphertext, ttl_s)

    def replace(self, record_id: str, expected_version: int, ciphertext: bytes,
                ttl_s: int | None = None) -> int | None:
        """Write the next version if the record is still at `expected_version`; else None."""
        with self._locked():
            current = self.read(record_id)
            if current is None or current[0] != expected_version:
                return None
            self._write(record_id, expected_version + 1, ciphertext, ttl_s)
            return expected_version + 1

    def touch(self, record_id: str, ttl_s: int | None = None) -> bool:
        """Keep the record `ttl_s` more from now, version unchanged; False when it is gone."""
        with self._locked():
            current = self.read(record_id)
            if current is None:
                return False
            self._write(record_id, current[0], current[1], ttl_s)
            return True

    def delete(self, record_id: str) -> None:
        """Remove the record if it exists."""
        with contextlib.suppress(FileNotFoundError):
            self._path(record_id).unlink()


_REDIS_REPLACE = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current or tonumber(current) ~= tonumber(ARGV[1]) then return nil end
local version = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'version', version, 'fernet', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return version
"""


class RedisTokenStore:
    """Token records as Redis hashes {version, fernet}; compare-and-set in one Lua script."""

    def __init__(self, client, ttl_s: int, prefix: str = "sfconnect:tokens:",  # noqa: ANN001
                 lock_prefix: str = "sfconnect:refresh-lock:") -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.lock_prefix = lock_prefix
        self._replace = client.register_script(_REDIS_REPLACE)

    @contextlib.contextmanager
    def refresh_lock(self, record_id: str, hold_s: float) -> Iterator[None]:
        """Exclusive across every app process sharing this Redis: a redis-py Lock.

        The lock expires after `hold_s` (the longest a refresh can take), so a process that dies
        holding it blocks the others for that long at most; a waiter gives up after as long.
        """
        from redis.exceptions import LockError

        self._key(record_id)  # validates the id
        lock = self.client.lock(self.lock_prefix + record_id, timeout=hold_s, sleep=0.02,
                                blocking_timeout=hold_s)
        if not lock.acquire():
            raise RefreshBusy()
        try:
            yield
        finally:
            with contextlib.suppress(LockError):  # it expired: someone else may hold it now
                lock.release()

    def _key(self, record_id: str) -> str:
        if not _RECORD_ID.match(record_id):
            raise ValueError("malformed token record id")
        return self.prefix + record_id

    def read(self, record_id: str) -> tuple[int, bytes] | None:
        """(version, ciphertext) of a live record, or None."""
        version, ciphertext = self.client.hmget(self._key(record_id), "version", "fernet")
        if version is None or ciphertext is None:
            return None
        return int(version), bytes(ciphertext)

    def create(self, record_id: str, ciphertext: bytes, ttl_s: int | None = None) -> None:
        """Write version 1 of a new record, kept `ttl_s` (default: the store's ttl_s)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(record_id), mapping={"version": 1, "fernet": ciphertext})
            pipe.expire(self._key(record_id), ttl_s or self.ttl_s)
            pipe.execute()

    def replace(self, record_id: str, expected_version: int, ciphertext: bytes,
                ttl_s: int | None = None) -> int | None:
        """Write the next version if the record is still at `expected_version`; else None."""
        result = self._replace(keys=[self._key(record_id)],
                               args=[expected_version, ciphertext, ttl_s or self.ttl_s])
        return int(result) if result is not None else None

    def touch(self, record_id: str, ttl_s: int | None = None) -> bool:
        """Keep the record `ttl_s` more from now, version unchanged; False when it is gone."""
        return bool(self.client.expire(self._key(record_id), ttl_s or self.ttl_s))

    def delete(self, record_id: str) -> None:
        """Remove the record if it exists."""
        self.client.delete(self._key(record_id))


class FileExpiryIndex:
    """When each token record's browser session ends, as files: one empty file per record whose
    modification time is that moment. Noting a use is one utime; a sweep claims an ended record by
    unlinking its file, which succeeds in exactly one of the processes sharing the directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, record_id: str) -> Path:
        if not _RECORD_ID.match(record_id):
            raise ValueError("malformed token record id")
        return self.directory / record_id

    def set(self, record_id: str, expires_at: float) -> None:
        """Note that the record's session ends at `expires_at` (epoch seconds)."""
        path = self._path(record_id)
        try:
            os.utime(path, (expires_at, expires_at))
        except FileNotFoundError:
            # A new file gets its time before it is visible, so no sweep sees it "ended now".
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            os.close(fd)
            os.utime(temp, (expires_at, expires_at))
            os.replace(temp, path)

    def forget(self, record_id: str) -> None:
        """Drop the record from the index."""
        with contextlib.suppress(FileNotFoundError):
            self._path(record_id).unlink()

    def claim(self, now: float, limit: int) -> list[str]:
        """Take (remove) up to `limit` records whose session ended by `now`; each id is returned
        to one caller only, in whichever process."""
        claimed: list[str] = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if len(claimed) >= limit:
                    break
                if not _RECORD_ID.match(entry.name):
                    continue  # a temp file
                try:
                    if entry.stat().st_mtime > now:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # another process claimed it first
                claimed.append(entry.name)
        return claimed


_REDIS_CLAIM = """
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ended > 0 then redis.call('ZREM', KEYS[1], unpack(ended)) end
return ended
"""


class RedisExpiryIndex:
    """When each token record's browser session ends, as one Redis sorted set (score: that moment).
    A sweep claims ended records with one script (range and remove at once), so each id goes to
    one of the processes sharing this Redis."""

    def __init__(self, client, key: str) -> None:  # noqa: ANN001
        self.client = client
        self.key = key
        self._claim = client.register_script(_REDIS_CLAIM)

    def set(self, record_id: str, expires_at: float) -> None:
        """Note that the record's session ends at `expires_at` (epoch seconds)."""
        self.client.zadd(self.key, {record_id: expires_at})

    def forget(self, record_id: str) -> None:
        """Drop the record from the index."""
        self.client.zrem(self.key, record_id)

    def claim(self, now: float, limit: int) -> list[str]:
        """Take (remove) up to `limit` records whose session ended by `now`."""
        return [bytes(found).decode() for found in self._claim(keys=[self.key], args=[now, limit])]


def expiry_index_for(store: FileTokenStore | RedisTokenStore) -> FileExpiryIndex | RedisExpiryIndex:
    """The expiry index beside a token store, on the same backend."""
    if isinstance(store, RedisTokenStore):
        return RedisExpiryIndex(store.client, store.prefix.rstrip(":") + "-expiry")
    return FileExpiryIndex(store.directory / "expiry")


class TokenVault:
    """Encrypts token sets into records of a store (file or Redis) and reads them back; notes in
    an expiry index when each record's browser session ends."""

    def __init__(self, store: FileTokenStore | RedisTokenStore, key: bytes,
                 lifetime_s: int | None = None,
                 expiry: FileExpiryIndex | RedisExpiryIndex | None = None) -> None:
        self.store = store
        self._fernet = Fernet(key)
        # The browser session's lifetime (the store is built with it).
        self.lifetime_s = lifetime_s or store.ttl_s
        self.expiry = expiry or expiry_index_for(store)
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
        self.store.create(record_id, self._encrypt(tokens), ttl_s=self._keep_s)
        return record_id

    def touch(self, record_id: str | None) -> bool:
        """The record's browser session is in use: its life counts from now. False when gone."""
        if not record_id or not _RECORD_ID.match(record_id):
            return False
        if not self.store.touch(record_id, ttl_s=self._keep_s):
            return False
        self.expiry.set(record_id, self._ends_at())
        return True

    def load(self, record_id: str | None) -> StoredTokens | None:
        """The record's tokens, or None when absent, expired or unreadable with our key."""
        if not record_id or not _RECORD_ID.match(record_id):
            return None
        found = self.store.read(record_id)
        if found is None:
            return None
        version, ciphertext = found
        try:
            fields = json.loads(self._fernet.decrypt(ciphertext))
        except (InvalidToken, ValueError):
            return None  # the key changed (SECRET_KEY or SF_TOKEN_KEY): as if signed out
        return StoredTokens(version, TokenSet(**fields))

    def replace(self, record_id: str, expected_version: int, tokens: TokenSet) -> int | None:
        """Compare-and-set: the new version, or None when someone else wrote first."""
        return self.store.replace(record_id, expected_version, self._encrypt(tokens),
                                  ttl_s=self._keep_s)

    def delete(self, record_id: str | None) -> None:
        """Forget a record (whoever calls this revokes its tokens: see TokenService)."""
        if record_id and _RECORD_ID.match(record_id):
            self.store.delete(record_id)
            self.expiry.forget(record_id)

    def claim_expired(self, now: float, limit: int) -> list[str]:
        """Ids of up to `limit` records whose browser session ended by `now`, each claimed by one
        caller only (in whichever process); the caller revokes and deletes them or `release`s."""
        return self.expiry.claim(now, limit)

    def release(self, record_ids: list[str], ended_at: float) -> None:
        """Give claimed records back to the index, for the next sweep to claim."""
        for record_id in record_ids:
            self.expiry.set(record_id, ended_at)

    def _encrypt(self, tokens: TokenSet) -> bytes:
        return self._fernet.encrypt(json.dumps(asdict(tokens)).encode())


@dataclass(frozen=True)
class Connection:
    """Who is connected in this browser session (kept in the session: no secrets)."""

    token_record: str
    user_id: str
    organization_id: str
    username: str
    display_name: str
    partner_url: str
    login_url: str
    instance_url: str

    @classmethod
    def from_session(cls, value: object) -> Connection | None:
        """Read the session's "sf" entry; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(**{name: str(value[name]) for name in cls.__dataclass_fields__})
        except KeyError:
            return None

    def to_session(self) -> dict[str, str]:
        """The session's "sf" entry."""
        return asdict(self)


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
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

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
        with self._locks[_stripe(record_id)]:
            try:
                with self.vault.store.refresh_lock(record_id, self.refresh_lock_s):
                    return self._refresh_locked(record_id, stale_version)
            except RefreshBusy:
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
        self.trust.check(tokens.login_url)
        try:
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
        if self.vault.replace(record_id, current.version, fresh) is None:
            # Written meanwhile (a lock that expired under a stuck holder): the stored tokens win.
            latest = self.vault.load(record_id)
            if latest is None:
                raise NotConnected("Your Salesforce session has ended. Connect again.")
            return latest.tokens
        return fresh

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
            try:
                self.trust.check(tokens.login_url)
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


class ExpirySweeper:
    """Decides when this process sweeps ended token records: at most once every `every_s`, after
    a response has been sent, so that no page waits for Salesforce's revoke endpoint."""

    def __init__(self, every_s: float = SWEEP_EVERY_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0.0

    def due(self) -> bool:
        """True once per interval (the caller then runs `sweep`); False otherwise."""
        now = self.clock()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.every_s
            return True

    def sweep(self, service: TokenService) -> int:
        """Run one sweep; a failure (store or Salesforce unreachable) is logged, never raised."""
        try:
            return service.sweep_expired(self.clock())
        except Exception as error:  # noqa: BLE001 - runs after the response, nobody to raise to
            log.warning("sweeping ended token records failed: %s", type(error).__name__)
            return 0


def call_with_session(call: Callable[[str, str], T]) -> T:
    """Run `call(partner_endpoint, session_id)` as the browser's user, refreshing once if needed.

    Raises NotConnected when the browser has no Salesforce connection or it cannot be refreshed
    (the connection is then removed from the session).
    """
    return _as_browser_user(lambda service, connection: service.call(connection, call))


def with_session_tokens(use: Callable[[Connection, TokenSet], T]) -> T:
    """Run `use(connection, tokens)` as the browser's user, refreshing once if needed (e.g. the
    identity service's 403 Bad_OAuth_Token, raised as InvalidSession). NotConnected as above."""
    return _as_browser_user(lambda service, connection: service.with_tokens(
        connection, lambda tokens: use(connection, tokens)))


def _as_browser_user(run: Callable[[TokenService, Connection], T]) -> T:
    from flask import current_app, session

    connection = Connection.from_session(session.get("sf"))
    if connection is None:
        raise NotConnected()
    service: TokenService = current_app.extensions["sfconnect.tokens"]
    try:
        return run(service, connection)
    except NotConnected:
        session.pop("sf", None)
        raise
