"""The local org's SOAP partner endpoint over real HTTP, with plain requests and strict zeep."""
from __future__ import annotations

import re
import time

import pytest
import requests
import zeep
from lxml import etree

import devorg
from devorg import OrgConfig
from tests.helpers.org import mint_token, user_id
from tests.helpers.soap import (
    NS,
    XSI_NIL,
    XSI_TYPE,
    body_of,
    partner_url,
    record_fields,
    soap_post,
    zeep_partner,
)

LOCATOR = re.compile(r"^01g[0-9A-Za-z]{15}-\d+$")


@pytest.fixture
def token(local_org) -> str:
    return mint_token(local_org)


@pytest.fixture
def partner(local_org, token):
    return zeep_partner(local_org, token)


def _fault(response: requests.Response) -> tuple[str, str, etree._Element | None]:
    assert response.status_code == 500
    fault = body_of(response)
    assert fault.tag == f"{{{NS['soapenv']}}}Fault"
    detail = fault.find("detail")
    return (fault.findtext("faultcode"), fault.findtext("faultstring"),
            detail[0] if detail is not None and len(detail) else None)


def _result(response: requests.Response) -> etree._Element:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/xml")
    return body_of(response).find("p:result", NS)


# ---------------------------------------------------------------- query with requests


def test_query_writes_records_as_the_partner_api_does(local_org, token):
    response = soap_post(local_org, "query", {"queryString": "SELECT Id, Name FROM Contact"},
                         token)
    root = etree.fromstring(response.content)
    assert root.nsmap == {"soapenv": NS["soapenv"], None: NS["p"], "xsi": NS["xsi"],
                          "sf": NS["sf"]}
    limit = root.find("soapenv:Header/p:LimitInfoHeader/p:limitInfo", NS)
    assert limit.findtext("p:type", namespaces=NS) == "API REQUESTS"
    assert int(limit.findtext("p:current", namespaces=NS)) >= 1
    result = _result(response)
    assert result.get(XSI_TYPE) == "QueryResult"
    records = result.findall("p:records", NS)
    live = [c for c in local_org.state.data.records("Contact") if not c["IsDeleted"]]
    assert result.findtext("p:size", namespaces=NS) == str(len(records)) == str(len(live))
    assert result.findtext("p:done", namespaces=NS) == "true"
    assert result.find("p:queryLocator", NS).get(XSI_NIL) == "true"
    by_id = {c["Id"]: c for c in live}
    for record in records:
        assert record.get(XSI_TYPE) == "sf:sObject"
        fields = record_fields(record)
        assert fields[0] == ("type", "Contact")
        assert fields[1][0] == fields[2][0] == "Id" and fields[1][1] == fields[2][1]
        assert fields[3] == ("Name", by_id[fields[1][1]]["Name"])
        assert len(fields) == 4


def test_every_selected_field_is_present_and_nulls_are_nil(local_org, token):
    soql = "SELECT Id, FirstName, Email, Description, Birthdate, HasOptedOutOfEmail FROM Contact"
    result = _result(soap_post(local_org, "query", {"queryString": soql}, token))
    by_id = {c["Id"]: c for c in local_org.state.data.records("Contact")}
    nulls = 0
    for record in result.findall("p:records", NS):
        fields = record_fields(record)
        assert [name for name, _ in fields] == ["type", "Id", "Id", "FirstName", "Email",
                                                "Description", "Birthdate",
                                                "HasOptedOutOfEmail"]
        row = by_id[fields[1][1]]
        for name, text in fields[3:6]:
            assert text == row[name]  # escaping round-trips: & < > ' " and non-ASCII
            nulls += text is None
        birthdate = row["Birthdate"]
        assert fields[6][1] == (None if birthdate is None else birthdate.isoformat())
        assert fields[7][1] == ("true" if row["HasOptedOutOfEmail"] else "false")
    assert nulls > 0


def test_special_characters_are_escaped(local_org, token):
    soql = "SELECT Name, Description FROM Account"
    response = soap_post(local_org, "query", {"queryString": soql}, token)
    assert b"O&apos;Brien &amp; Sons &lt;Ltd&gt;" in response.content
    names = {r.findtext("sf:Name", namespaces=NS) for r in _result(response)}
    assert "東京 Trading 株式会社" in names and "O'Brien & Sons <Ltd>" in names


def test_id_not_selected_is_one_nil_id(local_org, token):
    result = _result(soap_post(local_org, "query",
                               {"queryString": "SELECT LastName FROM Contact LIMIT 3"}, token))
    for record in result.findall("p:records", NS):
        ids = record.findall("sf:Id", NS)
        assert len(ids) == 1 and ids[0].get(XSI_NIL) == "true"


def test_parent_relationship_nested_or_nil(local_org, token):
    soql = "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact"
    result = _result(soap_post(local_org, "query", {"queryString": soql}, token))
    data = local_org.state.data
    accounts = {a["Id"]: a for a in data.records("Account")}
    users = {u["Id"]: u for u in data.records("User")}
    contacts = {c["Id"]: c for c in data.records("Contact")}
    seen_nil = seen_nested = False
    for record in result.findall("p:records", NS):
        contact = contacts[record.findtext("sf:Id", namespaces=NS)]
        account = record.find("sf:Account", NS)
        if contact["AccountId"] is None:
            assert account.get(XSI_NIL) == "true" and len(account) == 0
            seen_nil = True
            continue
        seen_nested = True
        assert account.get(XSI_TYPE) == "sf:sObject"
        assert record_fields(account)[:2] == [("type", "Account"), ("Id", None)]
        row = accounts[contact["AccountId"]]
        assert account.findtext("sf:Name", namespaces=NS) == row["Name"]
        owner = account.find("sf:Owner", NS)
        assert owner.get(XSI_TYPE) == "sf:sObject"
        assert owner.findtext("sf:Name", namespaces=NS) == users[row["OwnerId"]]["Name"]
    assert seen_nil and seen_nested


def test_child_subquery_is_a_nested_query_result(local_org, token):
    soql = "SELECT Id, Name, (SELECT Id, LastName FROM Contacts WHERE Email = null) FROM Account"
    result = _result(soap_post(local_org, "query", {"queryString": soql}, token))
    contacts = [c for c in local_org.state.data.records("Contact")
                if not c["IsDeleted"] and c["Email"] is None]
    seen_empty = seen_full = False
    for record in result.findall("p:records", NS):
        account_id = record.findtext("sf:Id", namespaces=NS)
        children = record.find("sf:Contacts", NS)
        expected = {c["Id"] for c in contacts if c["AccountId"] == account_id}
        if not expected:
            assert children.get(XSI_NIL) == "true"
            seen_empty = True
            continue
        seen_full = True
        assert children.get(XSI_TYPE) == "QueryResult"
        assert [etree.QName(c).localname for c in children][:2] == ["done", "queryLocator"]
        rows = children.findall("p:records", NS)
        assert {r.findtext("sf:Id", namespaces=NS) for r in rows} == expected
        assert children.findtext("p:size", namespaces=NS) == str(len(expected))
        assert rows[0].findtext("sf:type", namespaces=NS) == "Contact"
    assert seen_full and seen_empty


def test_aggregate_results_are_typed(local_org, token):
    soql = "SELECT LeadSource, COUNT(Id), MAX(Birthdate) latest FROM Contact GROUP BY LeadSource"
    result = _result(soap_post(local_org, "query", {"queryString": soql}, token))
    records = result.findall("p:records", NS)
    assert records
    total = 0
    for record in records:
        fields = list(record)
        assert record_fields(record)[:2] == [("type", "AggregateResult"), ("Id", None)]
        names = [etree.QName(f).localname for f in fields[2:]]
        assert names == ["LeadSource", "expr0", "latest"]
        assert fields[3].get(XSI_TYPE) == "xsd:int"
        total += int(fields[3].text)
        assert fields[2].get(XSI_TYPE) == "xsd:string" or fields[2].get(XSI_NIL) == "true"
    live = [c for c in local_org.state.data.records("Contact") if not c["IsDeleted"]]
    assert total == len(live)


def test_count_query_has_size_and_no_records(local_org, token):
    result = _result(soap_post(local_org, "query",
                               {"queryString": "SELECT COUNT() FROM Contact"}, token))
    live = [c for c in local_org.state.data.records("Contact") if not c["IsDeleted"]]
    assert result.findtext("p:size", namespaces=NS) == str(len(live))
    assert result.find("p:records", NS) is None


def test_query_all_sees_deleted_rows(local_org, token):
    soql = "SELECT Id, IsDeleted FROM Contact"
    plain = _result(soap_post(local_org, "query", {"queryString": soql}, token))
    everything = _result(soap_post(local_org, "queryAll", {"queryString": soql}, token))
    assert body_of(soap_post(local_org, "queryAll", {"queryString": soql}, token)).tag == \
        f"{{{NS['p']}}}queryAllResponse"
    deleted = [r for r in everything.findall("p:records", NS)
               if r.findtext("sf:IsDeleted", namespaces=NS) == "true"]
    assert deleted
    assert int(everything.findtext("p:size", namespaces=NS)) == \
        int(plain.findtext("p:size", namespaces=NS)) + len(deleted)


# ---------------------------------------------------------------- paging


def _page_through(org, token, soql, batch_size):
    response = soap_post(org, "query", {"queryString": soql}, token, batch_size=batch_size)
    result = _result(response)
    pages = [result]
    while result.findtext("p:done", namespaces=NS) == "false":
        locator = result.findtext("p:queryLocator", namespaces=NS)
        assert LOCATOR.match(locator), locator
        response = soap_post(org, "queryMore", {"queryLocator": locator}, token,
                             batch_size=batch_size)
        assert body_of(response).tag == f"{{{NS['p']}}}queryMoreResponse"
        result = _result(response)
        pages.append(result)
    assert result.find("p:queryLocator", NS).get(XSI_NIL) == "true"
    return pages


def test_query_more_pages_to_the_end(local_org, token):
    pages = _page_through(local_org, token, "SELECT Id FROM Contact ORDER BY Name", 200)
    live = [c for c in local_org.state.data.records("Contact") if not c["IsDeleted"]]
    # Every page's `size` is the query's total (as Salesforce writes it), not the batch's.
    assert {int(p.findtext("p:size", namespaces=NS)) for p in pages} == {len(live)}
    batches = [len(p.findall("p:records", NS)) for p in pages]
    assert batches == [200] * (len(live) // 200) + ([len(live) % 200] if len(live) % 200 else [])
    ids = [r.findtext("sf:Id", namespaces=NS) for p in pages for r in p.findall("p:records", NS)]
    assert sorted(ids) == sorted(c["Id"] for c in live)
    first_locator = pages[0].findtext("p:queryLocator", namespaces=NS)
    assert first_locator.endswith("-200")


@pytest.fixture(scope="module")
def big_org():
    app = devorg.create_app(OrgConfig(contact_count=4500, account_count=60))
    server = devorg.serve_in_thread(app)

    class Org:
        url = server.url
        state = devorg.org_of(app)

    yield Org
    server.shutdown()


def test_batch_size_is_clamped_and_defaults_to_500(big_org):
    token = mint_token(big_org)
    sizes = {}
    for asked in (None, 10, 1000, 5000):
        result = _result(soap_post(big_org, "query", {"queryString": "SELECT Id FROM Contact"},
                                   token, batch_size=asked))
        # `size` is the whole query's total; the batch is what the records count.
        assert int(result.findtext("p:size", namespaces=NS)) == 4500
        sizes[asked] = len(result.findall("p:records", NS))
    assert sizes == {None: 500, 10: 200, 1000: 1000, 5000: 2000}


def test_query_more_with_zeep_pages_all_records(big_org):
    partner = zeep_partner(big_org, mint_token(big_org))
    reply = partner.service.query(queryString="SELECT Id, Name, Account.Name FROM Contact",
                                  _soapheaders=partner.headers(batch_size=2000))
    result = reply.body.result
    seen = len(result.records)
    while not result.done:
        result = partner.service.queryMore(queryLocator=result.queryLocator,
                                           _soapheaders=partner.headers(2000)).body.result
        seen += len(result.records)
    assert seen == 4500
    record = result.records[0]
    assert record.type == "Contact"
    elements = record._value_1
    assert etree.QName(elements[0]).localname == "Id"  # the second Id
    assert etree.QName(elements[1]).localname == "Name"


# ---------------------------------------------------------------- cursors


def _open_locator(org, token, batch_size=200):
    result = _result(soap_post(org, "query", {"queryString": "SELECT Id FROM Contact"}, token,
                               batch_size=batch_size))
    return result.findtext("p:queryLocator", namespaces=NS)


def _query_more_fault(org, token, locator):
    code, message, detail = _fault(soap_post(org, "queryMore", {"queryLocator": locator}, token))
    return code, message, detail


@pytest.mark.parametrize("mangle", [
    lambda loc: "01gD0000000XXXXIAW-200",  # unknown cursor
    lambda loc: loc.rsplit("-", 1)[0] + "-100",  # offset never handed out
    lambda loc: loc.rsplit("-", 1)[0],  # no offset
    lambda loc: "garbage",
    lambda loc: "",
])
def test_invalid_query_locator(local_org, token, mangle):
    locator = _open_locator(local_org, token)
    code, message, detail = _query_more_fault(local_org, token, mangle(locator))
    assert code == "sf:INVALID_QUERY_LOCATOR"
    assert message == "INVALID_QUERY_LOCATOR: invalid query locator"
    assert detail.tag == f"{{{NS['f']}}}InvalidQueryLocatorFault"
    assert detail.get(XSI_TYPE) == "sf:InvalidQueryLocatorFault"
    assert detail.findtext("f:exceptionCode", namespaces=NS) == "INVALID_QUERY_LOCATOR"


def test_locator_of_another_user_is_invalid(local_org, token):
    locator = _open_locator(local_org, token)
    other = mint_token(local_org, "zoë.müller@devorg.local")
    assert _query_more_fault(local_org, other, locator)[0] == "sf:INVALID_QUERY_LOCATOR"


def test_locator_expires_when_idle(fresh_org):
    token = mint_token(fresh_org)
    store = fresh_org.state.query_cursors
    locator = _open_locator(fresh_org, token)
    kept = _open_locator(fresh_org, token)
    assert _result(soap_post(fresh_org, "queryMore", {"queryLocator": kept}, token,
                             batch_size=200)) is not None  # within the idle timeout
    # Both have been idle for longer than no time at all: nothing to wait out.
    store.idle_timeout_s = 0
    assert _query_more_fault(fresh_org, token, locator)[0] == "sf:INVALID_QUERY_LOCATOR"


def test_locator_dies_after_the_last_batch(local_org, token):
    locator = _open_locator(local_org, token)
    last = _result(soap_post(local_org, "queryMore", {"queryLocator": locator}, token,
                             batch_size=200))
    assert last.findtext("p:done", namespaces=NS) == "true"
    assert _query_more_fault(local_org, token, locator)[0] == "sf:INVALID_QUERY_LOCATOR"


def test_a_retried_query_more_gets_the_same_batch(big_org):
    token = mint_token(big_org)
    locator = _open_locator(big_org, token)
    first = _result(soap_post(big_org, "queryMore", {"queryLocator": locator}, token,
                              batch_size=200))
    # A client retrying the same call (e.g. after a timeout) gets the same batch again.
    again = _result(soap_post(big_org, "queryMore", {"queryLocator": locator}, token,
                              batch_size=200))
    assert etree.tostring(first) == etree.tostring(again)
    assert first.findtext("p:queryLocator", namespaces=NS).endswith("-400")


def test_eleventh_cursor_of_a_user_closes_the_oldest(fresh_org):
    token = mint_token(fresh_org)
    locators = [_open_locator(fresh_org, token) for _ in range(11)]
    assert fresh_org.state.query_cursors.open_count(user_id(fresh_org)) == 10
    assert _query_more_fault(fresh_org, token, locators[0])[0] == "sf:INVALID_QUERY_LOCATOR"
    assert _result(soap_post(fresh_org, "queryMore", {"queryLocator": locators[1]},
                             token)) is not None


# ---------------------------------------------------------------- other operations


def test_get_user_info_with_requests(local_org, token):
    result = _result(soap_post(local_org, "getUserInfo", {}, token))
    assert result.findtext("p:userName", namespaces=NS) == "admin@devorg.local"
    assert result.findtext("p:userId", namespaces=NS) == user_id(local_org)
    assert result.findtext("p:organizationId", namespaces=NS) == local_org.state.org_id
    assert result.find("p:roleId", NS).get(XSI_NIL) == "true"


def test_get_user_info_with_zeep(local_org):
    partner = zeep_partner(local_org, mint_token(local_org, "zoë.müller@devorg.local"))
    reply = partner.service.getUserInfo(_soapheaders=partner.headers())
    info = reply.body.result
    assert info.userName == "zoë.müller@devorg.local"
    assert info.userFullName == "Zoë Müller"
    assert info.userTimeZone == "Europe/Berlin"
    assert info.chatterExternal is False
    assert info.organizationName == local_org.state.config.org_name
    assert reply.header.LimitInfoHeader.limitInfo[0].type == "API REQUESTS"


def test_describe_global_with_zeep(partner):
    result = partner.service.describeGlobal(_soapheaders=partner.headers()).body.result
    names = {s.name: s for s in result.sobjects}
    assert {"Account", "Contact", "Opportunity", "Lead", "User"} <= set(names)
    assert names["Contact"].keyPrefix == "003"
    assert names["Account"].labelPlural == "Accounts"
    assert result.encoding == "UTF-8"


def test_describe_sobject_with_zeep(partner, local_org):
    result = partner.service.describeSObject(sObjectType="account",
                                             _soapheaders=partner.headers()).body.result
    schema = local_org.state.data.sobject("Account")
    assert result.name == "Account"
    assert [f.name for f in result.fields] == [f.name for f in schema.fields]
    by_name = {f.name: f for f in result.fields}
    assert by_name["Id"].type == "id" and by_name["Id"].soapType == "tns:ID"
    assert by_name["OwnerId"].referenceTo == ["User"]
    assert by_name["OwnerId"].relationshipName == "Owner"
    industries = schema.field("Industry").picklist_values
    assert [p.value for p in by_name["Industry"].picklistValues] == industries
    assert {c.relationshipName for c in result.childRelationships} >= {"Contacts"}


def test_describe_sobject_of_unknown_type_faults(partner):
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.describeSObject(sObjectType="Nope__c", _soapheaders=partner.headers())
    assert caught.value.code == "sf:INVALID_TYPE"
    assert caught.value.message == "INVALID_TYPE: sObject type 'Nope__c' is not supported."


def test_get_server_timestamp_with_zeep(partner):
    stamp = partner.service.getServerTimestamp(_soapheaders=partner.headers()).body.result
    assert abs(stamp.timestamp.timestamp() - time.time()) < 60


def test_query_with_zeep(partner, local_org):
    reply = partner.service.query(queryString="SELECT Id, Name, Account.Name FROM Contact "
                                  "WHERE AccountId != null LIMIT 5",
                                  _soapheaders=partner.headers())
    result = reply.body.result
    assert result.done is True and result.size == 5 and result.queryLocator is None
    record = result.records[0]
    assert record.type == "Contact" and len(record.Id) == 18
    account = record._value_1[2]  # zeep reads a nested sObject as an sObject
    assert account.type == "Account" and account.Id is None
    assert etree.QName(account._value_1[0]).localname == "Name"


def test_child_subquery_and_aggregate_with_zeep(partner):
    result = partner.service.query(
        queryString="SELECT Name, (SELECT LastName FROM Contacts) FROM Account LIMIT 5",
        _soapheaders=partner.headers()).body.result
    assert result.size == 5
    result = partner.service.query(
        queryString="SELECT COUNT(Id), LeadSource FROM Contact GROUP BY LeadSource",
        _soapheaders=partner.headers()).body.result
    assert result.records[0].type == "AggregateResult"


def test_query_all_with_zeep(partner):
    result = partner.service.queryAll(queryString="SELECT Id FROM Contact WHERE IsDeleted = true",
                                      _soapheaders=partner.headers()).body.result
    assert result.size >= 1


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("soql,code,fault_type", [
    ("SELECT Asdf FROM Contact", "INVALID_FIELD", "InvalidFieldFault"),
    ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "MalformedQueryFault"),
    ("SELECT Id FROM no_such_object", "INVALID_TYPE", "InvalidSObjectFault"),
])
def test_query_faults(local_org, token, soql, code, fault_type):
    fault_code, message, detail = _fault(
        soap_post(local_org, "query", {"queryString": soql}, token))
    assert fault_code == f"sf:{code}"
    assert detail.tag == f"{{{NS['f']}}}{fault_type}"
    assert detail.get(XSI_TYPE) == f"sf:{fault_type}"
    exception_message = detail.findtext("f:exceptionMessage", namespaces=NS)
    assert message == f"{code}: {exception_message}"
    assert detail.findtext("f:exceptionCode", namespaces=NS) == code
    assert [etree.QName(c).localname for c in detail] == ["exceptionCode", "exceptionMessage",
                                                          "row", "column"]
    assert int(detail.findtext("f:row", namespaces=NS)) == 1


def test_query_fault_with_zeep(partner):
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.query(queryString="SELECT Asdf FROM Contact",
                              _soapheaders=partner.headers())
    fault = caught.value
    assert fault.code == "sf:INVALID_FIELD"
    assert "No such column 'Asdf' on entity 'Contact'" in fault.message
    detail = fault.detail[0]
    assert detail.findtext("f:column", namespaces=NS) == "8"


def _assert_invalid_session(response):
    code, message, detail = _fault(response)
    assert code == "sf:INVALID_SESSION_ID"
    assert message == ("INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: "
                       "Illegal Session")
    assert detail.tag == f"{{{NS['f']}}}UnexpectedErrorFault"


def test_invalid_session_id_for_unknown_missing_revoked_and_expired_sessions(fresh_org):
    _assert_invalid_session(soap_post(fresh_org, "getUserInfo", {}, "00Dbogus!token"))
    _assert_invalid_session(soap_post(fresh_org, "getUserInfo", {}, None))
    revoked = mint_token(fresh_org)
    fresh_org.state.tokens.revoke(revoked)
    _assert_invalid_session(soap_post(fresh_org, "getUserInfo", {}, revoked))
    expired = mint_token(fresh_org)
    assert soap_post(fresh_org, "getUserInfo", {}, expired).status_code == 200
    fresh_org.state.tokens.expire_all()
    _assert_invalid_session(soap_post(fresh_org, "query",
                                      {"queryString": "SELECT Id FROM Contact"}, expired))


def test_invalid_session_id_with_zeep(local_org):
    partner = zeep_partner(local_org, "not-a-session")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.getUserInfo(_soapheaders=partner.headers())
    assert caught.value.code == "sf:INVALID_SESSION_ID"


def test_wrong_org_id_in_the_url_is_an_invalid_session(local_org, token):
    _assert_invalid_session(soap_post(local_org, "getUserInfo", {}, token,
                                      org_id="00D000000000001AAA"))
    assert soap_post(local_org, "getUserInfo", {}, token,
                     org_id=local_org.state.org_id[:15]).status_code == 200


def test_request_limit_exceeded(fresh_org):
    token = mint_token(fresh_org)
    usage = fresh_org.state.api_usage
    assert soap_post(fresh_org, "getUserInfo", {}, token).status_code == 200
    usage.limit = usage.current
    code, message, detail = _fault(soap_post(fresh_org, "getUserInfo", {}, token))
    assert code == "sf:REQUEST_LIMIT_EXCEEDED"
    assert message == "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."


def test_limit_info_header_counts_requests(fresh_org):
    token = mint_token(fresh_org)
    currents = []
    for _ in range(3):
        root = etree.fromstring(soap_post(fresh_org, "getServerTimestamp", {}, token).content)
        currents.append(int(root.findtext(".//p:current", namespaces=NS)))
    assert currents[1] == currents[0] + 1 and currents[2] == currents[0] + 2


# ---------------------------------------------------------------- soapenv:Client faults


def _client_fault(response) -> str:
    assert response.status_code == 500
    fault = body_of(response)
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.find("detail") is None
    return fault.findtext("faultstring")


def test_wrong_content_type_is_a_client_fault(local_org, token):
    response = requests.post(partner_url(local_org), data=b"{}",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert _client_fault(response) == "content-type of the request should be text/xml"
    response = requests.post(partner_url(local_org), data=b"<x/>", timeout=10)
    assert _client_fault(response) == "content-type of the request should be text/xml"


def test_empty_body_is_premature_end_of_file(local_org):
    response = requests.post(partner_url(local_org), data=b"",
                             headers={"Content-Type": "text/xml"}, timeout=10)
    assert _client_fault(response) == "Premature end of file."


@pytest.mark.parametrize("body", [b"not xml at all", b"<a><b></a>", b"<notAnEnvelope/>",
                                  b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
                                  b"<x>&e;</x>"])
def test_non_envelope_body_is_a_client_fault(local_org, body):
    response = requests.post(partner_url(local_org), data=body,
                             headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
    assert _client_fault(response)


def test_unknown_operation_is_a_client_fault(local_org, token):
    message = _client_fault(soap_post(local_org, "frobnicate", {}, token))
    assert message.startswith("No operation available for request "
                              "{urn:partner.soap.sforce.com}frobnicate")


def test_unknown_version_is_404(local_org, token):
    assert soap_post(local_org, "getUserInfo", {}, token, version="99.0").status_code == 404
    assert soap_post(local_org, "getUserInfo", {}, token, version="abc").status_code == 404


# ---------------------------------------------------------------- switches and counters


def test_fault_switch_502_serves_an_html_page(fresh_org):
    token = mint_token(fresh_org)
    fresh_org.state.faults.soap_endpoint = "502"
    response = soap_post(fresh_org, "getUserInfo", {}, token)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"502" in response.content
    partner = zeep_partner(fresh_org, token)
    with pytest.raises(zeep.exceptions.TransportError):
        partner.service.getUserInfo(_soapheaders=partner.headers())


def test_fault_switch_empty_serves_200_with_no_body(fresh_org):
    token = mint_token(fresh_org)
    fresh_org.state.faults.soap_endpoint = "empty"
    response = soap_post(fresh_org, "getUserInfo", {}, token)
    assert response.status_code == 200 and response.content == b""
    fresh_org.state.faults.soap_endpoint = None
    assert soap_post(fresh_org, "getUserInfo", {}, token).status_code == 200


def test_calls_are_counted_by_operation_and_version(fresh_org):
    token = mint_token(fresh_org)
    soap_post(fresh_org, "getUserInfo", {}, token)
    soap_post(fresh_org, "getUserInfo", {}, token, version="58.0")
    soap_post(fresh_org, "query", {"queryString": "SELECT Id FROM Lead"}, token)
    counts = fresh_org.state.counters.snapshot()
    assert counts["soap.getUserInfo"] == 2
    assert counts["soap.query"] == 1
    assert counts["soap.version.66.0"] == 2
    assert counts["soap.version.58.0"] == 1


# ---------------------------------------------------------------- the record writer itself


def test_record_writer_on_hand_made_records():
    from devorg.soap import query_result_xml
    from devorg.soql import AggregateItem, ChildItem, FieldItem, ParentItem, Shape

    account = Shape("Account", False, [FieldItem("Name", "xsd:string")])
    contacts = Shape("Contact", True, [FieldItem("Email", "xsd:string")])
    shape = Shape("Contact", True, [FieldItem("LastName", "xsd:string"),
                                    ParentItem("Account", account),
                                    ChildItem("Contacts", contacts),
                                    FieldItem("Description", "xsd:string")])
    records = [
        ("Contact", "003000000000001AAA",
         ["O'Brien & <Sons> \"Ltd\"", ("Account", None, ["東京 & Zoë"]),
          [("Contact", "003000000000002AAA", [None])], "line 1\r\nline 2"]),
        ("Contact", "003000000000003AAA", ["Smith", None, None, None]),
    ]
    xml = query_result_xml(shape, records, 2, None)
    assert "<sf:LastName>O&apos;Brien &amp; &lt;Sons&gt; &quot;Ltd&quot;</sf:LastName>" in xml
    assert "line 1&#13;\nline 2" in xml
    result = etree.fromstring(f'<r xmlns="{NS["p"]}" xmlns:sf="{NS["sf"]}" '
                              f'xmlns:xsi="{NS["xsi"]}">{xml}</r>')[0]
    first, second = result.findall("p:records", NS)
    assert first.findtext("sf:LastName", namespaces=NS) == "O'Brien & <Sons> \"Ltd\""
    assert first.findtext("sf:Account/sf:Name", namespaces=NS) == "東京 & Zoë"
    assert first.findtext("sf:Description", namespaces=NS) == "line 1\r\nline 2"
    child = first.find("sf:Contacts/p:records", NS)
    assert child.find("sf:Email", NS).get(XSI_NIL) == "true"
    assert [etree.QName(e).localname for e in second] == [
        "type", "Id", "Id", "LastName", "Account", "Contacts", "Description"]
    assert all(e.get(XSI_NIL) == "true" for e in list(second)[4:])
    aggregate = Shape("AggregateResult", False, [FieldItem("LeadSource", "xsd:string"),
                                                 AggregateItem("total", "xsd:double")])
    xml = query_result_xml(aggregate, [("AggregateResult", None, [None, "1.5"])], 1, None)
    assert ('<sf:LeadSource xsi:nil="true"/><sf:total xsi:type="xsd:double">1.5</sf:total>'
            in xml)


def test_parallel_paging_keeps_cursors_apart(big_org):
    from concurrent.futures import ThreadPoolExecutor

    token = mint_token(big_org)

    def page(where: str) -> list[str]:
        soql = f"SELECT Id FROM Contact WHERE {where}"
        pages = _page_through(big_org, token, soql, 200)
        return [r.findtext("sf:Id", namespaces=NS) for p in pages
                for r in p.findall("p:records", NS)]

    filters = ["Email != null", "Email = null", "Phone != null", "LeadSource = 'Web'"]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(page, filters))
    contacts = [c for c in big_org.state.data.records("Contact") if not c["IsDeleted"]]
    expected = [
        [c for c in contacts if c["Email"] is not None],
        [c for c in contacts if c["Email"] is None],
        [c for c in contacts if c["Phone"] is not None],
        [c for c in contacts if c["LeadSource"] == "Web"],
    ]
    for ids, rows in zip(results, expected, strict=True):
        assert sorted(ids) == sorted(c["Id"] for c in rows)


@pytest.mark.parametrize("sobject", ["Account", "Contact", "Opportunity", "Lead", "User"])
def test_every_describe_parses_strictly(partner, sobject):
    result = partner.service.describeSObject(sObjectType=sobject,
                                             _soapheaders=partner.headers()).body.result
    assert result.name == sobject and result.fields[0].name == "Id"

