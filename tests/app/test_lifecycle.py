"""The token lifecycle beyond the SOAP query: the identity service's 403 Bad_OAuth_Token and the
REST API's 401 are a dead session like SOAP's INVALID_SESSION_ID: refresh once, retry once, no
loop; a grant that is gone ends the session with "connect again"."""
from __future__ import annotations

import requests

from tests.helpers.flow import logout_csrf, token_set
from tests.helpers.org import counters


def _refresh_identity(running, http: requests.Session) -> requests.Response:
    home = http.get(running.url + "/")
    return http.post(f"{running.url}/identity/refresh", data={"csrf_token": logout_csrf(home.text)},
                     allow_redirects=False)


def test_identity_refetch_on_an_expired_session_refreshes_once_and_retries(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    before_tokens = token_set(running, http)
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    base = counters(fresh_org)

    response = _refresh_identity(running, http)
    assert response.status_code == 302, response.text
    page = http.get(running.url + response.headers["Location"])
    assert "Salesforce confirmed who you are: Ada Admin" in page.text
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - base.get("token.refresh_token", 0) == 1
    assert after["identity"] - base["identity"] == 2  # the 403 and its retry
    assert token_set(running, http).access_token != before_tokens.access_token

    # The same session keeps working, with no further refresh.
    assert _refresh_identity(running, http).status_code == 302
    assert counters(fresh_org)["token.refresh_token"] == after["token.refresh_token"]


def test_identity_403_even_with_a_fresh_token_is_an_error_not_a_loop(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": "403"}).raise_for_status()
    base = counters(fresh_org)
    response = _refresh_identity(running, http)
    assert response.status_code == 502
    assert "Bad_OAuth_Token" in response.text
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - base.get("token.refresh_token", 0) == 1
    assert after["identity"] - base["identity"] == 2
    # Still connected: the identity service misbehaved, the session is not the user's fault.
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": None}).raise_for_status()
    assert _refresh_identity(running, http).status_code == 302


def test_identity_refetch_with_a_revoked_grant_asks_to_connect_again(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    fresh_org.state.tokens.revoke(token_set(running, http).refresh_token)
    response = _refresh_identity(running, http)
    assert response.status_code == 302
    page = http.get(running.url + response.headers["Location"])
    assert "Connect again" in page.text
    assert "Not connected" in page.text


def test_rest_401_refreshes_once_and_retries(connect_to, fresh_org):
    """The REST API answers a dead token with 401 INVALID_SESSION_ID: TokenService.with_tokens
    (what every call with the user's token goes through) refreshes once and retries, over real
    HTTP to the org's REST query resource."""
    from sfconnect.auth.connection import Connection
    from sfconnect.salesforce import rest

    running, http = connect_to(fresh_org)
    interface = running.app.session_interface
    sid = http.cookies.get("sfconnect_session")
    connection = Connection.from_session(interface.cache.get(f"sfconnect:session:{sid}")["sf"])
    service = running.app.extensions["sfconnect.tokens"]
    url = f"{connection.instance_url}/services/data/v66.0/query/"
    rest_http = running.app.extensions["sfconnect.rest_http"]
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    base = counters(fresh_org)

    result = service.with_tokens(connection, lambda tokens: rest.query(
        rest_http, url, tokens.access_token,
        "SELECT Id FROM Account LIMIT 3"))
    assert len(result.records) == 3
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - base.get("token.refresh_token", 0) == 1
    assert after["rest.query"] - base.get("rest.query", 0) == 2  # the 401 and its retry
