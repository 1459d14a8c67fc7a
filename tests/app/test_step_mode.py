"""Step-by-step mode over real HTTP against the local org: the switch, the four pauses (authorize
URL, token request, identity call, SOAP envelope), Continue, CSRF, stale and replayed Continues,
and no secret unmasked on any step page."""
from __future__ import annotations

from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
import requests

from sfconnect.redaction import HIDDEN, mask
from tests.helpers.flow import sign_in, sign_in_at, start_login
from tests.helpers.learn import leaks, start_capturing_org, steps_of
from tests.helpers.org import counters
from tests.helpers.wait import until

SOQL = "SELECT Id, Name, Industry FROM Account ORDER BY Name LIMIT 5"
AUTHORIZE_PARAMS = ["response_type", "client_id", "redirect_uri", "scope", "state",
                    "code_challenge", "code_challenge_method"]
TOKEN_PARAMS = ["grant_type", "code", "client_id", "client_secret", "redirect_uri",
                "code_verifier"]


def doc(response: requests.Response):
    return lxml.html.fromstring(response.text)


def switch_state(response: requests.Response) -> str:
    return doc(response).xpath("string(//*[@class='step-switch-state'])").strip()


def csrf(response: requests.Response) -> str:
    return doc(response).xpath("//input[@name='csrf_token']/@value")[0]


def switch(http: requests.Session, url: str, mode: str) -> requests.Response:
    """Press the home page's switch."""
    home = http.get(url + "/")
    form = doc(home).xpath("//form[contains(@class,'step-switch-form')]")[0]
    fields = dict(form.form_values())
    assert fields["mode"] == mode, f"the switch offers {fields['mode']!r}, not {mode!r}"
    return http.post(urljoin(url + "/", form.action), data=fields, allow_redirects=False)


def kind(response: requests.Response) -> str:
    classes = doc(response).xpath("//section[contains(@class,'step ')]/@class")
    assert classes, response.text[:2000]
    return next(c for c in classes[0].split() if c.startswith("step-"))[len("step-"):]


def rows(response: requests.Response, table: str) -> list[tuple[str, str]]:
    """(name, value) of each row of a step page's table ("step-params", "step-headers" ...)."""
    found = doc(response).xpath(f"//table[contains(@class,'{table}')]/tbody/tr")
    return [(row.get("data-name"), row.xpath("string(.//code[@class='step-value'])"))
            for row in found]


def shown_url(response: requests.Response) -> str:
    return doc(response).xpath("string(//code[contains(@class,'step-url')])")


def continue_form(response: requests.Response, base: str) -> tuple[str, dict[str, str]]:
    form = doc(response).xpath("//form[@class='continue-form']")[0]
    return urljoin(base + "/", form.action), dict(form.form_values())


def links_to_flow(response: requests.Response) -> bool:
    return bool(doc(response).xpath("//a[@href='/flow']"))


def refused_as_stale(response: requests.Response) -> bool:
    return response.status_code == 400 and "stale_step" in response.text


def refused_by_csrf(response: requests.Response) -> bool:
    return response.status_code == 400 and "csrf" in response.text.lower()


def paused_at_identity(http: requests.Session, url: str) -> requests.Response:
    """Switch on (if off), then Continue through the authorize URL and the token request."""
    if switch_state(http.get(url + "/")) == "off":
        assert switch(http, url, "on").status_code == 303
    login = http.get(url + "/login")
    go = http.get(urljoin(url, doc(login).xpath("//a[@id='continue']/@href")[0]),
                  allow_redirects=False)
    token_page = sign_in_at(http, go.headers["Location"])
    assert kind(token_page) == "token"
    action, fields = continue_form(token_page, url)
    identity_page = http.post(action, data=fields)
    assert kind(identity_page) == "identity"
    return identity_page


def test_switch_is_off_by_default_needs_csrf_and_off_goes_straight_through(start_app,
                                                                            local_org):
    running = start_app(local_org)
    url = running.url
    http = requests.Session()
    home = http.get(url + "/")
    assert switch_state(home) == "off"
    # The switch is a form: no CSRF token, no change.
    for data in ({"mode": "on"}, {"mode": "on", "csrf_token": "forged"}):
        assert refused_by_csrf(http.post(url + "/step", data=data, allow_redirects=False))
    assert switch_state(http.get(url + "/")) == "off"
    start_login(http, url)  # a redirect, not a step page

    assert switch(http, url, "on").status_code == 303
    assert switch_state(http.get(url + "/")) == "on"
    paused = http.get(url + "/login", allow_redirects=False)
    assert paused.status_code == 200 and kind(paused) == "authorize"
    stale_link = urljoin(url, doc(paused).xpath("//a[@id='continue']/@href")[0])

    # Off again: the pending step is dropped, and the flow runs straight through.
    assert switch(http, url, "off").status_code == 303
    assert switch_state(http.get(url + "/")) == "off"
    assert refused_as_stale(http.get(stale_link, allow_redirects=False))
    signed = sign_in(http, url)
    assert signed.response.url == url + "/" and "Ada Admin" in signed.response.text
    before = counters(local_org).get("soap.query", 0)
    results = http.get(url + "/query", params={"q": SOQL})
    assert results.status_code == 200 and doc(results).xpath("//*[@class='record-count']")
    assert counters(local_org)["soap.query"] == before + 1


def test_step_by_step_from_connect_to_the_first_query_with_no_secret_shown(start_app):
    org, capture = start_capturing_org()
    pages: dict[str, str] = {}
    try:
        running = start_app(org)
        url = running.url
        http = requests.Session()
        assert switch(http, url, "on").status_code == 303

        # 1. /login shows the authorize URL, parameter by parameter; no redirect until Continue.
        before = counters(org)
        login = http.get(url + "/login", allow_redirects=False)
        assert login.status_code == 200 and "Location" not in login.headers
        assert kind(login) == "authorize" and links_to_flow(login)
        pages["authorize"] = login.text
        params = rows(login, "step-params")
        assert [name for name, _ in params] == AUTHORIZE_PARAMS
        values = dict(params)
        assert values["response_type"] == "code"
        assert values["client_id"] == running.client.client_id
        assert values["redirect_uri"] == url + "/oauth/callback"
        assert values["code_challenge_method"] == "S256"
        assert "RFC 7636" in login.text and "RFC 6749" in login.text
        authorize_url = shown_url(login)
        assert authorize_url.startswith(org.url + "/services/oauth2/authorize?")
        assert parse_qs(urlsplit(authorize_url).query)["state"] == [values["state"]]
        assert counters(org).get("authorize", 0) == before.get("authorize", 0)
        continue_link = urljoin(url, doc(login).xpath("//a[@id='continue']/@href")[0])
        go = http.get(continue_link, allow_redirects=False)
        assert go.status_code == 302 and go.headers["Location"] == authorize_url
        assert refused_as_stale(http.get(continue_link, allow_redirects=False))

        # 2. Back from Salesforce: the state is checked, then the token request waits.
        back = sign_in_at(http, authorize_url, follow=False)
        code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
        before = counters(org)
        token_page = http.get(back.headers["Location"])
        assert token_page.status_code == 200 and token_page.url == url + "/step"
        assert kind(token_page) == "token" and links_to_flow(token_page)
        pages["token"] = token_page.text
        assert shown_url(token_page) == org.url + "/services/oauth2/token"
        params = rows(token_page, "step-params")
        assert [name for name, _ in params] == TOKEN_PARAMS
        values = dict(params)
        assert values["grant_type"] == "authorization_code"
        assert values["code"] == mask(code) != code
        assert values["client_secret"] == HIDDEN and values["code_verifier"] == HIDDEN
        assert values["redirect_uri"] == url + "/oauth/callback"
        assert "code_verifier=[hidden]" in token_page.text  # the body, masked as in the trace
        assert counters(org).get("token.authorization_code", 0) == \
            before.get("token.authorization_code", 0)
        # The reload of /step shows the same step; the callback itself cannot be replayed.
        assert kind(http.get(url + "/step")) == "token"
        assert http.get(back.headers["Location"], allow_redirects=False).status_code == 400

        action, fields = continue_form(token_page, url)
        assert urlsplit(action).path == "/step"
        for data in ({"continue": fields["continue"]},
                     {"continue": fields["continue"], "csrf_token": "forged"}):
            assert refused_by_csrf(http.post(action, data=data, allow_redirects=False))
        assert counters(org).get("token.authorization_code", 0) == \
            before.get("token.authorization_code", 0)
        identity_page = http.post(action, data=fields)
        after_token = counters(org)
        assert after_token["token.authorization_code"] == \
            before.get("token.authorization_code", 0) + 1
        assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))
        assert counters(org)["token.authorization_code"] == after_token["token.authorization_code"]

        # 3. The identity call waits with its masked Bearer token.
        assert identity_page.url == url + "/step" and kind(identity_page) == "identity"
        assert links_to_flow(identity_page)
        pages["identity"] = identity_page.text
        (access_token,) = capture.kinds["access_token"]
        headers = dict(rows(identity_page, "step-headers"))
        assert headers["Authorization"] == f"Bearer {mask(access_token)}"
        assert shown_url(identity_page).startswith(org.url + "/id/")
        assert counters(org).get("identity", 0) == after_token.get("identity", 0)
        action, fields = continue_form(identity_page, url)
        home = http.post(action, data=fields)
        assert home.url == url + "/" and "Connected as" in home.text
        assert counters(org)["identity"] == after_token.get("identity", 0) + 1
        assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))

        # 4. The first query waits with its envelope; Continue runs it.
        before = counters(org)
        soap_page = http.get(url + "/query", params={"q": SOQL})
        assert soap_page.status_code == 200 and kind(soap_page) == "soap"
        assert links_to_flow(soap_page)
        pages["soap"] = soap_page.text
        endpoint = shown_url(soap_page)
        assert "/services/Soap/u/" in endpoint and "{version}" not in endpoint
        envelope = doc(soap_page).xpath("string(//pre[contains(@class,'step-body')])")
        assert f"sessionId>{mask(access_token)}</" in envelope
        assert SOQL in envelope and "Envelope" in envelope
        assert dict(rows(soap_page, "step-params"))["sessionId"] == mask(access_token)
        assert counters(org).get("soap.query", 0) == before.get("soap.query", 0)
        action, fields = continue_form(soap_page, url)
        assert refused_by_csrf(http.post(action, data={"continue": fields["continue"]},
                                         allow_redirects=False))
        results = http.post(action, data=fields)
        assert results.status_code == 200 and urlsplit(results.url).path == "/query"
        assert doc(results).xpath("string(//*[@class='record-count'])") == "5"
        assert counters(org)["soap.query"] == before.get("soap.query", 0) + 1
        assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))
        assert counters(org)["soap.query"] == before.get("soap.query", 0) + 1
        # The same URL again is a new request: it pauses again.
        assert kind(http.get(results.url)) == "soap"

        # The trace has every step, in order, as without the pauses (and the replayed callback).
        flow = http.get(url + "/flow")
        assert steps_of(flow) == [
            "authorization request", "sign-in and consent at Salesforce", "callback",
            "sign-in and consent at Salesforce", "callback",  # the replay, refused
            "token request", "signature check", "identity request",
            "endpoint chosen with {version} filled", "SOAP request"]
    finally:
        org.server.shutdown()

    secrets = capture.secrets | {running.client.client_secret}
    assert {"code", "code_verifier", "client_secret", "access_token", "refresh_token"} <= \
        set(capture.kinds)
    for name, text in pages.items():
        assert leaks(text, secrets) == [], name


def test_next_batch_pauses_with_the_query_more_envelope(start_app, local_org):
    running = start_app(local_org)
    url = running.url
    http = requests.Session()
    assert sign_in(http, url).response.url == url + "/"
    assert switch(http, url, "on").status_code == 303
    soql = "SELECT Id, LastName FROM Contact"
    first = http.get(url + "/query", params={"q": soql, "batch": 200})
    assert kind(first) == "soap"
    assert dict(rows(first, "step-params"))["batchSize"] == "200"
    action, fields = continue_form(first, url)
    results = http.post(action, data=fields)
    next_href = doc(results).xpath("//a[@rel='next']/@href")[0]
    before = counters(local_org).get("soap.queryMore", 0)
    paused = http.get(urljoin(url, next_href))
    assert kind(paused) == "soap"
    params = dict(rows(paused, "step-params"))
    assert params["queryLocator"] and "queryString" not in params
    assert "queryMore" in doc(paused).xpath("string(//pre[contains(@class,'step-body')])")
    assert counters(local_org).get("soap.queryMore", 0) == before
    action, fields = continue_form(paused, url)
    second = http.post(action, data=fields)
    assert second.status_code == 200 and "Showing rows 201–" in second.text
    assert counters(local_org)["soap.queryMore"] == before + 1


def test_stale_and_replayed_continues_are_refused_cleanly(start_app, local_org):
    running = start_app(local_org)
    url = running.url
    http = requests.Session()
    assert http.get(url + "/step", allow_redirects=False).headers["Location"] == "/"
    token = csrf(http.get(url + "/"))
    for data in ({"csrf_token": token}, {"csrf_token": token, "continue": "no-such-step"},
                 {"csrf_token": token, "continue": "é\u0000" * 3}):
        assert refused_as_stale(http.post(url + "/step", data=data, allow_redirects=False))
    assert refused_as_stale(http.get(url + "/step/authorize", params={"step": "no-such-step"},
                                     allow_redirects=False))

    # Paused after the token exchange, then signed out: the held tokens are revoked, and the
    # identity Continue refused. The switch stays on.
    identity_page = paused_at_identity(http, url)
    action, fields = continue_form(identity_page, url)
    before = counters(local_org)
    logout = http.post(url + "/logout", data={"csrf_token": fields["csrf_token"]})
    assert logout.status_code == 200 and switch_state(logout) == "on"
    assert counters(local_org)["revoke"] == before.get("revoke", 0) + 2  # refresh, then access
    fields["csrf_token"] = csrf(http.get(url + "/"))
    assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))
    assert counters(local_org).get("identity", 0) == before.get("identity", 0)
    assert "Not connected" in http.get(url + "/").text

    # Paused at the identity call, a new Connect replaces the step: those tokens are revoked too.
    identity_page = paused_at_identity(http, url)
    action, fields = continue_form(identity_page, url)
    before = counters(local_org)
    assert kind(http.get(url + "/login")) == "authorize"
    assert counters(local_org)["revoke"] == before.get("revoke", 0) + 2  # refresh, then access
    assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))

    # Paused at the token request, the switch turned off: the code is never exchanged.
    go = http.get(urljoin(url, doc(http.get(url + "/login")).xpath(
        "//a[@id='continue']/@href")[0]), allow_redirects=False)
    token_page = sign_in_at(http, go.headers["Location"])
    action, fields = continue_form(token_page, url)
    before = counters(local_org)
    assert switch(http, url, "off").status_code == 303
    assert refused_as_stale(http.post(action, data=fields, allow_redirects=False))
    assert counters(local_org).get("token.authorization_code", 0) == \
        before.get("token.authorization_code", 0)


def test_a_paused_code_is_kept_encrypted_in_redis(start_app, fresh_org, redis_server):
    import redis

    running = start_app(fresh_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    url = running.url
    http = requests.Session()
    assert switch(http, url, "on").status_code == 303
    login = http.get(url + "/login")
    go = http.get(urljoin(url, doc(login).xpath("//a[@id='continue']/@href")[0]),
                  allow_redirects=False)
    back = sign_in_at(http, go.headers["Location"], follow=False)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    token_page = http.get(back.headers["Location"])
    assert kind(token_page) == "token"

    client = redis.Redis.from_url(redis_server.url)
    keys = client.keys("*")
    assert any(key.startswith(b"sfconnect:steps:") for key in keys)
    stored = b""
    for key in keys:
        stored += (b"".join(client.hgetall(key).values()) if client.type(key) == b"hash"
                   else client.get(key) or b"")
    assert code.encode() not in stored, "the paused code is stored in clear"
    assert b"code_verifier" not in stored  # Authlib's state data was used up at the callback

    action, fields = continue_form(token_page, url)
    assert kind(http.post(action, data=fields)) == "identity"


def test_a_request_under_way_while_a_step_pauses_does_not_lose_the_step(start_app, fresh_org):
    """Flask-Session writes the whole session back at the end of every request: a describe
    lookup that began before the pause and ends after it must not take the step with it."""
    import threading

    running = start_app(fresh_org)
    url = running.url
    http = requests.Session()
    assert sign_in(http, url).response.url == url + "/"
    assert switch(http, url, "on").status_code == 303
    # The describe lookup finds the session expired and refreshes it slowly: it is under way,
    # holding the session as it was, while the query pauses.
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"token_endpoint": "slow", "token_delay_s": 2}).raise_for_status()
    before = counters(fresh_org).get("soap.describeGlobal", 0)
    lookup: dict[str, int] = {}
    thread = threading.Thread(target=lambda: lookup.setdefault(
        "status", http.get(url + "/describe").status_code))
    thread.start()
    until(lambda: counters(fresh_org).get("soap.describeGlobal", 0) != before
          or not thread.is_alive(), message="the describe lookup did not reach the org")
    paused = http.get(url + "/query", params={"q": SOQL})
    assert kind(paused) == "soap"
    thread.join()
    assert lookup["status"] == 200
    requests.post(f"{fresh_org.url}/__admin/faults", json={"token_endpoint": None})
    action, fields = continue_form(paused, url)
    results = http.post(action, data=fields)
    assert doc(results).xpath("string(//*[@class='record-count'])") == "5"
