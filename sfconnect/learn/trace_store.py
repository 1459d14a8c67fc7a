"""Where the trace of each browser session is kept: an index record per trace and a record per
entry, in the record store (sfconnect.store), written after the page has been sent; a reader of
a trace in this process waits for its pending writes."""
from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable

from sfconnect.store import SealedRecords

LIMIT = 100  # entries kept per trace
log = logging.getLogger(__name__)


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
    index record of entry ids, replaced by compare-and-set and cut to the last `limit` ids."""

    def __init__(self, store: SealedRecords, entries: SealedRecords, limit: int = LIMIT,
                 prepare: Callable[[list[dict]], object] | None = None) -> None:
        self.store = store  # the index records, one per trace
        self.entries = entries  # one record per entry
        self.limit = limit
        self._prepare = prepare  # makes entries ready to keep (the trace masks their bodies)
        self._unsaved = _Unsaved()

    def _get(self, record_id: str, store: SealedRecords | None = None
             ) -> tuple[int | None, dict | None]:
        found = (store or self.store).read(record_id)
        return (found.version, found.document) if found else (None, None)

    def load(self, trace_id: str | None) -> dict:
        """{"entries": [...], "dropped": how many older entries were cut}."""
        if not trace_id:
            return {"entries": [], "dropped": 0}
        self._unsaved.wait(trace_id)
        index = self._get(trace_id)[1] or {}
        entries = [entry for entry in (self._get(entry_id, self.entries)[1]
                                                  for entry_id in index.get("ids", []))
                   if entry is not None]
        return {"entries": entries, "dropped": int(index.get("dropped", 0))}

    def append(self, trace_id: str, entries: list[dict]) -> None:
        """Add entries at the end, numbering them, keeping the last `limit`."""
        if self._prepare is not None:
            self._prepare(entries)
        for _ in range(8):  # compare-and-set: another request of the session may write first
            version, index = self._get(trace_id)
            index = index or {"ids": [], "dropped": 0, "next": 1}
            ids, number = list(index["ids"]), int(index["next"])
            created = []
            for entry in entries:
                _finish(entry, index)
                entry_id = secrets.token_urlsafe(32)
                self.entries.create(entry_id, {**entry, "seq": number})
                created.append(entry_id)
                number += 1
            ids += created
            cut, ids = ids[:-self.limit], ids[-self.limit:]
            updated = {**index, "ids": ids, "next": number,
                       "dropped": int(index["dropped"]) + len(cut)}
            if version is None:
                self.store.create(trace_id, updated)
            elif self.store.replace(trace_id, version, updated) is None:
                for entry_id in created:  # lost the race: write them again on the new index
                    self.entries.delete(entry_id)
                continue
            for entry_id in cut:
                self.entries.delete(entry_id)
            return

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


def _finish(entry: dict, index: dict) -> None:
    """Fill what only the stored trace knows: how long the user spent at Salesforce."""
    if entry["step"] == "authorization request":
        index["authorization_started"] = [entry["started"], entry["started_iso"]]
    elif entry["step"] == "sign-in and consent at Salesforce" and index.get(
            "authorization_started"):
        started, started_iso = index["authorization_started"]
        entry["time_ms"] = round((entry["started"] - started) * 1000, 1)
        entry["started"], entry["started_iso"] = started, started_iso
