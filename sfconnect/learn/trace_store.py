"""Where the trace of each browser session is kept: an index record per trace and a record per
entry, in the record store (sfconnect.store), written after the page has been sent; a reader of
a trace in this process waits for its pending writes.

Each trace has a byte budget (TRACE_BUDGET_KB): entries are compressed before they are encrypted
(`CompressedRecords`), and past the budget the bodies of the oldest entries are shortened to
`SHORT_BODY` characters, then the oldest entries are dropped, so that the newest stay whole. The
index counts what was shortened and dropped, and /flow says so (`budget_note`)."""
from __future__ import annotations

import json
import logging
import secrets
import threading
import zlib
from collections.abc import Callable

from sfconnect.store import SealedRecords

LIMIT = 100  # entries kept per trace
SHORT_BODY = 2048  # characters a body keeps once shortened for the budget
# What a record costs the store beyond its value: Redis's key, hash, fields and expiry (288
# bytes by MEMORY USAGE, with a margin); a file's JSON wrapper is smaller.
RECORD_OVERHEAD = 320
# Bytes of an index record's JSON per entry it names (id, size, state) and for the rest.
_INDEX_PER_ENTRY, _INDEX_FIXED = 64, 512
# zlib's level for entries: a query's 68 KB entry shrinks to 5.4 KB at 6 (in 0.7 ms, after the
# page has left), to 6.8 KB at 1 (0.1 ms); more whole entries fit the budget at 6.
COMPRESSION_LEVEL = 6
_BODIES = (("request_body", "request_truncated"), ("response_body", "response_truncated"))
# The state of each entry in the index: nothing to shorten, long bodies, shortened.
_SHORT_BODIED, _LONG_BODIED, _SHORTENED = 0, 1, 2
log = logging.getLogger(__name__)


class CompressedRecords(SealedRecords):
    """Trace entries: their JSON compressed with zlib, then encrypted (encrypted bytes do not
    compress). Records written before compression are read as they are."""

    def _open(self, ciphertext: bytes) -> object:
        plain = self._fernet.decrypt(ciphertext)
        # zlib's header starts with "x"; a record written before compression with "{".
        try:
            return json.loads(zlib.decompress(plain) if plain[:1] == b"x" else plain)
        except zlib.error:
            raise ValueError("not a zlib stream") from None

    def create(self, record_id: str, document: dict, ttl_s: int | None = None) -> int:
        """Write version 1 of a record (replacing any record of that id); the bytes stored."""
        sealed = self._seal(document)
        self.records.create(record_id, sealed, ttl_s)
        return len(sealed)

    def replace_sized(self, record_id: str, expected_version: int, document: dict) -> int | None:
        """Compare-and-set, as `replace`: the bytes stored, or None when the record changed or
        is gone (a record deleted meanwhile is not written again)."""
        sealed = self._seal(document)
        if self.records.replace(record_id, expected_version, sealed) is None:
            return None
        return len(sealed)

    def _seal(self, document: dict) -> bytes:
        return self._fernet.encrypt(zlib.compress(json.dumps(document).encode(),
                                                  COMPRESSION_LEVEL))


class _Unsaved:
    """The traces of this process with entries still to be written (`TraceStore.append_later`)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._writing: dict[str, int] = {}

    def begin(self, trace_id: str) -> None:
        with self._changed:
            self._writing[trace_id] = self._writing.get(trace_id, 0) + 1

    def end(self, trace_id: str) -> None:
        with self._changed:
            left = self._writing.pop(trace_id) - 1
            if left:
                self._writing[trace_id] = left
            self._changed.notify_all()

    def wait(self, trace_id: str | None, timeout: float = 10.0) -> None:
        if trace_id:
            with self._changed:
                self._changed.wait_for(lambda: trace_id not in self._writing, timeout)


class TraceStore:
    """Traces in the record store (sfconnect.store: files or Redis, encrypted with the token
    key), beside the token records. Each entry is a record of its own, so appending costs what
    the new entries cost (a long export adds a hundred exchanges); the trace itself is a small
    index record of entry ids, their stored sizes and states, replaced by compare-and-set, cut
    to the last `limit` ids and to `budget` bytes (None: no budget)."""

    def __init__(self, store: SealedRecords, entries: SealedRecords, limit: int = LIMIT,
                 prepare: Callable[[list[dict]], object] | None = None,
                 budget: int | None = None) -> None:
        if budget and not isinstance(entries, CompressedRecords):
            raise TypeError("a budget needs CompressedRecords: they say what they store")
        self.store = store  # the index records, one per trace
        self.entries = entries  # one record per entry (CompressedRecords in the app)
        self.limit = limit
        self.budget = budget or None
        self._prepare = prepare  # makes entries ready to keep (the trace masks their bodies)
        self._unsaved = _Unsaved()

    def _get(self, record_id: str, store: SealedRecords | None = None
             ) -> tuple[int | None, dict | None]:
        found = (store or self.store).read(record_id)
        return (found.version, found.document) if found else (None, None)

    def load(self, trace_id: str | None) -> dict:
        """{"entries": [...], "dropped": how many older entries were cut for the limit,
        "budget_note": what the budget shortened and dropped, or None}."""
        if not trace_id:
            return {"entries": [], "dropped": 0, "budget_note": None}
        self._unsaved.wait(trace_id)
        index = self._get(trace_id)[1] or {}
        entries = [entry for entry in (self._get(entry_id, self.entries)[1]
                                                  for entry_id in index.get("ids", []))
                   if entry is not None]
        shortened = sum(1 for entry in entries if entry.get("shortened_to"))
        return {"entries": entries, "dropped": int(index.get("dropped", 0)),
                "budget_note": budget_note(index.get("budget", self.budget), shortened,
                                           int(index.get("budget_dropped", 0)))}

    def append(self, trace_id: str, entries: list[dict]) -> None:
        """Add entries at the end, numbering them, keeping the last `limit` within `budget`."""
        if self._prepare is not None:
            self._prepare(entries)
        for _ in range(8):  # compare-and-set: another request of the session may write first
            version, index = self._get(trace_id)
            index = index or {"ids": [], "dropped": 0, "next": 1}
            kept, number = self._kept(index), int(index["next"])
            created = []
            for entry in entries:
                _finish(entry, index)
                entry_id = secrets.token_urlsafe(32)
                document = {**entry, "seq": number}
                created.append([entry_id, self._write(entry_id, document), _state(document)])
                number += 1
            kept += created
            cut, kept = kept[:-self.limit], kept[-self.limit:]
            over = self._fit(kept, newest=min(len(created), len(kept)))
            updated = {**index, "ids": [item[0] for item in kept],
                       "sizes": [item[1] for item in kept], "states": [item[2] for item in kept],
                       "next": number, "dropped": int(index["dropped"]) + len(cut),
                       "budget_dropped": int(index.get("budget_dropped", 0)) + len(over),
                       "budget": self.budget}
            if version is None:
                self.store.create(trace_id, updated)
            elif self.store.replace(trace_id, version, updated) is None:
                for item in created:  # lost the race: write them again on the new index
                    self.entries.delete(item[0])
                continue
            for item in cut + over:
                self.entries.delete(item[0])
            return

    def _kept(self, index: dict) -> list[list]:
        """[id, stored bytes, state] of each entry the index keeps, oldest first."""
        ids = list(index.get("ids", []))
        sizes, states = index.get("sizes") or [], index.get("states") or []
        if len(sizes) == len(ids) == len(states):
            return [list(item) for item in zip(ids, sizes, states, strict=True)]
        # An index written before the budget: measure its entries (shortening may rewrite them).
        return [[entry_id, self._stored_size(entry_id), _LONG_BODIED] for entry_id in ids]

    def _stored_size(self, entry_id: str) -> int:
        found = self.entries.records.read(entry_id)
        return stored_cost(len(found[1])) if found else 0

    def _write(self, entry_id: str, document: dict) -> int:
        """Store an entry; what it costs the store (`stored_cost`)."""
        sealed = self.entries.create(entry_id, document)
        if not isinstance(sealed, int):  # a plain SealedRecords does not say how much it wrote
            sealed = _fernet_length(len(json.dumps(document)))
        return stored_cost(sealed)

    def _fit(self, kept: list[list], newest: int) -> list[list]:
        """Bring `kept` (oldest first, the last `newest` just written) within the budget: the
        bodies of older entries shortened, oldest first, then older entries dropped, oldest
        first; the newest only when they alone are over. Returns the dropped, to delete once the
        index no longer names them."""
        dropped: list[list] = []
        if self.budget is None:
            return dropped
        total = _index_cost(len(kept)) + sum(item[1] for item in kept)
        for protected in (newest, 0):
            for item in kept[:len(kept) - protected]:
                if total <= self.budget:
                    return dropped
                if item[2] == _LONG_BODIED:
                    before = item[1]
                    self._shorten(item)
                    total += item[1] - before
            while total > self.budget and len(kept) > max(protected, 1):
                item = kept.pop(0)
                total -= item[1]
                dropped.append(item)
        return dropped

    def _shorten(self, item: list) -> None:
        """Rewrite an entry with its bodies cut to SHORT_BODY characters, by compare-and-set (a
        concurrent append may have dropped it: it must not come back); updates its size and
        state. An entry changed meanwhile (another append shortened it) is counted as stored."""
        found = self.entries.read(item[0])
        if found is not None:
            shorten(found.document)
            sealed = self.entries.replace_sized(item[0], found.version, found.document)
            if sealed is not None:
                item[1] = stored_cost(sealed)
                item[2] = _SHORTENED if found.document.get("shortened_to") else _SHORT_BODIED
                return
        item[1] = self._stored_size(item[0])  # 0 when it is gone
        item[2] = _SHORTENED if item[1] else _SHORT_BODIED

    def append_later(self, trace_id: str, entries: list[dict]) -> Callable[[], None]:
        """A function that appends `entries` when it is called (once: after the response has
        been sent, so nobody waits for the masking, encryption and writes). Until it has run,
        `load` and `delete` of this trace in this process wait for it: the page that shows the
        trace right after a query shows the query."""
        self._unsaved.begin(trace_id)

        def append() -> None:
            try:
                self.append(trace_id, entries)
            except Exception:  # the page has left: these entries are lost, and the log says so
                log.exception("could not store %d trace entries", len(entries))
            finally:
                self._unsaved.end(trace_id)

        return append

    def delete(self, trace_id: str | None) -> None:
        """Forget a trace and its entries."""
        if not trace_id:
            return
        self._unsaved.wait(trace_id)  # no entry of it may be written after it is gone
        index = self._get(trace_id)[1] or {}
        for entry_id in index.get("ids", []):
            self.entries.delete(entry_id)
        self.store.delete(trace_id)  # a malformed id names no trace


def _state(entry: dict) -> int:
    long_bodied = any(isinstance(entry.get(body), str) and len(entry[body]) > SHORT_BODY
                      for body, _flag in _BODIES)
    return _LONG_BODIED if long_bodied else _SHORT_BODIED


def shorten(entry: dict) -> bool:
    """Cut an entry's bodies to SHORT_BODY characters (in place) and say so in its note; whether
    there was anything to cut. Bodies are masked before they are kept, so a cut reveals nothing."""
    cut = False
    for body, flag in _BODIES:
        text = entry.get(body)
        if isinstance(text, str) and len(text) > SHORT_BODY:
            entry[body], entry[flag], cut = text[:SHORT_BODY], True, True
    if cut and not entry.get("shortened_to"):
        entry["shortened_to"] = SHORT_BODY
        entry["note"] = " ".join(filter(None, [
            entry.get("note"), f"Bodies shortened to their first {_kb(SHORT_BODY)} KB to keep "
            "the trace within its budget."]))
    return cut


def budget_note(budget: int | None, shortened: int, dropped: int) -> str | None:
    """What /flow says about the budget: how many older exchanges were shortened and dropped."""
    if not budget or not (shortened or dropped):
        return None
    exchanges = "exchange" if (shortened or dropped) == 1 else "exchanges"
    parts = []
    if shortened:
        parts.append(f"the bodies of {shortened} older {exchanges} were shortened to "
                     f"{_kb(SHORT_BODY)} KB")
    if dropped:
        parts.append(f"{dropped} dropped" if shortened else
                     f"{dropped} older {exchanges} were dropped")
    return f"To keep this trace within its {_kb(budget)} KB budget, {' and '.join(parts)}."


def stored_cost(sealed: int) -> int:
    """What a record whose sealed value is `sealed` bytes costs the store, as Redis's MEMORY
    USAGE counts it: jemalloc rounds the value's allocation (with its 9 bytes of header) up to
    its size class, four per doubling (up to a quarter more), then the key and hash come on top.
    Files take less."""
    allocation = sealed + 9
    step = max(8, 1 << ((allocation - 1).bit_length() - 3))
    return -(-allocation // step) * step + RECORD_OVERHEAD


def _fernet_length(plain: int) -> int:
    # Version, time, IV, the AES blocks with padding, the HMAC; then base64.
    return 4 * -(-(57 + 16 * (plain // 16 + 1)) // 3)


def _index_cost(entries: int) -> int:
    return stored_cost(_fernet_length(_INDEX_FIXED + _INDEX_PER_ENTRY * entries))


def _kb(size: int) -> str:
    return f"{size / 1024:g}"


def _finish(entry: dict, index: dict) -> None:
    """Fill what only the stored trace knows: how long the user spent at Salesforce."""
    if entry["step"] == "authorization request":
        index["authorization_started"] = [entry["started"], entry["started_iso"]]
    elif entry["step"] == "sign-in and consent at Salesforce" and index.get(
            "authorization_started"):
        started, started_iso = index["authorization_started"]
        entry["time_ms"] = round((entry["started"] - started) * 1000, 1)
        entry["started"], entry["started_iso"] = started, started_iso
