"""The local org's REST resources over real HTTP: the version's resource map, describeGlobal,
sObject basic info and describe, record retrieve, limits, trailing slashes, Salesforce's JSON
errors, and the retired versions."""
from __future__ import annotations

import pytest
import requests
from lxml import etree

from devorg.data import to_id18
from tests.helpers.oauth import CALLBACK, identity, password_token
from tests.helpers.org import mint_token, user_id
from tests.helpers.paths import FIXTURES

BASE = "/services/data/v66.0"
NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
GONE = [{"message": "The requested resource is no longer available.", "errorCode": "GONE"}]
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
XSD = "{http://www.w3.org/2001/XMLSchema}"
# UI pages the partner API's DescribeSObjectResult names; REST does not list them.
UI_URLS = {"urlDetail", "urlEdit", "urlNew"}


def _get(org, path, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(f"{org.url}{path}", headers=headers, timeout=30,
                        allow_redirects=False, **kwargs)


def _json_of(response, status=200):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


@pytest.fixture
def token(local_org) -> str:
    return mint_token(local_org)


def _wsdl_elements(type_name: str) -> dict[str, bool]:
    """The elements of a partner WSDL complexType: name -> required."""
    wsdl = etree.parse(str(FIXTURES / "partner-v66.0.wsdl"))
    complex_type = wsdl.find(f".//{XSD}complexType[@name='{type_name}']")
    assert complex_type is not None, type_name
    return {e.get("name"): e.get("minOccurs", "1") != "0"
            for e in complex_type.iter(f"{XSD}element")}


def _assert_partner_shape(described: dict, type_name: str, rest_only: set[str]) -> None:
    # REST describes with the partner API's words: every required element is a key, and no
    # key is invented beyond the few that only REST has.
    elements = _wsdl_elements(type_name)
    missing = [name for name, required in elements.items()
               if required and name not in described and name not in UI_URLS]
    assert missing == [], (type_name, missing)
    assert set(described) - set(elements) <= rest_only, type_name


# ---------------------------------------------------------------- the version's resources


@pytest.mark.parametrize("path", [BASE, f"{BASE}/"])
def test_version_resources_list_what_the_org_serves(local_org, token, path):
    resources = _json_of(_get(local_org, path, token))
    assert resources == {
        "identity": f"{local_org.url}/id/{local_org.state.org_id}/{user_id(local_org)}",
        "limits": f"{BASE}/limits",
        "query": f"{BASE}/query",
        "queryAll": f"{BASE}/queryAll",
        "sobjects": f"{BASE}/sobjects",
    }


def test_every_advertised_resource_answers(local_org, token):
    resources = _json_of(_get(local_org, BASE, token))
    for name, url in resources.items():
        if name == "identity":
            response = identity(local_org.url, token, url)
        else:
            params = {"q": "SELECT Id FROM Lead"} if name.startswith("query") else {}
            response = _get(local_org, url, token, params=params)
        assert response.status_code == 200, (name, response.text)
        assert response.headers["Content-Type"].startswith("application/json"), name


@pytest.mark.parametrize("path", [BASE, f"{BASE}/", f"{BASE}/sobjects",
                                  f"{BASE}/sobjects/Account/describe", f"{BASE}/limits"])
@pytest.mark.parametrize("authorization", [None, "Bearer nope"])
def test_resources_need_a_valid_token(local_org, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    assert _json_of(_get(local_org, path, headers=headers), 401) == INVALID_SESSION


# ---------------------------------------------------------------- describe


@pytest.mark.parametrize("path", [f"{BASE}/sobjects", f"{BASE}/sobjects/"])
def test_describe_global(local_org, token, path):
    payload = _json_of(_get(local_org, path, token))
    assert list(payload) == ["encoding", "maxBatchSize", "sobjects"]
    assert (payload["encoding"], payload["maxBatchSize"]) == ("UTF-8", 200)
    by_name = {s["name"]: s for s in payload["sobjects"]}
    assert set(by_name) == {"User", "Account", "Contact", "Opportunity", "Lead"}
    account = by_name["Account"]
    assert (account["label"], account["labelPlural"], account["keyPrefix"]) == (
        "Account", "Accounts", "001")
    for flag in ("queryable", "retrieveable", "createable", "updateable", "deletable"):
        assert account[flag] is True, flag
    assert account["custom"] is False
    assert by_name["User"]["deletable"] is False
    assert account["urls"] == {"rowTemplate": f"{BASE}/sobjects/Account/{{ID}}",
                               "describe": f"{BASE}/sobjects/Account/describe",
                               "sobject": f"{BASE}/sobjects/Account"}
    for entry in payload["sobjects"]:
        _assert_partner_shape(entry, "DescribeGlobalSObjectResult", {"urls"})


@pytest.mark.parametrize("name", ["Account", "account", "ACCOUNT"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_sobject_basic_info(local_org, token, name, slash):
    payload = _json_of(_get(local_org, f"{BASE}/sobjects/{name}{slash}", token))
    assert list(payload) == ["objectDescribe", "recentItems"]
    assert payload["recentItems"] == []
    assert payload["objectDescribe"]["name"] == "Account"
    everything = _json_of(_get(local_org, f"{BASE}/sobjects", token))["sobjects"]
    assert payload["objectDescribe"] == next(s for s in everything if s["name"] == "Account")


@pytest.mark.parametrize("path", [f"{BASE}/sobjects/contact/describe",
                                  f"{BASE}/sobjects/Contact/describe/"])
def test_describe_sobject_fields(local_org, token, path):
    payload = _json_of(_get(local_org, path, token))
    assert payload["name"] == "Contact" and payload["keyPrefix"] == "003"
    keys = list(payload)  # Salesforce's order: alphabetical, urls last
    assert keys[-1] == "urls" and keys[:-1] == sorted(keys[:-1])
    fields = {f["name"]: f for f in payload["fields"]}
    schema = local_org.state.data.sobject("Contact")
    assert list(fields) == [f.name for f in schema.fields]
    assert fields["Id"]["type"] == "id" and fields["Id"]["nillable"] is False
    account = fields["AccountId"]
    assert (account["type"], account["referenceTo"], account["relationshipName"]) == (
        "reference", ["Account"], "Account")
    assert fields["LastName"]["type"] == "string" and fields["LastName"]["length"] == 80
    assert fields["Email"]["type"] == "email"
    assert fields["Phone"]["type"] == "phone"
    assert fields["Birthdate"]["type"] == "date"
    assert fields["CreatedDate"]["type"] == "datetime"
    assert fields["HasOptedOutOfEmail"]["type"] == "boolean"
    assert fields["Description"]["type"] == "textarea"
    first_name = fields["FirstName"]
    assert first_name["referenceTo"] == [] and first_name["relationshipName"] is None
    salutations = fields["Salutation"]["picklistValues"]
    assert fields["Salutation"]["type"] == "picklist"
    assert [p["value"] for p in salutations] == schema.field("Salutation").picklist_values
    assert salutations[0] == {"active": True, "defaultValue": False, "label": "Mr.",
                              "validFor": None, "value": "Mr."}
    assert fields["Name"]["createable"] is False and fields["LastName"]["createable"] is True
    for field in payload["fields"]:
        _assert_partner_shape(field, "Field", set())
    _assert_partner_shape(payload, "DescribeSObjectResult",
                          {"urls", "extendedBy", "extendsInterfaces", "listviewable",
                           "lookupLayoutable", "sobjectDescribeOption"})
    assert payload["urls"] == {"rowTemplate": f"{BASE}/sobjects/Contact/{{ID}}",
                               "describe": f"{BASE}/sobjects/Contact/describe",
                               "sobject": f"{BASE}/sobjects/Contact"}


def test_describe_types_of_other_objects(local_org, token):
    def types(name):
        payload = _json_of(_get(local_org, f"{BASE}/sobjects/{name}/describe", token))
        return {f["name"]: f["type"] for f in payload["fields"]}

    account, opportunity = types("Account"), types("Opportunity")
    assert account["AnnualRevenue"] == "currency" and account["NumberOfEmployees"] == "int"
    assert account["Website"] == "url" and opportunity["Probability"] == "percent"


def test_describe_child_relationships(local_org, token):
    payload = _json_of(_get(local_org, f"{BASE}/sobjects/Account/describe", token))
    children = {c["relationshipName"]: c for c in payload["childRelationships"]}
    assert set(children) == {"ChildAccounts", "Contacts", "Opportunities"}
    assert (children["Contacts"]["childSObject"], children["Contacts"]["field"]) == (
        "Contact", "AccountId")
    for child in payload["childRelationships"]:
        _assert_partner_shape(child, "ChildRelationship", set())
    [record_type] = payload["recordTypeInfos"]
    assert record_type["master"] is True and "urls" not in record_type


@pytest.mark.parametrize("path", [f"{BASE}/sobjects/NoSuchObject",
                                  f"{BASE}/sobjects/NoSuchObject/describe",
                                  f"{BASE}/sobjects/NoSuchObject/001000000000000AAA"])
def test_unknown_sobject_is_404(local_org, token, path):
    assert _json_of(_get(local_org, path, token), 404) == NOT_FOUND


# ---------------------------------------------------------------- records


def _contact(local_org, **wanted):
    for row in local_org.state.data.records("Contact"):
        if all((row[k] is not None) == v for k, v in wanted.items()) and not row["IsDeleted"]:
            return row
    raise AssertionError(wanted)


def test_retrieve_record_with_every_field(local_org, token):
    row = _contact(local_org, AccountId=True, Birthdate=True)
    payload = _json_of(_get(local_org, f"{BASE}/sobjects/Contact/{row['Id']}", token))
    assert payload["attributes"] == {"type": "Contact",
                                     "url": f"{BASE}/sobjects/Contact/{row['Id']}"}
    schema = local_org.state.data.sobject("Contact")
    assert list(payload) == ["attributes"] + [f.name for f in schema.fields]
    assert payload["Id"] == row["Id"] and payload["LastName"] == row["LastName"]
    assert payload["AccountId"] == row["AccountId"]
    assert payload["Birthdate"] == row["Birthdate"].isoformat()
    assert payload["HasOptedOutOfEmail"] is row["HasOptedOutOfEmail"]
    assert payload["IsDeleted"] is False


@pytest.mark.parametrize("slash", ["", "/"])
def test_retrieve_named_fields_case_insensitively(local_org, token, slash):
    row = _contact(local_org, Email=True)
    payload = _json_of(_get(local_org, f"{BASE}/sobjects/contact/{row['Id'][:15]}{slash}",
                            token, params={"fields": "lastname,Email"}))
    assert payload == {"attributes": {"type": "Contact",
                                      "url": f"{BASE}/sobjects/Contact/{row['Id']}"},
                       "Id": row["Id"], "LastName": row["LastName"], "Email": row["Email"]}


def test_retrieve_typed_numbers(local_org, token):
    row = next(a for a in local_org.state.data.records("Account")
               if a["NumberOfEmployees"] is not None and a["AnnualRevenue"] is not None)
    payload = _json_of(_get(local_org, f"{BASE}/sobjects/Account/{row['Id']}", token,
                            params={"fields": "NumberOfEmployees,AnnualRevenue"}))
    assert payload["NumberOfEmployees"] == row["NumberOfEmployees"]
    assert isinstance(payload["NumberOfEmployees"], int)
    assert payload["AnnualRevenue"] == row["AnnualRevenue"]


def test_retrieve_bad_field_is_400(local_org, token):
    row = _contact(local_org)
    response = _get(local_org, f"{BASE}/sobjects/Contact/{row['Id']}", token,
                    params={"fields": "LastName,Asdf"})
    [error] = _json_of(response, 400)
    assert error["errorCode"] == "INVALID_FIELD"
    assert error["message"].startswith("No such column 'Asdf' on entity 'Contact'.")


def test_retrieve_unknown_record_is_404(local_org, token):
    existing = local_org.state.data.index("Contact")
    # A well-formed Contact id that names no record.
    missing = next(i for i in (to_id18(f"0035g0000{n:06d}") for n in range(1000))
                   if i not in existing)
    response = _get(local_org, f"{BASE}/sobjects/Contact/{missing}", token)
    assert _json_of(response, 404) == NOT_FOUND


@pytest.mark.parametrize("record_id", ["nope", "0015g00000AbCdEAAA"])
def test_retrieve_what_is_not_an_id_of_the_sobject_is_404(local_org, token, record_id):
    response = _get(local_org, f"{BASE}/sobjects/Contact/{record_id}", token)
    assert _json_of(response, 404) == [{
        "message": f"Provided external ID field does not exist or is not accessible: {record_id}",
        "errorCode": "NOT_FOUND"}]


def test_retrieve_deleted_record_is_404(local_org, token):
    row = next(r for r in local_org.state.data.records("Contact") if r["IsDeleted"])
    response = _get(local_org, f"{BASE}/sobjects/Contact/{row['Id']}", token)
    assert _json_of(response, 404) == [{"message": "entity is deleted",
                                        "errorCode": "ENTITY_IS_DELETED"}]


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("slash", ["", "/"])
def test_limits(fresh_org, slash):
    token = mint_token(fresh_org)
    payload = _json_of(_get(fresh_org, f"{BASE}/limits{slash}", token))
    daily = payload["DailyApiRequests"]
    assert daily["Max"] == fresh_org.state.api_usage.limit
    # The limits call itself is an API request.
    assert daily["Remaining"] == daily["Max"] - 1
    for name, entry in payload.items():
        assert list(entry) == ["Max", "Remaining"], name
        assert 0 <= entry["Remaining"] <= entry["Max"], name
    _get(fresh_org, f"{BASE}/query", token, params={"q": "SELECT Id FROM Lead"})
    again = _json_of(_get(fresh_org, f"{BASE}/limits", token))["DailyApiRequests"]
    assert again["Remaining"] == daily["Remaining"] - 2


# ---------------------------------------------------------------- slashes, errors, versions


@pytest.mark.parametrize("resource", ["query", "queryAll"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_query_answers_with_and_without_the_slash(local_org, token, resource, slash):
    response = _get(local_org, f"{BASE}/{resource}{slash}", token,
                    params={"q": "SELECT Id FROM Lead"})
    assert _json_of(response)["totalSize"] >= 40


def test_next_records_url_answers_with_a_slash(local_org, token):
    first = _json_of(_get(local_org, f"{BASE}/query", token,
                          headers={"Sforce-Query-Options": "batchSize=200"},
                          params={"q": "SELECT Id FROM Contact"}))
    payload = _json_of(_get(local_org, first["nextRecordsUrl"] + "/", token))
    assert payload["records"]


@pytest.mark.parametrize("path", [f"{BASE}/nope", f"{BASE}/search", f"{BASE}/tooling/",
                                  f"{BASE}/recent", f"{BASE}/chatter/feeds", "/services/data/x",
                                  "/services/data/v99.0", "/services/data/v99.0/query",
                                  f"{BASE}/sobjects/Account/describe/layouts"])
def test_unknown_paths_are_json_404(local_org, token, path):
    assert _json_of(_get(local_org, path, token), 404) == NOT_FOUND


def test_versions_start_at_31(local_org):
    versions = _json_of(_get(local_org, "/services/data/"))
    assert versions[0]["version"] == "31.0"
    assert all(float(v["version"]) >= 31.0 for v in versions)
    assert _json_of(_get(local_org, "/services/data")) == versions


@pytest.mark.parametrize("path", ["/services/data/v30.0", "/services/data/v30.0/",
                                  "/services/data/v20.0/query",
                                  "/services/data/v30.0/sobjects/Account/describe",
                                  "/services/data/v25.0/limits", "/services/data/v29.0/nope"])
def test_retired_versions_are_410(local_org, token, path):
    response = _get(local_org, path, token, params={"q": "SELECT Id FROM Lead"})
    assert _json_of(response, 410) == GONE


def test_identity_advertises_only_served_rest_urls(local_org, token):
    client = local_org.register(CALLBACK)
    tokens = password_token(local_org.url, client).json()
    urls = identity(local_org.url, tokens["access_token"], tokens["id"]).json()["urls"]
    assert not {"search", "recent", "tooling_rest", "profile", "feeds", "groups", "users",
                "feed_items", "feed_elements"} & set(urls)
    for name in ("rest", "sobjects", "query"):
        url = urls[name].replace("{version}", "66.0")
        params = {"q": "SELECT Id FROM Lead"} if name == "query" else {}
        response = requests.get(url, params=params, timeout=30, allow_redirects=False,
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert response.status_code == 200, (name, response.text)
        assert response.headers["Content-Type"].startswith("application/json"), name
