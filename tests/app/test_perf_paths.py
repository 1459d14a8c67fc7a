"""The fast paths give what the careful ones give: records to rows by structure (tables, CSV),
the results table's rows built in Python (escaping), and exports traced as summaries.

Each fast path is compared with the careful one it stands in for, on the Salesforce fixtures, on
small envelopes made to hit each case the fast path must notice (empty and blank values, nil and
not, Ids there or not, duplicate columns, compound fields, child subqueries), and on live replies
of the local org.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import requests
from flask import Flask, render_template_string
from lxml import etree

from sfconnect.redaction import mask
from sfconnect.salesforce import records as records_module
from sfconnect.salesforce.records import CsvRows, Table, columns_for
from sfconnect.salesforce.soql import parse_select
from tests.helpers.flow import sign_in
from tests.helpers.learn import leaks, start_capturing_org
from tests.helpers.paths import REPO, RESPONSES
from tests.helpers.records import envelope, parent, rec, records_of


def careful_and_fast(soql: str, records: list) -> None:
    """The table, the columns and the CSV rows and text agree between the two paths."""
    select = parse_select(soql)
    fast = records_module._table(select, records)
    careful = records_module._table(select, records, careful=True)
    assert fast == careful
    columns = columns_for(soql, records)
    fast_rows = [list(row) for row in CsvRows(columns).rows(records)]
    careful_rows = [list(row) for row in CsvRows(columns, careful=True).rows(records)]
    assert fast_rows == careful_rows
    assert csv_text(fast_rows) == csv_text(careful_rows)


def csv_text(rows: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def query_fixtures() -> list[Path]:
    found = []
    for path in sorted(RESPONSES.rglob("*.xml")):
        try:
            records = records_of(path.read_bytes())
        except (etree.XMLSyntaxError, AttributeError, TypeError, IndexError):
            continue
        except Exception:  # noqa: BLE001 - a fault or another operation's reply
            continue
        if records:
            found.append(path)
    return found


FIXTURES = query_fixtures()


def test_there_are_query_fixtures_to_compare_on():
    assert len(FIXTURES) >= 3, FIXTURES


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.name)
@pytest.mark.parametrize("soql", ["not soql at all", "SELECT Id, Name, Account.Name FROM X",
                                  "SELECT Id FROM X"])
def test_fixtures_read_the_same_on_both_paths(path, soql):
    careful_and_fast(soql, records_of(path.read_bytes()))


def test_empty_blank_and_nil_values_keep_their_careful_reading():
    records = envelope(
        rec("Contact", "<sf:Email>a@b.c</sf:Email><sf:Title>CEO</sf:Title>", "0031"),
        rec("Contact", '<sf:Email xsi:nil="true"/><sf:Title></sf:Title>', "0032"),
        rec("Contact", '<sf:Email> </sf:Email><sf:Title xsi:nil="true"> </sf:Title>', "0033"),
        rec("Contact", "<sf:Email>\u00a0</sf:Email><sf:Title>\n</sf:Title>", "0034"))
    soql = "SELECT Id, Email, Title FROM Contact"
    careful_and_fast(soql, records)
    rows = records_module.table_for(soql, records).rows
    assert rows[1][1:] == [None, ""]  # nil is None, an empty element ""
    assert rows[2][1:] == [" ", None]  # blank text stays, a nil one is None
    assert rows[3][1:] == ["\u00a0", "\n"]


def test_an_id_there_or_not_in_records_of_one_structure():
    # Without a SELECT list every field is kept: the record's own Id only when it has a value.
    records = envelope(
        '<records xsi:type="sf:sObject"><sf:type>Lead</sf:type><sf:Id>00Q1</sf:Id>'
        "<sf:Name>A</sf:Name></records>",
        '<records xsi:type="sf:sObject"><sf:type>Lead</sf:type><sf:Id xsi:nil="true"/>'
        "<sf:Name>B</sf:Name></records>")
    careful_and_fast("not soql at all", records)
    assert records_module.table_for("not soql at all", records).rows == [["00Q1", "A"],
                                                                          [None, "B"]]


def test_nil_and_deep_parents_sparse_columns_and_many_slices():
    with_owner = parent("Account", "Account", "<sf:Name>Acme, Inc.</sf:Name>" + parent(
        "Owner", "User", '<sf:Name>Zoë "Z" Müller</sf:Name>'))
    without = '<sf:Account xsi:nil="true"/>'
    bodies = [with_owner, without, parent("Account", "Account", "<sf:Name>B</sf:Name>"
                                           '<sf:Owner xsi:nil="true"/>')]
    records = envelope(*(rec("Contact", bodies[i % 3] + f"<sf:LastName>L{i}\nx</sf:LastName>",
                             f"003{i:04d}") for i in range(173)))
    for soql in ("SELECT Id, Account.Name, Account.Owner.Name, LastName FROM Contact",
                 "SELECT Id, LastName FROM Contact", "not soql at all"):
        careful_and_fast(soql, records)


def test_duplicate_columns_keep_the_last_value_that_is_not_null():
    records = envelope(
        rec("Account", '<sf:Name>A</sf:Name><sf:name xsi:nil="true"/>', "0011"),
        rec("Account", '<sf:Name xsi:nil="true"/><sf:name>b</sf:name>', "0012"))
    careful_and_fast("SELECT Id, Name, name FROM Account", records)
    columns = columns_for("SELECT Id, Name, name FROM Account", records)
    assert [list(row) for row in CsvRows(columns).rows(records)] == [["0011", "A"],
                                                                     ["0012", "b"]]


def test_compound_fields_and_child_subqueries_take_the_careful_path():
    address = ("<sf:MailingAddress><sf:city>Paris</sf:city><sf:country>FR</sf:country>"
               "</sf:MailingAddress>")
    records = envelope(rec("Contact", address, "0031"),
                       rec("Contact", '<sf:MailingAddress xsi:nil="true"/>', "0032"))
    careful_and_fast("SELECT Id, MailingAddress FROM Contact", records)
    assert records_module.table_for("SELECT Id, MailingAddress FROM Contact",
                                    records).rows[0][1] == "Paris, FR"
    children = records_of((RESPONSES / "wrapped" /
                           "palominolabs_subquery_queryResponse_WRAPPED_BY_US.xml").read_bytes())
    careful_and_fast("SELECT Id, Name, (SELECT Id, FirstName FROM Contacts) FROM Account",
                     children)


def test_csv_rows_keep_learning_across_batches():
    soql = "SELECT Id, Account.Name FROM Contact"
    first = envelope(rec("Contact", '<sf:Account xsi:nil="true"/>', "0031"))
    second = envelope(rec("Contact", parent("Account", "Account", "<sf:Name>N</sf:Name>"),
                          "0032"))
    rows = CsvRows(columns_for(soql, first))
    assert [list(r) for r in rows.rows(first)] == [["0031", None]]
    assert [list(r) for r in rows.rows(second)] == [["0032", "N"]]


# -- live replies of the local org -------------------------------------------------------------

@pytest.mark.parametrize("soql", [
    "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact",
    "select id, firstname, account.name, account.owner.name from contact",
    "SELECT Name, Phone, Owner.Name FROM Account",
    "SELECT LeadSource, COUNT(Id), COUNT(Email) n FROM Lead GROUP BY LeadSource",
    "SELECT Name, (SELECT LastName, Email FROM Contacts) FROM Account",
    "SELECT Name, StageName, Amount, Account.Name, Account.Owner.Name FROM Opportunity",
    "SELECT Name, (SELECT Name, Amount FROM Opportunities), Owner.Name FROM Account",
])
def test_live_replies_read_the_same_on_both_paths(live, soql):
    batch = live(soql, batch_size=2000)
    assert batch.records
    careful_and_fast(soql, batch.records)


# -- the results table's rows --------------------------------------------------------------------

class _ByTemplate(Table):
    """A table the template renders cell by cell (its macro's own loop)."""

    def rows_html(self):  # noqa: ANN201
        return None


def render(table: Table) -> str:
    app = Flask(__name__, template_folder=str(REPO / "templates"))
    with app.app_context():
        return render_template_string(
            '{% from "_records_table.html" import records_table %}{{ records_table(t) }}',
            t=table)


TRICKY = ["<script>alert(1)</script>", "Tom & Jerry", 'say "hi"', "O'Brien", "", None,
          "東京 Trading", "a\nb", "&amp; already", "x\x00y", "\x01", "\x02", "</td><td>"]


def test_rows_html_escapes_every_value_like_the_template():
    rows = [[TRICKY[i % len(TRICKY)], TRICKY[(i * 5 + 3) % len(TRICKY)], None]
            for i in range(40)] + [["\x01", None, "plain"]]
    fast = render(Table(["A", "B", "C"], rows))
    slow = render(_ByTemplate(["A", "B", "C"], rows))
    assert fast == slow
    assert "<script>" not in fast and "&lt;script&gt;alert(1)&lt;/script&gt;" in fast
    assert "Tom &amp; Jerry" in fast and "say &#34;hi&#34;" in fast and "O&#39;Brien" in fast
    assert "&amp;amp; already" in fast and "&lt;/td&gt;&lt;td&gt;" in fast
    assert fast.count('<td class="null"></td>') == sum(row.count(None) for row in rows)
    assert fast.count("<tr>") == len(rows) + 1


def test_rows_html_of_plain_values_and_of_live_records(live):
    plain = Table(["A"], [["x"], [None], [""]])
    assert render(plain) == render(_ByTemplate(plain.columns, plain.rows))
    soql = "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact"
    table = records_module.table_for(soql, live(soql, batch_size=2000).records)
    assert render(table) == render(_ByTemplate(table.columns, table.rows))
    assert Table(["A"], []).rows_html() == ""


def test_nested_tables_are_rendered_by_the_template():
    table = Table(["Name", "Contacts"], [["A & B", Table(["LastName"], [["<b>", None]])]])
    assert table.rows_html() is None
    html = render(table)
    assert 'class="records records-nested"' in html and "A &amp; B" in html
    assert "&lt;b&gt;" in html and "<b>" not in html


# -- exports are traced as summaries ----------------------------------------------------------

def test_an_export_traces_its_query_in_full_and_each_query_more_as_a_summary(start_app):
    org, capture = start_capturing_org(contact_count=1200)
    try:
        running = start_app(org)
        http = requests.Session()
        assert sign_in(http, running.url).response.url == running.url + "/"
        soql = "SELECT Id, LastName, Account.Name FROM Contact"
        export = http.get(f"{running.url}/export.csv", params={"q": soql, "batch": 200})
        assert export.status_code == 200
        assert len(export.text.splitlines()) == 1 + 1200
        har = http.get(f"{running.url}/flow.har")
    finally:
        org.server.shutdown()
    soap = [entry for entry in har.json()["log"]["entries"] if "/services/Soap/" in
            entry["request"]["url"]]
    assert len(soap) == 6  # query, then 5 queryMore of 200 records
    query, more = soap[0], soap[1:]
    assert "<queryResponse" in query["response"]["content"]["text"]
    for entry in more:
        assert "queryMore" in entry["request"]["postData"]["text"]
        assert entry["response"]["content"]["text"] == ""
        assert entry["response"]["content"]["size"] > 10_000
        assert "queryMore batch of an export" in entry["comment"]
        assert entry["response"]["status"] == 200
    tokens = capture.kinds["access_token"]
    assert any(mask(token) in more[0]["request"]["postData"]["text"] for token in tokens)
    assert leaks(har.text, capture.secrets | {running.client.client_secret}) == []
    assert json.loads(har.text)  # still a HAR document

