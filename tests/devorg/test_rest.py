"""The local org's REST API over real HTTP: the versions list and the query resource."""
from __future__ import annotations

import re

import pytest
import requests
from lxml import etree

from devorg.rest import release_name
from tests.helpers.org import mint_token
from tests.helpers.soap import NS, soap_post

BASE = "/services/data/v66.0"


def _get(org, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{org.url}{path}", headers=headers, timeout=30, **kwargs)


@pytest.fixture
def token(local_org) -> str:
    return mint_token(local_org)


def _live(org, sobject):
    return [r for r in org.state.data.records(sobject) if not r["IsDeleted"]]


def test_versions_list(local_org):
    response = _get(local_org, "/services/data/")
    assert response.status_code == 200
    versions = response.json()
    # Versions 30.0 and older are retired: the list starts at 31.0.
    assert [v["version"] for v in versions] == [f"{v}.0" for v in range(31, 67)]
    assert versions[-1] == {"label": "Spring '26", "url": "/services/data/v66.0",
                            "version": "66.0"}
    by_version = {v["version"]: v for v in versions}
    assert by_version["65.0"] == {"label": "Winter '26", "url": "/services/data/v65.0",
                                  "version": "65.0"}
    assert by_version["31.0"] == {"label": "Summer '14", "url": "/services/data/v31.0",
                                  "version": "31.0"}
    assert by_version["60.0"]["label"] == "Spring '24"


def test_release_names():
    assert release_name("20.0") == "Winter '11"
    assert release_name("64.0") == "Summer '25"
    assert release_name("45.0") == "Spring '19"


def test_query_returns_typed_json(local_org, token):
    soql = ("SELECT Id, Name, HasOptedOutOfEmail, Birthdate, Account.Name, "
            "Account.AnnualRevenue, Account.NumberOfEmployees FROM Contact")
    response = _get(local_org, f"{BASE}/query", token, params={"q": soql})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    live = _live(local_org, "Contact")
    assert list(payload) == ["totalSize", "done", "records"]
    assert payload["totalSize"] == len(live) and payload["done"] is True
    accounts = {a["Id"]: a for a in local_org.state.data.records("Account")}
    contacts = {c["Id"]: c for c in live}
    seen_number = False
    for record in payload["records"]:
        contact = contacts[record["Id"]]
        assert record["attributes"] == {
            "type": "Contact", "url": f"{BASE}/sobjects/Contact/{contact['Id']}"}
        assert record["Name"] == contact["Name"]
        assert record["HasOptedOutOfEmail"] is contact["HasOptedOutOfEmail"]
        birthdate = contact["Birthdate"]
        assert record["Birthdate"] == (birthdate.isoformat() if birthdate else None)
        if contact["AccountId"] is None:
            assert record["Account"] is None
            continue
        account = accounts[contact["AccountId"]]
        assert record["Account"]["attributes"]["type"] == "Account"
        assert record["Account"]["Name"] == account["Name"]
        assert record["Account"]["AnnualRevenue"] == account["AnnualRevenue"]
        employees = record["Account"]["NumberOfEmployees"]
        assert employees == account["NumberOfEmployees"]
        if employees is not None:
            assert isinstance(employees, int)
            seen_number = True
    assert seen_number


def test_child_subquery_and_aggregates(local_org, token):
    soql = "SELECT Name, (SELECT LastName FROM Contacts) FROM Account LIMIT 3"
    payload = _get(local_org, f"{BASE}/query", token, params={"q": soql}).json()
    children = payload["records"][0]["Contacts"]
    assert set(children) == {"totalSize", "done", "records"}
    assert children["records"][0]["attributes"]["type"] == "Contact"
    soql = "SELECT LeadSource, COUNT(Id) FROM Contact GROUP BY LeadSource"
    payload = _get(local_org, f"{BASE}/query", token, params={"q": soql}).json()
    assert payload["records"][0]["attributes"] == {"type": "AggregateResult"}
    assert sum(r["expr0"] for r in payload["records"]) == len(_live(local_org, "Contact"))


def test_count_query(local_org, token):
    payload = _get(local_org, f"{BASE}/query", token,
                   params={"q": "SELECT COUNT() FROM Contact"}).json()
    assert payload == {"totalSize": len(_live(local_org, "Contact")), "done": True,
                       "records": []}


def test_query_pages_with_next_records_url(local_org, token):
    headers = {"Sforce-Query-Options": "batchSize=200"}
    response = _get(local_org, f"{BASE}/query", token, headers=dict(headers),
                    params={"q": "SELECT Id FROM Contact"})
    payload = response.json()
    assert payload["done"] is False
    assert re.fullmatch(rf"{BASE}/query/01g[0-9A-Za-z]{{15}}-200", payload["nextRecordsUrl"])
    ids = [r["Id"] for r in payload["records"]]
    while not payload["done"]:
        payload = _get(local_org, payload["nextRecordsUrl"], token,
                       headers=dict(headers)).json()
        ids += [r["Id"] for r in payload["records"]]
    assert "nextRecordsUrl" not in payload
    assert sorted(ids) == sorted(c["Id"] for c in _live(local_org, "Contact"))


def test_rest_and_soap_share_query_locators(local_org, token):
    response = _get(local_org, f"{BASE}/query", token,
                    headers={"Sforce-Query-Options": "batchSize=200"},
                    params={"q": "SELECT Id FROM Contact"})
    locator = response.json()["nextRecordsUrl"].rsplit("/", 1)[1]
    reply = soap_post(local_org, "queryMore", {"queryLocator": locator}, token)
    assert reply.status_code == 200
    result = etree.fromstring(reply.content).find(".//p:result", NS)
    live = len(_live(local_org, "Contact"))
    assert int(result.findtext("p:size", namespaces=NS)) == live
    assert len(result.findall("p:records", NS)) == live - 200


def test_query_all_includes_deleted(local_org, token):
    soql = "SELECT Id FROM Contact WHERE IsDeleted = true"
    assert _get(local_org, f"{BASE}/query", token, params={"q": soql}).json()["totalSize"] == 0
    payload = _get(local_org, f"{BASE}/queryAll", token, params={"q": soql}).json()
    assert payload["totalSize"] >= 1


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic abc", "Bearer "])
def test_bad_token_is_401(local_org, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = _get(local_org, f"{BASE}/query", headers=headers,
                    params={"q": "SELECT Id FROM Contact"})
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid",
                                "errorCode": "INVALID_SESSION_ID"}]


def test_expired_token_is_401(fresh_org):
    token = mint_token(fresh_org)
    assert _get(fresh_org, f"{BASE}/query", token,
                params={"q": "SELECT Id FROM Lead"}).status_code == 200
    fresh_org.state.tokens.expire_all()
    assert _get(fresh_org, f"{BASE}/query", token,
                params={"q": "SELECT Id FROM Lead"}).status_code == 401


@pytest.mark.parametrize("soql,code", [
    ("SELECT Asdf FROM Contact", "INVALID_FIELD"),
    ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
    ("SELECT Id FROM no_such_object", "INVALID_TYPE"),
    ("", "MALFORMED_QUERY"),
])
def test_soql_errors_are_400(local_org, token, soql, code):
    response = _get(local_org, f"{BASE}/query", token, params={"q": soql})
    assert response.status_code == 400
    [error] = response.json()
    assert error["errorCode"] == code and error["message"]


def test_invalid_locator_is_400(local_org, token):
    response = _get(local_org, f"{BASE}/query/01gD0000000XXXXIAW-2000", token)
    assert response.status_code == 400
    assert response.json() == [{"message": "invalid query locator",
                                "errorCode": "INVALID_QUERY_LOCATOR"}]


def test_unknown_version_is_404(local_org, token):
    response = _get(local_org, "/services/data/v99.0/query", token,
                    params={"q": "SELECT Id FROM Contact"})
    assert response.status_code == 404
    assert response.json()[0]["errorCode"] == "NOT_FOUND"


def test_rest_calls_are_counted(fresh_org):
    token = mint_token(fresh_org)
    _get(fresh_org, "/services/data/")
    _get(fresh_org, f"{BASE}/query", token, params={"q": "SELECT Id FROM Lead"})
    counts = fresh_org.state.counters.snapshot()
    assert counts["rest.versions"] == 1 and counts["rest.query"] == 1
    assert fresh_org.state.query_cursors.open_count() == 0
