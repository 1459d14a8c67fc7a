"""The query workbench's own state: batch sizes, the session's recent queries, and describe
results cut down to what SOQL suggestions need.

Pure functions over plain values: the views read and write the Flask session, this module only
says what goes in it. Everything stored is JSON (the session is serialized as JSON) and small: a
describe of a large object is a few kilobytes once cut down, and only a few objects are kept.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Salesforce's batchSize: at least 200, at most 2,000 (the API may still send fewer).
MIN_BATCH_SIZE = 200
MAX_BATCH_SIZE = 2000
DEFAULT_BATCH_SIZE = 2000  # a page of results costs one API call
BATCH_SIZE_CHOICES = (200, 500, 1000, 2000)
HISTORY_LENGTH = 20
DESCRIBED_OBJECTS_KEPT = 12  # per session; the least recently described is dropped first
# SOQL longer than this does not go into URLs (servers refuse long request lines: gunicorn at
# 8 KB, werkzeug at 64 KB); it stays in the session and URLs name it by an id.
URL_SOQL_LIMIT = 2000
LONG_QUERIES_KEPT = 5

_SOBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_TRUE = frozenset({"1", "true", "on", "yes"})


def batch_size(value: str | None, default: int = DEFAULT_BATCH_SIZE) -> int:
    """A batch size from a form value: clamped to 200..2000; missing or not a number: default."""
    try:
        size = int((value or "").strip())
    except ValueError:
        return default
    return min(max(size, MIN_BATCH_SIZE), MAX_BATCH_SIZE)


def flag(value: str | None) -> bool:
    """A checkbox or query flag: "1", "true", "on", "yes" (any case) are on."""
    return (value or "").strip().lower() in _TRUE


def is_sobject_name(name: str) -> bool:
    """Whether `name` can be an sObject's API name (letters, digits, underscores)."""
    return bool(_SOBJECT_NAME.match(name))


def long_query_id(soql: str) -> str:
    """The id a long query goes by in URLs: derived from its text, so re-running it reuses it."""
    return hashlib.sha256(soql.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def keep_long_query(stored: object, soql: str) -> dict[str, str]:
    """The session's long queries with `soql` added (newest last, at most LONG_QUERIES_KEPT)."""
    kept = {k: v for k, v in stored.items() if isinstance(v, str)} if isinstance(
        stored, dict) else {}
    kept.pop(long_query_id(soql), None)
    kept[long_query_id(soql)] = soql
    return dict(list(kept.items())[-LONG_QUERIES_KEPT:])


def soql_from(args: Mapping[str, str], stored: object) -> str:
    """The SOQL a request names: `q` itself, or `qid`, a long query kept in the session."""
    query_id = args.get("qid")
    if query_id and isinstance(stored, dict):
        return str(stored.get(query_id) or "").strip()
    return (args.get("q") or "").strip()


def url_args(soql: str) -> dict[str, str]:
    """How a URL names `soql`: `q` when short enough, else `qid` (see keep_long_query)."""
    return {"q": soql} if len(soql) <= URL_SOQL_LIMIT else {"qid": long_query_id(soql)}


@dataclass(frozen=True)
class RecentQuery:
    """One query of the session's history, with the options it ran with and the connection it
    ran on (its key and a label, so the history says where even after a disconnect)."""

    soql: str
    include_deleted: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    org: str | None = None
    org_label: str | None = None

    def to_session(self) -> dict[str, object]:
        """The history entry as stored in the session."""
        return {"q": self.soql, "all": self.include_deleted, "batch": self.batch_size,
                "org": self.org, "org_label": self.org_label}

    @classmethod
    def from_session(cls, value: object) -> RecentQuery | None:
        """Read one stored entry; None when malformed."""
        if not isinstance(value, Mapping) or not isinstance(value.get("q"), str):
            return None
        org, label = value.get("org"), value.get("org_label")
        return cls(value["q"], bool(value.get("all")), batch_size(str(value.get("batch", ""))),
                   org if isinstance(org, str) else None,
                   label if isinstance(label, str) else None)


def history(stored: object) -> list[RecentQuery]:
    """The session's recent queries, newest first (malformed entries dropped)."""
    if not isinstance(stored, list):
        return []
    entries = (RecentQuery.from_session(value) for value in stored[:HISTORY_LENGTH])
    return [entry for entry in entries if entry is not None]


def remember(stored: object, query: RecentQuery) -> list[dict[str, object]]:
    """The history with `query` first: a query run again moves to the top, at most 20 kept."""
    kept = [entry for entry in history(stored)
            if (entry.soql, entry.include_deleted, entry.org)
            != (query.soql, query.include_deleted, query.org)]
    return [entry.to_session() for entry in [query, *kept][:HISTORY_LENGTH]]


# --------------------------------------------------------------------------------------------
# Describe results, cut down for suggestions


def global_objects(describe_global: Mapping) -> list[dict[str, str]]:
    """The queryable objects of a describeGlobal reply: [{"name", "label"}], sorted by name."""
    objects = []
    for sobject in describe_global.get("sobjects") or []:
        if not isinstance(sobject, Mapping) or sobject.get("queryable") == "false":
            continue
        objects.append({"name": str(sobject.get("name") or ""),
                        "label": str(sobject.get("label") or "")})
    return sorted((o for o in objects if o["name"]), key=lambda o: o["name"].lower())


def object_fields(describe_sobject: Mapping) -> dict[str, object]:
    """A describeSObject reply cut down: name, label, fields (with relationships) and children."""
    fields = []
    for described in describe_sobject.get("fields") or []:
        if not isinstance(described, Mapping):
            continue
        reference_to = described.get("referenceTo") or []
        fields.append({
            "name": str(described.get("name") or ""),
            "label": str(described.get("label") or ""),
            "type": str(described.get("type") or ""),
            "relationshipName": described.get("relationshipName") or None,
            "referenceTo": [str(name) for name in reference_to if name],
        })
    children = []
    for child in describe_sobject.get("childRelationships") or []:
        if isinstance(child, Mapping) and child.get("relationshipName"):
            children.append({"relationshipName": str(child["relationshipName"]),
                             "childSObject": str(child.get("childSObject") or "")})
    return {"name": str(describe_sobject.get("name") or ""),
            "label": str(describe_sobject.get("label") or ""),
            "fields": fields, "childRelationships": children}


def cache_described(stored: object, name: str, described: Mapping) -> dict[str, object]:
    """The session's describe cache with `described` for `name`, the oldest dropped when full."""
    cache = dict(stored) if isinstance(stored, Mapping) else {}
    cache.pop(name.lower(), None)
    cache[name.lower()] = dict(described)  # dicts keep insertion order: the newest is last
    while len(cache) > DESCRIBED_OBJECTS_KEPT:
        cache.pop(next(iter(cache)))
    return cache


# A few queries that show what the workbench does, as (label, SOQL).
EXAMPLE_QUERIES: Sequence[tuple[str, str]] = (
    ("Contacts with their account", "SELECT Id, FirstName, LastName, Email, Account.Name "
     "FROM Contact ORDER BY LastName LIMIT 50"),
    ("Parents two levels up", "SELECT Name, Account.Name, Account.Owner.Name FROM Contact "
     "LIMIT 20"),
    ("Accounts with their contacts", "SELECT Name, Industry, (SELECT LastName, Email FROM "
     "Contacts) FROM Account ORDER BY Name LIMIT 20"),
    ("Opportunities by stage", "SELECT StageName, COUNT(Id) deals, SUM(Amount) total "
     "FROM Opportunity GROUP BY StageName"),
    ("How many contacts", "SELECT COUNT() FROM Contact"),
)
