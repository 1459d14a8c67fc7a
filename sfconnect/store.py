"""The one record store: encrypted, versioned documents, replaced only by compare-and-set, kept
in files (one folder per kind) or in Redis (one key prefix per kind). Token records
(sfconnect.auth.tokens), traces (sfconnect.learn.trace) and step pages (sfconnect.learn.steps) all
live here, on the same backend as the Flask-Session sessions.

Why records of their own and not session keys: Flask-Session writes the whole session back at the
end of every request, so a request that was under way meanwhile would write back stale values.
A record is changed only by compare-and-set on its version number, and a per-record lock
(`lock`) lets one process at a time do what must happen once (a token refresh).

`Backend` is the one place that chooses files or Redis; `SealedRecords` encrypts JSON documents
with Fernet over the raw `FileRecords` or `RedisRecords`.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.fernet import Fernet, InvalidToken

from sfconnect.settings import Settings

T = TypeVar("T")
RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
LOCK_STRIPES = 64
# Redis key prefixes of each kind of record (their folder names are the kinds themselves).
REDIS_PREFIXES = {"tokens": "sfconnect:tokens:", "traces": "sfconnect:trace:",
                  "trace-entries": "sfconnect:trace-entry:", "steps": "sfconnect:steps:"}


class StoreUnavailable(Exception):
    """The session store (Redis, or the session directory) cannot be used right now."""


class LockBusy(Exception):
    """Another request (maybe in another process) held a record's lock for too long."""


class Conflict(Exception):
    """A record kept changing under an update: nothing was written."""


def stripe(record_id: str) -> int:
    """Which of a fixed number of stripes a record id falls in (locks per stripe, not per id)."""
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % LOCK_STRIPES


class FileRecords:
    """Records as files in one folder: written atomically (temp file + rename), compare-and-set
    under an exclusive file lock, so threads and processes sharing the folder agree on versions."""

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
        if not RECORD_ID.match(record_id):
            raise ValueError("malformed record id")
        return self.directory / f"{record_id}.json"

    @contextlib.contextmanager
    def lock(self, record_id: str, hold_s: float) -> Iterator[None]:
        """Exclusive across the processes sharing this directory (gunicorn workers on one host).

        A file lock per stripe of record ids (fcntl.flock on its own open file, so threads of one
        process exclude each other too); lock files are never deleted, so no waiter can lock an
        unlinked file. Waits at most `hold_s`, the longest a holder may keep it, then LockBusy.
        """
        self._path(record_id)  # validates the id
        path = self.directory / f".lock-{stripe(record_id):02d}"
        deadline = time.monotonic() + hold_s
        with open(path, "a") as lock_file:
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockBusy() from None
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


class RedisRecords:
    """Records as Redis hashes {version, fernet} under one key prefix; compare-and-set in one Lua
    script."""

    def __init__(self, client, ttl_s: int, prefix: str) -> None:  # noqa: ANN001
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.lock_prefix = prefix.rstrip(":") + "-lock:"
        self._replace = client.register_script(_REDIS_REPLACE)

    @contextlib.contextmanager
    def lock(self, record_id: str, hold_s: float) -> Iterator[None]:
        """Exclusive across every app process sharing this Redis: a redis-py Lock.

        The lock expires after `hold_s` (the longest a holder may keep it), so a process that dies
        holding it blocks the others for that long at most; a waiter gives up after as long.
        """
        from redis.exceptions import LockError

        self._key(record_id)  # validates the id
        lock = self.client.lock(self.lock_prefix + record_id, timeout=hold_s, sleep=0.02,
                                blocking_timeout=hold_s)
        if not lock.acquire():
            raise LockBusy()
        try:
            yield
        finally:
            with contextlib.suppress(LockError):  # it expired: someone else may hold it now
                lock.release()

    def _key(self, record_id: str) -> str:
        if not RECORD_ID.match(record_id):
            raise ValueError("malformed record id")
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


Records = FileRecords | RedisRecords


@dataclass(frozen=True)
class Sealed:
    """A record as read: its version and its decrypted document."""

    version: int
    document: dict


class SealedRecords:
    """JSON documents encrypted with Fernet, over one kind of raw records (files or Redis)."""

    def __init__(self, records: Records, key: bytes) -> None:
        self.records = records
        self._fernet = Fernet(key)

    @property
    def ttl_s(self) -> int:
        """How long a record lives after its last write, unless told otherwise."""
        return self.records.ttl_s

    def read(self, record_id: str | None) -> Sealed | None:
        """The record, or None when absent, expired, malformed or unreadable with our key (the
        key changed: SECRET_KEY or SF_TOKEN_KEY)."""
        if not record_id or not RECORD_ID.match(record_id):
            return None
        found = self.records.read(record_id)
        if found is None:
            return None
        version, ciphertext = found
        try:
            document = self._open(ciphertext)
        except (InvalidToken, ValueError):
            return None
        return Sealed(version, document) if isinstance(document, dict) else None

    def _open(self, ciphertext: bytes) -> object:
        """A record's document (InvalidToken or ValueError when it is not one); `_seal` undone."""
        return json.loads(self._fernet.decrypt(ciphertext))

    def create(self, record_id: str, document: dict, ttl_s: int | None = None) -> None:
        """Write version 1 of a record (replacing any record of that id)."""
        self.records.create(record_id, self._seal(document), ttl_s)

    def replace(self, record_id: str, expected_version: int, document: dict,
                ttl_s: int | None = None) -> int | None:
        """Compare-and-set: the new version, or None when someone else wrote first."""
        return self.records.replace(record_id, expected_version, self._seal(document), ttl_s)

    def update(self, record_id: str, change: Callable[[dict], T], empty: dict) -> T:
        """Apply `change(document)` (which edits it in place; `empty` when there is no record)
        by compare-and-set, retrying when another writer came first; its result. Conflict when
        the record kept changing."""
        for _ in range(8):
            current = self.read(record_id)
            document = {**empty, **(current.document if current else {})}
            before = json.dumps(document, sort_keys=True)
            result = change(document)
            if json.dumps(document, sort_keys=True) == before:
                return result
            if current is None:
                self.create(record_id, document)
                return result
            if self.replace(record_id, current.version, document) is not None:
                return result
        raise Conflict()

    def touch(self, record_id: str, ttl_s: int | None = None) -> bool:
        """Keep the record `ttl_s` more from now, version unchanged; False when it is gone."""
        return self.records.touch(record_id, ttl_s)

    def delete(self, record_id: str | None) -> None:
        """Forget a record (a malformed id names none)."""
        if record_id and RECORD_ID.match(record_id):
            self.records.delete(record_id)

    def lock(self, record_id: str, hold_s: float) -> contextlib.AbstractContextManager[None]:
        """Exclusive across every process sharing the store, for at most `hold_s`; LockBusy."""
        return self.records.lock(record_id, hold_s)

    def _seal(self, document: dict) -> bytes:
        return self._fernet.encrypt(json.dumps(document).encode())


class Backend:
    """Where sessions and records live: a folder, or a Redis server (SESSION_TYPE). Built once by
    create_app; every kind of record is opened through it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = None
        if settings.session_type == "redis":
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry

            # Retry once, quickly (a connection from before a Redis restart); a Redis that is
            # down gets a 503 page at once, not after redis-py's default ten retries.
            self.redis = redis.Redis.from_url(
                settings.redis_url, socket_timeout=5, socket_connect_timeout=2,
                health_check_interval=30,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1))
            self.errors: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError,
                                                        redis.exceptions.TimeoutError)
        else:
            self.folder = Path(settings.session_file_dir or "instance")
            self.errors = (OSError,)

    def records(self, kind: str, ttl_s: int | None = None) -> Records:
        """The raw records of one kind ("tokens", "traces", "trace-entries", "steps")."""
        ttl_s = ttl_s or self.settings.session_lifetime
        if self.redis is not None:
            return RedisRecords(self.redis, ttl_s, REDIS_PREFIXES[kind])
        return FileRecords(self.folder / kind, ttl_s)

    def sealed(self, kind: str, ttl_s: int | None = None) -> SealedRecords:
        """The records of one kind, encrypted with the token key."""
        return SealedRecords(self.records(kind, ttl_s), self.settings.token_key)

    def check(self) -> None:
        """Raise when the backend cannot be used (the health check)."""
        if self.redis is not None:
            self.redis.ping()
            return
        for folder in (self.folder / "sessions", self.folder / "tokens"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = folder / ".healthz"
            probe.write_text("ok")
            probe.unlink()
