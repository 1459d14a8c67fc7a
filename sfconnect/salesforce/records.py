"""Partner API records as table rows, REST-shaped dicts and CSV rows.

Columns come from the SELECT list (sfconnect.salesforce.soql) and from the union of every
record's fields, so a field that only some records carry still gets its own column. SOQL is
case-insensitive: a column takes the casing the records use (the API's canonical names). Records
are read through the fast path (sfconnect.salesforce.fastpath) where it applies, else the careful
way (sfconnect.salesforce.reading)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain

from markupsafe import Markup, escape

from sfconnect.salesforce.fastpath import Reader, one_field_a_column, read_carefully, row_getter
from sfconnect.salesforce.reading import (
    XSI_TYPE,
    Child,
    child_records,
    field_name,
    id_twice,
    is_nil,
    kind_of,
    named_elements,
)
from sfconnect.salesforce.soql import Select, parse_select


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
# Tables


class _Columns:
    """Column order and canonical names, matched case-insensitively."""

    def __init__(self, select: Select) -> None:
        self.keys: list[str] = []
        self.names: dict[str, str] = {}
        self.children: dict[str, Select | None] = {}
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
                self.children[key] = Select([], None) if isinstance(value, Child) else None
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


def _walk(select: Select, records: Sequence, careful: bool = False
          ) -> tuple[_Columns, list[tuple[tuple, list]], bool]:
    """Flatten every record; returns the columns, (layout, values) per record, and whether the
    fast path read them (then no value is a child subquery). `careful` skips the fast path."""
    columns = _Columns(select)
    wanted = columns.from_select if select.columns else None
    records = records if isinstance(records, Sequence) else list(records)
    flat = None if careful else Reader(wanted).read(records)
    fast = flat is not None
    if flat is None:
        flat = [read_carefully(record, wanted) for record in records]
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


def _table(select: Select, records: Sequence, size: int | None = None,
           careful: bool = False) -> Table:
    if select.count_only and not select.columns and not len(records):
        return Table(["COUNT()"], [[str(size)]] if size is not None else [])
    columns, flat, fast = _walk(select, records, careful)
    keys = columns.visible()
    placements = _placements(keys, flat)
    width = len(keys)
    rows: list[list[str | None | Table]] = []
    if fast:  # no child subqueries: each layout's row is read with an itemgetter
        getters = {layout: row_getter(placement, width, len(layout))
                   for layout, placement in placements.items()}
        for layout, values in flat:
            rows.append(list(getters[layout]((*values, None))))
        return Table([columns.names[key] for key in keys], rows)
    for layout, values in flat:
        row: list = [None] * width
        for i, value in zip(placements[layout], values, strict=True):
            if i >= 0:
                if value.__class__ is Child:
                    value = _table(columns.children.get(keys[i]) or Select([], None),
                                   child_records(value.element), careful=careful)
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
    for element, name in named_elements(record):
        text = element.text
        if first:
            first = False
            if name == "type":
                out["attributes"] = {"type": text or ""}
                continue
        if name == "Id":
            ids += 1
            if ids > 1 or text is None or not id_twice(record):
                continue
        if text and not (text[0] in " \n\r\t" and text.isspace()):
            out[name] = _typed_value(element, text) if element.attrib else text
            continue
        kind = kind_of(element)
        if kind == "field":
            out[name] = None if is_nil(element) else _typed_value(element, text or "")
        elif kind == "parent":
            out[name] = rest_record(element)
        elif kind == "child":
            out[name] = _rest_child(element)
        else:
            out[name] = {field_name(part.tag): (None if is_nil(part)
                                                else _typed_value(part, part.text))
                         for part in element if isinstance(part.tag, str)}
    out.setdefault("attributes", {"type": ""})
    return out


def _rest_child(element) -> dict:  # noqa: ANN001
    total, done = 0, True
    records = []
    for part in element:
        if not isinstance(part.tag, str):
            continue
        name = field_name(part.tag)
        if name == "records":
            records.append(rest_record(part))
        elif name == "size":
            total = int((part.text or "0").strip() or 0)
        elif name == "done":
            done = (part.text or "").strip() == "true"
    return {"totalSize": total, "done": done, "records": records}


def _child_json(child: Child) -> str:
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
        self._reader = Reader(self._wanted)
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
                        row_getter(placement, self._width, len(layout))
                        if one_field_a_column(placement) else False)
                if getter is False:
                    rows.append(self._row(layout, values))
                else:
                    rows.append(getter((*values, None)))
            return rows
        return [self._row(*read_carefully(record, self._wanted)) for record in records]

    def _row(self, layout: tuple, values: Sequence) -> list:
        row: list = [None] * self._width
        for i, value in zip(self._placement(layout), values, strict=True):
            if i >= 0 and value is not None:
                row[i] = _child_json(value) if value.__class__ is Child else value
        return row


def csv_row(columns: Sequence[str], record) -> Sequence[str | None]:  # noqa: ANN001
    """The CSV cells of one record under dotted `columns`; see `csv_rows`."""
    return csv_rows(columns, [record])[0]
