"""SOQL of the local org: parsing, faults with Salesforce's exact texts, execution, projection."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devorg.config import OrgConfig
from devorg.data import OrgData
from devorg.soql import (
    AggregateItem,
    ChildItem,
    FieldItem,
    ParentItem,
    QueryRun,
    Shape,
    SoqlError,
    double_text,
    project,
    run_query,
)

FIXTURES = Path("/work/shared/fixtures/salesforce/responses")


@pytest.fixture(scope="module")
def data() -> OrgData:
    return OrgData.seed(OrgConfig())


def q(data: OrgData, soql: str, **kw) -> QueryRun:
    return run_query(data, soql, **kw)


def rows(data: OrgData, soql: str, **kw) -> list:
    run = run_query(data, soql, **kw)
    return project(run, 0, run.total_size)


def fault(data: OrgData, soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as info:
        run_query(data, soql)
    return info.value


def live(data: OrgData, name: str) -> list[dict]:
    return [r for r in data.records(name) if not r.get("IsDeleted")]


# --- faults: the texts recorded from a live org ----------------------------------------------

def live_faults() -> list[dict]:
    recorded = json.loads((FIXTURES / "fault_message_texts_from_live_tests.json").read_text())
    return [f for f in recorded["faults"] if "query" in f]


@pytest.mark.parametrize("recorded", live_faults(), ids=lambda f: f["exceptionCode"])
def test_faults_match_the_live_org_texts_exactly(data: OrgData, recorded: dict) -> None:
    error = fault(data, recorded["query"])
    assert error.code == recorded["exceptionCode"]
    assert error.message == recorded["exceptionMessage"]
    row, column = error.message.split("ERROR at Row:")[1].split("\n")[0].split(":Column:")
    assert (error.row, error.column) == (int(row), int(column))


def test_invalid_field_fault_matches_the_raw_fault_fixture(data: OrgData) -> None:
    # www-salesforce_fault_INVALID_FIELD.xml: the one raw fault envelope we have.
    error = fault(data, "select adfId, Name, Account.Name from Contact")
    assert error.code == "INVALID_FIELD"
    assert error.message == (
        "\nselect adfId, Name, Account.Name from Contact\n       ^\nERROR at Row:1:Column:8\n"
        "No such column 'adfId' on entity 'Contact'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names.")
    assert (error.row, error.column) == (1, 8)


def test_unknown_child_relationship_is_invalid_type(data: OrgData) -> None:
    error = fault(data, "SELECT Name, (SELECT LastName FROM Kontakts) FROM Account")
    assert error.code == "INVALID_TYPE"
    assert error.message == (
        "\nSELECT Name, (SELECT LastName FROM Kontakts) FROM Account\n"
        + " " * 35 + "^\nERROR at Row:1:Column:36\n"
        "Didn't understand relationship 'Kontakts' in FROM part of query call. If you are "
        "attempting to use a custom relationship, be sure to append the '__r' after the custom "
        "relationship name. Please reference your WSDL or the describe call for the "
        "appropriate names.")


def test_ungrouped_field_with_aggregate(data: OrgData) -> None:
    error = fault(data, "SELECT Name, COUNT(Id) FROM Contact")
    assert error.code == "MALFORMED_QUERY"
    assert error.message.endswith(
        "\nERROR at Row:1:Column:8\nField must be grouped or aggregated: Name")
    error = fault(data, "SELECT LeadSource, Name FROM Lead GROUP BY LeadSource")
    assert error.message.endswith("Field must be grouped or aggregated: Name")


@pytest.mark.parametrize(("soql", "code", "text"), [
    ("SELECT FROM Contact", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
    ("SELECT Id Contact", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
    ("", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
    ("SELECT Id FROM Contact WHERE Name = 'a' AND Name = 'b' OR Name = 'c'", "MALFORMED_QUERY",
     "unexpected token: 'OR'"),
    ("SELECT Id FROM Contact #", "MALFORMED_QUERY",
     "line 1:23 no viable alternative at character '#'"),
    ("SELECT Id FROM Contact LIMIT 1.5", "MALFORMED_QUERY", "unexpected token: '1.5'"),
    ("SELECT Account.Asdf FROM Contact", "INVALID_FIELD", "No such column 'Asdf' on entity "
     "'Account'. If you are attempting to use a custom field, be sure to append the '__c' "
     "after the custom field name. Please reference your WSDL or the describe call for the "
     "appropriate names."),
    ("SELECT Foo.Name FROM Contact", "INVALID_FIELD", "Didn't understand relationship 'Foo' in "
     "field path. If you are attempting to use a custom relationship, be sure to append the "
     "'__r' after the custom relationship name. Please reference your WSDL or the describe "
     "call for the appropriate names."),
    ("SELECT Id FROM Contact WHERE Name = 5", "INVALID_FIELD", "value of filter criterion "
     "for field 'Name' must be of type string and should be enclosed in quotes"),
    ("SELECT Id FROM Account WHERE AnnualRevenue = '5'", "INVALID_FIELD", "value of filter "
     "criterion for field 'AnnualRevenue' must be of type double and should not be enclosed "
     "in quotes"),
    ("SELECT Id FROM Contact WHERE CreatedDate > 2024-01-01", "INVALID_FIELD", "value of "
     "filter criterion for field 'CreatedDate' must be of type dateTime and should not be "
     "enclosed in quotes"),
    ("SELECT Id FROM Contact WHERE AccountId IN ('001000000000000AAA', 'nope')",
     "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: nope"),
    ("SELECT Id FROM Contact WHERE Description = 'x'", "INVALID_FIELD",
     "field 'Description' can not be filtered in a query call"),
    ("SELECT Name n FROM Contact", "MALFORMED_QUERY",
     "Only aggregate expressions use field aliasing"),
    ("SELECT Name, name FROM Contact", "MALFORMED_QUERY", "duplicate field selected: Name"),
    ("SELECT SUM(Name) FROM Contact", "INVALID_FIELD",
     "field Name does not support aggregate operator SUM"),
    ("SELECT Amount FROM Opportunity GROUP BY Amount", "INVALID_FIELD",
     "field 'Amount' can not be grouped in a query call"),
    ("SELECT LeadSource FROM Lead GROUP BY LeadSource ORDER BY Name", "MALFORMED_QUERY",
     "Ordered field must be grouped or aggregated: Name"),
    ("SELECT Id FROM Contact WHERE Name = 'a\\qb'", "MALFORMED_QUERY",
     "Invalid string literal 'a\\qb'. Illegal character sequence '\\q' in string literal."),
    ("SELECT Id FROM Contact WHERE CreatedDate = NOT_A_DATE", "MALFORMED_QUERY",
     "unexpected token: 'NOT_A_DATE'"),
    ("SELECT Id, (SELECT Id, (SELECT Id FROM Contacts) FROM Contacts) FROM Account",
     "MALFORMED_QUERY", "unexpected token: '('"),
])
def test_faults(data: OrgData, soql: str, code: str, text: str) -> None:
    error = fault(data, soql)
    assert error.code == code
    assert error.message.endswith("\n" + text)
    lines = error.message.split("\n")
    assert lines[0] == "" and lines[3] == f"ERROR at Row:{error.row}:Column:{error.column}"
    assert lines[2] == " " * (error.column - 1) + "^"


def test_fault_on_a_later_line_points_at_that_line(data: OrgData) -> None:
    error = fault(data, "SELECT Id\nFROM Contact\nWHERE Asdf = 'x'")
    assert (error.row, error.column) == (3, 7)
    assert error.message.startswith("\nWHERE Asdf = 'x'\n      ^\nERROR at Row:3:Column:7\n")


def test_offset_above_2000(data: OrgData) -> None:
    error = fault(data, "SELECT Id FROM Contact OFFSET 2001")
    assert (error.code, error.message) == ("NUMBER_OUTSIDE_VALID_RANGE",
                                           "Maximum SOQL offset allowed is 2000")


# --- SELECT, shapes and projection ------------------------------------------------------------

def test_fields_are_canonicalised_and_keywords_case_insensitive(data: OrgData) -> None:
    run = q(data, "select id, firstname, LASTNAME from contact limit 2")
    assert run.shape == Shape("Contact", True, [FieldItem("FirstName", "xsd:string"),
                                                FieldItem("LastName", "xsd:string")])
    first = live(data, "Contact")[0]
    assert project(run, 0, 1) == [("Contact", first["Id"], [first["FirstName"],
                                                              first["LastName"]])]
    assert run.total_size == 2 and not run.count_only


def test_object_name_may_prefix_its_own_fields(data: OrgData) -> None:
    run = q(data, "SELECT Account.Name FROM Account LIMIT 1")
    assert run.shape.items == [FieldItem("Name", "xsd:string")]


def test_id_not_selected_gives_no_record_id(data: OrgData) -> None:
    run = q(data, "SELECT Name FROM Account LIMIT 1")
    assert run.shape.id_selected is False
    assert project(run, 0, 1)[0][1] is None


def test_parent_fields_are_grouped_and_nested(data: OrgData) -> None:
    run = q(data, "SELECT Account.Name, FirstName, Account.Owner.Name, Account.Id, Owner.Email "
                  "FROM Contact WHERE AccountId != null LIMIT 5")
    owner_shape = Shape("User", False, [FieldItem("Name", "xsd:string")])
    assert run.shape == Shape("Contact", False, [
        ParentItem("Account", Shape("Account", True, [FieldItem("Name", "xsd:string"),
                                                      ParentItem("Owner", owner_shape)])),
        FieldItem("FirstName", "xsd:string"),
        ParentItem("Owner", Shape("User", False, [FieldItem("Email", "xsd:string")])),
    ])
    contact = next(c for c in live(data, "Contact") if c["AccountId"])
    account = data.index("Account")[contact["AccountId"]]
    account_owner = data.user_by_id(account["OwnerId"])
    owner = data.user_by_id(contact["OwnerId"])
    assert project(run, 0, 1)[0] == ("Contact", None, [
        ("Account", account["Id"], [account["Name"], ("User", None, [account_owner["Name"]])]),
        contact["FirstName"],
        ("User", None, [owner["Email"]]),
    ])


def test_empty_lookup_projects_as_none(data: OrgData) -> None:
    run = q(data, "SELECT Name, Account.Name FROM Contact WHERE AccountId = null")
    assert run.total_size == sum(1 for c in live(data, "Contact") if c["AccountId"] is None) > 0
    assert all(values[1] is None for _, _, values in project(run, 0, run.total_size))


def test_child_subquery(data: OrgData) -> None:
    run = q(data, "SELECT Id, Name, (SELECT Id, LastName FROM Contacts WHERE LastName != null "
                  "ORDER BY LastName LIMIT 3) FROM Account")
    assert run.shape == Shape("Account", True, [
        FieldItem("Name", "xsd:string"),
        ChildItem("Contacts", Shape("Contact", True, [FieldItem("LastName", "xsd:string")]))])
    by_account: dict[str, list[dict]] = {}
    for c in live(data, "Contact"):
        by_account.setdefault(c["AccountId"], []).append(c)
    saw_children = saw_none = False
    for entity, account_id, (name, children) in project(run, 0, run.total_size):
        assert entity == "Account" and name == data.index("Account")[account_id]["Name"]
        expected = sorted(by_account.get(account_id, []), key=lambda c: c["LastName"].casefold())
        if not expected:
            assert children is None
            saw_none = True
            continue
        saw_children = True
        assert len(children) == min(3, len(expected))
        assert [c[2][0].casefold() for c in children] == [
            c["LastName"].casefold() for c in expected[:3]]
        assert all(c[0] == "Contact" and c[1] is not None for c in children)
    assert saw_children
    assert saw_none or all(by_account.get(a["Id"]) for a in live(data, "Account"))


def test_soap_text_forms(data: OrgData) -> None:
    run = q(data, "SELECT Name, AnnualRevenue, NumberOfEmployees, CreatedDate FROM Account "
                  "WHERE AnnualRevenue != null AND NumberOfEmployees != null LIMIT 1")
    assert [i.soap_type for i in run.shape.items] == ["xsd:string", "xsd:double", "xsd:int",
                                                      "xsd:dateTime"]
    account = next(a for a in live(data, "Account")
                   if a["AnnualRevenue"] is not None and a["NumberOfEmployees"] is not None)
    values = project(run, 0, 1)[0][2]
    assert values[1] == double_text(account["AnnualRevenue"])
    assert values[2] == str(account["NumberOfEmployees"])
    assert values[3] == account["CreatedDate"].strftime("%Y-%m-%dT%H:%M:%S.000Z")
    run = q(data, "SELECT HasOptedOutOfEmail, Birthdate FROM Contact WHERE Birthdate != null "
                  "LIMIT 5")
    for _, _, (opted, born) in project(run, 0, 5):
        assert opted in ("true", "false")
        assert datetime.strptime(born, "%Y-%m-%d")


def test_double_text_is_java_like() -> None:
    assert double_text(1200000.0) == "1200000.0"
    assert double_text(5) == "5.0"
    assert double_text(12_000_000) == "1.2E7"
    assert double_text(350_000_000.0) == "3.5E8"
    assert double_text(0.0) == "0.0"
    assert double_text(-2.5) == "-2.5"


# --- WHERE -----------------------------------------------------------------------------------

def names(data: OrgData, soql: str) -> list[str]:
    return [values[0] for _, _, values in rows(data, soql)]


def test_string_equality_is_case_insensitive(data: OrgData) -> None:
    want = sorted(c["Name"] for c in live(data, "Contact") if c["LastName"] == "Müller")
    assert want
    assert sorted(names(data, "SELECT Name FROM Contact WHERE LastName = 'MÜLLER'")) == want
    assert sorted(names(data, "SELECT Name FROM Contact WHERE LastName IN ('müller')")) == want


def test_escapes_in_string_literals(data: OrgData) -> None:
    assert names(data, "SELECT Name FROM Account WHERE Name = 'O\\'Brien & Sons <Ltd>'") == [
        "O'Brien & Sons <Ltd>"]
    assert names(data, "SELECT Name FROM Account WHERE Name = '\\\"Quoted\\\" Industries'") == [
        '"Quoted" Industries']


def test_like(data: OrgData) -> None:
    contacts = live(data, "Contact")
    assert sorted(names(data, "SELECT LastName FROM Contact WHERE LastName LIKE 'm_ller'")) == \
        sorted(c["LastName"] for c in contacts if c["LastName"] == "Müller")
    assert sorted(names(data, "SELECT Name FROM Contact WHERE Name LIKE '%o\\'b%'")) == sorted(
        c["Name"] for c in contacts if "o'b" in c["Name"].lower())
    assert names(data, "SELECT Name FROM Account WHERE Name LIKE '100\\%'") == []


def test_null_and_not_equal_semantics(data: OrgData) -> None:
    contacts = live(data, "Contact")
    assert q(data, "SELECT Id FROM Contact WHERE Email = null").total_size == sum(
        1 for c in contacts if c["Email"] is None)
    # SOQL's != keeps the nulls (unlike SQL).
    assert q(data, "SELECT Id FROM Contact WHERE LeadSource != 'Web'").total_size == sum(
        1 for c in contacts if c["LeadSource"] != "Web")
    assert q(data, "SELECT Id FROM Contact WHERE LeadSource NOT IN ('Web', 'Other')"
             ).total_size == sum(1 for c in contacts if c["LeadSource"] not in ("Web", "Other"))


def test_and_or_not_and_parentheses(data: OrgData) -> None:
    contacts = live(data, "Contact")
    got = q(data, "SELECT Id FROM Contact WHERE (LastName = 'Smith' OR LastName = 'Chen') "
                  "AND NOT (FirstName = null) AND HasOptedOutOfEmail = false").total_size
    assert got == sum(1 for c in contacts if c["LastName"] in ("Smith", "Chen")
                      and c["FirstName"] is not None and not c["HasOptedOutOfEmail"])


def test_numbers_dates_and_datetimes(data: OrgData) -> None:
    accounts = live(data, "Account")
    assert q(data, "SELECT Id FROM Account WHERE AnnualRevenue >= 1200000 AND "
                   "NumberOfEmployees < 20000").total_size == sum(
        1 for a in accounts if (a["AnnualRevenue"] or 0) >= 1_200_000
        and a["NumberOfEmployees"] is not None and a["NumberOfEmployees"] < 20000)
    contacts = live(data, "Contact")
    assert q(data, "SELECT Id FROM Contact WHERE Birthdate > 1980-06-30").total_size == sum(
        1 for c in contacts if c["Birthdate"] and c["Birthdate"].isoformat() > "1980-06-30")
    cut = datetime(2024, 3, 1, 12, tzinfo=UTC)
    want = sum(1 for c in contacts if c["CreatedDate"] <= cut)
    assert q(data, "SELECT Id FROM Contact WHERE CreatedDate <= 2024-03-01T12:00:00Z"
             ).total_size == want
    assert q(data, "SELECT Id FROM Contact WHERE CreatedDate <= 2024-03-01T14:00:00.000+02:00"
             ).total_size == want
    # Everything was created before today.
    assert q(data, "SELECT Id FROM Contact WHERE CreatedDate < TODAY").total_size == len(contacts)
    assert q(data, "SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS:3").total_size == 0


def test_id_filters_accept_15_and_18_characters(data: OrgData) -> None:
    contact = live(data, "Contact")[3]
    for literal in (contact["Id"], contact["Id"][:15]):
        run = q(data, f"SELECT Id FROM Contact WHERE Id = '{literal}'")
        assert project(run, 0, 1) == [("Contact", contact["Id"], [])]
    run = q(data, f"SELECT Id FROM Contact WHERE AccountId = '{contact['AccountId']}'")
    assert run.total_size == sum(1 for c in live(data, "Contact")
                                 if c["AccountId"] == contact["AccountId"])


# --- ORDER BY, LIMIT, OFFSET ------------------------------------------------------------------

def test_order_by_nulls_defaults_and_overrides(data: OrgData) -> None:
    emails = [v[0] for _, _, v in rows(data, "SELECT Email FROM Contact ORDER BY Email")]
    nulls = emails.count(None)
    assert nulls and emails[:nulls] == [None] * nulls  # ASC: nulls first
    assert emails[nulls:] == sorted(emails[nulls:], key=str.casefold)
    desc = [v[0] for _, _, v in rows(data, "SELECT Email FROM Contact ORDER BY Email DESC")]
    assert desc[-nulls:] == [None] * nulls  # DESC: nulls last
    last = [v[0] for _, _, v in rows(data, "SELECT Email FROM Contact ORDER BY Email ASC "
                                           "NULLS LAST")]
    assert last[-nulls:] == [None] * nulls and last[0] is not None
    first = [v[0] for _, _, v in rows(data, "SELECT Email FROM Contact ORDER BY Email DESC "
                                            "NULLS FIRST")]
    assert first[:nulls] == [None] * nulls


def test_order_by_several_keys_and_parent_field(data: OrgData) -> None:
    got = [v for _, _, v in rows(data, "SELECT LastName, Phone FROM Contact "
                                       "ORDER BY LastName DESC, Phone ASC NULLS LAST")]
    want = sorted(((c["LastName"], c["Phone"]) for c in live(data, "Contact")),
                  key=lambda t: (t[1] is None, t[1] or ""))
    want = sorted(want, key=lambda t: t[0].casefold(), reverse=True)
    assert [tuple(v) for v in got] == want
    accounts = [v[0][2][0] if v[0] else None
                for _, _, v in rows(data, "SELECT Account.Name FROM Contact "
                                          "ORDER BY Account.Name NULLS LAST")]
    named = [a for a in accounts if a is not None]
    assert named == sorted(named, key=str.casefold) and accounts[-1] is None


def test_limit_and_offset(data: OrgData) -> None:
    everything = rows(data, "SELECT Id FROM Contact ORDER BY Name, Id")
    page = rows(data, "SELECT Id FROM Contact ORDER BY Name, Id LIMIT 7 OFFSET 11")
    assert page == everything[11:18]
    assert q(data, "SELECT Id FROM Contact LIMIT 0").total_size == 0


def test_project_slices(data: OrgData) -> None:
    run = q(data, "SELECT Id, Name FROM Contact")
    assert project(run, 0, run.total_size)[10:20] == project(run, 10, 20)
    assert project(run, run.total_size, run.total_size + 5) == []


# --- COUNT() and aggregates -------------------------------------------------------------------

def test_count_star(data: OrgData) -> None:
    run = q(data, "SELECT COUNT() FROM Contact")
    assert run.count_only and run.total_size == OrgConfig().contact_count
    assert project(run, 0, 10) == []
    assert q(data, "SELECT COUNT() FROM Contact WHERE LastName = 'Smith'").total_size == sum(
        1 for c in live(data, "Contact") if c["LastName"] == "Smith")
    assert q(data, "SELECT count() FROM Contact LIMIT 5").total_size == 5


def test_group_by_with_aggregates(data: OrgData) -> None:
    run = q(data, "SELECT LeadSource, COUNT(Id), COUNT(Email) withEmail, MAX(CreatedDate), "
                  "MIN(LastName) FROM Contact GROUP BY LeadSource")
    assert run.shape == Shape("AggregateResult", False, [
        AggregateItem("LeadSource", "xsd:string"), AggregateItem("expr0", "xsd:int"),
        AggregateItem("withEmail", "xsd:int"), AggregateItem("expr1", "xsd:dateTime"),
        AggregateItem("expr2", "xsd:string")])
    groups: dict = {}
    for c in live(data, "Contact"):
        groups.setdefault(c["LeadSource"], []).append(c)
    projected = project(run, 0, run.total_size)
    assert run.total_size == len(groups) == len(projected)
    for entity, record_id, (source, count, with_email, newest, lowest) in projected:
        assert entity == "AggregateResult" and record_id is None
        members = groups[source]
        assert count == str(len(members))
        assert with_email == str(sum(1 for c in members if c["Email"]))
        assert newest == max(c["CreatedDate"] for c in members).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        assert lowest == min((c["LastName"] for c in members), key=str.casefold)


def test_sum_avg_and_order_by_aggregate(data: OrgData) -> None:
    run = q(data, "SELECT StageName, SUM(Amount) total, AVG(Amount) FROM Opportunity "
                  "GROUP BY StageName ORDER BY SUM(Amount) DESC NULLS LAST LIMIT 3")
    assert [(i.name, i.soap_type) for i in run.shape.items] == [
        ("StageName", "xsd:string"), ("total", "xsd:double"), ("expr0", "xsd:double")]
    sums: dict = {}
    for o in live(data, "Opportunity"):
        if o["Amount"] is not None:
            sums.setdefault(o["StageName"], []).append(o["Amount"])
    want = sorted(sums.items(), key=lambda kv: sum(kv[1]), reverse=True)[:3]
    got = project(run, 0, 3)
    assert [v[0] for _, _, v in got] == [stage for stage, _ in want]
    assert [float(v[1]) for _, _, v in got] == [sum(a) for _, a in want]
    assert [float(v[2]) for _, _, v in got] == pytest.approx(
        [sum(a) / len(a) for _, a in want])


def test_aggregate_without_group_by_gives_one_row(data: OrgData) -> None:
    run = q(data, "SELECT COUNT(Id), SUM(Amount) FROM Opportunity WHERE Name = 'no such'")
    assert project(run, 0, 1) == [("AggregateResult", None, ["0", None])]


def test_group_by_parent_field(data: OrgData) -> None:
    run = q(data, "SELECT Account.Name, COUNT(Id) c FROM Contact GROUP BY Account.Name")
    assert [i.name for i in run.shape.items] == ["Name", "c"]
    total = sum(int(v[1]) for _, _, v in project(run, 0, run.total_size))
    assert total == OrgConfig().contact_count


# --- deleted rows -----------------------------------------------------------------------------

def test_deleted_rows_only_with_include_deleted(data: OrgData) -> None:
    deleted = {c["Id"] for c in data.records("Contact") if c["IsDeleted"]}
    assert deleted
    plain = {r[1] for r in rows(data, "SELECT Id FROM Contact")}
    assert not plain & deleted
    assert q(data, "SELECT Id FROM Contact WHERE IsDeleted = true").total_size == 0
    everything = {r[1] for r in rows(data, "SELECT Id FROM Contact", include_deleted=True)}
    assert deleted <= everything
    only = rows(data, "SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true",
                include_deleted=True)
    assert {r[1] for r in only} == deleted and all(r[2] == ["true"] for r in only)
    assert q(data, "SELECT COUNT() FROM Contact", include_deleted=True).total_size == len(
        data.records("Contact"))


# --- robustness and determinism ---------------------------------------------------------------

TOKENS = ["SELECT", "FROM", "WHERE", "Id", "Name", "Account.Name", "Contact", "Account",
          "(", ")", ",", "=", "!=", "<", ">=", "LIKE", "IN", "NOT", "AND", "OR", "NULL",
          "TRUE", "'x'", "'a\\'b'", "'\\z'", "5", "-3.5", "2024-01-31", "2024-99-99",
          "2024-01-31T10:00:00Z", "TODAY", "LAST_N_DAYS:3", "LAST_N_DAYS:x", "ORDER BY",
          "GROUP BY", "ASC", "DESC", "NULLS FIRST", "LIMIT", "OFFSET", "COUNT()", "COUNT(Id)",
          "SUM(Amount)", "MAX(Name)", "Contacts", "(SELECT Id FROM Contacts)", "n", ".", ":",
          "Owner.Name", "Account.Owner.Name", "IsDeleted", "CreatedDate", "Birthdate",
          "AnnualRevenue", "Amount", "Opportunity", "LeadSource", "\n", "é", "#"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text_only_ever_raises_soql_error(text: str) -> None:
    data = _shared_data()
    try:
        run = run_query(data, text)
    except SoqlError as error:
        assert error.code and isinstance(error.message, str)
        return
    project(run, 0, 5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=14))
def test_token_soup_only_ever_raises_soql_error(tokens: list[str]) -> None:
    data = _shared_data()
    for text in (" ".join(tokens), "SELECT " + " ".join(tokens),
                 "SELECT Id, Name FROM Account WHERE " + " ".join(tokens)):
        try:
            run = run_query(data, text)
        except SoqlError as error:
            assert error.code and isinstance(error.message, str)
            continue
        project(run, 0, 5)


_DATA: list[OrgData] = []


def _shared_data() -> OrgData:
    # Hypothesis tests cannot take function-scoped fixtures; seed once per module instead.
    if not _DATA:
        _DATA.append(OrgData.seed(OrgConfig()))
    return _DATA[0]


def test_queries_are_deterministic() -> None:
    soql = ("SELECT Id, Name, Owner.Name, (SELECT Name FROM Opportunities) FROM Account "
            "ORDER BY Name")
    first = OrgData.seed(OrgConfig())
    second = OrgData.seed(OrgConfig())
    a, b = run_query(first, soql), run_query(second, soql)
    assert project(a, 0, a.total_size) == project(b, 0, b.total_size)


def test_paging_a_large_org_covers_every_row_once() -> None:
    # Speed is measured by bench/devorg.py, not here.
    big = OrgData.seed(OrgConfig(contact_count=30_000))
    run = run_query(big, "SELECT Id, FirstName, LastName, Email, Phone, Account.Name "
                         "FROM Contact")
    assert run.total_size == 30_000
    seen = []
    for start in range(0, run.total_size, 2000):
        batch = project(run, start, start + 2000)
        assert len(batch) == 2000
        seen.extend(record[1] for record in batch)
    assert len(set(seen)) == 30_000
