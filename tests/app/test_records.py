"""Records to rows: columns from the SELECT list and all records, REST shapes, CSV, the table.

Real Salesforce replies from the fixtures, shapes Salesforce documents but no public capture holds
(deep parents, aggregates, sparse fields) as small envelopes, and the local org's live replies.
"""
from __future__ import annotations

import json

from flask import Flask, render_template_string

from sfconnect.salesforce.records import (
    Table,
    columns_for,
    csv_row,
    csv_rows,
    rest_record,
    table_for,
)
from tests.helpers.paths import REPO
from tests.helpers.records import envelope, parent, rec, recorded

# -- table_for ---------------------------------------------------------------------------------

def test_duplicate_id_is_one_column_and_names_take_the_reply_casing():
    table = table_for("select id, NAME from contact", recorded("www-salesforce_query_contacts.xml"))
    assert table.columns == ["Id", "Name"]
    assert table.rows == [["0BXBXBXBXBXcvhDAAR", "FooBar Homer"],
                          ["00ACACACACACAC0AAO", "BazQux Simpson"]]


def test_parent_field_is_a_dotted_column_and_nil_is_none():
    records = recorded("salesforce-python-toolkit_queryAll_contact_with_account_partner.xml")
    table = table_for("SELECT Account.Name, FirstName, LastName FROM Contact", records)
    assert table.columns == ["Account.Name", "FirstName", "LastName"]
    assert table.rows == [["Unknown", None, "Administrator"]]


def test_child_subqueries_are_nested_tables_and_empty_children_none():
    records = recorded("wrapped/palominolabs_subquery_queryResponse_WRAPPED_BY_US.xml")
    soql = ("SELECT Id, Name, AnnualRevenue, (SELECT Id, FirstName, Email FROM Contacts), "
            "(SELECT Subject FROM Tasks), (SELECT Id, Subject FROM Cases) FROM Account")
    table = table_for(soql, records)
    assert table.columns == ["Id", "Name", "AnnualRevenue", "Contacts", "Tasks", "Cases"]
    row = table.rows[0]
    assert row[:3] == ["0015000000WWD7bAAH", "United Oil & Gas, Singapore", None]
    contacts, tasks, cases = row[3], row[4], row[5]
    assert isinstance(contacts, Table) and contacts.columns == ["Id", "FirstName", "Email"]
    assert contacts.rows == [["0035000000km1owAAA", "Liz", "ldcruz@uog.com"],
                             ["0035000000km1ovAAA", "Tom", "tripley@uog.com"]]
    assert tasks is None
    assert [r[1] for r in cases.rows][0] == "Maintenance guidelines for generator unclear"


def test_deep_parent_paths_and_nil_parent_keep_their_columns():
    records = envelope(
        rec("Contact", "<sf:LastName>Ng</sf:LastName>" + parent(
            "Account", "Account", "<sf:Name>Acme</sf:Name>" + parent(
                "Owner", "User", "<sf:Name>Ada Admin</sf:Name>"))),
        rec("Contact", '<sf:LastName>Solo</sf:LastName><sf:Account xsi:nil="true"/>'),
    )
    table = table_for("SELECT LastName, Account.Name, Account.Owner.Name FROM Contact", records)
    assert table.columns == ["LastName", "Account.Name", "Account.Owner.Name"]
    assert table.rows == [["Ng", "Acme", "Ada Admin"], ["Solo", None, None]]


def test_sparse_field_gets_its_own_column_even_when_the_first_record_lacks_it():
    # Workbench's issue 199: columns taken from the first record put values in the wrong column.
    records = envelope(
        rec("Contact", "<sf:LastName>A</sf:LastName>"),
        rec("Contact", "<sf:LastName>B</sf:LastName><sf:Title>CEO</sf:Title>"),
        rec("Contact", "<sf:LastName>C</sf:LastName>"),
    )
    table = table_for("SELECT LastName FROM Contact", records)
    assert table.columns == ["LastName", "Title"]
    assert table.rows == [["A", None], ["B", "CEO"], ["C", None]]


def test_aggregates_by_alias_and_expr_numbering():
    records = envelope(rec(
        "AggregateResult",
        '<sf:LeadSource>Web</sf:LeadSource><sf:expr0 xsi:type="xsd:int">12</sf:expr0>'
        '<sf:total xsi:type="xsd:double">1200.5</sf:total>'
        '<sf:expr1 xsi:type="xsd:int">3</sf:expr1>'))
    soql = ("SELECT LeadSource, COUNT(Id), SUM(AnnualRevenue) total, COUNT_DISTINCT(Email) "
            "FROM Lead GROUP BY LeadSource")
    table = table_for(soql, records)
    assert table.columns == ["LeadSource", "expr0", "total", "expr1"]
    assert table.rows == [["Web", "12", "1200.5", "3"]]
    assert rest_record(records[0]) == {"attributes": {"type": "AggregateResult"},
                                       "LeadSource": "Web", "expr0": 12, "total": 1200.5,
                                       "expr1": 3}


def test_grouped_parent_field_is_named_by_its_own_name():
    records = envelope(rec("AggregateResult", '<sf:Name>Acme</sf:Name>'
                                              '<sf:expr0 xsi:type="xsd:int">4</sf:expr0>'))
    table = table_for("SELECT Account.Name, COUNT(Id) FROM Contact GROUP BY Account.Name", records)
    assert table.columns == ["Name", "expr0"]


def test_count_only_shows_its_number():
    assert table_for("SELECT COUNT() FROM Contact", [], size=250) == Table(["COUNT()"], [["250"]])
    assert columns_for("select count() from Contact", []) == ["COUNT()"]


def test_select_list_columns_exist_without_records_and_functions_keep_field_names():
    table = table_for("SELECT c.FirstName, toLabel(LeadSource), Account.Name FROM Contact c "
                      "WHERE LastName = 'FROM, x'", [])
    assert table.columns == ["FirstName", "LeadSource", "Account.Name"]
    assert table.rows == []


def test_unparseable_soql_still_shows_every_field():
    records = recorded("www-salesforce_query_contacts.xml")
    assert table_for("not soql at all", records).columns == ["Id", "Name"]


# -- rest_record and CSV ---------------------------------------------------------------------

def test_rest_record_shapes_parents_children_and_nil():
    records = recorded("wrapped/palominolabs_subquery_queryResponse_WRAPPED_BY_US.xml")
    record = rest_record(records[0])
    assert record["attributes"] == {"type": "Account"}
    assert record["Id"] == "0015000000WWD7bAAH"
    assert record["AnnualRevenue"] is None
    assert record["Tasks"] is None
    assert record["Contacts"]["totalSize"] == 2 and record["Contacts"]["done"] is True
    assert record["Contacts"]["records"][0] == {
        "attributes": {"type": "Contact"}, "Id": "0035000000km1owAAA", "FirstName": "Liz",
        "Email": "ldcruz@uog.com"}
    contact = rest_record(recorded(
        "salesforce-python-toolkit_queryAll_contact_with_account_partner.xml")[0])
    assert contact == {"attributes": {"type": "Contact"},
                       "Account": {"attributes": {"type": "Account"}, "Name": "Unknown"},
                       "FirstName": None, "LastName": "Administrator"}
    nil_parent = rest_record(envelope(rec("Contact", '<sf:Account xsi:nil="true"/>'))[0])
    assert nil_parent["Account"] is None


def test_csv_rows_flatten_parents_and_render_children_as_json():
    records = recorded("wrapped/palominolabs_subquery_queryResponse_WRAPPED_BY_US.xml")
    soql = ("SELECT Id, Name, AnnualRevenue, (SELECT Id, FirstName, Email FROM Contacts), "
            "(SELECT Subject FROM Tasks), (SELECT Id, Subject FROM Cases) FROM Account")
    columns = columns_for(soql, records)
    assert columns == ["Id", "Name", "AnnualRevenue", "Contacts", "Tasks", "Cases"]
    row = csv_row(columns, records[0])
    assert list(row[:3]) == ["0015000000WWD7bAAH", "United Oil & Gas, Singapore", None]
    assert [c["FirstName"] for c in json.loads(row[3])] == ["Liz", "Tom"]
    assert row[4] is None  # no children: an empty cell
    deep = envelope(rec("Contact", parent("Account", "Account", parent(
        "Owner", "User", "<sf:Name>Zoë Müller</sf:Name>"))))
    assert [list(r) for r in csv_rows(["Account.Owner.Name", "Missing"], deep)] == [
        ["Zoë Müller", None]]


# -- the template -------------------------------------------------------------------------------

def test_template_escapes_values_and_nests_tables():
    app = Flask(__name__, template_folder=str(REPO / "templates"))
    table = Table(["Name", "Contacts", "Title"], [
        ["O'Brien & Sons <Ltd>", Table(["LastName"], [["<script>x</script>"]]), None]])
    with app.app_context():
        html = render_template_string(
            '{% from "_records_table.html" import records_table %}{{ records_table(t) }}', t=table)
    assert "O&#39;Brien &amp; Sons &lt;Ltd&gt;" in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'class="records records-nested"' in html and 'class="records"' in html
    assert "None" not in html


# -- the local org, live ----------------------------------------------------------------------

def test_live_parent_child_and_casing(live):
    batch = live("select id, firstname, account.name, account.owner.name from contact limit 50")
    table = table_for("select id, firstname, account.name, account.owner.name from contact",
                      batch.records)
    assert table.columns == ["Id", "FirstName", "Account.Name", "Account.Owner.Name"]
    assert len(table.rows) == 50
    assert any(row[2] is None for row in table.rows)  # contacts without an account
    assert any(row[3] for row in table.rows)
    soql = "SELECT Name, (SELECT LastName FROM Contacts) FROM Account LIMIT 10"
    nested = table_for(soql, live(soql).records)
    assert nested.columns == ["Name", "Contacts"]
    assert any(isinstance(row[1], Table) and row[1].columns == ["LastName"]
               for row in nested.rows)


def test_live_aggregate_and_count(live):
    soql = "SELECT LeadSource, COUNT(Id), COUNT(Email) n FROM Lead GROUP BY LeadSource"
    table = table_for(soql, live(soql).records)
    assert table.columns == ["LeadSource", "expr0", "n"]
    assert sum(int(row[1]) for row in table.rows) > 0
    batch = live("SELECT COUNT() FROM Contact")
    assert table_for("SELECT COUNT() FROM Contact", batch.records, size=batch.size).rows == [
        [str(batch.size)]]
