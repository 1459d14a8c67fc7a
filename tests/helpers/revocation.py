"""What the local org says of a token, over real HTTP: whether an access token still answers
(the SOAP partner endpoint, the identity service) and whether a refresh token still gets new
access tokens; and the assertions built on them."""
from __future__ import annotations

import requests

from sfconnect.auth.tokens import TokenSet

SOAP_CALL = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
                  xmlns:urn="urn:partner.soap.sforce.com">
  <soapenv:Header><urn:SessionHeader><urn:sessionId>{session_id}</urn:sessionId>
  </urn:SessionHeader></soapenv:Header>
  <soapenv:Body><urn:getServerTimestamp/></soapenv:Body>
</soapenv:Envelope>"""


def soap_accepts(org, access_token: str) -> bool:
    """Whether the partner endpoint serves a call with this session id (else INVALID_SESSION_ID)."""
    response = requests.post(
        f"{org.url}/services/Soap/u/{org.state.latest_version}/{org.state.org_id[:15]}",
        data=SOAP_CALL.format(session_id=access_token),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}, timeout=30)
    if response.status_code == 200:
        return True
    assert response.status_code == 500 and "INVALID_SESSION_ID" in response.text, response.text
    return False


def identity_accepts(tokens: TokenSet) -> bool:
    """Whether the identity service answers for this access token (else 403 Bad_OAuth_Token)."""
    response = requests.get(tokens.id_url, timeout=30,
                            headers={"Authorization": f"Bearer {tokens.access_token}"})
    assert response.status_code in (200, 403), response.text
    return response.status_code == 200


def refresh_grant_error(org, client, refresh_token: str) -> str | None:
    """The error of a refresh_token grant with this token, None when it succeeded (then the org
    issued a new access token: only ask this of a token expected dead)."""
    response = requests.post(f"{org.url}/services/oauth2/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": client.client_id, "client_secret": client.client_secret})
    return None if response.status_code == 200 else response.json()["error"]


def assert_alive(org, tokens: TokenSet) -> None:
    assert soap_accepts(org, tokens.access_token)
    assert identity_accepts(tokens)


def assert_dead(org, client, tokens: TokenSet) -> None:
    """Neither token of the set answers at the org any more."""
    assert not soap_accepts(org, tokens.access_token), "the access token still answers (SOAP)"
    assert not identity_accepts(tokens), "the access token still answers (identity)"
    if tokens.refresh_token:
        assert refresh_grant_error(org, client, tokens.refresh_token) == "invalid_grant", \
            "the refresh token still gets new access tokens"
