"""SOAP login() and the partner operations around it (logout, retrieve, describeSObjects), the
faults of operations the local org does not serve, and retired API versions: over real HTTP,
with strict zeep on the real v66.0 partner WSDL and with plain requests."""
from __future__ import annotations

import pytest
import requests
import zeep
from lxml import etree

from tests.helpers.org import ADMIN, ZOE, mint_token, user_id
from tests.helpers.paths import RESPONSES
from tests.helpers.soap import NS, XSI_NIL, body_of, envelope, partner_url, zeep_partner

BINDING = "{urn:partner.soap.sforce.com}SoapBinding"
FAULT_NS = NS["f"]


def login_url(org, version: str) -> str:
    """Where SOAP clients log in: the partner path without an org id."""
    return f"{org.url}/services/Soap/u/{version}"


def service_at(org, url: str):
    """A strict zeep service of the real v66.0 WSDL bound to `url`."""
    return zeep_partner(org, "").client.create_service(BINDING, url)


def session_header(org, session_id: str):
    header = zeep_partner(org, "").client.get_element(
        "{urn:partner.soap.sforce.com}SessionHeader")
    return header(sessionId=session_id)


def zeep_login(org, version: str = "64.0", username: str = ADMIN[0],
               password: str = ADMIN[1]):
    return service_at(org, login_url(org, version)).login(username=username, password=password)


def raw_login(org, version: str = "64.0", username: str = ADMIN[0],
              password: str = ADMIN[1]) -> requests.Response:
    return requests.post(login_url(org, version),
                         data=envelope("login", {"username": username, "password": password}),
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                         timeout=30)


def fault_code(fault: zeep.exceptions.Fault) -> tuple[str, str, str]:
    """(faultcode, detail's exceptionCode, the typed fault's local name) as zeep reads them."""
    typed = fault.detail[0]
    return (fault.code, typed.findtext(f"{{{FAULT_NS}}}exceptionCode"),
            etree.QName(typed).localname)


def _names(element: etree._Element) -> list[tuple[str, bool]]:
    return [(etree.QName(c).localname, c.get(XSI_NIL) == "true") for c in element
            if isinstance(c.tag, str)]


# ---------------------------------------------------------------- login


def test_login_at_64_gives_a_session_that_queries_at_the_server_url(local_org):
    result = zeep_login(local_org)
    org15 = local_org.state.org_id[:15]
    assert result.serverUrl == f"{local_org.url}/services/Soap/u/64.0/{org15}"
    assert result.metadataServerUrl == f"{local_org.url}/services/Soap/m/64.0/{org15}"
    assert result.passwordExpired is False
    assert result.sandbox is False
    assert result.userId == user_id(local_org)
    assert result.userInfo.userName == ADMIN[0]
    assert result.userInfo.organizationId == local_org.state.org_id
    assert result.userInfo.sessionSecondsValid == local_org.state.tokens.lifetime_s
    # The session id is a real access token of the org's store.
    token = local_org.state.tokens.lookup_access(result.sessionId)
    assert token is not None and token.user_id == result.userId
    query = service_at(local_org, result.serverUrl).query(
        queryString="SELECT Id, Name FROM Account LIMIT 3",
        _soapheaders=[session_header(local_org, result.sessionId)]).body.result
    assert query.size == 3 and len(query.records) == 3


def test_login_reply_has_the_recorded_shape(local_org):
    real = etree.parse(str(RESPONSES / "grouparoo_loginResponse_v42_partner.xml")).getroot()
    response = raw_login(local_org, "42.0", *ZOE)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    ours = etree.fromstring(response.content)
    assert ours.nsmap == real.nsmap
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                                       b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
                                       b' xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://'
                                       b'www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
                                       b"<loginResponse><result>")
    # No Header: a login reply carries no LimitInfoHeader.
    assert [etree.QName(c).localname for c in ours] == ["Body"]
    assert [etree.QName(c).localname for c in real] == ["Body"]
    our_result = ours.find("soapenv:Body/p:loginResponse/p:result", NS)
    real_result = real.find("soapenv:Body/p:loginResponse/p:result", NS)
    assert _names(our_result) == _names(real_result)
    assert _names(our_result.find("p:userInfo", NS)) == _names(real_result.find("p:userInfo", NS))
    assert our_result.findtext("p:userInfo/p:userName", namespaces=NS) == ZOE[0]
    assert our_result.findtext("p:serverUrl", namespaces=NS).startswith(
        f"{local_org.url}/services/Soap/u/42.0/")


def test_login_at_66_is_retired(local_org):
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_login(local_org, "66.0")
    assert fault_code(caught.value) == ("sf:INVALID_OPERATION", "INVALID_OPERATION",
                                        "UnexpectedErrorFault")
    assert "not available in API version 65.0 and later" in caught.value.message
    assert raw_login(local_org, "65.0").status_code == 500


def test_login_disabled_by_the_admin_setting(fresh_org):
    response = requests.post(f"{fresh_org.url}/__admin/settings",
                             json={"soap_login_enabled": False}, timeout=10)
    assert response.json()["soap_login_enabled"] is False
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_login(fresh_org)
    assert fault_code(caught.value) == ("sf:INVALID_OPERATION", "INVALID_OPERATION",
                                        "UnexpectedErrorFault")
    assert "disabled" in caught.value.message
    requests.post(f"{fresh_org.url}/__admin/settings", json={"soap_login_enabled": True},
                  timeout=10)
    assert zeep_login(fresh_org).sessionId


@pytest.mark.parametrize("username,password", [
    (ADMIN[0], "wrong"),
    (ADMIN[0], ADMIN[1] + "SOMETOKEN"),  # the seeded users have no security token
    ("nobody@devorg.local", ADMIN[1]),
    (ADMIN[0], ""),
])
def test_bad_credentials_are_the_recorded_invalid_login_fault(local_org, username, password):
    response = raw_login(local_org, username=username, password=password)
    assert response.status_code == 500
    recorded = (RESPONSES / "www-salesforce-nb_fault_INVALID_LOGIN.xml").read_bytes()
    assert response.content == recorded.rstrip(b"\r\n")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_login(local_org, username=username, password=password)
    assert fault_code(caught.value) == ("sf:INVALID_LOGIN", "INVALID_LOGIN", "LoginFault")


@pytest.mark.parametrize("name,data,content_type", [
    ("www-salesforce-nb_fault_soapenvClient_contenttype.xml", b"<x/>", "application/json"),
    ("www-salesforce-nb_fault_soapenvClient_premature_eof.xml", b"", "text/xml"),
])
def test_unreadable_login_requests_are_the_recorded_client_faults(local_org, name, data,
                                                                  content_type):
    # These two faults were recorded from login calls.
    response = requests.post(login_url(local_org, "64.0"), data=data,
                             headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 500
    assert response.content == (RESPONSES / name).read_bytes().strip()


def test_login_username_is_case_insensitive(local_org):
    assert zeep_login(local_org, username=ADMIN[0].upper()).userId == user_id(local_org)


# ---------------------------------------------------------------- logout, retrieve, describe


def test_logout_ends_the_session(local_org):
    result = zeep_login(local_org)
    service = service_at(local_org, result.serverUrl)
    header = session_header(local_org, result.sessionId)
    assert service.getUserInfo(_soapheaders=[header]).body.result.userName == ADMIN[0]
    service.logout(_soapheaders=[header])
    assert local_org.state.tokens.lookup_access(result.sessionId) is None
    with pytest.raises(zeep.exceptions.Fault) as caught:
        service.getUserInfo(_soapheaders=[header])
    assert fault_code(caught.value) == ("sf:INVALID_SESSION_ID", "INVALID_SESSION_ID",
                                        "UnexpectedErrorFault")


def test_oauth_revoke_ends_a_soap_login_session(local_org):
    result = zeep_login(local_org)
    response = requests.post(f"{local_org.url}/services/oauth2/revoke",
                             data={"token": result.sessionId}, timeout=10)
    assert response.status_code == 200
    service = service_at(local_org, result.serverUrl)
    with pytest.raises(zeep.exceptions.Fault) as caught:
        service.getUserInfo(_soapheaders=[session_header(local_org, result.sessionId)])
    assert fault_code(caught.value)[1] == "INVALID_SESSION_ID"


def test_retrieve_answers_records_in_the_order_asked_with_nil_for_unknown_ids(local_org):
    contacts = local_org.state.data.records("Contact")[:2]
    partner = zeep_partner(local_org, mint_token(local_org))
    results = partner.service.retrieve(
        fieldList="Id, FirstName, Email, Account.Name", sObjectType="Contact",
        ids=[contacts[1]["Id"], "003000000000000AAA", contacts[0]["Id"][:15]],
        _soapheaders=partner.headers()).body.result
    assert len(results) == 3
    # zeep reads a nil <result xsi:nil="true"/> as an empty sObject.
    assert (results[1].type, results[1].Id, results[1]._value_1) == (None, None, None)
    first, last = results[0], results[2]
    assert (first.type, first.Id, last.Id) == ("Contact", contacts[1]["Id"], contacts[0]["Id"])
    names = [etree.QName(e).localname for e in first._value_1[:2]]
    assert names == ["FirstName", "Email"]  # the Id once, as in the recorded reply
    assert [e.text for e in first._value_1[:2]] == [contacts[1]["FirstName"],
                                                     contacts[1]["Email"]]
    assert first._value_1[2].type == "Account"  # a parent, as query writes it


def test_retrieve_writes_the_recorded_shape(local_org):
    real = etree.parse(str(RESPONSES / "soapforce" / "retrieve_response.xml")).getroot()
    opportunity = local_org.state.data.records("Opportunity")[0]
    response = requests.post(
        partner_url(local_org), timeout=30, headers={"Content-Type": "text/xml"},
        data=(envelope("retrieve", {"fieldList": "Id, Name, Description, StageName",
                                    "sObjectType": "Opportunity", "ids": opportunity["Id"]},
                       mint_token(local_org))))
    assert response.status_code == 200
    ours = body_of(response).find("p:result", NS)
    assert ours.findtext("sf:Id", namespaces=NS) == opportunity["Id"]
    recorded = real.find(".//p:retrieveResponse/p:result", NS)
    assert [etree.QName(c).localname for c in ours] == \
        [etree.QName(c).localname for c in recorded]
    assert ours.nsmap == recorded.nsmap


def test_retrieve_of_an_unknown_id_is_a_nil_result(local_org):
    response = requests.post(
        partner_url(local_org), timeout=30, headers={"Content-Type": "text/xml"},
        data=envelope("retrieve", {"fieldList": "Name", "sObjectType": "Account",
                                   "ids": "001000000000000AAA"}, mint_token(local_org)))
    results = body_of(response).findall("p:result", NS)
    assert len(results) == 1 and results[0].get(XSI_NIL) == "true" and len(results[0]) == 0


def test_retrieve_faults(local_org):
    partner = zeep_partner(local_org, mint_token(local_org))
    for arguments, code in (
        ({"fieldList": "Id", "sObjectType": "NoSuchThing", "ids": ["001000000000000AAA"]},
         "INVALID_TYPE"),
        ({"fieldList": "Id, Asdf", "sObjectType": "Contact", "ids": ["003000000000000AAA"]},
         "INVALID_FIELD"),
        ({"fieldList": "Name FROM User WHERE", "sObjectType": "Contact",
          "ids": ["003000000000000AAA"]}, "INVALID_FIELD"),
    ):
        with pytest.raises(zeep.exceptions.Fault) as caught:
            partner.service.retrieve(**arguments, _soapheaders=partner.headers())
        assert fault_code(caught.value)[:2] == (f"sf:{code}", code)


def test_describe_sobjects_answers_one_result_per_type(local_org):
    partner = zeep_partner(local_org, mint_token(local_org))
    results = partner.service.describeSObjects(sObjectType=["Account", "contact"],
                                               _soapheaders=partner.headers()).body.result
    assert [r.name for r in results] == ["Account", "Contact"]
    single = partner.service.describeSObject(sObjectType="Contact",
                                             _soapheaders=partner.headers()).body.result
    assert [f.name for f in results[1].fields] == [f.name for f in single.fields]
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.describeSObjects(sObjectType=["Account", "Nope"],
                                         _soapheaders=partner.headers())
    assert fault_code(caught.value) == ("sf:INVALID_TYPE", "INVALID_TYPE",
                                        "InvalidSObjectFault")


# ---------------------------------------------------------------- what the org does not serve


@pytest.mark.parametrize("operation,arguments", [
    ("convertLead", {"leadConverts": []}),
    ("emptyRecycleBin", {"ids": ["001000000000000AAA"]}),
    ("getDeleted", {"sObjectType": "Account", "startDate": "2026-01-01T00:00:00Z",
                    "endDate": "2026-01-02T00:00:00Z"}),
])
def test_unserved_wsdl_operations_answer_a_salesforce_fault(local_org, operation, arguments):
    partner = zeep_partner(local_org, mint_token(local_org))
    with pytest.raises(zeep.exceptions.Fault) as caught:
        getattr(partner.service, operation)(**arguments, _soapheaders=partner.headers())
    assert fault_code(caught.value) == ("sf:INVALID_OPERATION", "INVALID_OPERATION",
                                        "UnexpectedErrorFault")
    assert f"{operation}()" in caught.value.message


def test_unserved_operation_still_needs_a_session(local_org):
    partner = zeep_partner(local_org, "not-a-session")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.convertLead(leadConverts=[], _soapheaders=partner.headers())
    assert fault_code(caught.value)[1] == "INVALID_SESSION_ID"


# ---------------------------------------------------------------- retired API versions


@pytest.mark.parametrize("version", ["20.0", "30.0"])
def test_retired_versions_answer_unsupported_api_version(local_org, version):
    message = (f"The API version that was specified ({version}) is below the minimum supported "
               "(31.0). Change the version number and run the request again.")
    with pytest.raises(zeep.exceptions.Fault) as caught:
        zeep_login(local_org, version)
    assert fault_code(caught.value) == ("sf:UNSUPPORTED_API_VERSION", "UNSUPPORTED_API_VERSION",
                                        "UnexpectedErrorFault")
    assert caught.value.message == f"UNSUPPORTED_API_VERSION: {message}"
    partner = zeep_partner(local_org, mint_token(local_org), version)
    with pytest.raises(zeep.exceptions.Fault) as caught:
        partner.service.getUserInfo(_soapheaders=partner.headers())
    assert fault_code(caught.value)[1] == "UNSUPPORTED_API_VERSION"
    assert raw_login(local_org, version).status_code == 500


def test_versions_never_served_are_404_at_the_login_url(local_org):
    assert raw_login(local_org, "19.0").status_code == 404
    assert raw_login(local_org, "99.0").status_code == 404
    assert raw_login(local_org, "abc").status_code == 404


def test_lowest_served_version_logs_in(local_org):
    assert zeep_login(local_org, "31.0").serverUrl.endswith(
        f"/services/Soap/u/31.0/{local_org.state.org_id[:15]}")
