"""The web server flow end to end over real HTTP: sfconnect on one port, the local org on another.

Every test drives the app with `requests` the way a browser would: GET /login, follow to the org's
login page, post the form, Allow, come back through /oauth/callback. The org's counters show which
calls reached it (a refused callback makes no token call).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests

from tests.helpers.flow import Relay, sign_in, sign_in_at, start_login
from tests.helpers.org import ZOE, counters, start_org

CONTACTS_WITH_ACCOUNT = "SELECT Id, FirstName, LastName, Account.Name FROM Contact LIMIT 20"


# ------------------------------------------------------------------------------------- helpers

def session_data(running, http: requests.Session) -> dict | None:
    """The server-side session of this browser, read from the app's own store."""
    sid = http.cookies.get("sfconnect_session")
    return running.app.session_interface.cache.get(f"sfconnect:session:{sid}") if sid else None


def stored_tokens(running, http: requests.Session):
    """The TokenSet the app holds for this browser (read through the app's vault)."""
    data = session_data(running, http)
    assert data and "sf" in data, "the browser is not connected"
    record = running.app.extensions["sfconnect.tokens"].vault.load(data["sf"]["token_record"])
    assert record is not None
    return record.tokens


def doc(response: requests.Response):
    return lxml.html.fromstring(response.text)


def result_rows(response: requests.Response) -> list:
    return doc(response).xpath("//table[@class='records']/tbody/tr")


def result_columns(response: requests.Response) -> list[str]:
    return [th.text_content() for th in doc(response).xpath(
        "//table[@class='records']/thead/tr/th")]


def csrf_token(response: requests.Response) -> str:
    return doc(response).xpath("//form[@class='logout-form']//input[@name='csrf_token']")[0].get(
        "value")


def resign(token: dict, secret: str) -> dict:
    """Sign a token response the way Salesforce does (for a relay that alters it knowingly)."""
    digest = hmac.new(secret.encode(), (token["id"] + token["issued_at"]).encode(),
                      hashlib.sha256).digest()
    return {**token, "signature": base64.b64encode(digest).decode()}


# ------------------------------------------------------------------------------- the flow

def test_login_redirects_to_authorize_with_pkce_state_and_scope(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    location = start_login(http, running.url)
    parts = urlsplit(location)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == local_org.url
    assert parts.path == "/services/oauth2/authorize"
    assert params["response_type"] == "code"
    assert params["client_id"] == running.client.client_id
    assert params["redirect_uri"] == f"{running.url}/oauth/callback"
    assert params["scope"] == "api refresh_token"
    assert params["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", params["code_challenge"])
    assert len(params["state"]) >= 20
    assert "client_secret" not in location and running.client.client_secret not in location
    # A second login gets a different state and challenge.
    again = {k: v[0] for k, v in parse_qs(urlsplit(start_login(http, running.url)).query).items()}
    assert again["state"] != params["state"]
    assert again["code_challenge"] != params["code_challenge"]


def test_whole_flow_lands_on_home_as_the_user(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    before = counters(local_org)
    start_login(http, running.url)
    sid_before = http.cookies.get("sfconnect_session")
    assert sid_before

    signed = sign_in(http, running.url)
    page = signed.response
    assert page.status_code == 200
    assert page.url == running.url + "/"  # the code does not linger in the address bar
    assert "Ada Admin" in page.text
    assert "admin@devorg.local" in page.text
    assert local_org.state.org_id in page.text
    assert doc(page).xpath("//textarea[@name='q']"), "the SOQL form is shown"
    after = counters(local_org)
    assert after.get("token.authorization_code", 0) - before.get("token.authorization_code", 0) == 1
    assert after.get("identity", 0) - before.get("identity", 0) == 1

    # The session id changed at sign-in, and the old one is worth nothing.
    sid_after = http.cookies.get("sfconnect_session")
    assert sid_after and sid_after != sid_before
    stale = requests.Session()
    stale.cookies.set("sfconnect_session", sid_before)
    assert "Not connected" in stale.get(running.url + "/").text


def test_session_cookie_flags(start_app, local_org):
    running = start_app(local_org)
    response = requests.get(f"{running.url}/login", allow_redirects=False)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("sfconnect_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # served over http here

    https_app = start_app(local_org, SF_REDIRECT_URI="https://sfconnect.example.com/oauth/callback")
    cookie = requests.get(f"{https_app.url}/login", allow_redirects=False).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_other_user_sees_their_own_identity(start_app, local_org):
    running = start_app(local_org)
    page = sign_in(requests.Session(), running.url, user=ZOE).response
    assert "Zoë Müller" in page.text
    assert "zoë.müller@devorg.local" in page.text


# --------------------------------------------------------------------------- refusals

def _token_calls(org) -> int:
    return counters(org).get("token.authorization_code", 0)


def test_callback_without_state_is_refused_without_token_call(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    start_login(http, running.url)
    before = _token_calls(local_org)
    response = http.get(f"{running.url}/oauth/callback", params={"code": "aPrxSomeCode"})
    assert response.status_code == 400
    assert "invalid_state" in response.text
    assert _token_calls(local_org) == before


def test_callback_with_unknown_state_is_refused_without_token_call(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    authorize_url = start_login(http, running.url)
    redirect = sign_in_at(http, authorize_url, follow=False)
    params = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["Location"]).query).items()}
    before = _token_calls(local_org)
    response = http.get(f"{running.url}/oauth/callback",
                        params={"code": params["code"], "state": "forged" + params["state"]})
    assert response.status_code == 400
    assert _token_calls(local_org) == before
    # Another browser cannot finish this browser's sign-in with its real state either.
    other = requests.Session()
    response = other.get(redirect.headers["Location"])
    assert response.status_code == 400
    assert _token_calls(local_org) == before


def test_callback_with_reused_state_is_refused_without_token_call(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    redirect = sign_in_at(http, start_login(http, running.url), follow=False)
    callback_url = redirect.headers["Location"]
    assert callback_url.startswith(running.url + "/oauth/callback?")
    before = _token_calls(local_org)
    first = http.get(callback_url, allow_redirects=False)
    assert first.status_code == 302
    assert _token_calls(local_org) == before + 1
    second = http.get(callback_url, allow_redirects=False)
    assert second.status_code == 400
    assert "already used" in second.text
    assert _token_calls(local_org) == before + 1


def test_callback_with_repeated_parameters_is_refused(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    start_login(http, running.url)
    before = _token_calls(local_org)
    response = http.get(f"{running.url}/oauth/callback?state=a&state=b&code=c")
    assert response.status_code == 400
    assert _token_calls(local_org) == before


def test_deny_shows_the_error_escaped(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    before = _token_calls(local_org)
    # Zoë has not approved this app before, so the consent page is shown.
    page = sign_in(http, running.url, user=ZOE, action="deny").response
    assert page.status_code == 400
    assert page.url.startswith(running.url + "/oauth/callback")
    assert "access_denied" in page.text
    assert "Not connected" in page.text
    assert _token_calls(local_org) == before

    # A hostile error_description with a valid state is shown as text, never as markup.
    authorize_url = start_login(http, running.url)
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    evil = "<script>alert('x')</script> & <b>bold</b>"
    page = http.get(f"{running.url}/oauth/callback",
                    params={"state": state, "error": "access_denied", "error_description": evil})
    assert page.status_code == 400
    assert "<script>alert" not in page.text and "<b>bold</b>" not in page.text
    assert ("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
            in page.text)
    assert _token_calls(local_org) == before


def test_unknown_login_host_is_refused(start_app, local_org):
    running = start_app(local_org)
    response = requests.get(f"{running.url}/login", params={"login": "evil"},
                            allow_redirects=False)
    assert response.status_code == 400


def test_login_host_choice_sends_the_exchange_to_that_host_only(start_app, local_org, fresh_org):
    running = start_app(local_org, SF_LOGIN_HOSTS=f"Sandbox={fresh_org.url}")
    # The second org knows the same app (same id, secret and callback), as a sandbox copy would.
    fresh_org.register(f"{running.url}/oauth/callback", client_id=running.client.client_id,
                       client_secret=running.client.client_secret)
    home = requests.get(running.url + "/")
    choices = doc(home).xpath("//input[@name='login']")
    assert [c.get("value") for c in choices] == ["host1", "host2"]
    assert "Sandbox" in home.text

    http = requests.Session()
    before_a, before_b = _token_calls(local_org), _token_calls(fresh_org)
    signed = sign_in(http, running.url, login="host2")
    assert signed.authorize_url.startswith(fresh_org.url + "/services/oauth2/authorize")
    assert signed.response.url == running.url + "/"
    assert _token_calls(fresh_org) == before_b + 1
    assert _token_calls(local_org) == before_a
    assert stored_tokens(running, http).login_url == fresh_org.url


# ------------------------------------------------------------------------------ logout

def test_logout_needs_csrf_then_revokes_and_clears(connected, local_org):
    running, http = connected
    tokens = stored_tokens(running, http)
    assert local_org.state.tokens.lookup_access(tokens.access_token) is not None
    revokes = counters(local_org).get("revoke", 0)

    refused = http.post(f"{running.url}/logout", allow_redirects=False)
    assert refused.status_code == 400
    assert "csrf" in refused.text.lower()
    forged = http.post(f"{running.url}/logout", data={"csrf_token": "forged"},
                       allow_redirects=False)
    assert forged.status_code == 400
    assert counters(local_org).get("revoke", 0) == revokes
    home = http.get(running.url + "/")
    assert "Ada Admin" in home.text

    response = http.post(f"{running.url}/logout", data={"csrf_token": csrf_token(home)})
    assert response.status_code == 200 and response.url == running.url + "/"
    assert "Not connected" in response.text
    assert "revoked" in response.text
    assert counters(local_org).get("revoke", 0) == revokes + 2  # refresh token, then access token
    assert local_org.state.tokens.lookup_access(tokens.access_token) is None
    assert local_org.state.tokens.lookup_refresh(tokens.refresh_token) is None
    vault = running.app.extensions["sfconnect.tokens"].vault
    data = session_data(running, http)
    assert not data or "sf" not in data
    assert not any(vault.records.records.directory.glob("*.json")), "the token record is gone"
    assert http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT},
                    allow_redirects=False).status_code == 302


@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_logout_when_revoke_fails_still_clears(connected, fresh_org):
    running, http = connected
    home = http.get(running.url + "/")
    fresh_org.server.shutdown()  # Salesforce is gone
    response = http.post(f"{running.url}/logout", data={"csrf_token": csrf_token(home)})
    assert response.status_code == 200
    assert "Not connected" in response.text
    assert "could not be reached to revoke" in response.text


# ------------------------------------------------------------------ tokens stay on the server

def test_tokens_never_in_cookies_pages_urls_or_logs(start_app, fresh_org, caplog):
    caplog.set_level(logging.DEBUG)
    running = start_app(fresh_org)
    http = requests.Session()
    seen: list[str] = []

    def record(response: requests.Response, *args, **kwargs):
        seen.append(response.url)
        seen.append(response.text)
        seen.extend(f"{k}: {v}" for k, v in response.headers.items())

    http.hooks["response"].append(record)
    sign_in(http, running.url)
    first = stored_tokens(running, http)
    http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    fresh_org.state.tokens.expire_all()
    http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    second = stored_tokens(running, http)
    assert second.access_token != first.access_token  # a refresh happened
    http.post(f"{running.url}/logout", data={"csrf_token": csrf_token(http.get(running.url))})

    secrets_ = {first.access_token, first.refresh_token, second.access_token,
                running.client.client_secret}
    cookies = " ".join(f"{c.name}={c.value}" for c in http.cookies)
    # The org's own authorization server (Authlib's grants, in this process only because the
    # stand-in runs here) logs what it issues; Salesforce's logs are not the app's.
    logs = "\n".join(r.getMessage() for r in caplog.records
                     if not r.name.startswith("authlib.oauth2.rfc6749"))
    assert len(caplog.records) > 10  # the logs were captured (werkzeug, urllib3, zeep ...)
    for secret in secrets_:
        assert secret not in cookies
        assert not any(secret in text for text in seen), "a token reached the browser"
        assert secret not in logs, "a token reached the log"
    # At rest: the session files hold no token, the token records only ciphertext.
    base = Path(running.app.extensions["sfconnect.settings"].session_file_dir)
    for path in base.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets_:
                assert secret.encode() not in content, f"{path} holds a token in clear"


# ------------------------------------------------------------------------------- queries

def test_query_with_parent_fields(connected):
    running, http = connected
    response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    assert response.status_code == 200
    assert result_columns(response) == ["Id", "FirstName", "LastName", "Account.Name"]
    assert len(result_rows(response)) == 20
    page = doc(response)
    assert page.xpath("string(//*[@class='record-count'])") == "20"
    assert re.search(r"\d+ ms", page.xpath("string(//*[@class='elapsed'])"))
    assert page.xpath("//textarea[@name='q']")[0].text == CONTACTS_WITH_ACCOUNT
    assert not page.xpath("//a[@rel='next']")


def test_query_with_child_subquery(connected):
    running, http = connected
    soql = "SELECT Name, (SELECT LastName FROM Contacts) FROM Account ORDER BY Name LIMIT 10"
    response = http.get(f"{running.url}/query", params={"q": soql})
    assert response.status_code == 200
    assert result_columns(response) == ["Name", "Contacts"]
    nested = doc(response).xpath(
        "//table[@class='records']//table[contains(@class,'records-nested')]")
    assert nested, "child rows are shown as nested tables"
    assert [th.text_content() for th in nested[0].xpath("./thead/tr/th")] == ["LastName"]


def test_query_with_aggregates(connected):
    running, http = connected
    soql = "SELECT StageName, COUNT(Id) deals, MAX(Amount) FROM Opportunity GROUP BY StageName"
    response = http.get(f"{running.url}/query", params={"q": soql})
    assert response.status_code == 200
    assert result_columns(response) == ["StageName", "deals", "expr0"]
    assert len(result_rows(response)) >= 2


def test_query_of_2500_records_pages_with_query_more(start_app):
    org = start_org(contact_count=2500)
    try:
        running = start_app(org)
        http = requests.Session()
        sign_in(http, running.url)
        soql = "SELECT Id, LastName, Account.Name FROM Contact"
        response = http.get(f"{running.url}/query", params={"q": soql})
        assert response.status_code == 200
        ids: list[str] = []
        pages = 0
        while True:
            pages += 1
            page = doc(response)
            assert page.xpath("string(//*[@class='record-count'])") == "2,500"
            ids += [row.xpath("string(./td[1])") for row in result_rows(response)]
            following = page.xpath("//a[@rel='next']/@href")
            if not following:
                break
            response = http.get(running.url + following[0])
            assert response.status_code == 200
        assert pages == 2  # 2,000 then 500
        assert len(ids) == 2500 and len(set(ids)) == 2500
        assert "Showing rows 2,001–2,500" in unescape(response.text)
        assert counters(org).get("soap.queryMore", 0) == 1
    finally:
        org.server.shutdown()


def test_soql_fault_shows_code_row_column_and_keeps_the_query(connected):
    running, http = connected
    soql = "SELECT Asdf FROM Contact WHERE LastName = '<b>O\\'Brien</b>'"
    response = http.get(f"{running.url}/query", params={"q": soql})
    assert response.status_code == 400
    page = doc(response)
    assert page.xpath("string(//*[@class='fault-code'])") == "INVALID_FIELD"
    assert page.xpath("string(//*[@class='fault-row'])") == "1"
    assert page.xpath("string(//*[@class='fault-column'])") == "8"
    assert "No such column 'Asdf' on entity 'Contact'" in page.xpath(
        "string(//*[@class='fault-message'])")
    assert page.xpath("//textarea[@name='q']")[0].text == soql
    assert "<b>O" not in response.text  # the SOQL is kept, escaped

    response = http.get(f"{running.url}/query", params={"q": "SELECT FROM Contact"})
    assert response.status_code == 400
    assert doc(response).xpath("string(//*[@class='fault-code'])") == "MALFORMED_QUERY"


def test_query_when_not_connected_goes_home(start_app, local_org):
    running = start_app(local_org)
    response = requests.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT},
                            allow_redirects=False)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/"


# ------------------------------------------------------------------------- refresh

@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_expired_session_is_refreshed_once_and_the_query_succeeds(connected, fresh_org):
    running, http = connected
    before = stored_tokens(running, http)
    assert http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT}).status_code == 200
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    base = counters(fresh_org)

    response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    assert response.status_code == 200
    assert len(result_rows(response)) == 20
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - base.get("token.refresh_token", 0) == 1
    assert after["soap.query"] - base["soap.query"] == 2  # the failed call and its retry
    assert stored_tokens(running, http).access_token != before.access_token

    response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    assert response.status_code == 200
    assert counters(fresh_org).get("token.refresh_token", 0) == after.get("token.refresh_token", 0)


@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_refresh_with_rotation_stores_the_new_refresh_token(connected, fresh_org):
    running, http = connected
    requests.post(f"{fresh_org.url}/__admin/settings",
                  json={"refresh_token_rotation": True}).raise_for_status()
    first = stored_tokens(running, http)
    for _ in range(2):
        fresh_org.state.tokens.expire_all()
        response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
        assert response.status_code == 200
    latest = stored_tokens(running, http)
    assert latest.refresh_token != first.refresh_token
    assert counters(fresh_org).get("token.refresh_token", 0) == 2


@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_failed_refresh_asks_to_connect_again_and_keeps_the_soql(connected, fresh_org):
    running, http = connected
    tokens = stored_tokens(running, http)
    fresh_org.state.tokens.revoke(tokens.refresh_token)  # e.g. an admin revoked the app
    soql = "SELECT Name FROM Account WHERE Name LIKE '%&%'"
    response = http.get(f"{running.url}/query", params={"q": soql}, allow_redirects=False)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["q"] == [soql]
    page = http.get(running.url + response.headers["Location"])
    assert "Connect again" in page.text
    assert "Not connected" in page.text
    assert doc(page).xpath("//form[@class='connect-form']//input[@name='q']/@value") == [soql]
    # Connecting again brings the query back into the form.
    signed = sign_in(http, running.url, q=soql)
    assert doc(signed.response).xpath("//textarea[@name='q']")[0].text == soql


@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_second_invalid_session_after_refresh_is_an_error_not_a_loop(connected, fresh_org):
    running, http = connected
    # Every token the org issues from now on is born expired.
    requests.post(f"{fresh_org.url}/__admin/settings",
                  json={"access_token_lifetime": 0}).raise_for_status()
    fresh_org.state.tokens.expire_all()
    base = counters(fresh_org)
    response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    assert response.status_code == 502
    assert "INVALID_SESSION_ID" in response.text
    after = counters(fresh_org)
    assert after.get("token.refresh_token", 0) - base.get("token.refresh_token", 0) == 1
    assert after["soap.query"] - base.get("soap.query", 0) == 2


# ---------------------------------------------------------------- signature and trust

def test_token_response_with_a_bad_signature_is_refused(start_app, local_org):
    """A relay between the app and the org swaps the user id in `id`: the signature no longer
    matches, and the app refuses the tokens before using them."""
    zoe = local_org.state.data.user_by_username(ZOE[0])["Id"]

    def swap_user(token: dict) -> dict:
        return {**token, "id": token["id"].rsplit("/", 1)[0] + "/" + zoe}

    relay = Relay(local_org.url, swap_user)
    try:
        running = start_app(local_org, SF_LOGIN_URL=relay.url, SF_LOGIN_HOSTS=local_org.url)
        http = requests.Session()
        authorize_url = start_login(http, running.url).replace(relay.url, local_org.url)
        identity_calls = counters(local_org).get("identity", 0)
        page = sign_in_at(http, authorize_url)
        assert relay.tampered == 1
        assert page.status_code == 400
        assert "invalid_signature" in page.text
        assert "Not connected" in page.text
        assert counters(local_org).get("identity", 0) == identity_calls
        data = session_data(running, http)
        assert not data or "sf" not in data
    finally:
        relay.shutdown()


def test_refresh_response_with_a_bad_signature_is_refused(start_app, fresh_org):
    tamper = {"on": False}

    def altered_issued_at(token: dict) -> dict:
        return {**token, "issued_at": "1"} if tamper["on"] else token

    relay = Relay(fresh_org.url, altered_issued_at)
    try:
        running = start_app(fresh_org, SF_LOGIN_URL=relay.url, SF_LOGIN_HOSTS=fresh_org.url)
        http = requests.Session()
        authorize_url = start_login(http, running.url).replace(relay.url, fresh_org.url)
        assert sign_in_at(http, authorize_url).url == running.url + "/"
        before = stored_tokens(running, http)
        tamper["on"] = True
        fresh_org.state.tokens.expire_all()
        response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
        assert response.status_code == 400
        assert "invalid_signature" in response.text
        assert stored_tokens(running, http) == before  # nothing unverified was stored
    finally:
        relay.shutdown()


def test_identity_url_off_salesforce_is_refused_before_the_token_goes_there(start_app,
                                                                             local_org):
    """Even correctly signed, an `id` on a foreign host never receives the token."""
    holder: dict = {}

    def foreign_id(token: dict) -> dict:
        token = {**token, "id": "https://collector.example.net/id/" + token["id"].split("/id/")[1]}
        return resign(token, holder["secret"])

    relay = Relay(local_org.url, foreign_id)
    try:
        running = start_app(local_org, SF_LOGIN_URL=relay.url, SF_LOGIN_HOSTS=local_org.url)
        holder["secret"] = running.client.client_secret
        http = requests.Session()
        authorize_url = start_login(http, running.url).replace(relay.url, local_org.url)
        page = sign_in_at(http, authorize_url)
        assert page.status_code == 502
        assert "UNTRUSTED_HOST" in page.text
        assert "collector.example.net" in page.text
    finally:
        relay.shutdown()


# ------------------------------------------------------------------- headers and health

def test_security_headers_on_every_response(connected):
    running, http = connected
    responses = [
        http.get(running.url + "/"),
        http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT}),
        http.get(f"{running.url}/query", params={"q": "SELECT FROM"}),
        http.get(running.url + "/no-such-page"),
        http.get(running.url + "/static/app.css"),
        http.get(running.url + "/healthz"),
    ]
    for response in responses:
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    # No inline script or style anywhere in the pages: the policy could not allow them.
    for response in responses[:4]:
        page = doc(response)
        assert all(script.get("src") for script in page.xpath("//script"))
        assert not page.xpath("//style | //*[@style] | //*[starts-with(name(@*), 'on')]")
        assert "Traceback" not in response.text


def test_healthz(start_app, local_org):
    running = start_app(local_org)
    response = requests.get(running.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_bad_input_never_gives_a_server_error(connected):
    running, http = connected
    for path, params in [
        ("/query", {"q": "x" * 100_001}),
        ("/query", {"q": CONTACTS_WITH_ACCOUNT, "locator": "nonsense-locator", "start": "-4"}),
        ("/query", {"q": "SELECT Id FROM Contact", "start": "abc"}),
        ("/oauth/callback", {"state": "s" * 5000, "code": "c" * 5000}),
        ("/", {"q": "<script>alert(1)</script>"}),
    ]:
        response = http.get(running.url + path, params=params)
        assert response.status_code < 500 or response.status_code == 502, (path, response.text)
        assert "<script>alert(1)" not in response.text
    response = http.get(running.url + "/query?q=%ff%fe")
    assert response.status_code < 500


def test_redis_sessions_hold_no_tokens(start_app, fresh_org, redis_server):
    import redis

    running = start_app(fresh_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    assert http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT}).status_code == 200
    fresh_org.state.tokens.expire_all()
    response = http.get(f"{running.url}/query", params={"q": CONTACTS_WITH_ACCOUNT})
    assert response.status_code == 200
    assert counters(fresh_org).get("token.refresh_token", 0) == 1
    assert http.get(f"{running.url}/flow").status_code == 200  # the last trace entries stored

    client = redis.Redis.from_url(redis_server.url)
    sid = http.cookies.get("sfconnect_session")
    keys = {key.decode() for key in client.keys("*")}
    assert f"sfconnect:session:{sid}" in keys
    assert any(key.startswith("sfconnect:tokens:") for key in keys)
    connection = running.app.session_interface.serializer.decode(
        client.get(f"sfconnect:session:{sid}"))["sf"]
    tokens = running.app.extensions["sfconnect.tokens"].vault.load(
        connection["token_record"]).tokens
    assert client.hget(f"sfconnect:tokens:{connection['token_record']}", "version") == b"2"
    dump = b"".join(client.dump(key) or b"" for key in keys)
    for secret in (tokens.access_token, tokens.refresh_token, running.client.client_secret):
        assert secret.encode() not in dump

    home = http.get(running.url + "/")
    http.post(f"{running.url}/logout", data={"csrf_token": csrf_token(home)})
    assert not client.keys("sfconnect:tokens:*")
    assert not client.exists(f"sfconnect:session:{sid}")


@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)
def test_concurrent_requests_on_an_expired_session_refresh_once(connected, fresh_org):
    from concurrent.futures import ThreadPoolExecutor

    running, http = connected
    requests.post(f"{fresh_org.url}/__admin/settings",
                  json={"refresh_token_rotation": True}).raise_for_status()
    fresh_org.state.tokens.expire_all()
    cookie = http.cookies.get("sfconnect_session")

    def query(_: int) -> int:
        browser_tab = requests.Session()
        browser_tab.cookies.set("sfconnect_session", cookie)
        return browser_tab.get(f"{running.url}/query",
                               params={"q": CONTACTS_WITH_ACCOUNT}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(query, range(8)))
    assert statuses == [200] * 8
    assert counters(fresh_org).get("token.refresh_token", 0) == 1
    assert http.get(f"{running.url}/query",
                    params={"q": CONTACTS_WITH_ACCOUNT}).status_code == 200


@pytest.mark.parametrize(("switch", "value", "code"), [
    ("token_endpoint", "503", "oauth_unavailable"),
    ("token_endpoint", "nonjson", "oauth_unavailable"),
    ("identity_endpoint", "403", "Bad_OAuth_Token"),
    ("identity_endpoint", "500", "identity_unavailable"),
])
def test_salesforce_faults_during_the_callback_give_a_clear_page(start_app, fresh_org, switch,
                                                                 value, code):
    running = start_app(fresh_org)
    requests.post(f"{fresh_org.url}/__admin/faults", json={switch: value}).raise_for_status()
    http = requests.Session()
    page = sign_in(http, running.url).response
    assert page.status_code == 502
    assert doc(page).xpath("string(//p[@class='error-code']/code)") == code
    assert "Traceback" not in page.text
    assert "Not connected" in page.text
    data = session_data(running, http)
    assert not data or "sf" not in data
    if switch == "identity_endpoint":  # the token the app will not keep is revoked
        assert counters(fresh_org).get("revoke", 0) == 2  # refresh token, then access token
