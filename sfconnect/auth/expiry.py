"""Token records end with their browser session: an expiry index notes when each session ends
(files, or a Redis sorted set), and a sweep revokes and forgets the records of sessions that ended.

A record carries a logical expiry (the session lifetime after its last use, noted at most every
TOUCH_EVERY_S) and is kept KEEP_AFTER_EXPIRY_S longer; `ExpirySweeper` runs
`TokenService.sweep_expired` at most once a minute per process, after a response has been sent.
A sweep claims ended records from the index; a claim succeeds in one process only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sfconnect.store import RECORD_ID, Records, RedisRecords

if TYPE_CHECKING:
    from sfconnect.auth.tokens import TokenService

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


class FileExpiryIndex:
    """When each token record's browser session ends, as files: one empty file per record whose
    modification time is that moment. Noting a use is one utime; a sweep claims an ended record by
    unlinking its file, which succeeds in exactly one of the processes sharing the directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, record_id: str) -> Path:
        if not RECORD_ID.match(record_id):
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
                if not RECORD_ID.match(entry.name):
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


def expiry_index_for(store: Records) -> FileExpiryIndex | RedisExpiryIndex:
    """The expiry index beside a token store, on the same backend."""
    if isinstance(store, RedisRecords):
        return RedisExpiryIndex(store.client, store.prefix.rstrip(":") + "-expiry")
    return FileExpiryIndex(store.directory / "expiry")


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


