"""Partner API records (lxml `records` elements) as table rows, REST-shaped dicts and CSV rows.

A record element is `<records xsi:type="sf:sObject">` holding `type`, `Id` (twice when the SELECT
list names Id: once for the sObject's own Id, once among the fields; once and nil when it does not),
then one element per selected field in SELECT order. A parent relationship is a nested sObject
(`<sf:Account xsi:type="sf:sObject">`, nil when the lookup is empty), a child subquery a nested
QueryResult (`<sf:Contacts xsi:type="QueryResult">`, nil when there are no children), a nil field
`xsi:nil="true"`. Aggregate values carry `xsi:type` (`xsd:int`, `xsd:double` ...).

Columns come from the SELECT list (parsed here, just well enough to name the columns) and from the
union of every record's fields, so a field that only some records carry still gets its own column.
SOQL is case-insensitive: a column takes the casing the records use (the API's canonical names).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_NIL = f"{{{XSI}}}nil"
XSI_TYPE = f"{{{XSI}}}type"

# Functions that return the field itself under the field's name (not as exprN).
_FIELD_FUNCTIONS = frozenset({"tolabel", "convertcurrency", "format"})
_CLAUSE_WORDS = frozenset({"where", "with", "group", "order", "limit", "offset", "for", "using",
                           "having", "update", "view", "reference", "all"})


@dataclass
class Table:
    """Rows of cells under column names; a cell is a string, None (null) or a nested Table."""

    columns: list[str]
    rows: list[list[str | None | Table]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The SELECT list


@dataclass
class _Column:
    """One column the SELECT list asks for: a dotted path, or a child subquery."""

    path: str  # "Account.Owner.Name", "expr0", "Contacts"
    child: _Select | None = None  # set for child subqueries


@dataclass
class _Select:
    columns: list[_Column]
    sobject: str | None
    count_only: bool = False
    aggregate: bool = False


def _split_top(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char == "'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _find_from(text: str) -> int:
    """Index of the top-level FROM keyword, or -1."""
    depth, quote = 0, None
    lowered = text.lower()
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char == "'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif (depth == 0 and lowered.startswith("from", i) and (i == 0 or text[i - 1].isspace()
              or text[i - 1] == ")") and (i + 4 >= len(text) or not (text[i + 4].isalnum()
                                                                     or text[i + 4] == "_"))):
            return i
        i += 1
    return -1


_SELECT_RE = re.compile(r"^\s*select\s", re.IGNORECASE)
_CALL_RE = re.compile(r"^([A-Za-z_][\w]*)\s*\((.*)\)\s*([A-Za-z_]\w*)?\s*$", re.DOTALL)


def parse_select(soql: str) -> _Select:
    """The columns a SOQL query's SELECT list asks for (best effort; never raises)."""
    text = soql.strip()
    match = _SELECT_RE.match(text)
    if not match:
        return _Select([], None)
    at = _find_from(text)
    select_list = text[match.end():at] if at >= 0 else text[match.end():]
    words = text[at + 4:].split() if at >= 0 else []
    sobject = words[0].rstrip(")") if words else None
    alias = words[1] if len(words) > 1 and words[1].lower() not in _CLAUSE_WORDS else None
    prefixes = {p.lower() for p in (sobject, alias) if p}
    aggregate = bool(re.search(r"\bgroup\s+by\b", text[at:] if at >= 0 else "", re.IGNORECASE))
    columns: list[_Column] = []
    expr = 0
    count_only = False
    for item in _split_top(select_list):
        if item.startswith("("):
            inner = item[1:item.rfind(")")] if ")" in item else item[1:]
            child = parse_select(inner)
            name = child.sobject or "?"
            if "." in name:  # FROM c.Contacts: the relationship of this row
                name = name.rsplit(".", 1)[1]
            columns.append(_Column(name, child))
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
                columns.append(_Column(call_alias or _strip_prefix(argument, prefixes)))
                continue
            aggregate = True
            if call_alias:
                columns.append(_Column(call_alias))
            else:
                columns.append(_Column(f"expr{expr}"))
                expr += 1
            continue
        tokens = item.split()
        path = _strip_prefix(tokens[0], prefixes)
        columns.append(_Column(tokens[1] if len(tokens) > 1 else path))
    if aggregate:
        # AggregateResult names a grouped field by its own name, without the relationship path.
        for column in columns:
            if column.child is None and "." in column.path:
                column.path = column.path.rsplit(".", 1)[1]
    return _Select(columns, sobject, count_only, aggregate)


def _strip_prefix(path: str, prefixes: set[str]) -> str:
    # "Contact.FirstName" or "c.FirstName" (object name or alias) is "FirstName" in the reply.
    head, dot, rest = path.partition(".")
    return rest if dot and head.lower() in prefixes else path


def sobject_of(soql: str) -> str | None:
    """The object a query reads (`FROM Contact` -> "Contact"), or None."""
    return parse_select(soql).sobject


# --------------------------------------------------------------------------------------------
# Records to flat fields: one pass over each record's elements, in document order.
# Speed matters (2,000 records a batch): tag names are cached, a value is told from a
# relationship by its text first (an element with text is a field), and the column placement of
# a record is computed once per distinct field layout, which is usually one per query.

_NAMES: dict[str, str] = {}  # "{urn:sobject...}FirstName" -> "FirstName"


def _local(tag: str) -> str:
    return tag[tag.index("}") + 1:] if tag[0] == "{" else tag


def _name(tag: str) -> str:
    name = _NAMES.get(tag)
    if name is None:
        name = _local(tag)
        if len(_NAMES) < 10_000:
            _NAMES[tag] = name
    return name


def _is_nil(element) -> bool:  # noqa: ANN001 - lxml element
    nil = element.get(XSI_NIL)
    return nil == "true" or nil == "1"


class _Child:
    """A child subquery's QueryResult element, kept for a nested table or JSON."""

    __slots__ = ("element",)

    def __init__(self, element) -> None:  # noqa: ANN001
        self.element = element


def _kind(element) -> str:  # noqa: ANN001
    """'field', 'parent' (nested sObject), 'child' (nested QueryResult) or 'compound'."""
    for part in element:
        if isinstance(part.tag, str):
            first = _name(part.tag)
            return "parent" if first == "type" else "child" if first == "done" else "compound"
    return "field"


def _flatten(record, prefix: str, paths: list, values: list,  # noqa: ANN001
             wanted: set[str] | None, elements: list | None = None) -> None:
    """Append each field's dotted path and value (str, None or _Child) in document order.

    `wanted` holds the lowercased paths asked for (None: all). An Id element that appears once
    is kept only when asked for: the API sends the sObject's own Id (nil when not selected) and
    again among the fields when selected.
    """
    first = True
    ids = 0
    for element in record:
        tag = element.tag
        name = _NAMES.get(tag) if isinstance(tag, str) else ""
        if name is None:
            name = _name(tag)
        elif not name:
            continue  # a comment
        if first:
            first = False
            if name == "type":
                continue
        text = element.text
        if name == "Id":
            ids += 1
            if ids > 1 or text is None or not (wanted is None or (prefix + "id").lower() in wanted
                                               or _id_twice(record)):
                continue
        if text and not (text[0] in " \n\r\t" and text.isspace()):
            paths.append(prefix + name if prefix else name)
            values.append(text)
            if elements is not None:
                elements.append(element)
            continue
        kind = _kind(element)
        if kind == "field":
            paths.append(prefix + name if prefix else name)
            values.append(None if _is_nil(element) else text or "")
        elif kind == "parent":
            _flatten(element, (prefix + name if prefix else name) + ".", paths, values, wanted,
                     elements)
            continue
        elif kind == "child":
            paths.append(prefix + name if prefix else name)
            values.append(_Child(element))
        else:
            paths.append(prefix + name if prefix else name)
            values.append(_compound_text(element))
        if elements is not None:
            # A value read from the element's text can take the fast path; others cannot.
            elements.append(element if kind == "field" else None)


def _id_twice(record) -> bool:  # noqa: ANN001
    count = 0
    for element in record:
        if isinstance(element.tag, str) and element.tag.endswith("}Id"):
            count += 1
            if count == 2:
                return True
        elif count:
            break
    return False


def _compound_text(element) -> str:  # noqa: ANN001
    # A compound field (address, location) as text: its non-empty parts, comma separated.
    return ", ".join(part.text for part in element if isinstance(part.tag, str) and part.text)


def _child_records(element) -> list:  # noqa: ANN001
    return [r for r in element if isinstance(r.tag, str) and _name(r.tag) == "records"]


# --------------------------------------------------------------------------------------------
# The fast path. Most queries give every record the same structure, and every value is the text
# of one element. So records are grouped by their structure (the tags of all their elements, in
# document order): the first record of a structure is flattened the careful way above, which says
# which element holds each column's value, and every other record of that structure is read by
# position with an itemgetter, all in C. Structures with child subqueries or compound fields
# (values that are not one element's text) stay on the careful path.

_MISSING = object()
_TAG = attrgetter("tag")
_ITER = methodcaller("iter")
_TEXT = attrgetter("text")


class _Plans:
    """Per record structure: where each column's value is, or None (the careful path)."""

    def __init__(self, index: dict[str, int], wanted: set[str] | None) -> None:
        self.index = index  # lowercased path -> column
        self.wanted = wanted
        self.width = max(index.values(), default=-1) + 1
        self._plans: dict[tuple, object] = {}

    def values(self, record) -> tuple | None:  # noqa: ANN001
        """The record's column values (text, or None where the element has none), or None."""
        elements = list(record.iter())
        key = tuple(map(_TAG, elements))
        plan = self._plans.get(key, _MISSING)
        if plan is _MISSING:
            plan = self._plans[key] = self._plan(record, elements)
        if plan is None:
            return None
        texts = list(map(_TEXT, elements))
        texts.append(None)  # where a column without a value points
        return plan(texts)

    def batch(self, records: Sequence) -> list | None:
        """Every record's values, reading the whole batch in a few C-level passes; None when
        some record needs the careful path (then call `values` per record).

        The elements of all records are listed at once and split where each record starts, so
        the work per record is a slice, a dict lookup and an itemgetter call.
        """
        if not len(records):
            return []
        root = records[0].tag
        elements = list(chain.from_iterable(map(_ITER, records)))
        tags = list(map(_TAG, elements))
        starts = [i for i, tag in enumerate(tags) if tag == root]
        if len(starts) != len(records):
            return None  # nested records (child subqueries)
        texts = list(map(_TEXT, elements))
        starts.append(len(tags))
        plans = self._plans
        rows = []
        for record, start, end in zip(records, starts, starts[1:], strict=False):
            key = tuple(tags[start:end])
            plan = plans.get(key, _MISSING)
            if plan is _MISSING:
                plan = plans[key] = self._plan(record, elements[start:end])
            if plan is None:
                return None
            values = texts[start:end]
            values.append(None)  # where a column without a value points
            rows.append(plan(values))
        return rows

    def _plan(self, record, elements: list):  # noqa: ANN001, ANN202
        if len(self._plans) > 256:
            self._plans.clear()  # a query with ever new structures: keep memory bounded
        paths: list = []
        values: list = []
        found: list = []
        _flatten(record, "", paths, values, self.wanted, found)
        position = {id(element): i for i, element in enumerate(elements)}
        columns = [len(elements)] * self.width
        for path, element in zip(paths, found, strict=True):
            column = self.index.get(path.lower(), -1)
            if column < 0:
                continue
            if element is None:
                return None  # a child subquery or a compound field
            columns[column] = position[id(element)]
        if self.width == 0:
            return lambda texts: ()
        if self.width == 1:
            only = columns[0]
            return lambda texts: (texts[only],)
        return itemgetter(*columns)


# --------------------------------------------------------------------------------------------
# Tables


class _Columns:
    """Column order and canonical names, matched case-insensitively."""

    def __init__(self, select: _Select) -> None:
        self.keys: list[str] = []
        self.names: dict[str, str] = {}
        self.children: dict[str, _Select | None] = {}
        self.from_select: set[str] = set()
        for column in select.columns:
            key = column.path.lower()
            if key not in self.names:
                self.keys.append(key)
                self.names[key] = column.path
                self.children[key] = column.child
                self.from_select.add(key)
        self._canonical: set[str] = set()

    def see(self, paths: tuple[str, ...], values: list) -> None:
        """Note the fields of one record layout; new ones go after the field before them."""
        after = None
        for path, value in zip(paths, values, strict=True):
            key = path.lower()
            if key not in self.names:
                position = self.keys.index(after) + 1 if after is not None else len(self.keys)
                self.keys.insert(position, key)
                self.names[key] = path
                self.children[key] = _Select([], None) if isinstance(value, _Child) else None
            if key not in self._canonical:
                self._canonical.add(key)
                self.names[key] = path  # the reply's casing is the canonical one
            after = key

    def visible(self) -> list[str]:
        """Keys to show: a relationship's own key goes when its dotted fields have columns.

        A nil parent (`<sf:Account xsi:nil="true"/>`) looks like a nil field; the SELECT list or
        another record shows it is a relationship, and its dotted columns carry the empty cells.
        """
        prefixes = set()
        for key in self.keys:
            while "." in key:
                key = key.rsplit(".", 1)[0]
                prefixes.add(key)
        return [key for key in self.keys if key not in prefixes]


def _walk(select: _Select, records: Iterable) -> tuple[_Columns, list[tuple[tuple, list]]]:
    """Flatten every record; returns the columns and (layout, values) per record."""
    columns = _Columns(select)
    wanted = columns.from_select if select.columns else None
    layouts: set[tuple] = set()
    flat = []
    for record in records:
        paths: list = []
        values: list = []
        _flatten(record, "", paths, values, wanted)
        layout = tuple(paths)
        if layout not in layouts:
            layouts.add(layout)
            columns.see(layout, values)
        flat.append((layout, values))
    return columns, flat


def _placements(keys: list[str], flat: list[tuple[tuple, list]]) -> dict[tuple, list]:
    """For each record layout, the column index of each of its values (-1: not shown)."""
    index = {key: i for i, key in enumerate(keys)}
    placements: dict[tuple, list] = {}
    for layout, _values in flat:
        if layout not in placements:
            placements[layout] = [index.get(path.lower(), -1) for path in layout]
    return placements


def table_for(soql: str, records: Sequence, *, size: int | None = None) -> Table:
    """The table of `records`: columns from the SELECT list and the union of all records.

    Parent fields are dotted columns ("Account.Owner.Name"), child subqueries nested Tables,
    aggregates their alias or "exprN", nil None. `SELECT COUNT()` has no records: pass the
    batch's `size` to get one "COUNT()" cell holding the number.
    """
    return _table(parse_select(soql), records, size)


def _table(select: _Select, records: Sequence, size: int | None = None) -> Table:
    if select.count_only and not select.columns and not len(records):
        return Table(["COUNT()"], [[str(size)]] if size is not None else [])
    columns, flat = _walk(select, records)
    keys = columns.visible()
    placements = _placements(keys, flat)
    width = len(keys)
    rows: list[list[str | None | Table]] = []
    for layout, values in flat:
        row: list = [None] * width
        for i, value in zip(placements[layout], values, strict=True):
            if i >= 0:
                if value.__class__ is _Child:
                    value = _table(columns.children.get(keys[i]) or _Select([], None),
                                   _child_records(value.element))
                row[i] = value
        rows.append(row)
    return Table([columns.names[key] for key in keys], rows)


def columns_for(soql: str, records: Sequence) -> list[str]:
    """The top-level column names of `records` (child subqueries are one column each)."""
    select = parse_select(soql)
    if select.count_only and not select.columns and not len(records):
        return ["COUNT()"]
    columns, _flat = _walk(select, records)
    return [columns.names[key] for key in columns.visible()]


CHILD_CSV_SUFFIX = " (JSON)"


def csv_header(columns: Sequence[str], soql: str) -> list[str]:
    """The CSV header for `columns`: a child subquery's column says it holds JSON.

    "Contacts" becomes "Contacts (JSON)": its cells are the JSON text of the REST-shaped child
    records (see `csv_rows`), and the header is where a reader of the file learns that.
    """
    children = {column.path.lower() for column in parse_select(soql).columns
                if column.child is not None}
    return [name + CHILD_CSV_SUFFIX if name.lower() in children else name for name in columns]


# --------------------------------------------------------------------------------------------
# REST-shaped records and CSV rows

# The partner API sends every value as text. Values are typed only where the element says its
# type (xsi:type, as aggregate results do); other values stay strings, as the XML gives no type.
_TYPED = {
    "int": int, "long": int, "short": int, "integer": int,
    "double": float, "float": float, "decimal": float,
    "boolean": lambda text: text == "true" or text == "1",
}


def _typed_value(element, text: str | None) -> object:  # noqa: ANN001
    xsi_type = element.get(XSI_TYPE)
    if xsi_type:
        convert = _TYPED.get(xsi_type.rpartition(":")[2])
        if convert is not None and text is not None:
            try:
                return convert(text.strip())
            except ValueError:
                return text
    return text


def rest_record(record) -> dict:  # noqa: ANN001 - an lxml element
    """One record shaped like the REST API's: attributes.type, fields, nested parents and children.

    Parents are nested objects (None when the lookup is empty), child subqueries
    {"totalSize", "done", "records"} (None when there are none), nil values None.
    """
    out: dict = {}
    ids = 0
    first = True
    for element in record:
        tag = element.tag
        name = _NAMES.get(tag) if isinstance(tag, str) else ""
        if name is None:
            name = _name(tag)
        elif not name:
            continue
        text = element.text
        if first:
            first = False
            if name == "type":
                out["attributes"] = {"type": text or ""}
                continue
        if name == "Id":
            ids += 1
            if ids > 1 or text is None or not _id_twice(record):
                continue
        if text and not (text[0] in " \n\r\t" and text.isspace()):
            out[name] = _typed_value(element, text) if element.attrib else text
            continue
        kind = _kind(element)
        if kind == "field":
            out[name] = None if _is_nil(element) else _typed_value(element, text or "")
        elif kind == "parent":
            out[name] = rest_record(element)
        elif kind == "child":
            out[name] = _rest_child(element)
        else:
            out[name] = {_name(part.tag): None if _is_nil(part) else _typed_value(part, part.text)
                         for part in element if isinstance(part.tag, str)}
    out.setdefault("attributes", {"type": ""})
    return out


def _rest_child(element) -> dict:  # noqa: ANN001
    total, done = 0, True
    records = []
    for part in element:
        if not isinstance(part.tag, str):
            continue
        name = _name(part.tag)
        if name == "records":
            records.append(rest_record(part))
        elif name == "size":
            total = int((part.text or "0").strip() or 0)
        elif name == "done":
            done = (part.text or "").strip() == "true"
    return {"totalSize": total, "done": done, "records": records}


def _child_json(child: _Child) -> str:
    return json.dumps(_rest_child(child.element)["records"], ensure_ascii=False,
                      separators=(",", ":"))


def csv_rows(columns: Sequence[str], records: Iterable) -> list[Sequence[str | None]]:
    """The CSV cells of each record under dotted `columns` (from `columns_for`); null is None,
    which `csv.writer` writes as an empty cell.

    A child subquery's cell is the JSON text of its REST-shaped records list, so the CSV keeps
    one row per record and the children are all there. Fields not in `columns` are left out.
    """
    index = {column.lower(): i for i, column in enumerate(columns)}
    wanted = set(index)
    width = len(columns)
    plans = _Plans(index, wanted)
    records = records if isinstance(records, Sequence) else list(records)
    fast_batch = plans.batch(records)
    if fast_batch is not None:
        return fast_batch
    placements: dict[tuple, list] = {}
    rows: list = []
    for record in records:
        fast = plans.values(record)
        if fast is not None:
            rows.append(fast)  # csv writes None as an empty cell
            continue
        paths: list = []
        values: list = []
        _flatten(record, "", paths, values, wanted)
        layout = tuple(paths)
        placement = placements.get(layout)
        if placement is None:
            placement = placements[layout] = [index.get(path.lower(), -1) for path in layout]
        row: list = [None] * width
        for i, value in zip(placement, values, strict=True):
            if i >= 0 and value is not None:
                row[i] = _child_json(value) if value.__class__ is _Child else value
        rows.append(row)
    return rows


def csv_row(columns: Sequence[str], record) -> Sequence[str | None]:  # noqa: ANN001
    """The CSV cells of one record under dotted `columns`; see `csv_rows`."""
    return csv_rows(columns, [record])[0]
