"""Exports stream: records leave as each queryMore batch arrives, and a client that goes away stops
the queryMore loop. Read incrementally over real HTTP; the local org's counters say how many
batches the app had fetched at each moment, and the export's thread (the app runs in this
process) says when its loop has ended."""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests.helpers.app import export_threads
from tests.helpers.org import counters, module_org
from tests.helpers.wait import until

CONTACTS = 20_000
BATCH = 200


org = module_org(CONTACTS)
# Every test is connected to it.
pytestmark = pytest.mark.parametrize("connected", ["org"], indirect=True)


def query_more_calls(org) -> int:
    return counters(org).get("soap.queryMore", 0)


def ended(loops) -> None:
    """Wait until the export loops `loops` have ended (a loop in flight finishes its call)."""
    until(lambda: not any(loop.is_alive() for loop in loops),
          message="an export's queryMore loop did not end")


def live(org) -> int:
    return sum(1 for r in org.state.data.records("Contact") if not r.get("IsDeleted"))


SOQL = "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact"


def test_csv_first_record_arrives_before_the_last_batch_is_fetched(connected, org):
    app, browser = connected
    batches = -(-live(org) // BATCH)
    before = query_more_calls(org)
    with browser.get(f"{app.url}/export.csv", params={"q": SOQL, "batch": BATCH},
                     stream=True) as response:
        assert response.status_code == 200
        assert response.headers["X-Total-Size"] == str(live(org))
        lines = response.iter_lines(decode_unicode=True)
        assert next(lines) == "Id,FirstName,LastName,Email,Phone,Account.Name"
        first = next(lines)
        fetched_at_first_record = query_more_calls(org) - before
        assert first.startswith("003")
        assert fetched_at_first_record < batches - 1  # the last batch is still to come
        rest = sum(1 for line in lines if line)
    assert rest + 1 == live(org)
    assert query_more_calls(org) - before == batches - 1


def test_json_first_record_arrives_before_the_last_batch_is_fetched(connected, org):
    app, browser = connected
    batches = -(-live(org) // BATCH)
    before = query_more_calls(org)
    with browser.get(f"{app.url}/export.json", params={"q": SOQL, "batch": BATCH},
                     stream=True) as response:
        assert response.status_code == 200
        received = b""
        chunks = response.iter_content(chunk_size=None)
        while b'"attributes"' not in received:
            received += next(chunks)
        assert query_more_calls(org) - before < batches - 1
        received += b"".join(chunks)
    body = json.loads(received)
    assert body["totalSize"] == len(body["records"]) == live(org)


def test_closing_the_download_stops_the_query_more_loop(connected, org):
    app, browser = connected
    batches = -(-live(org) // BATCH)
    ended(export_threads())  # the loops of earlier exports, if any
    before = query_more_calls(org)
    response = browser.get(f"{app.url}/export.csv", params={"q": SOQL, "batch": BATCH},
                           stream=True)
    lines = response.iter_lines()
    next(lines), next(lines)  # the header and a first record
    loops = export_threads()
    assert loops  # this export's, with most of its batches to go
    response.close()  # the browser goes away (Cancel, or a closed tab)
    ended(loops)
    stopped_at = query_more_calls(org) - before
    assert stopped_at < batches - 1
    # and it stays stopped: the loop has ended, nothing is left to ask for a batch
    assert query_more_calls(org) - before == stopped_at


def test_a_2500_record_export_pages_through_query_more(connected, org):
    app, browser = connected
    soql = "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact LIMIT 2500"
    before = query_more_calls(org)
    response = browser.get(f"{app.url}/export.csv", params={"q": soql, "batch": BATCH})
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == ["Id", "LastName", "Account.Name", "Account.Owner.Name"]
    assert len(rows) - 1 == 2500 == len({row[0] for row in rows[1:]})
    assert query_more_calls(org) - before == 2500 // BATCH  # 13 batches: query + 12 queryMore
    assert any(row[3] for row in rows[1:])  # parents two levels up are flattened

    body = browser.get(f"{app.url}/export.json", params={"q": soql, "batch": 1000}).json()
    assert body["totalSize"] == len(body["records"]) == 2500
    with_account = next(r for r in body["records"] if r["Account"])
    assert set(with_account["Account"]["Owner"]) == {"attributes", "Name"}


def test_csv_says_child_subqueries_are_json(connected):
    app, browser = connected
    soql = "SELECT Name, (SELECT LastName, Email FROM Contacts) FROM Account ORDER BY Name"
    response = browser.get(f"{app.url}/export.csv", params={"q": soql})
    assert response.headers["Content-Disposition"].startswith('attachment; filename="Account-')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == ["Name", "Contacts (JSON)"]
    children = [json.loads(row[1]) for row in rows[1:] if row[1]]
    assert children and all(isinstance(c, list) for c in children)
    assert set(children[0][0]) == {"attributes", "LastName", "Email"}
