"""Security properties checked over real HTTP: tokens encrypted at rest (every Redis key and every
session file after a whole flow), security headers on every kind of response, a new session id at
sign-in, and a CSRF token on every form that changes state."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
import pytest
import redis
import requests

from app import local_org_demo
from tests.helpers.flow import (
    forget_org_login,
    logout_csrf,
    sign_in,
    sign_in_at,
    start_login,
    token_set,
)
from tests.helpers.learn import leaks
from tests.helpers.org import ZOE, counters

SOQL = "SELECT Id, FirstName, LastName, Account.Name FROM Contact LIMIT 20"


def _redis_dump(url: str, workdir: Path) -> bytes:
    """Every key and value in Redis, in every form it can take, plus the RDB snapshot file."""
    client = redis.Redis.from_url(url)
    dump = b""
    for key in client.scan_iter("*"):
        kind = client.type(key)
        dump += key + b"\n" + (client.dump(key) or b"")
        if kind == b"string":
            dump += client.get(key) or b""
        elif kind == b"hash":
            dump += b"".join(k + v for k, v in client.hgetall(key).items())
    client.save()
    return dump + (workdir / "dump.rdb").read_bytes()


@pytest.mark.parametrize("store", ["redis", "filesystem"])
def test_no_token_or_secret_at_rest_after_a_whole_flow(connect_to, fresh_org, redis_server,
                                                       tmp_path, store):
    overrides = ({"SESSION_TYPE": "redis", "REDIS_URL": redis_server.url} if store == "redis"
                 else {"SESSION_FILE_DIR": str(tmp_path / "store")})
    requests.post(f"{fresh_org.url}/__admin/settings",
                  json={"refresh_token_rotation": True}).raise_for_status()
    running, http = connect_to(fresh_org, **overrides)
    first = token_set(running, http)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    second = token_set(running, http)
    assert counters(fresh_org)["token.refresh_token"] == 1
    assert second.refresh_token != first.refresh_token  # rotated: four tokens to look for
    secrets_ = {first.access_token, first.refresh_token, second.access_token,
                second.refresh_token, running.client.client_secret}
    # The last query's trace entries are stored once its page has been sent; /flow waits for
    # them, so the stores below hold everything the flow left.
    flow = http.get(f"{running.url}/flow")
    assert flow.status_code == 200 and "copy-as-code" in flow.text  # with Copy as

    if store == "redis":
        stored = _redis_dump(redis_server.url, tmp_path / "redis")
        keys = redis.Redis.from_url(redis_server.url).keys("*")
        assert any(k.startswith(b"sfconnect:tokens:") for k in keys)
        assert any(k.startswith(b"sfconnect:session:") for k in keys)
    else:
        files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
        assert any(p.parent.name == "tokens" and p.suffix == ".json" for p in files)
        assert any(p.parent.name == "sessions" for p in files)
        stored = b"".join(p.read_bytes() for p in files)
    assert b"gAAAAA" in stored  # the token record is there, as Fernet ciphertext
    for secret in secrets_:
        assert secret.encode() not in stored, "a token or the client secret is stored in clear"
        # Nor in any other encoding a store might use.
        assert secret.encode("utf-16-le") not in stored
    # Nor in the code the app writes from the trace: /flow's Copy as, the starter's files, and
    # /local-org, which shows the local org's demo client secret (documented), and no other.
    running.app.config["SFCONNECT_LOCAL_ORG_DEMO"] = local_org_demo(
        {"SF_LOGIN_URL": fresh_org.url}, fresh_org.state)
    with zipfile.ZipFile(io.BytesIO(http.get(f"{running.url}/flow/starter.zip").content)) as zip_:
        starter = "".join(zip_.read(name).decode() for name in zip_.namelist())
    local_org = http.get(f"{running.url}/local-org").text
    assert running.client.client_secret in local_org
    for name, text in (("/flow", flow.text), ("starter.zip", starter),
                       ("/local-org", local_org.replace(running.client.client_secret, ""))):
        assert leaks(text, secrets_) == [], name


def _assert_security_headers(response: requests.Response) -> None:
    where = f"{response.request.method} {urlsplit(response.url).path} -> {response.status_code}"
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives.get("script-src") == ["'self'"], where
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert directives.get("object-src") == ["'none'"], where
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, where
    assert response.headers.get("Referrer-Policy") == "same-origin", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    if response.headers.get("Content-Type", "").startswith("text/html") and response.text:
        page = lxml.html.fromstring(response.text)
        for script in page.xpath("//script"):
            assert script.get("src") and not (script.text or "").strip(), where
        assert not page.xpath("//*[@*[starts-with(name(), 'on')]]"), where  # no onclick=...
        assert not page.xpath("//a[starts-with(normalize-space(@href), 'javascript:')]"), where


def test_security_headers_on_pages_errors_redirects_exports_and_static_files(connect_to,
                                                                             local_org):
    running, http = connect_to(local_org)
    stranger = requests.Session()
    url = running.url
    home = http.get(url + "/")
    responses = [
        home,
        stranger.get(url + "/"),
        http.get(f"{url}/query", params={"q": SOQL}),
        http.get(f"{url}/query", params={"q": "SELECT FROM"}),  # a SOQL fault page
        http.get(f"{url}/export.csv", params={"q": SOQL}),
        http.get(f"{url}/export.json", params={"q": SOQL}),
        http.get(f"{url}/export.json", params={"q": "SELECT FROM"}),  # a JSON error
        http.get(url + "/no-such-page"),  # 404
        http.get(url + "/logout"),  # 405
        http.post(url + "/logout", allow_redirects=False),  # 400: no CSRF token
        stranger.get(url + "/oauth/callback", params={"state": "x", "code": "y"}),  # 400
        stranger.get(url + "/login", allow_redirects=False),  # the redirect to Salesforce
        stranger.get(url + "/login", params={"login": "nowhere"}),  # 400
        http.post(url + "/identity/refresh", data={"csrf_token": logout_csrf(home.text)},
                  allow_redirects=False),
        http.get(url + "/static/app.css"),
        http.get(url + "/static/app.js"),
        http.get(url + "/static/favicon.svg"),
        http.get(url + "/healthz"),
    ]
    statuses = {r.status_code for r in responses}
    assert {200, 302, 400, 404, 405} <= statuses
    for response in responses:
        _assert_security_headers(response)


def test_session_id_changes_at_login_in_redis(start_app, local_org, redis_server):
    running = start_app(local_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    http = requests.Session()
    start_login(http, running.url)
    before = http.cookies.get("sfconnect_session")
    client = redis.Redis.from_url(redis_server.url)
    assert client.exists(f"sfconnect:session:{before}")
    assert sign_in(http, running.url).response.url == running.url + "/"
    after = http.cookies.get("sfconnect_session")
    assert after and after != before
    assert not client.exists(f"sfconnect:session:{before}"), "the old session id is dead"
    planted = requests.Session()
    planted.cookies.set("sfconnect_session", before)
    assert "Not connected" in planted.get(running.url + "/").text


def _post_forms(response: requests.Response) -> list[tuple[str, dict[str, str]]]:
    """(absolute action, fields) of every <form method=post> of an HTML page."""
    if not response.headers.get("Content-Type", "").startswith("text/html"):
        return []
    page = lxml.html.fromstring(response.text)
    forms = []
    for form in page.forms:
        if (form.method or "GET").upper() == "POST":
            forms.append((urljoin(response.url, form.action or response.url),
                          dict(form.form_values())))
    return forms


def test_every_state_changing_form_carries_a_csrf_token_and_needs_it(connect_to, local_org):
    running, http = connect_to(local_org)
    url = running.url
    # A second connection (another user), so that the header offers a switch.
    forget_org_login(http)
    assert sign_in(http, url, user=ZOE).response.status_code == 200
    assert "Switch to" in http.get(url + "/").text
    pages = [
        http.get(url + "/"),
        http.get(f"{url}/query", params={"q": SOQL}),
        http.get(f"{url}/query", params={"q": "SELECT FROM"}),
        # What another site's link gets: its Continue form.
        http.get(f"{url}/query", params={"q": SOQL}, headers={"Sec-Fetch-Site": "cross-site"}),
        http.get(url + "/no-such-page"),
        http.get(url + "/oauth/callback"),
        http.get(url + "/orgs"),
        requests.get(url + "/"),
    ]
    forms = [form for page in pages for form in _post_forms(page)]
    actions = {urlsplit(action).path for action, _ in forms}
    assert {"/logout", "/identity/refresh"} <= actions
    for action, fields in forms:
        assert fields.get("csrf_token"), f"the form posting to {action} has no csrf_token"

    # Every route of the app that accepts a state-changing method is one of these forms.
    routes = running.app.url_map.bind("localhost")
    changing = {rule.rule for rule in running.app.url_map.iter_rules()
                if set(rule.methods or ()) & {"POST", "PUT", "PATCH", "DELETE"}}
    posted = {routes.match(action, method="POST", return_rule=True)[0].rule
              for action in actions}
    assert changing <= posted, changing - posted

    before = token_set(running, http)
    # A real token, but another browser's: it is bound to that browser's session.
    other_token = logout_csrf(connect_to(local_org)[1].get(url + "/").text)
    for action in sorted(actions):
        for data in ({}, {"csrf_token": "forged"}, {"csrf_token": other_token}):
            refused = http.post(url + action, data=data, allow_redirects=False)
            assert refused.status_code == 400, (action, data)
            assert "csrf" in refused.text.lower()
    # Nothing changed: still connected with the same tokens.
    assert token_set(running, http) == before
    assert "Ada Admin" in http.get(url + "/").text


def test_a_code_injected_into_another_sign_in_fails_pkce(start_app, local_org):
    """RFC 9700 4.5: an attacker's own authorization code, slipped into the victim's callback with
    the victim's valid state, is exchanged with the victim's code_verifier: the org refuses it."""
    running = start_app(local_org)
    attacker = requests.Session()
    leaked = sign_in_at(attacker, start_login(attacker, running.url), follow=False)
    attacker_code = parse_qs(urlsplit(leaked.headers["Location"]).query)["code"][0]

    victim = requests.Session()
    victim_state = parse_qs(urlsplit(start_login(victim, running.url)).query)["state"][0]
    before = counters(local_org).get("token.authorization_code", 0)
    page = victim.get(f"{running.url}/oauth/callback",
                      params={"state": victim_state, "code": attacker_code})
    assert page.status_code == 400
    assert "invalid_grant" in page.text
    assert "Not connected" in page.text
    assert counters(local_org)["token.authorization_code"] == before + 1  # tried, and refused


def test_trust_policy_decides_where_the_token_may_go():
    """The access token goes to the login hosts (exact origin), Salesforce's domains on 443 and
    listed hosts (443 unless they name a port), over https (plain http only for a loopback login
    host); anything else, and any URL two parsers could read differently, is refused."""
    from sfconnect.auth.trust import TrustPolicy
    from sfconnect.errors import UntrustedHost

    policy = TrustPolicy(["https://login.salesforce.com", "http://127.0.0.1:5001"],
                         ["api.partner.example", ".corp.example", "gw.partner.example:8443"])
    allowed = [
        "https://login.salesforce.com/id/00D/005",
        "https://login.salesforce.com:443/id/00D/005",
        "http://127.0.0.1:5001/id/00D/005",
        "https://acme.my.salesforce.com/services/Soap/u/{version}/00D",
        "https://eu5.force.com/x", "https://na1.cloudforce.com/x", "https://x.salesforce.mil/x",
        "https://x.sfcrmproducts.cn/x", "https://api.partner.example/x",
        "https://deep.corp.example/x", "https://gw.partner.example:8443/x",
        "https://ACME.My.Salesforce.com/x",
    ]
    refused = [
        "http://acme.my.salesforce.com/x",  # https required off loopback
        "https://collector.example.net/id/00D/005",
        "https://login.salesforce.com.evil.example/x",
        "https://evilsalesforce.com/x",
        "https://user:pw@login.salesforce.com/x",
        "https://login.salesforce.com:99999/x",
        "https://acme.my.salesforce.com:8443/x",  # Salesforce domains: the https port only
        "https://api.partner.example:8443/x",  # listed without a port: 443 only
        "https://gw.partner.example/x",  # listed with :8443 only
        "ftp://login.salesforce.com/x",
        "https://other.partner.example/x",
        "javascript:alert(1)",
        "//login.salesforce.com/x",
        "http://localhost:8080/x",  # loopback, but not a login host
        "http://127.0.0.1:5002/x",  # the login host's host on another port
        # URLs that parse two ways, or that no sender should be handed:
        "https://attacker.example\\.salesforce.com/services/Soap/u/66.0/00D",
        "https://attacker.example%2F.salesforce.com/x",
        "https://attacker.example;.salesforce.com/x",
        "https://attacker.example,.salesforce.com/x",
        "https://attacker.example\t.salesforce.com/x",
        "https://attacker.example .salesforce.com/x",
        "https://attacker.example@acme.my.salesforce.com/x",
        "https://acme.my.salesforce.com./x",
        "https://bücher.my.salesforce.com/x",
        "https://acme.my.salesforce.com/x y",
        "https://[::1]:5001/x",
    ]
    for url in allowed:
        assert policy.check(url) == url
    for url in refused:
        with pytest.raises(UntrustedHost):
            policy.check(url)
