"""The local org's SOAP replies compared, structurally, with replies recorded from real Salesforce.

Values are masked; what must match is the element tree: names and namespaces, order, the doubled
`Id`, `xsi:type` and `xsi:nil`, which elements carry text, and the namespace declarations of the
envelope. Runs of `records` siblings are compared as one, so record counts may differ.
"""
from __future__ import annotations

import pytest
import requests
from lxml import etree

import devorg
from devorg import OrgConfig
from tests.helpers.org import mint_token
from tests.helpers.paths import RESPONSES
from tests.helpers.soap import NS, XSI_NIL, XSI_TYPE, partner_url, soap_post

RECORDS = f"{{{NS['p']}}}records"


def skeleton(element: etree._Element) -> tuple:
    """The masked shape of an element: tag, typing attributes, text or not, children."""
    attributes = tuple((name, element.get(attr)) for name, attr in
                       (("xsi:type", XSI_TYPE), ("xsi:nil", XSI_NIL)) if element.get(attr))
    children: list[tuple] = []
    for child in element:
        if not isinstance(child.tag, str):  # comments in the recorded files
            continue
        shape = skeleton(child)
        if child.tag == RECORDS and children and children[-1] == shape:
            continue
        children.append(shape)
    has_text = bool((element.text or "").strip()) if not children else False
    return element.tag, attributes, has_text, tuple(children)


def fixture(name: str) -> etree._Element:
    return etree.parse(str(RESPONSES / name)).getroot()


def body(root: etree._Element) -> etree._Element:
    return root.find("soapenv:Body", NS)


def reply(response: requests.Response) -> etree._Element:
    return etree.fromstring(response.content)


@pytest.fixture
def token(local_org) -> str:
    return mint_token(local_org)


def test_query_contacts_matches_the_recorded_reply(local_org, token):
    real = fixture("www-salesforce_query_contacts.xml")
    ours = reply(soap_post(local_org, "query",
                           {"queryString": "SELECT Id, Name FROM Contact LIMIT 2"}, token))
    assert ours.nsmap == real.nsmap
    assert skeleton(ours) == skeleton(real)  # LimitInfoHeader included


def test_query_all_with_parent_and_no_id_matches(local_org, token):
    real = fixture("salesforce-python-toolkit_queryAll_contact_with_account_partner.xml")
    soql = ("SELECT Account.Name, FirstName, LastName FROM Contact "
            "WHERE AccountId != null AND FirstName = null LIMIT 1")
    ours = reply(soap_post(local_org, "queryAll", {"queryString": soql}, token))
    assert ours.nsmap == real.nsmap
    assert skeleton(body(ours)) == skeleton(body(real))


def test_parent_path_matches_the_dot_syntax_reply(local_org, token):
    real = fixture("wrapped/palominolabs_dotsyntax_queryResponse_WRAPPED_BY_US.xml")
    ours = reply(soap_post(local_org, "query",
                           {"queryString": "SELECT Owner.Name FROM Account LIMIT 1"}, token))
    assert skeleton(body(ours)) == skeleton(body(real))


def _without(record: tuple, *names: str) -> tuple:
    tag, attributes, has_text, children = record
    drop = {f"{{{NS['sf']}}}{name}" for name in names}
    return tag, attributes, has_text, tuple(c for c in children if c[0] not in drop)


def test_child_subquery_matches_the_subquery_reply(local_org, token):
    real = fixture("wrapped/palominolabs_subquery_queryResponse_WRAPPED_BY_US.xml")
    real_record = skeleton(body(real).find(".//p:records", NS))
    soql = ("SELECT Id, Name, AnnualRevenue, (SELECT Id, FirstName, Email FROM Contacts "
            "WHERE FirstName != null AND Email != null) FROM Account "
            "WHERE AnnualRevenue = null LIMIT 1")
    ours = body(reply(soap_post(local_org, "query", {"queryString": soql}, token)))
    our_record = skeleton(ours.find(".//p:records", NS))
    # The recorded Account also had Tasks (empty) and Cases; our org has no such objects.
    assert our_record == _without(real_record, "Tasks", "Cases")
    empty_real = body(real).find(".//sf:Tasks", NS)
    soql = ("SELECT Id, Name, AnnualRevenue, (SELECT Id FROM Contacts WHERE LastName = 'none') "
            "FROM Account LIMIT 1")
    ours = body(reply(soap_post(local_org, "query", {"queryString": soql}, token)))
    empty_ours = ours.find(".//sf:Contacts", NS)
    assert skeleton(empty_ours)[1:] == skeleton(empty_real)[1:]


def test_opportunity_query_and_query_all_match_the_soapforce_replies(local_org, token):
    soql = "SELECT Id, Name, StageName FROM Opportunity LIMIT 2"
    for operation, name in (("query", "query_response.xml"),
                            ("queryAll", "query_all_response.xml")):
        real = fixture(f"soapforce/{name}")
        ours = reply(soap_post(local_org, operation, {"queryString": soql}, token))
        assert ours.nsmap == real.nsmap
        assert skeleton(body(ours)) == skeleton(body(real))


def test_last_query_more_batch_matches_the_soapforce_reply():
    app = devorg.create_app(OrgConfig(account_count=120))  # 240 Opportunities: two batches
    server = devorg.serve_in_thread(app)
    try:
        class Org:
            url = server.url
            state = devorg.org_of(app)

        token = mint_token(Org)
        first = reply(soap_post(Org, "query", {"queryString": "SELECT Id, Name, StageName "
                                                              "FROM Opportunity"},
                                token, batch_size=200))
        locator = first.findtext(".//p:queryLocator", namespaces=NS)
        ours = reply(soap_post(Org, "queryMore", {"queryLocator": locator}, token,
                               batch_size=200))
    finally:
        server.shutdown()
    real = fixture("soapforce/query_more_response.xml")
    assert ours.nsmap == real.nsmap
    assert skeleton(body(ours)) == skeleton(body(real))


def test_invalid_field_fault_matches_the_recorded_fault(local_org, token):
    real = fixture("www-salesforce_fault_INVALID_FIELD.xml")
    response = soap_post(local_org, "query",
                         {"queryString": "select adfId, Name, Account.Name from Contact"}, token)
    assert response.status_code == 500
    ours = reply(response)
    assert ours.nsmap == real.nsmap
    assert skeleton(ours) == skeleton(real)
    # Salesforce's texts, character for character.
    assert [e.text for e in ours.iter()] == [e.text for e in real.iter()]


def test_invalid_session_fault_matches_the_recorded_fault(local_org):
    real = fixture("cumulusci_RESPONSE_FAULT.xml")
    ours = reply(soap_post(local_org, "getUserInfo", {}, "00Dx!expired"))
    assert ours.nsmap == real.nsmap
    assert skeleton(ours) == skeleton(real)
    texts = [(e.text or "").strip() for e in ours.iter()]
    assert texts == [(e.text or "").strip() for e in real.iter() if isinstance(e.tag, str)]


def _child_names(element: etree._Element) -> list[tuple[str, bool]]:
    return [(etree.QName(c).localname, c.get(XSI_NIL) == "true") for c in element
            if isinstance(c.tag, str)]


def test_get_user_info_matches_the_recorded_replies(local_org, token):
    ours = reply(soap_post(local_org, "getUserInfo", {}, token))
    result = ours.find(".//p:getUserInfoResponse/p:result", NS)
    # A v42 login reply carries every element of GetUserInfoResult in today's order.
    login = fixture("grouparoo_loginResponse_v42_partner.xml")
    assert _child_names(result) == _child_names(login.find(".//p:userInfo", NS))
    # The soapforce reply predates chatterExternal and orgDefaultCurrencyLocale.
    real = fixture("soapforce/get_user_info_response.xml")
    newer = {"chatterExternal", "orgDefaultCurrencyLocale"}
    assert [n for n in _child_names(result) if n[0] not in newer] == \
        _child_names(real.find(".//p:result", NS))
    assert ours.nsmap == {"soapenv": NS["soapenv"], None: NS["p"], "xsi": NS["xsi"]}
    assert ours.find("soapenv:Header/p:LimitInfoHeader", NS) is not None


def _is_subsequence(short: list, long: list) -> bool:
    rest = iter(long)
    return all(any(item == candidate for candidate in rest) for item in short)


def test_describe_global_keeps_the_recorded_order(local_org, token):
    real = fixture("soapforce/describe_global_response.xml")
    ours = reply(soap_post(local_org, "describeGlobal", {}, token))
    real_result = real.find(".//p:result", NS)
    our_result = ours.find(".//p:result", NS)
    assert [n for n, _ in _child_names(our_result)][:2] == ["encoding", "maxBatchSize"]
    real_sobject = _child_names(real_result.find("p:sobjects", NS))
    for sobject in our_result.findall("p:sobjects", NS):
        # Newer API versions added elements; the recorded ones keep their order among them.
        assert _is_subsequence(real_sobject, _child_names(sobject))


@pytest.mark.parametrize("name,data,content_type", [
    ("www-salesforce-nb_fault_soapenvClient_contenttype.xml", b"<x/>", "application/json"),
    ("www-salesforce-nb_fault_soapenvClient_premature_eof.xml", b"", "text/xml"),
])
def test_client_faults_are_the_recorded_bytes(local_org, name, data, content_type):
    response = requests.post(partner_url(local_org), data=data,
                             headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 500
    assert response.content == (RESPONSES / name).read_bytes().strip()
