"""The SELECT list of a SOQL query, parsed just well enough to name a result's columns: dotted
paths of parents of any depth, child subqueries, aggregates by their alias or `exprN`, and
`COUNT()`. SOQL is case-insensitive; the records' own casing names the columns (see records)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Functions that return the field itself under the field's name (not as exprN).
_FIELD_FUNCTIONS = frozenset({"tolabel", "convertcurrency", "format"})
_CLAUSE_WORDS = frozenset({"where", "with", "group", "order", "limit", "offset", "for", "using",
                           "having", "update", "view", "reference", "all"})



# --------------------------------------------------------------------------------------------
# The SELECT list


@dataclass
class Column:
    """One column the SELECT list asks for: a dotted path, or a child subquery."""

    path: str  # "Account.Owner.Name", "expr0", "Contacts"
    child: Select | None = None  # set for child subqueries


@dataclass
class Select:
    columns: list[Column]
    sobject: str | None
    count_only: bool = False
    aggregate: bool = False


def _top_level(text: str) -> Iterator[int]:
    """The indexes of `text` outside string literals and parentheses (SOQL's nesting)."""
    depth, quote = 0, False
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1  # an escaped character, the quote included
            elif char == "'":
                quote = False
        elif char == "'":
            quote = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            yield i
        i += 1


def _split_top(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside parentheses and quotes."""
    parts, start = [], 0
    for i in _top_level(text):
        if text[i] == separator:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _find_from(text: str) -> int:
    """Index of the top-level FROM keyword, or -1."""
    lowered = text.lower()
    for i in _top_level(text):
        if (lowered.startswith("from", i)
                and (i == 0 or text[i - 1].isspace() or text[i - 1] == ")")
                and (i + 4 >= len(text) or not (text[i + 4].isalnum() or text[i + 4] == "_"))):
            return i
    return -1


_SELECT_RE = re.compile(r"^\s*select\s", re.IGNORECASE)
_CALL_RE = re.compile(r"^([A-Za-z_][\w]*)\s*\((.*)\)\s*([A-Za-z_]\w*)?\s*$", re.DOTALL)


def parse_select(soql: str) -> Select:
    """The columns a SOQL query's SELECT list asks for (best effort; never raises)."""
    text = soql.strip()
    match = _SELECT_RE.match(text)
    if not match:
        return Select([], None)
    at = _find_from(text)
    select_list = text[match.end():at] if at >= 0 else text[match.end():]
    words = text[at + 4:].split() if at >= 0 else []
    sobject = words[0].rstrip(")") if words else None
    alias = words[1] if len(words) > 1 and words[1].lower() not in _CLAUSE_WORDS else None
    prefixes = {p.lower() for p in (sobject, alias) if p}
    aggregate = bool(re.search(r"\bgroup\s+by\b", text[at:] if at >= 0 else "", re.IGNORECASE))
    columns: list[Column] = []
    expr = 0
    count_only = False
    for item in _split_top(select_list):
        if item.startswith("("):
            inner = item[1:item.rfind(")")] if ")" in item else item[1:]
            child = parse_select(inner)
            name = child.sobject or "?"
            if "." in name:  # FROM c.Contacts: the relationship of this row
                name = name.rsplit(".", 1)[1]
            columns.append(Column(name, child))
            continue
        if item.lower().startswith("typeof"):
            continue  # polymorphic: its fields come from the records
        call = _CALL_RE.match(item)
        if call:
            function, argument, call_alias = call.group(1).lower(), call.group(2).strip(), \
                call.group(3)
            if function == "count" and not argument:
                count_only = True
                continue
            if function in _FIELD_FUNCTIONS:
                columns.append(Column(call_alias or _strip_prefix(argument, prefixes)))
                continue
            aggregate = True
            if call_alias:
                columns.append(Column(call_alias))
            else:
                columns.append(Column(f"expr{expr}"))
                expr += 1
            continue
        tokens = item.split()
        path = _strip_prefix(tokens[0], prefixes)
        columns.append(Column(tokens[1] if len(tokens) > 1 else path))
    if aggregate:
        # AggregateResult names a grouped field by its own name, without the relationship path.
        for column in columns:
            if column.child is None and "." in column.path:
                column.path = column.path.rsplit(".", 1)[1]
    return Select(columns, sobject, count_only, aggregate)


def _strip_prefix(path: str, prefixes: set[str]) -> str:
    # "Contact.FirstName" or "c.FirstName" (object name or alias) is "FirstName" in the reply.
    head, dot, rest = path.partition(".")
    return rest if dot and head.lower() in prefixes else path


def sobject_of(soql: str) -> str | None:
    """The object a query reads (`FROM Contact` -> "Contact"), or None."""
    return parse_select(soql).sobject
