"""The fast path of reading records: what sfconnect.salesforce.reading gives, record for record,
for most queries at a fraction of the cost (tests/app/test_perf_paths.py compares the two).
Why it is shaped this way: docs/performance.md."""
from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter

from sfconnect.salesforce.reading import field_name, flatten, is_nil

# --------------------------------------------------------------------------------------------
# The fast path. Most queries give every record the same structure, and every value is the text
# of one element. So records are grouped by their structure (the tags of all their elements, in
# document order): the first record of a structure is flattened the careful way (reading), which
# says which element holds each field's value, and every other record of that structure is read by
# position with an itemgetter, in C. The result is what `flatten` gives, record for record:
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
        flatten(record, "", paths, values, wanted, found)
        self.key = tuple(map(_TAG, elements))
        self.layout = tuple(paths)
        position = {id(element): i for i, element in enumerate(elements)}
        self.positions = [position.get(id(element), -1) if element is not None else -1
                          for element in found]
        self.fields = _picker(self.positions)
        # Whether a record's Id is kept depends on its text being there (see flatten): the
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
    return element is not None and isinstance(element.tag, str) and field_name(element.tag) == "Id"


class Reader:
    """Records to what `flatten` gives, (layout, values) per record, on the fast path; the
    structures learnt are kept for the next call (the next batch of the same query)."""

    def __init__(self, wanted: set[str] | None) -> None:
        self.wanted = wanted
        self._structures: dict[tuple, _Structure | None] = {}

    def read(self, records: Sequence) -> list[tuple[tuple, tuple | list]] | None:
        """(layout, values) per record, as `flatten` gives them; None when the records hold
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
                append(read_carefully(record, wanted))
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
            if not is_nil(elements[i]):
                settled[i] = ""
        elif text[0] in _BLANK_START and text.isspace() and is_nil(elements[i]):
            settled[i] = None
    return settled


def read_carefully(record, wanted: set[str] | None) -> tuple[tuple, list]:  # noqa: ANN001
    paths: list = []
    values: list = []
    flatten(record, "", paths, values, wanted)
    return tuple(paths), values


def one_field_a_column(placement: list[int]) -> bool:
    shown = [column for column in placement if column >= 0]
    return len(shown) == len(set(shown))


def row_getter(placement: list[int], width: int, count: int):  # noqa: ANN202
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
