"""Partner API records (lxml `records` elements) read the careful way: one pass over each
record's elements, in document order, to flat (path, value) pairs.

A record element is `<records xsi:type="sf:sObject">` holding `type`, `Id` (twice when the SELECT
list names Id: once for the sObject's own Id, once among the fields; once and nil when it does not),
then one element per selected field in SELECT order. A parent relationship is a nested sObject
(`<sf:Account xsi:type="sf:sObject">`, nil when the lookup is empty), a child subquery a nested
QueryResult (`<sf:Contacts xsi:type="QueryResult">`, nil when there are no children), a nil field
`xsi:nil="true"`. Aggregate values carry `xsi:type` (`xsd:int`, `xsd:double` ...).
sfconnect.salesforce.fastpath reads most records faster and must give what this gives."""
from __future__ import annotations

from collections.abc import Iterator

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_NIL = f"{{{XSI}}}nil"
XSI_TYPE = f"{{{XSI}}}type"


# --------------------------------------------------------------------------------------------
# Records to flat fields: one pass over each record's elements, in document order.
# Speed matters (2,000 records a batch): tag names are cached, a value is told from a
# relationship by its text first (an element with text is a field), and the column placement of
# a record is computed once per distinct field layout, which is usually one per query.

TAG_NAMES: dict[str, str] = {}  # "{urn:sobject...}FirstName" -> "FirstName"


def local_name(tag: str) -> str:
    return tag[tag.index("}") + 1:] if tag[0] == "{" else tag


def field_name(tag: str) -> str:
    name = TAG_NAMES.get(tag)
    if name is None:
        name = local_name(tag)
        if len(TAG_NAMES) < 10_000:
            TAG_NAMES[tag] = name
    return name


def is_nil(element) -> bool:  # noqa: ANN001 - lxml element
    nil = element.get(XSI_NIL)
    return nil == "true" or nil == "1"


class Child:
    """A child subquery's QueryResult element, kept for a nested table or JSON."""

    __slots__ = ("element",)

    def __init__(self, element) -> None:  # noqa: ANN001
        self.element = element


def kind_of(element) -> str:  # noqa: ANN001
    """'field', 'parent' (nested sObject), 'child' (nested QueryResult) or 'compound'."""
    for part in element:
        if isinstance(part.tag, str):
            first = field_name(part.tag)
            return "parent" if first == "type" else "child" if first == "done" else "compound"
    return "field"


def named_elements(record) -> Iterator[tuple[object, str]]:  # noqa: ANN001 - an lxml element
    """Each child element of `record` with its field name, comments left out (one lookup in the
    name cache per element)."""
    for element in record:
        tag = element.tag
        name = TAG_NAMES.get(tag) if isinstance(tag, str) else ""
        if name is None:
            name = field_name(tag)
        elif not name:
            continue  # a comment
        yield element, name


def flatten(record, prefix: str, paths: list, values: list,  # noqa: ANN001
             wanted: set[str] | None, elements: list | None = None) -> None:
    """Append each field's dotted path and value (str, None or Child) in document order.

    `wanted` holds the lowercased paths asked for (None: all). An Id element that appears once
    is kept only when asked for: the API sends the sObject's own Id (nil when not selected) and
    again among the fields when selected.
    """
    first = True
    ids = 0
    for element, name in named_elements(record):
        if first:
            first = False
            if name == "type":
                continue
        text = element.text
        if name == "Id":
            ids += 1
            if ids > 1 or text is None or not (wanted is None or (prefix + "id").lower() in wanted
                                               or id_twice(record)):
                continue
        if text and not (text[0] in " \n\r\t" and text.isspace()):
            paths.append(prefix + name if prefix else name)
            values.append(text)
            if elements is not None:
                elements.append(element)
            continue
        kind = kind_of(element)
        if kind == "field":
            paths.append(prefix + name if prefix else name)
            values.append(None if is_nil(element) else text or "")
        elif kind == "parent":
            flatten(element, (prefix + name if prefix else name) + ".", paths, values, wanted,
                     elements)
            continue
        elif kind == "child":
            paths.append(prefix + name if prefix else name)
            values.append(Child(element))
        else:
            paths.append(prefix + name if prefix else name)
            values.append(_compound_text(element))
        if elements is not None:
            # A value read from the element's text can take the fast path; others cannot.
            elements.append(element if kind == "field" else None)


def id_twice(record) -> bool:  # noqa: ANN001
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


def child_records(element) -> list:  # noqa: ANN001
    return [r for r in element if isinstance(r.tag, str) and field_name(r.tag) == "records"]
