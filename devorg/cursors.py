"""Query locators shared by the SOAP partner endpoint and the REST query resource.

A query that does not fit in one batch leaves a server-side cursor open: the `QueryRun` and how far
the client has read. Its locator is Salesforce's `<cursor id>-<offset>`, e.g.
`01gD0000000XXXXIAW-500`. Cursors die after 15 idle minutes, when read to the end, or when their
user opens more than `max_per_user` of them (Salesforce keeps 10 per user; the oldest dies).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

QUERY_LOCATOR_PREFIX = "01g"  # Salesforce's key prefix of query locators
IDLE_TIMEOUT_S = 15 * 60
MAX_CURSORS_PER_USER = 10
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class InvalidQueryLocator(Exception):
    """The locator is unknown, expired, closed, not this user's, or its offset does not match."""

    code = "INVALID_QUERY_LOCATOR"
    message = "invalid query locator"


def case_safe_id(id15: str) -> str:
    """Append Salesforce's 3-character case-safe suffix to a 15-character id."""
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _SUFFIX_CHARS[bits]
    return id15 + suffix


@dataclass
class QueryCursor:
    """One open cursor: the run being read, and the offsets handed out so far."""

    cursor_id: str
    user_id: str
    run: Any  # devorg.soql.QueryRun
    position: int  # rows already handed to the client
    last_used: float
    issued: set[int] = field(default_factory=set)  # offsets of every locator given out


class CursorStore:
    """Open cursors of one org, keyed by cursor id; thread-safe."""

    def __init__(self, org_id: str, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 max_per_user: int = MAX_CURSORS_PER_USER) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.max_per_user = max_per_user
        # Characters 3-5 of the org id: the pod part, as real locators carry it.
        self._pod = (org_id[3:5] if len(org_id) >= 5 else "D0")
        self._lock = threading.Lock()
        self._cursors: dict[str, QueryCursor] = {}
        self._by_user: dict[str, OrderedDict[str, None]] = {}

    def _new_id(self) -> str:
        body = "".join(secrets.choice(_BASE62) for _ in range(10))
        return case_safe_id(QUERY_LOCATOR_PREFIX + self._pod + body)

    def open(self, user_id: str, run: Any, position: int) -> str:
        """Keep `run` open with `position` rows already served; return the next locator."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            cursor = QueryCursor(self._new_id(), user_id, run, position, now, {position})
            self._cursors[cursor.cursor_id] = cursor
            owned = self._by_user.setdefault(user_id, OrderedDict())
            owned[cursor.cursor_id] = None
            while len(owned) > self.max_per_user:
                oldest, _ = owned.popitem(last=False)
                self._cursors.pop(oldest, None)
            return f"{cursor.cursor_id}-{position}"

    def take(self, query_locator: str, user_id: str) -> tuple[QueryCursor, int]:
        """The cursor and offset a locator points at; raises InvalidQueryLocator."""
        cursor_id, sep, offset_text = (query_locator or "").strip().rpartition("-")
        if not sep or not offset_text.isdigit() or len(offset_text) > 12:
            raise InvalidQueryLocator()
        offset = int(offset_text)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            cursor = self._cursors.get(cursor_id)
            if cursor is None or cursor.user_id != user_id or offset not in cursor.issued:
                raise InvalidQueryLocator()
            cursor.last_used = now
            return cursor, offset

    def advance(self, cursor: QueryCursor, stop: int, total: int) -> str | None:
        """Record that rows up to `stop` were served: the next locator, or None (then closed)."""
        with self._lock:
            cursor.last_used = time.monotonic()
            if stop >= total:
                self._close(cursor.cursor_id)
                return None
            cursor.position = max(cursor.position, stop)
            cursor.issued.add(stop)
            return f"{cursor.cursor_id}-{stop}"

    def open_count(self, user_id: str | None = None) -> int:
        """How many cursors are open (for one user, when given)."""
        with self._lock:
            self._expire(time.monotonic())
            if user_id is None:
                return len(self._cursors)
            return len(self._by_user.get(user_id, ()))

    def _close(self, cursor_id: str) -> None:
        cursor = self._cursors.pop(cursor_id, None)
        if cursor is not None:
            owned = self._by_user.get(cursor.user_id)
            if owned is not None:
                owned.pop(cursor_id, None)

    def _expire(self, now: float) -> None:
        dead = [cid for cid, c in self._cursors.items() if now - c.last_used > self.idle_timeout_s]
        for cursor_id in dead:
            self._close(cursor_id)
