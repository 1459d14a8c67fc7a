"""SOQL for the local org: parse (lark, LALR), check against the schema, execute, project.

    run = run_query(data, "SELECT FirstName, Account.Name FROM Contact LIMIT 10")
    project(run, 0, 10) -> [("Contact", None, ["Ada", ("Account", None, ["Acme"])]), ...]

Faults are `SoqlError`s carrying Salesforce's exception code and its exact exceptionMessage,
including the "\\n<query>\\n   ^\\nERROR at Row:1:Column:4\\n<text>" pointer for query faults.

One module of over a thousand lines on purpose: the grammar, the schema checks, the evaluator and
the projection share one tree and one set of fault texts; split, each part would import the
others' internals.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from operator import itemgetter

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .data import FieldSchema, OrgData, SObjectSchema, is_valid_id, to_id18

# ---------------------------------------------------------------------------------------------
# Public types


class SoqlError(Exception):
    """A query fault, shaped like the partner API's ApiQueryFault."""

    def __init__(self, code: str, message: str, row: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.row = row
        self.column = column


@dataclass
class FieldItem:
    """A plain field of the record (canonical API name) and its SOAP type."""

    name: str
    soap_type: str


@dataclass
class ParentItem:
    """A parent relationship (e.g. "Account") holding the fields selected through it."""

    name: str
    shape: Shape


@dataclass
class ChildItem:
    """A child subquery (e.g. "Contacts")."""

    name: str
    shape: Shape


@dataclass
class AggregateItem:
    """One column of an AggregateResult: alias, "exprN", or a grouped field's name."""

    name: str
    soap_type: str


@dataclass
class Shape:
    """What each record of one level looks like; `items` exclude this level's Id."""

    entity: str
    id_selected: bool
    items: list[FieldItem | ParentItem | ChildItem | AggregateItem] = field(default_factory=list)


ProjectedRecord = tuple  # (entity: str, record_id: str | None, values: list)


@dataclass
class QueryRun:
    """The result of one query: its shape and all of its rows (paged later by `project`)."""

    shape: Shape
    total_size: int
    rows: Sequence
    count_only: bool = False
    # Turns one row into a ProjectedRecord; precompiled once per query.
    projector: Callable[[object], ProjectedRecord] | None = field(default=None, repr=False)


def run_query(data: OrgData, soql: str, include_deleted: bool = False) -> QueryRun:
    """Parse, check and execute `soql`; raises SoqlError for anything Salesforce would reject."""
    if not isinstance(soql, str):
        raise SoqlError("MALFORMED_QUERY", "unexpected token: '<EOF>'")
    try:
        tree = _parse(soql)
        return _Query(data, soql, include_deleted).run(tree)
    except SoqlError:
        raise
    except RecursionError:
        # Absurd nesting: Salesforce has a query length limit, we have a stack.
        raise _malformed_at(soql, 1, 1, "unexpected token: '('") from None


def project(run: QueryRun, start: int, stop: int) -> list[ProjectedRecord]:
    """Rows start..stop of a run as ProjectedRecords (values already in SOAP text form)."""
    if run.count_only or run.projector is None:
        return []
    return list(map(run.projector, run.rows[start:stop]))


# ---------------------------------------------------------------------------------------------
# Grammar

_GRAMMAR = r"""
query: _SELECT select_list _FROM IDENT where_clause? group_clause? order_clause? _paging
_paging: limit_clause? offset_clause?

select_list: select_item ("," select_item)*
select_item: path IDENT?         -> sel_field
           | func IDENT?         -> sel_agg
           | "(" subquery ")"    -> sel_child

subquery: _SELECT path ("," path)* _FROM IDENT where_clause? order_clause? limit_clause?

func: (COUNT | COUNT_DISTINCT | SUM | AVG | MIN | MAX) "(" path? ")"

path: IDENT ("." IDENT)*

where_clause: _WHERE condition
?condition: simple | conj | disj
conj: simple (_AND simple)+
disj: simple (_OR simple)+
?simple: _NOT simple              -> negation
       | "(" condition ")"
       | comparison
comparison: path OP value              -> cmp
          | path _LIKE value           -> like
          | path _IN "(" value ("," value)* ")"        -> in_list
          | path _NOT _IN "(" value ("," value)* ")"   -> not_in_list
?value: STRING | NUMBER | DATE | DATETIME | NULL | TRUE | FALSE
      | IDENT (":" NUMBER)?      -> date_literal

group_clause: _GROUP _BY path ("," path)*
order_clause: _ORDER _BY order_key ("," order_key)*
order_key: (path | func) (ASC | DESC)? (_NULLS (FIRST | LAST))?
limit_clause: _LIMIT NUMBER
offset_clause: _OFFSET NUMBER

_SELECT: "SELECT"i
_FROM: "FROM"i
_WHERE: "WHERE"i
_AND: "AND"i
_OR: "OR"i
_NOT: "NOT"i
_LIKE: "LIKE"i
_IN: "IN"i
_GROUP: "GROUP"i
_ORDER: "ORDER"i
_BY: "BY"i
_LIMIT: "LIMIT"i
_OFFSET: "OFFSET"i
_NULLS: "NULLS"i
ASC: "ASC"i
DESC: "DESC"i
FIRST: "FIRST"i
LAST: "LAST"i
NULL: "NULL"i
TRUE: "TRUE"i
FALSE: "FALSE"i
COUNT: "COUNT"i
COUNT_DISTINCT: "COUNT_DISTINCT"i
SUM: "SUM"i
AVG: "AVG"i
MIN: "MIN"i
MAX: "MAX"i

IDENT: /[a-z][a-z0-9_]*/i
STRING: /'(?:[^'\\]|\\.)*'/s
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})/i
DATE.2: /\d{4}-\d{2}-\d{2}/
NUMBER: /[+-]?\d+(\.\d+)?/
OP: /<=|>=|!=|<>|=|<|>/

%ignore /\s+/
"""


@cache
def _parser() -> Lark:
    # Built on first use, so importing the module stays cheap.
    # The basic lexer keeps keywords reserved everywhere, as Salesforce's: "SELECT FROM X" fails.
    return Lark(_GRAMMAR, start="query", parser="lalr", lexer="basic",
                propagate_positions=True)


def _parse(soql: str) -> Tree:
    try:
        return _parser().parse(soql)
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            row, column = _end_position(soql)
            raise _malformed_at(soql, row, column, "unexpected token: '<EOF>'") from None
        raise _malformed_at(soql, token.line, token.column,
                            f"unexpected token: '{token}'") from None
    except UnexpectedCharacters as exc:
        char = soql[exc.pos_in_stream] if 0 <= exc.pos_in_stream < len(soql) else ""
        # Salesforce's lexer speaks ANTLR: "line 1:7 no viable alternative at character '#'".
        raise _malformed_at(soql, exc.line, exc.column,
                            f"line {exc.line}:{exc.column - 1} no viable alternative at "
                            f"character '{char}'") from None
    except (UnexpectedInput, LarkError):
        row, column = _end_position(soql)
        raise _malformed_at(soql, row, column, "unexpected token: '<EOF>'") from None


def _end_position(soql: str) -> tuple[int, int]:
    # Salesforce points <EOF> at the query's last character.
    text = soql.rstrip()
    if not text:
        return 1, 1
    lines = text.split("\n")
    return len(lines), max(1, len(lines[-1]))


def _pointer(soql: str, row: int, column: int, text: str) -> str:
    lines = soql.split("\n")
    line = lines[row - 1] if 0 < row <= len(lines) else soql
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{text}"


def _malformed_at(soql: str, row: int, column: int, text: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", _pointer(soql, row, column, text), row, column)


# ---------------------------------------------------------------------------------------------
# Values and their SOAP text

_TEXT_TYPES = {"string", "email", "phone", "url", "textarea", "picklist"}
_ID_TYPES = {"id", "reference"}
_NUMBER_TYPES = {"double", "currency", "percent", "int"}
_ORDERABLE_ANY = _TEXT_TYPES | _ID_TYPES | _NUMBER_TYPES | {"boolean", "date", "datetime"}
_FILTER_TYPE_WORDS = {"double": "double", "currency": "double", "percent": "double",
                      "int": "integer", "boolean": "boolean", "date": "date",
                      "datetime": "dateTime", "id": "id", "reference": "id"}


def double_text(value: float) -> str:
    """A double as Java's Double.toString writes it, as the partner API does ("1.2E7")."""
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return {True: "NaN"}.get(value != value, "Infinity" if value > 0 else "-Infinity")
    magnitude = abs(value)
    if magnitude == 0 or 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    digits, exponent = _shortest_digits(magnitude)
    mantissa = digits[0] + "." + (digits[1:] or "0")
    return f"{'-' if value < 0 else ''}{mantissa}E{exponent}"


def _shortest_digits(magnitude: float) -> tuple[str, int]:
    parts = Decimal(repr(magnitude)).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    return digits, len(digits) - 1 + int(parts.exponent)


_DATETIME_TEXTS: dict[datetime, str] = {}


def _datetime_text(value: datetime) -> str:
    # Formatting costs ~2.5 us against ~0.1 us for a lookup; paging re-reads the same values.
    text = _DATETIME_TEXTS.get(value)
    if text is None:
        utc = value.astimezone(UTC) if value.tzinfo is not None and value.utcoffset() else value
        text = f"{utc.isoformat()[:19]}.{utc.microsecond // 1000:03d}Z"
        if len(_DATETIME_TEXTS) > 300_000:
            _DATETIME_TEXTS.clear()
        _DATETIME_TEXTS[value] = text
    return text


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _converter(type_: str) -> Callable[[object], str] | None:
    """How a field's Python value becomes SOAP text; None when it already is text."""
    if type_ in _TEXT_TYPES or type_ in _ID_TYPES:
        return None
    if type_ == "boolean":
        return _bool_text
    if type_ == "int":
        return str
    if type_ in ("double", "currency", "percent"):
        return double_text
    if type_ == "date":
        return date.isoformat
    if type_ == "datetime":
        return _datetime_text
    return str


def _text(type_: str, value: object) -> str | None:
    if value is None:
        return None
    conv = _converter(type_)
    return conv(value) if conv else value  # type: ignore[return-value]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"',
            "\\": "\\"}


# ---------------------------------------------------------------------------------------------
# The query compiler


@dataclass
class _Path:
    """A resolved field path: the relationships walked and the final field."""

    steps: list[tuple[FieldSchema, SObjectSchema]]  # (reference field, parent schema)
    field: FieldSchema
    names: list[str]  # canonical relationship names then the field name
    token: Token


_DATE_KEYWORDS = {"TODAY", "YESTERDAY", "TOMORROW", "LAST_WEEK", "THIS_WEEK", "NEXT_WEEK",
                  "LAST_MONTH", "THIS_MONTH", "NEXT_MONTH", "LAST_YEAR", "THIS_YEAR",
                  "NEXT_YEAR", "LAST_N_DAYS", "NEXT_N_DAYS"}


def _month_start(day: date, shift: int) -> date:
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def _date_range(name: str, n: int | None, today: date) -> tuple[date, date]:
    """[start, end) of a relative date literal, in days."""
    one = timedelta(days=1)
    week = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    ranges = {
        "TODAY": (today, today + one),
        "YESTERDAY": (today - one, today),
        "TOMORROW": (today + one, today + 2 * one),
        "THIS_WEEK": (week, week + 7 * one),
        "LAST_WEEK": (week - 7 * one, week),
        "NEXT_WEEK": (week + 7 * one, week + 14 * one),
        "THIS_MONTH": (_month_start(today, 0), _month_start(today, 1)),
        "LAST_MONTH": (_month_start(today, -1), _month_start(today, 0)),
        "NEXT_MONTH": (_month_start(today, 1), _month_start(today, 2)),
        "THIS_YEAR": (date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), date(today.year, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
    }
    if name == "LAST_N_DAYS":
        return today - timedelta(days=n or 0), today + one
    if name == "NEXT_N_DAYS":
        return today + one, today + one + timedelta(days=n or 0)
    return ranges[name]


class _Query:
    """Checks one parsed query against the schema and executes it."""

    def __init__(self, data: OrgData, soql: str, include_deleted: bool) -> None:
        self.data = data
        self.soql = soql
        self.include_deleted = include_deleted

    # -- errors ---------------------------------------------------------------------------
    def error(self, code: str, token: Token | Tree | None, text: str) -> SoqlError:
        row, column = self.position(token)
        return SoqlError(code, _pointer(self.soql, row, column, text), row, column)

    def position(self, node: Token | Tree | None) -> tuple[int, int]:
        if isinstance(node, Token) and node.line is not None:
            return node.line, node.column or 1
        if isinstance(node, Tree):
            for child in node.children:
                if isinstance(child, Token | Tree):
                    return self.position(child)
        return _end_position(self.soql)

    def malformed(self, token: Token | Tree | None, text: str) -> SoqlError:
        return self.error("MALFORMED_QUERY", token, text)

    def unexpected(self, token: Token | Tree | None) -> SoqlError:
        return self.malformed(token, f"unexpected token: '{token}'")

    # -- schema ---------------------------------------------------------------------------
    def sobject(self, token: Token) -> SObjectSchema:
        schema = self.data.sobject(str(token))
        if schema is None:
            raise self.error(
                "INVALID_TYPE", token,
                f"sObject type '{token}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.")
        return schema

    def resolve(self, schema: SObjectSchema, path: Tree) -> _Path:
        tokens: list[Token] = list(path.children)  # type: ignore[arg-type]
        steps: list[tuple[FieldSchema, SObjectSchema]] = []
        names: list[str] = []
        current = schema
        walk = tokens[:-1]
        if walk and walk[0].lower() == schema.name.lower() and not schema.relationship(walk[0]):
            walk = walk[1:]  # "Account.Name FROM Account": Salesforce allows the object's name
        for token in walk:
            ref = current.relationship(str(token))
            parent = self.data.sobject(ref.reference_to[0]) if ref and ref.reference_to else None
            if ref is None or parent is None:
                raise self.error(
                    "INVALID_FIELD", tokens[0],
                    f"Didn't understand relationship '{token}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' "
                    "after the custom relationship name. Please reference your WSDL or the "
                    "describe call for the appropriate names.")
            steps.append((ref, parent))
            names.append(ref.relationship_name or "")
            current = parent
        found = current.field(str(tokens[-1]))
        if found is None:
            raise self.error(
                "INVALID_FIELD", tokens[0],
                f"No such column '{tokens[-1]}' on entity '{current.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the "
                "appropriate names.")
        names.append(found.name)
        return _Path(steps, found, names, tokens[0])

    def getter(self, path: _Path) -> Callable[[dict], object]:
        """A function record -> Python value of the path (None along an empty lookup)."""
        final = itemgetter(path.field.name)
        if not path.steps:
            return final
        hops = [(ref.name, self.data.index(parent.name)) for ref, parent in path.steps]

        def walk(record: dict) -> object:
            for fk, index in hops:
                record = index.get(record[fk])  # type: ignore[assignment]
                if record is None:
                    return None
            return final(record)

        return walk

    def visible(self, schema: SObjectSchema) -> list[dict]:
        return self.data.visible_records(schema.name, self.include_deleted)

    # -- literals -------------------------------------------------------------------------
    def string_value(self, token: Token, like: bool = False) -> str:
        raw = str(token)[1:-1]
        if "\\" not in raw:
            return raw
        out = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c != "\\":
                out.append(c)
                i += 1
                continue
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if like and nxt in "%_":
                out.append("\\" + nxt)  # kept escaped: a literal wildcard character
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2:i + 6]):
                out.append(chr(int(raw[i + 2:i + 6], 16)))
                i += 4
            else:
                raise self.malformed(
                    token, f"Invalid string literal '{raw}'. Illegal character sequence "
                    f"'\\{nxt}' in string literal.")
            i += 2
        return "".join(out)

    def mismatch(self, path: _Path, token: Token) -> SoqlError:
        type_ = path.field.type
        if type_ in _TEXT_TYPES:
            text = (f"value of filter criterion for field '{path.field.name}' must be of type "
                    "string and should be enclosed in quotes")
        elif type_ in _ID_TYPES:
            text = (f"value of filter criterion for field '{path.field.name}' must be of type "
                    "id and should be enclosed in quotes")
        else:
            text = (f"value of filter criterion for field '{path.field.name}' must be of type "
                    f"{_FILTER_TYPE_WORDS.get(type_, type_)} and should not be enclosed in "
                    "quotes")
        return self.error("INVALID_FIELD", path.token, text)

    def literal(self, path: _Path, node: Token | Tree) -> object:
        """The Python value a literal stands for, checked against the field's type.

        Relative date literals come back as a (start, end) range.
        """
        type_ = path.field.type
        if isinstance(node, Tree):  # date_literal: TODAY, LAST_N_DAYS:7, or a stray word
            return self.date_literal(path, node)
        kind = node.type
        if kind == "NULL":
            return None
        if type_ in _TEXT_TYPES:
            if kind != "STRING":
                raise self.mismatch(path, node)
            return self.string_value(node)
        if type_ in _ID_TYPES:
            if kind != "STRING":
                raise self.mismatch(path, node)
            value = self.string_value(node)
            if not is_valid_id(value):
                # Salesforce points at the filtered field, not at the literal.
                raise self.error("INVALID_QUERY_FILTER_OPERATOR", path.token,
                                 f"invalid ID field: {value}")
            return to_id18(value[:15])
        if type_ in _NUMBER_TYPES:
            if kind != "NUMBER":
                raise self.mismatch(path, node)
            text = str(node)
            return int(text) if type_ == "int" and "." not in text else float(text)
        if type_ == "boolean":
            if kind not in ("TRUE", "FALSE"):
                raise self.mismatch(path, node)
            return kind == "TRUE"
        if type_ == "date":
            if kind != "DATE":
                raise self.mismatch(path, node)
            try:
                return date.fromisoformat(str(node))
            except ValueError:
                raise self.unexpected(node) from None
        if type_ == "datetime":
            if kind != "DATETIME":
                raise self.mismatch(path, node)
            return self.datetime_value(node)
        raise self.mismatch(path, node)

    def datetime_value(self, token: Token) -> datetime:
        text = str(token).upper()
        match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})",
                             text)
        if match is None:
            raise self.unexpected(token)
        day, clock, fraction, zone = match.groups()
        if zone == "Z":
            zone = "+00:00"
        elif ":" not in zone:
            zone = zone[:3] + ":" + zone[3:]
        micro = (fraction or ".0")[1:7].ljust(6, "0")
        try:
            value = datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}")
        except ValueError:
            raise self.unexpected(token) from None
        return value.astimezone(UTC)

    def date_literal(self, path: _Path, node: Tree) -> tuple[object, object]:
        word = node.children[0]
        name = str(word).upper()
        takes_n = name in ("LAST_N_DAYS", "NEXT_N_DAYS")
        has_n = len(node.children) > 1
        if name not in _DATE_KEYWORDS or takes_n != has_n:
            raise self.unexpected(word)
        if path.field.type not in ("date", "datetime"):
            raise self.mismatch(path, word)
        n = None
        if has_n:
            number = node.children[1]
            if not str(number).isdigit():
                raise self.unexpected(number)
            n = int(str(number))
            if n > 100_000:
                raise self.unexpected(number)
        start, end = _date_range(name, n, datetime.now(UTC).date())
        if path.field.type == "date":
            return start, end
        return (datetime(start.year, start.month, start.day, tzinfo=UTC),
                datetime(end.year, end.month, end.day, tzinfo=UTC))

    # -- WHERE ----------------------------------------------------------------------------
    def condition(self, schema: SObjectSchema, node: Tree) -> Callable[[dict], bool]:
        kind = node.data
        if kind == "conj":
            parts = [self.condition(schema, c) for c in node.children]
            return lambda r: all(p(r) for p in parts)
        if kind == "disj":
            parts = [self.condition(schema, c) for c in node.children]
            return lambda r: any(p(r) for p in parts)
        if kind == "negation":
            inner = self.condition(schema, node.children[0])
            return lambda r: not inner(r)
        path = self.resolve(schema, node.children[0])
        if path.field.type == "textarea" and path.field.length > 255:
            raise self.error("INVALID_FIELD", path.token,
                             f"field '{path.field.name}' can not be filtered in a query call")
        get = self.getter(path)
        if kind == "cmp":
            op = str(node.children[1])
            return self.comparison(path, get, "!=" if op == "<>" else op, node.children[2])
        if kind == "like":
            return self.like(path, get, node.children[1])
        values = [self.literal(path, v) for v in node.children[1:]]
        if any(isinstance(v, tuple) for v in values):
            ranges = [v if isinstance(v, tuple) else (v, None) for v in values]
            return self.in_ranges(get, ranges, negate=kind == "not_in_list")
        if path.field.type in _TEXT_TYPES:
            folded = {v.casefold() if isinstance(v, str) else v for v in values}
            key = _fold_getter(get)
        else:
            folded = set(values)
            key = get
        if kind == "in_list":
            return lambda r: key(r) in folded
        return lambda r: key(r) not in folded

    def comparison(self, path: _Path, get: Callable, op: str,
                   node: Token | Tree) -> Callable[[dict], bool]:
        value = self.literal(path, node)
        type_ = path.field.type
        if isinstance(value, tuple):
            return self.range_comparison(get, op, value)
        if value is None:
            if op == "=":
                return lambda r: get(r) is None
            if op == "!=":
                return lambda r: get(r) is not None
            return lambda r: False
        if type_ == "boolean" and op not in ("=", "!="):
            raise self.error("INVALID_QUERY_FILTER_OPERATOR", node,
                             f"invalid operator on boolean field: {path.field.name}")
        if type_ in _TEXT_TYPES:
            value = value.casefold()  # type: ignore[union-attr]
            get = _fold_getter(get)
        if op == "=":
            return lambda r: get(r) == value
        if op == "!=":
            return lambda r: get(r) != value
        compare = {"<": _lt, "<=": _le, ">": _gt, ">=": _ge}[op]
        return lambda r: compare(get(r), value)

    def range_comparison(self, get: Callable, op: str,
                         bounds: tuple) -> Callable[[dict], bool]:
        start, end = bounds
        if op == "=":
            return lambda r: (v := get(r)) is not None and start <= v < end
        if op == "!=":
            return lambda r: (v := get(r)) is None or not start <= v < end
        if op == "<":
            return lambda r: (v := get(r)) is not None and v < start
        if op == "<=":
            return lambda r: (v := get(r)) is not None and v < end
        if op == ">":
            return lambda r: (v := get(r)) is not None and v >= end
        return lambda r: (v := get(r)) is not None and v >= start

    def in_ranges(self, get: Callable, ranges: list, negate: bool) -> Callable[[dict], bool]:
        def hit(record: dict) -> bool:
            v = get(record)
            if v is None:
                return False
            return any(start <= v < end if end is not None else v == start
                       for start, end in ranges)
        if negate:
            return lambda r: not hit(r)
        return hit

    def like(self, path: _Path, get: Callable, node: Token | Tree) -> Callable[[dict], bool]:
        if path.field.type not in _TEXT_TYPES and path.field.type not in _ID_TYPES:
            raise self.error("INVALID_FIELD", node,
                             f"invalid operator on field: {path.field.name}")
        if not isinstance(node, Token) or node.type not in ("STRING", "NULL"):
            raise self.mismatch(path, node)  # type: ignore[arg-type]
        if node.type == "NULL":
            return lambda r: False
        pattern = self.string_value(node, like=True)
        regex = []
        i = 0
        while i < len(pattern):
            c = pattern[i]
            if c == "\\" and i + 1 < len(pattern):
                regex.append(re.escape(pattern[i + 1]))
                i += 2
                continue
            regex.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
            i += 1
        matcher = re.compile("".join(regex), re.IGNORECASE | re.DOTALL).fullmatch
        return lambda r: (v := get(r)) is not None and matcher(v) is not None

    # -- SELECT ---------------------------------------------------------------------------
    def run(self, tree: Tree) -> QueryRun:
        children = tree.children
        select_list: Tree = children[0]  # type: ignore[assignment]
        schema = self.sobject(children[1])  # type: ignore[arg-type]
        clauses = {c.data: c for c in children[2:] if isinstance(c, Tree)}
        items = select_list.children
        aggregate = "group_clause" in clauses or any(
            i.data == "sel_agg" and not _is_count_star(i) for i in items)
        count_star = [i for i in items if _is_count_star(i)]
        if count_star and len(items) > 1:
            other = next(i for i in items if not _is_count_star(i))
            if other.data == "sel_field":
                name = self.resolve(schema, other.children[0]).field.name
                raise self.malformed(other, f"Field must be grouped or aggregated: {name}")
            raise self.unexpected(other.children[0].children[0])
        if count_star and "group_clause" not in clauses:
            return self.run_count(schema, clauses, count_star[0])
        if aggregate or count_star:
            return self.run_aggregate(schema, items, clauses)
        return self.run_records(schema, items, clauses)

    def limits(self, clauses: dict[str, Tree]) -> tuple[int, int | None]:
        offset, limit = 0, None
        if "limit_clause" in clauses:
            limit = self.integer(clauses["limit_clause"].children[0])
        if "offset_clause" in clauses:
            token = clauses["offset_clause"].children[0]
            offset = self.integer(token)
            if offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE",
                                "Maximum SOQL offset allowed is 2000")
        return offset, limit

    def integer(self, token: Token) -> int:
        text = str(token)
        if not text.isdigit():
            raise self.unexpected(token)
        return int(text)

    def filtered(self, schema: SObjectSchema, clauses: dict[str, Tree]) -> list[dict]:
        rows = self.visible(schema)
        if "where_clause" in clauses:
            keep = self.condition(schema, clauses["where_clause"].children[0])
            rows = [r for r in rows if keep(r)]
        return rows

    def run_count(self, schema: SObjectSchema, clauses: dict[str, Tree], item: Tree) -> QueryRun:
        if "order_clause" in clauses:
            self.order_keys(schema, clauses["order_clause"])
        offset, limit = self.limits(clauses)
        count = max(0, len(self.filtered(schema, clauses)) - offset)
        if limit is not None:
            count = min(count, limit)
        return QueryRun(Shape(schema.name, False, []), count, [], count_only=True)

    def run_records(self, schema: SObjectSchema, items: list, clauses: dict[str, Tree]
                    ) -> QueryRun:
        builder = _ShapeBuilder(self, schema)
        for item in items:
            if item.data == "sel_field":
                if len(item.children) > 1:
                    raise self.malformed(item.children[1],
                                         "Only aggregate expressions use field aliasing")
                builder.add(self.resolve(schema, item.children[0]))
            else:
                builder.add_child(item.children[0])
        rows = self.filtered(schema, clauses)
        if "order_clause" in clauses:
            rows = _sorted(rows, self.order_keys(schema, clauses["order_clause"]))
        offset, limit = self.limits(clauses)
        if offset or limit is not None:
            rows = rows[offset:None if limit is None else offset + limit]
        shape, projector = builder.build()
        return QueryRun(shape, len(rows), rows, False, projector)

    def order_keys(self, schema: SObjectSchema, clause: Tree,
                   aggregates: dict | None = None) -> list[tuple[Callable, bool, bool]]:
        """(key, descending, nulls_first) per ORDER BY item, for `_sorted`."""
        keys = []
        for key in clause.children:
            target = key.children[0]
            words = {str(t.type) for t in key.children[1:]}
            descending = "DESC" in words
            nulls_first = "FIRST" in words or ("LAST" not in words and not descending)
            if aggregates is not None:
                getter = aggregates["order"](target)
            else:
                if target.data == "func":
                    raise self.malformed(target, "Ordered field must be grouped or aggregated:"
                                         f" {target.children[0]}")
                path = self.resolve(schema, target)
                if path.field.type == "textarea" and path.field.length > 255:
                    raise self.error("INVALID_FIELD", path.token,
                                     f"field '{path.field.name}' can not be sorted in a query "
                                     "call")
                getter = self.getter(path)
                if path.field.type in _TEXT_TYPES:
                    getter = _fold_getter(getter)
            keys.append((getter, descending, nulls_first))
        return keys

    # -- child subqueries -----------------------------------------------------------------
    def child_rows(self, parent: SObjectSchema, sub: Tree) -> tuple[
            str, SObjectSchema, Tree, dict[str, list[dict]]]:
        """Resolve `(SELECT ... FROM Contacts ...)` and group its rows by parent id."""
        paths = [c for c in sub.children if isinstance(c, Tree) and c.data == "path"]
        name_token = next(c for c in sub.children if isinstance(c, Token))
        clauses = {c.data: c for c in sub.children if isinstance(c, Tree) and c.data != "path"}
        rel = parent.child_relationship(str(name_token))
        child = self.data.sobject(rel.child_sobject) if rel else None
        if rel is None or child is None:
            raise self.error(
                "INVALID_TYPE", name_token,
                f"Didn't understand relationship '{name_token}' in FROM part of query call. If "
                "you are attempting to use a custom relationship, be sure to append the '__r' "
                "after the custom relationship name. Please reference your WSDL or the "
                "describe call for the appropriate names.")
        rows = self.filtered(child, clauses)
        if "order_clause" in clauses:
            rows = _sorted(rows, self.order_keys(child, clauses["order_clause"]))
        limit = None
        if "limit_clause" in clauses:
            limit = self.integer(clauses["limit_clause"].children[0])
        grouped: dict[str, list[dict]] = {}
        fk = rel.field
        for row in rows:
            parent_id = row[fk]
            if parent_id is not None:
                bucket = grouped.setdefault(parent_id, [])
                if limit is None or len(bucket) < limit:
                    bucket.append(row)
        return rel.relationship_name, child, paths, grouped  # type: ignore[return-value]

    # -- aggregates -----------------------------------------------------------------------
    def run_aggregate(self, schema: SObjectSchema, items: list, clauses: dict[str, Tree]
                      ) -> QueryRun:
        group_paths = []
        if "group_clause" in clauses:
            for path_tree in clauses["group_clause"].children:
                path = self.resolve(schema, path_tree)
                if (path.field.type in ("double", "currency", "percent")
                        or (path.field.type == "textarea" and path.field.length > 255)):
                    raise self.error("INVALID_FIELD", path.token,
                                     f"field '{path.field.name}' can not be grouped in a query "
                                     "call")
                group_paths.append(path)
        grouped_names = {tuple(n.lower() for n in p.names): i for i, p in enumerate(group_paths)}

        # Each output column: (name, soap_type, evaluate(group_rows, group_key) -> python value)
        columns: list[tuple[str, str, str, Callable]] = []
        aliases: set[str] = set()
        expr = 0
        for item in items:
            if item.data == "sel_child":
                raise self.unexpected(item.children[0])
            alias = item.children[1] if len(item.children) > 1 else None
            if item.data == "sel_field":
                path = self.resolve(schema, item.children[0])
                position = grouped_names.get(tuple(n.lower() for n in path.names))
                if position is None:
                    raise self.malformed(item, f"Field must be grouped or aggregated: "
                                         f"{path.field.name}")
                name = str(alias) if alias else path.field.name
                columns.append((name, path.field.soap_type, path.field.type,
                                _group_value(position)))
            else:
                func_name, type_, soap_type, evaluate = self.aggregate(schema, item.children[0])
                if alias:
                    name = str(alias)
                else:
                    name = f"expr{expr}"
                    expr += 1
                columns.append((name, soap_type, type_, evaluate))
            if alias is not None:
                if str(alias).lower() in aliases:
                    raise self.malformed(alias, f"duplicate alias: {alias}")
                aliases.add(str(alias).lower())

        rows = self.filtered(schema, clauses)
        getters = [self.getter(p) for p in group_paths]
        folds = [p.field.type in _TEXT_TYPES for p in group_paths]
        groups: dict[tuple, list[dict]] = {}
        keys: dict[tuple, tuple] = {}
        for row in rows:
            raw = tuple(g(row) for g in getters)
            # Salesforce groups text case-insensitively; the first spelling seen is reported.
            folded = tuple(v.casefold() if f and v is not None else v
                           for v, f in zip(raw, folds, strict=True))
            bucket = groups.get(folded)
            if bucket is None:
                groups[folded] = bucket = []
                keys[folded] = raw
            bucket.append(row)
        if not group_paths and not groups:
            groups[()] = []
            keys[()] = ()

        results = [(keys[k], members) for k, members in groups.items()]
        if "order_clause" in clauses:
            order = self.order_keys(schema, clauses["order_clause"], aggregates={
                "order": lambda target: self.aggregate_order(schema, target, grouped_names)})
            results = _sorted(results, order)
        offset, limit = self.limits(clauses)
        if offset or limit is not None:
            results = results[offset:None if limit is None else offset + limit]
        out_rows = [tuple(_text(type_, evaluate(members, key))
                          for _, _, type_, evaluate in columns)
                    for key, members in results]
        shape = Shape("AggregateResult", False,
                      [AggregateItem(name, soap) for name, soap, _, _ in columns])
        return QueryRun(shape, len(out_rows), out_rows, False, _aggregate_projector)

    def aggregate(self, schema: SObjectSchema, func: Tree) -> tuple[str, str, str, Callable]:
        """(function, result field type, soap type, evaluate(rows, key)) of COUNT(x) etc."""
        fn_token: Token = func.children[0]  # type: ignore[assignment]
        fn = fn_token.type
        if len(func.children) < 2:
            if fn == "COUNT":
                return fn, "int", "xsd:int", lambda rows, key: len(rows)
            raise self.malformed(fn_token, "unexpected token: ')'")
        path = self.resolve(schema, func.children[1])
        type_ = path.field.type
        get = self.getter(path)
        unsupported = self.error("INVALID_FIELD", path.token,
                                 f"field {path.field.name} does not support aggregate "
                                 f"operator {fn}")
        if fn == "COUNT":
            return fn, "int", "xsd:int", lambda rows, key: sum(
                1 for r in rows if get(r) is not None)
        if fn == "COUNT_DISTINCT":
            fold = type_ in _TEXT_TYPES
            return fn, "int", "xsd:int", lambda rows, key: len(
                {(v.casefold() if fold else v) for r in rows if (v := get(r)) is not None})
        if fn in ("SUM", "AVG"):
            if type_ not in _NUMBER_TYPES:
                raise unsupported
            if fn == "SUM":
                return fn, "double", "xsd:double", lambda rows, key: _sum(rows, get)
            return fn, "double", "xsd:double", lambda rows, key: _avg(rows, get)
        if type_ == "boolean" or (type_ == "textarea" and path.field.length > 255):
            raise unsupported
        pick = min if fn == "MIN" else max
        fold = type_ in _TEXT_TYPES

        def extreme(rows: list[dict], key: tuple) -> object:
            values = [v for r in rows if (v := get(r)) is not None]
            if not values:
                return None
            return pick(values, key=str.casefold) if fold else pick(values)

        return fn, type_, path.field.soap_type, extreme

    def aggregate_order(self, schema: SObjectSchema, target: Tree,
                        grouped_names: dict[tuple, int]) -> Callable:
        """A sort key over (group key, rows) for an ORDER BY item of an aggregate query."""
        if target.data == "func":
            _, type_, _, evaluate = self.aggregate(schema, target)
            if type_ in _TEXT_TYPES:
                return lambda result: _fold(evaluate(result[1], result[0]))
            return lambda result: evaluate(result[1], result[0])
        path = self.resolve(schema, target)
        position = grouped_names.get(tuple(n.lower() for n in path.names))
        if position is None:
            raise self.malformed(target, f"Ordered field must be grouped or aggregated: "
                                 f"{path.field.name}")
        if path.field.type in _TEXT_TYPES:
            return lambda result: _fold(result[0][position])
        return lambda result: result[0][position]


def _is_count_star(item: Tree) -> bool:
    if item.data != "sel_agg":
        return False
    func = item.children[0]
    return func.children[0].type == "COUNT" and len(func.children) == 1 and len(
        item.children) == 1


def _group_value(position: int) -> Callable:
    return lambda rows, key: key[position]


def _sum(rows: list[dict], get: Callable) -> float | None:
    values = [v for r in rows if (v := get(r)) is not None]
    return float(sum(values)) if values else None


def _avg(rows: list[dict], get: Callable) -> float | None:
    values = [v for r in rows if (v := get(r)) is not None]
    return float(sum(values)) / len(values) if values else None


def _aggregate_projector(row: tuple) -> ProjectedRecord:
    return ("AggregateResult", None, list(row))


def _fold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


def _fold_getter(get: Callable[[dict], object]) -> Callable[[dict], object]:
    def folded(record: dict) -> object:
        value = get(record)
        return value.casefold() if value is not None else None  # type: ignore[union-attr]
    return folded


def _lt(a: object, b: object) -> bool:
    return a is not None and a < b  # type: ignore[operator]


def _le(a: object, b: object) -> bool:
    return a is not None and a <= b  # type: ignore[operator]


def _gt(a: object, b: object) -> bool:
    return a is not None and a > b  # type: ignore[operator]


def _ge(a: object, b: object) -> bool:
    return a is not None and a >= b  # type: ignore[operator]


def _sorted(rows: list, keys: list[tuple[Callable, bool, bool]]) -> list:
    """Stable multi-key sort; nulls placed per key (ASC: first, DESC: last by default)."""
    rows = list(rows)
    for getter, descending, nulls_first in reversed(keys):
        if nulls_first != descending:
            # Null flag False sorts first ascending; with reverse it ends up last.
            def key(r: object, g: Callable = getter) -> tuple:
                v = g(r)
                return (v is not None, v)
        else:
            def key(r: object, g: Callable = getter) -> tuple:
                v = g(r)
                return (v is None, v)
        rows.sort(key=key, reverse=descending)
    return rows


# ---------------------------------------------------------------------------------------------
# Shapes and their projection plans


class _ShapeBuilder:
    """Collects the selected paths of one level into a Shape and a projector for it."""

    def __init__(self, query: _Query, schema: SObjectSchema) -> None:
        self.query = query
        self.schema = schema
        self.id_selected = False
        # Ordered entries: ("field", FieldSchema) | ("parent", rel name, FieldSchema, builder)
        # | ("child", name, child schema, builder, grouped rows)
        self.entries: list[tuple] = []
        self.seen: set[str] = set()
        self.parents: dict[str, _ShapeBuilder] = {}

    def add(self, path: _Path, depth: int = 0) -> None:
        if depth == len(path.steps):
            name = path.field.name
            if name.lower() in self.seen:
                raise self.query.malformed(path.token, f"duplicate field selected: {name}")
            self.seen.add(name.lower())
            if name == "Id":
                self.id_selected = True
            else:
                self.entries.append(("field", path.field))
            return
        ref, parent_schema = path.steps[depth]
        parent = self.parents.get(ref.name)
        if parent is None:
            parent = self.parents[ref.name] = _ShapeBuilder(self.query, parent_schema)
            self.entries.append(("parent", ref, parent))
        parent.add(path, depth + 1)

    def add_child(self, sub: Tree) -> None:
        name, child_schema, paths, grouped = self.query.child_rows(self.schema, sub)
        if name.lower() in self.seen:
            raise self.query.malformed(sub, f"duplicate field selected: {name}")
        self.seen.add(name.lower())
        builder = _ShapeBuilder(self.query, child_schema)
        for path_tree in paths:
            builder.add(self.query.resolve(child_schema, path_tree))
        self.entries.append(("child", name, builder, grouped))

    def build(self) -> tuple[Shape, Callable[[dict], ProjectedRecord]]:
        items: list = []
        keys: list[str] = []  # the record key each item reads
        posts: list[tuple[int, Callable]] = []  # value fix-ups by position
        for position, entry in enumerate(self.entries):
            if entry[0] == "field":
                fs: FieldSchema = entry[1]
                items.append(FieldItem(fs.name, fs.soap_type))
                keys.append(fs.name)
                conv = _converter(fs.type)
                if conv is not None:
                    posts.append((position, conv))
            elif entry[0] == "parent":
                ref, parent = entry[1], entry[2]
                shape, sub = parent.build()
                items.append(ParentItem(ref.relationship_name, shape))
                keys.append(ref.name)
                index = self.query.data.index(parent.schema.name)
                posts.append((position, _parent_post(index, sub)))
            else:
                name, builder, grouped = entry[1], entry[2], entry[3]
                shape, sub = builder.build()
                items.append(ChildItem(name, shape))
                keys.append("Id")
                posts.append((position, _child_post(grouped, sub)))
        shape = Shape(self.schema.name, self.id_selected, items)
        return shape, _record_projector(self.schema.name, self.id_selected, keys, posts)


def _parent_post(index: dict[str, dict], sub: Callable) -> Callable[[str], object]:
    def parent(parent_id: str) -> object:
        record = index.get(parent_id)
        return sub(record) if record is not None else None
    return parent


def _child_post(grouped: dict[str, list[dict]], sub: Callable) -> Callable[[str], object]:
    def children(record_id: str) -> object:
        rows = grouped.get(record_id)
        return list(map(sub, rows)) if rows else None
    return children


def _record_projector(entity: str, id_selected: bool, keys: list[str],
                      posts: list[tuple[int, Callable]]) -> Callable[[dict], ProjectedRecord]:
    # One C-level itemgetter fetches every cell (plus Id last); only non-text cells get a call.
    fetch = itemgetter(*keys, "Id")
    if not keys:
        return lambda r: (entity, r["Id"] if id_selected else None, [])
    if not posts:
        if id_selected:
            def plain(r: dict) -> ProjectedRecord:
                values = list(fetch(r))
                return (entity, values.pop(), values)
            return plain
        values_only = itemgetter(*keys) if len(keys) > 1 else None
        if values_only is None:
            only = keys[0]
            return lambda r: (entity, None, [r[only]])
        return lambda r: (entity, None, list(values_only(r)))

    def projector(r: dict) -> ProjectedRecord:
        values = list(fetch(r))
        record_id = values.pop()
        for position, post in posts:
            value = values[position]
            if value is not None:
                values[position] = post(value)
        return (entity, record_id if id_selected else None, values)

    return projector
