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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter, itemgetter

from markupsafe import Markup, escape

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

    def rows_html(self) -> Markup | None:
        """The table's rows as HTML `<tr>` elements, every value escaped (markupsafe), None an
        empty cell of class "null"; None when a cell holds a nested table (the template renders
        those). The same markup as templates/_records_table.html, built without a template call
        per cell (a 2,000-record page has 12,000 and more cells): the cells are joined with a
        control character XML cannot carry, escaped in one call, split again and set into one
        format string of all rows; counting the separators first proves no value held one."""
        rows = self.rows
        if not rows:
            return Markup("")
        width = len(rows[0])
        cells = list(chain.from_iterable(rows))
        try:
            text = _CELL_SEP.join(map(_AS_NULL, cells, cells))
        except TypeError:
            return None  # a nested table (unhashable), or not a string
        nulls = cells.count(None)
        if (width == 0 or len(cells) != width * len(rows)  # rows of one width only
                or text.count(_CELL_SEP) != len(cells) - 1 or text.count(_NULL) != nulls):
            return self._rows_html_by_cell()
        escaped = str(escape(text)).split(_CELL_SEP)
        row = "\n    <tr>" + "<td>%s</td>" * width + "\n    </tr>"
        html = (row * len(rows)) % tuple(escaped)  # the values are arguments, never the format
        if nulls:
            html = html.replace(f"<td>{_NULL}</td>", '<td class="null"></td>')
        # Safe: the values went through escape(); the rest is the constant markup above.
        return Markup(html)  # noqa: S704

    def _rows_html_by_cell(self) -> Markup:
        parts: list[str] = []
        for row in self.rows:
            parts.append("\n    <tr>")
            parts.extend('<td class="null"></td>' if cell is None else f"<td>{escape(cell)}</td>"
                         for cell in row)
            parts.append("\n    </tr>")
        return Markup("".join(parts))  # noqa: S704 - every value went through escape()


# Markers in Table.rows_html: characters XML 1.0 cannot carry, so no record value holds them.
_CELL_SEP, _NULL = "\x00", "\x01"
_AS_NULL = {None: _NULL}.get  # (cell, cell): the marker for None, the cell itself otherwise


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
# which element holds each field's value, and every other record of that structure is read by
# position with an itemgetter, in C. The result is what `_flatten` gives, record for record:
# a record whose texts do not fit its structure's reading (an empty or blank value, whose
# nil-ness decides between None and "", or an Id whose presence differs) is read again the
# careful way. Structures with child subqueries or compound fields (values that are not one
# element's text) make the whole call take the careful path.

_MISSING = object()
_TAG = attrgetter("tag")
_TEXT = attrgetter("text")
_BLANK_START = frozenset(" \n\r\t")


def _picker(positions: list[int]):  # noqa: ANN202
    """Picks the items at `positions` as a tuple, whatever their number (an itemgetter of one
    index gives the item itself, not a tuple)."""
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        at = positions[0]
        return lambda items: (items[at],)
    return lambda items: ()


class _Structure:
    """How to read the records of one structure: its layout (the dotted paths of its fields),
    the position of each field's element in document order, and the Ids that must be there
    (or not) for the structure's reading to hold."""

    __slots__ = ("key", "layout", "positions", "fields", "present", "absent")

    def __init__(self, record, elements: list, wanted: set[str] | None) -> None:  # noqa: ANN001
        paths: list = []
        values: list = []
        found: list = []
        _flatten(record, "", paths, values, wanted, found)
        self.key = tuple(map(_TAG, elements))
        self.layout = tuple(paths)
        position = {id(element): i for i, element in enumerate(elements)}
        self.positions = [position.get(id(element), -1) if element is not None else -1
                          for element in found]
        self.fields = _picker(self.positions)
        # Whether a record's Id is kept depends on its text being there (see _flatten): the
        # first Id of each sObject level must be there, or not, as in the first record.
        ids = [i for i, element in enumerate(elements)
               if _is_id(element) and not _is_id(element.getprevious())]
        present = [i for i in ids if elements[i].text is not None]
        absent = [i for i in ids if elements[i].text is None]
        # Only membership is asked of these: the first index repeated makes any count a tuple.
        self.present = itemgetter(*present, present[0]) if present else None
        self.absent = itemgetter(*absent, absent[0]) if absent else None

    @classmethod
    def of(cls, record, elements: list, wanted: set[str] | None) -> _Structure | None:  # noqa: ANN001
        structure = cls(record, elements, wanted)
        if -1 in structure.positions:
            return None  # a child subquery or a compound field
        return structure


def _is_id(element) -> bool:  # noqa: ANN001
    return element is not None and isinstance(element.tag, str) and _name(element.tag) == "Id"


class _Reader:
    """Records to what `_flatten` gives, (layout, values) per record, on the fast path; the
    structures learnt are kept for the next call (the next batch of the same query)."""

    def __init__(self, wanted: set[str] | None) -> None:
        self.wanted = wanted
        self._structures: dict[tuple, _Structure | None] = {}

    def read(self, records: Sequence) -> list[tuple[tuple, tuple | list]] | None:
        """(layout, values) per record, as `_flatten` gives them; None when the records hold
        child subqueries or compound fields (then flatten them the careful way)."""
        flat: list = []
        append = flat.append
        structures = self._structures
        wanted = self.wanted
        last = None
        for record in records:
            # One record at a time: its element proxies are freed before the next is read.
            elements = list(record.iter())
            key = tuple(map(_TAG, elements))
            if last is not None and key == last.key:
                structure = last  # comparing with the last structure costs less than hashing
            else:
                structure = structures.get(key, _MISSING)
                if structure is _MISSING:
                    if len(structures) > 256:
                        structures.clear()  # ever new structures: memory stays bounded
                    structure = structures[key] = _Structure.of(record, elements, wanted)
                if structure is None:
                    return None
                last = structure
            # Ids that must have a text (lxml gives None, never "", for an empty element),
            # and Ids that must have none, as in the structure's first record.
            if ((structure.present is not None
                 and None in map(_TEXT, structure.present(elements)))
                    or (structure.absent is not None
                        and any(map(_TEXT, structure.absent(elements))))):
                append(_careful(record, wanted))
                continue
            picked = structure.fields(elements)
            values = tuple(map(_TEXT, picked))
            if None in values or any(map(str.isspace, values)):
                values = _settle(values, picked)
            append((structure.layout, values))
        return flat


def _settle(values: tuple, elements: tuple) -> list:
    """Values with the careful reading of empty and blank texts: a nil element's is None, any
    other's its text, or "" (an empty element)."""
    settled = list(values)
    for i, text in enumerate(values):
        if text is None:
            if not _is_nil(elements[i]):
                settled[i] = ""
        elif text[0] in _BLANK_START and text.isspace() and _is_nil(elements[i]):
            settled[i] = None
    return settled


def _careful(record, wanted: set[str] | None) -> tuple[tuple, list]:  # noqa: ANN001
    paths: list = []
    values: list = []
    _flatten(record, "", paths, values, wanted)
    return tuple(paths), values


def _one_field_a_column(placement: list[int]) -> bool:
    shown = [column for column in placement if column >= 0]
    return len(shown) == len(set(shown))


def _getter(placement: list[int], width: int, count: int):  # noqa: ANN202
    """Reads a row of `width` cells from a record's values plus one None at index `count`:
    each cell is the last value placed in its column, or the None."""
    columns = [count] * width
    for i, column in enumerate(placement):
        if column >= 0:
            columns[column] = i
    if width == 0:
        return lambda values: ()
    if width == 1:
        only = columns[0]
        return lambda values: (values[only],)
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


def _walk(select: _Select, records: Sequence, careful: bool = False
          ) -> tuple[_Columns, list[tuple[tuple, list]], bool]:
    """Flatten every record; returns the columns, (layout, values) per record, and whether the
    fast path read them (then no value is a child subquery). `careful` skips the fast path."""
    columns = _Columns(select)
    wanted = columns.from_select if select.columns else None
    records = records if isinstance(records, Sequence) else list(records)
    flat = None if careful else _Reader(wanted).read(records)
    fast = flat is not None
    if flat is None:
        flat = [_careful(record, wanted) for record in records]
    layouts: set[tuple] = set()
    for layout, values in flat:
        if layout not in layouts:
            layouts.add(layout)
            columns.see(layout, values)
    return columns, flat, fast


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


def _table(select: _Select, records: Sequence, size: int | None = None,
           careful: bool = False) -> Table:
    if select.count_only and not select.columns and not len(records):
        return Table(["COUNT()"], [[str(size)]] if size is not None else [])
    columns, flat, fast = _walk(select, records, careful)
    keys = columns.visible()
    placements = _placements(keys, flat)
    width = len(keys)
    rows: list[list[str | None | Table]] = []
    if fast:  # no child subqueries: each layout's row is read with an itemgetter
        getters = {layout: _getter(placement, width, len(layout))
                   for layout, placement in placements.items()}
        for layout, values in flat:
            rows.append(list(getters[layout]((*values, None))))
        return Table([columns.names[key] for key in keys], rows)
    for layout, values in flat:
        row: list = [None] * width
        for i, value in zip(placements[layout], values, strict=True):
            if i >= 0:
                if value.__class__ is _Child:
                    value = _table(columns.children.get(keys[i]) or _Select([], None),
                                   _child_records(value.element), careful=careful)
                row[i] = value
        rows.append(row)
    return Table([columns.names[key] for key in keys], rows)


def columns_for(soql: str, records: Sequence) -> list[str]:
    """The top-level column names of `records` (child subqueries are one column each)."""
    select = parse_select(soql)
    if select.count_only and not select.columns and not len(records):
        return ["COUNT()"]
    columns, _flat, _fast = _walk(select, records)
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
    return CsvRows(columns).rows(records)


class CsvRows:
    """`csv_rows` for the batches of one query: what is learnt about the records' structures
    (which element holds which field) is kept from one batch to the next."""

    def __init__(self, columns: Sequence[str], *, careful: bool = False) -> None:
        """Rows under dotted `columns` (from `columns_for`); `careful` skips the fast path."""
        self._index = {column.lower(): i for i, column in enumerate(columns)}
        self._wanted = set(self._index)
        self._width = len(columns)
        self._reader = _Reader(self._wanted)
        self._placements: dict[tuple, list] = {}
        self._getters: dict[tuple, object] = {}
        self._careful = careful

    def _placement(self, layout: tuple) -> list:
        placement = self._placements.get(layout)
        if placement is None:
            if len(self._placements) > 256:
                self._placements.clear()  # ever new layouts: memory stays bounded
                self._getters.clear()
            placement = self._placements[layout] = [self._index.get(path.lower(), -1)
                                                    for path in layout]
        return placement

    def rows(self, records: Iterable) -> list[Sequence[str | None]]:
        """The CSV cells of each record, as `csv_rows`."""
        records = records if isinstance(records, Sequence) else list(records)
        flat = None if self._careful else self._reader.read(records)
        if flat is not None:  # no child subqueries: each layout's row is an itemgetter's
            getters = self._getters
            rows: list = []
            for layout, values in flat:
                getter = getters.get(layout)
                if getter is None:
                    placement = self._placement(layout)
                    # Two fields in one column (SOQL's case-insensitive names): the last
                    # non-null value is kept, value by value.
                    getter = getters[layout] = (
                        _getter(placement, self._width, len(layout))
                        if _one_field_a_column(placement) else False)
                if getter is False:
                    rows.append(self._row(layout, values))
                else:
                    rows.append(getter((*values, None)))
            return rows
        return [self._row(*_careful(record, self._wanted)) for record in records]

    def _row(self, layout: tuple, values: Sequence) -> list:
        row: list = [None] * self._width
        for i, value in zip(self._placement(layout), values, strict=True):
            if i >= 0 and value is not None:
                row[i] = _child_json(value) if value.__class__ is _Child else value
        return row


def csv_row(columns: Sequence[str], record) -> Sequence[str | None]:  # noqa: ANN001
    """The CSV cells of one record under dotted `columns`; see `csv_rows`."""
    return csv_rows(columns, [record])[0]
