"""Copy as on /flow: the snippets of a real flow against the local org, read from the page, run
with curl, Python (requests and zeep) and node (fetch and jsforce) with the environment variables
set to the real secrets, answer what the app was answered: the same status and the same records.

The app signs in through the org's login and consent pages, queries (one batch, and a query long
enough for queryMore), compares through REST, has its session expired and refreshes, and logs out
(revoke). A code is single-use, so each run of a token request gets a fresh one, from the
authorize URL its own language's authorize snippet printed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
import requests

from devorg import serve_in_thread
from sfconnect.auth.tokens import verify_signature
from tests.helpers.app import LateApp, RunningApp
from tests.helpers.flow import logout_csrf, sign_in, token_set
from tests.helpers.learn import as_local_org, leaks
from tests.helpers.oauth import csrf_of, login, redirect_params, web_tokens
from tests.helpers.org import LocalOrg, start_org
from tests.helpers.paths import REPO

SMALL = "SELECT Id, Name FROM Contact ORDER BY Name LIMIT 5"
PAGED = "SELECT Id, Name FROM Contact ORDER BY Name"  # 3 batches of 200: queryMore, cursor open
WSDL = REPO / "sfconnect" / "salesforce" / "wsdl" / "partner.wsdl"
SECRET_VARS = ("SF_ACCESS_TOKEN", "SF_REFRESH_TOKEN", "SF_CLIENT_SECRET", "SF_CODE",
               "SF_CODE_VERIFIER")
_ID_RE = re.compile(r"<(?:\w+:)?Id>([^<]+)</(?:\w+:)?Id>")


# ------------------------------------------------------------------------------ the page

@dataclass
class Exchange:
    """One entry of /flow: its step, status, the app's response body, and its snippets."""

    seq: str
    step: str
    status: int
    request_body: str
    response_body: str
    snippets: dict[str, str] = field(default_factory=dict)


def exchanges(page: requests.Response) -> list[Exchange]:
    doc = lxml.html.fromstring(page.text)
    found = []
    for item in doc.xpath("//li[contains(@class,'trace-entry')]"):
        heading = item.xpath("./h2[@class='trace-step']")[0].text_content().strip()
        seq, _, rest = heading.partition(".")
        status = item.xpath(".//span[contains(@class,'trace-status')]")
        bodies = {pre.get("aria-label").rsplit(": ", 1)[1]: pre.text_content()
                  for pre in item.xpath(".//pre[contains(@class,'trace-body')]"
                                        "[not(contains(@class,'copy-as-code'))]")
                  if ": " in (pre.get("aria-label") or "")}
        exchange = Exchange(seq, rest.split("→")[0].strip(),
                            int(status[0].text_content().split()[0]) if status else 0,
                            bodies.get("request body", ""), bodies.get("response body", ""))
        for div in item.xpath(".//div[contains(@class,'copy-as-snippet')]"):
            code = div.xpath(".//pre[contains(@class,'copy-as-code')]")[0].text_content()
            exchange.snippets[div.get("data-copy-key")] = code
        found.append(exchange)
    return found


def last(found: list[Exchange], step: str, *, status: int = 200, body: str = "") -> Exchange:
    matches = [e for e in found if e.step == step and e.status == status and body in
               e.request_body]
    assert matches, (step, body, [(e.step, e.status) for e in found])
    return matches[-1]


# ---------------------------------------------------------------------------- the runners

@dataclass
class Answer:
    status: int
    body: str
    out: str


def _env(values: dict[str, str]) -> dict[str, str]:
    # curl, requests and jsforce would send loopback requests through a proxy of the environment.
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and not k.startswith("SF_")}
    env["SF_PARTNER_WSDL"] = str(WSDL)
    env.update(values)
    return env


def run(key: str, code: str, workdir: Path, **values: str) -> Answer:
    """Run a snippet of kind `key` with the variables `values`; its status and body."""
    if key == "curl":
        command = ["bash", "-c", code]
    elif key in ("python", "zeep"):
        command = [sys.executable, "-c", code]
    else:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing: the JavaScript snippets need Node 20 (scripts/test.sh)")
        (workdir / "node_modules").unlink(missing_ok=True)
        (workdir / "node_modules").symlink_to(REPO / "node_modules")  # jsforce, as npm ci set
        script = workdir / f"snippet-{secrets.token_hex(4)}.mjs"
        script.write_text(code, encoding="utf-8")
        command = [node, str(script)]
    done = subprocess.run(command, env=_env(values), cwd=workdir, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{key} exited {done.returncode}:\n{done.stderr}\n{code}"
    out = done.stdout
    if key == "curl" and out.startswith("HTTP/"):
        head, _, body = out.partition("\n\n")  # text mode: \r\n read as \n
        return Answer(int(head.split()[1]), body, out)
    first, _, rest = out.partition("\n")
    if first.strip().isdigit():
        return Answer(int(first), rest, out)
    return Answer(0, out, out)


# ----------------------------------------------------------------------------- the flow

@dataclass
class Flow:
    org: LocalOrg
    running: RunningApp
    http: requests.Session
    signed_in: list[Exchange]  # /flow before logout
    logged_out: list[Exchange]  # /flow after logout: the revokes
    secrets: set[str]
    access_token: str
    refresh_token: str


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[Flow]:
    import sfconnect

    org = start_org(contact_count=700)
    holder = LateApp()
    server = serve_in_thread(holder)
    redirect_uri = f"{server.url}/oauth/callback"
    client = org.register(redirect_uri)
    app = sfconnect.create_app({
        "ENV": "testing", "SECRET_KEY": secrets.token_hex(32), "SF_LOGIN_URL": org.url,
        "SF_CLIENT_ID": client.client_id, "SF_CLIENT_SECRET": client.client_secret,
        "SF_REDIRECT_URI": redirect_uri, "SESSION_TYPE": "filesystem",
        "SESSION_FILE_DIR": str(tmp_path_factory.mktemp("sessions"))})
    holder.target = app
    running = RunningApp(server.url, app, client, org, server)
    http = requests.Session()
    try:
        assert sign_in(http, running.url).response.url == running.url + "/"
        first = token_set(running, http)
        assert http.get(f"{running.url}/query", params={"q": SMALL}).status_code == 200
        paged = http.get(f"{running.url}/query", params={"q": PAGED, "batch": "200"})
        next_link = lxml.html.fromstring(paged.text).xpath("//a[contains(@href,'locator=')]/@href")
        assert next_link, "no Next link"
        assert http.get(running.url + next_link[0]).status_code == 200  # queryMore
        assert http.get(f"{running.url}/compare", params={"q": SMALL}).status_code == 200
        org.state.tokens.expire_all()
        assert http.get(f"{running.url}/query", params={"q": SMALL}).status_code == 200
        tokens = token_set(running, http)
        signed_in = exchanges(http.get(f"{running.url}/flow"))
        home = http.get(running.url + "/")
        assert http.post(f"{running.url}/logout",
                         data={"csrf_token": logout_csrf(home.text)}).status_code == 200
        logged_out = exchanges(http.get(f"{running.url}/flow"))
        yield Flow(org, running, http, signed_in, logged_out,
                   {first.access_token, first.refresh_token, tokens.access_token,
                    client.client_secret},
                   tokens.access_token, tokens.refresh_token)
    finally:
        server.shutdown()
        org.server.shutdown()


def code_from(authorize_url: str) -> str:
    """A browser at `authorize_url` signing in as the admin (and allowing access, when the org
    asks): the code of the redirect to the callback, not followed."""
    browser = requests.Session()
    assert login(browser, authorize_url).status_code == 303
    page = browser.get(authorize_url, allow_redirects=False)
    if page.status_code != 302:  # the consent page
        page = browser.post(authorize_url, data={"_csrf": csrf_of(page.text), "action": "allow"},
                            allow_redirects=False)
    return redirect_params(page)["code"]


def live_tokens(flow: Flow) -> dict[str, str]:
    """A fresh sign-in of the flow's client at the org (the app's own were revoked at logout)."""
    tokens = web_tokens(flow.org.url, flow.running.client)
    return {"SF_ACCESS_TOKEN": tokens["access_token"], "SF_REFRESH_TOKEN": tokens["refresh_token"],
            "SF_CLIENT_SECRET": flow.running.client.client_secret}


JS_AND_PY = ("curl", "python", "javascript")


# ------------------------------------------------------------------------------ the tests

def test_every_exchange_has_copy_as_and_no_code_or_token_in_it(flow):
    with_snippets = [e for e in flow.signed_in + flow.logged_out if e.snippets]
    steps = {e.step for e in with_snippets}
    assert {"authorization request", "token request", "identity request", "SOAP request",
            "REST query", "expired session and refresh", "revoke"} <= steps, steps
    for exchange in with_snippets:
        assert {"curl", "python", "javascript"} <= set(exchange.snippets), exchange.step
        for key, code in exchange.snippets.items():
            assert leaks(code, flow.secrets) == [], (exchange.step, key)
            assert "…" not in code and "[hidden]" not in code, (exchange.step, key, code)
            first = code.splitlines()[0]
            assert first.lstrip("#/ ").startswith(f"{exchange.seq}. {exchange.step}:"), first
    # No snippet for what the app does not send: the callback is the browser's request to it.
    assert not next(e for e in flow.signed_in if e.step == "callback").snippets
    soap = last(flow.signed_in, "SOAP request", body=SMALL)
    assert "zeep" in soap.snippets and '"$SF_ACCESS_TOKEN"' in soap.snippets["curl"]
    token = last(flow.signed_in, "token request")
    for name in ("SF_CODE", "SF_CODE_VERIFIER", "SF_CLIENT_SECRET"):
        assert f'os.environ["{name}"]' in token.snippets["python"]
        assert f"process.env.{name}" in token.snippets["javascript"]
        assert f'"${name}"' in token.snippets["curl"]
    refresh = last(flow.signed_in, "expired session and refresh")
    assert "process.env.SF_REFRESH_TOKEN" in refresh.snippets["jsforce"]


@pytest.mark.parametrize("key", ["curl", "python", "javascript"])
def test_the_authorize_and_token_snippets_sign_in(flow, tmp_path, key):
    """The authorize snippet's URL (its code_challenge computed from SF_CODE_VERIFIER) signs in
    at the org; the token request snippet trades the code for tokens with that verifier and the
    secret, as the app's did: 200 and a signed token response."""
    authorize = last(flow.signed_in, "authorization request", status=302)
    verifier = secrets.token_urlsafe(48)
    opened = run(key, authorize.snippets[key], tmp_path, SF_CODE_VERIFIER=verifier)
    assert opened.status == 200, opened.out  # the org's login page
    code = code_from(re.search(r"Open in a browser: (\S+)", opened.out).group(1))

    token = last(flow.signed_in, "token request")
    answer = run(key, token.snippets[key], tmp_path, SF_CODE=code, SF_CODE_VERIFIER=verifier,
                 SF_CLIENT_SECRET=flow.running.client.client_secret)
    assert answer.status == token.status == 200, answer.out
    document = json.loads(answer.body)
    verify_signature(document, flow.running.client.client_secret)
    assert document["access_token"].startswith("00D")


def test_the_jsforce_token_request_signs_in(flow, tmp_path):
    authorize = last(flow.signed_in, "authorization request", status=302)
    verifier = secrets.token_urlsafe(48)
    url = re.search(r"Open in a browser: (\S+)", run(
        "python", authorize.snippets["python"], tmp_path, SF_CODE_VERIFIER=verifier).out).group(1)
    code = code_from(url)
    token = last(flow.signed_in, "token request")
    answer = run("jsforce", token.snippets["jsforce"], tmp_path, SF_CODE=code,
                 SF_CODE_VERIFIER=verifier, SF_CLIENT_SECRET=flow.running.client.client_secret)
    document = json.loads(answer.body)
    verify_signature(document, flow.running.client.client_secret)


@pytest.mark.parametrize("key", ["curl", "python", "javascript", "jsforce"])
def test_the_identity_snippets_answer_who_signed_in(flow, tmp_path, key):
    identity = last(flow.signed_in, "identity request")
    answer = run(key, identity.snippets[key], tmp_path, **live_tokens(flow))
    if key != "jsforce":
        assert answer.status == identity.status == 200, answer.out
    seen = json.loads(identity.response_body)
    got = json.loads(answer.body)
    assert (got["user_id"], got["urls"]["partner"]) == (seen["user_id"], seen["urls"]["partner"])


@pytest.mark.parametrize("key", ["curl", "python", "javascript", "zeep"])
def test_the_soap_query_and_query_more_snippets_return_the_apps_records(flow, tmp_path, key):
    # A live token of the same user (the app's were revoked at logout): the queryMore cursor
    # is the user's.
    values = live_tokens(flow)
    for exchange in (last(flow.signed_in, "SOAP request", body=SMALL),
                     last(flow.signed_in, "SOAP request", body="queryMore")):
        seen = _ID_RE.findall(exchange.response_body)
        assert len(set(seen)) in (5, 200)
        answer = run(key, exchange.snippets[key], tmp_path, **values)
        if key == "zeep":
            got = [line.split()[1] for line in answer.out.splitlines()[1:]]
            seen = list(dict.fromkeys(seen))  # the reply names each Id twice (sObject, field)
        else:
            assert answer.status == exchange.status == 200, answer.out
            got = _ID_RE.findall(answer.body)
        assert got == seen, (key, exchange.request_body[-200:])


@pytest.mark.parametrize("key", ["curl", "python", "javascript", "jsforce"])
def test_the_rest_query_snippets_return_the_apps_records(flow, tmp_path, key):
    exchange = last(flow.signed_in, "REST query")
    answer = run(key, exchange.snippets[key], tmp_path, **live_tokens(flow))
    if key != "jsforce":
        assert answer.status == exchange.status == 200, answer.out
    seen = json.loads(exchange.response_body)
    got = json.loads(answer.body)
    assert got["totalSize"] == seen["totalSize"] == 5
    assert [r["Id"] for r in got["records"]] == [r["Id"] for r in seen["records"]]


@pytest.mark.parametrize("key", ["curl", "python", "javascript", "jsforce"])
def test_the_refresh_snippets_renew_the_session(flow, tmp_path, key):
    exchange = last(flow.signed_in, "expired session and refresh")
    values = live_tokens(flow)
    answer = run(key, exchange.snippets[key], tmp_path, **values)
    if key != "jsforce":
        assert answer.status == exchange.status == 200, answer.out
    document = json.loads(answer.body)
    verify_signature(document, flow.running.client.client_secret)
    assert document["access_token"] != values["SF_ACCESS_TOKEN"]


@pytest.mark.parametrize("key", ["curl", "python", "javascript", "jsforce"])
def test_the_revoke_snippets_end_the_tokens(flow, tmp_path, key):
    """Logout's revokes: the refresh token, then the access token; each snippet ends its own."""
    refresh_revoke, access_revoke = [e for e in flow.logged_out if e.step == "revoke"]
    assert "SF_REFRESH_TOKEN" in refresh_revoke.snippets[key]
    assert "SF_ACCESS_TOKEN" in access_revoke.snippets[key]
    for exchange, name in ((access_revoke, "SF_ACCESS_TOKEN"),
                           (refresh_revoke, "SF_REFRESH_TOKEN")):
        values = live_tokens(flow)
        answer = run(key, exchange.snippets[key], tmp_path, **values)
        if key != "jsforce":
            # The app's access token revoke may have been answered 400: the refresh token's
            # revoke had ended it already. A live one is revoked with 200.
            assert answer.status == 200 and exchange.status in (200, 400), answer.out
        identity = requests.get(f"{flow.org.url}/services/oauth2/userinfo", timeout=10,
                                headers={"Authorization": f"Bearer {values['SF_ACCESS_TOKEN']}"})
        assert identity.status_code in (401, 403), (name, identity.text)


# ----------------------------------------------------------------------------- /local-org

def test_local_org_page_only_when_app_py_started_the_local_org(start_app, local_org):
    running = start_app(local_org)
    assert requests.get(f"{running.url}/local-org", timeout=30).status_code == 404
    assert "/local-org" not in requests.get(f"{running.url}/setup", timeout=30).text
    as_local_org(running)
    setup = lxml.html.fromstring(requests.get(f"{running.url}/setup", timeout=30).text)
    assert setup.xpath("//a[@href='/local-org']")
    page = requests.get(f"{running.url}/local-org", timeout=30)
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    assert doc.xpath("string(//code[@class='local-org-login-url'])") == local_org.url
    assert doc.xpath("string(//code[@class='local-org-client-id'])") == running.client.client_id
    assert doc.xpath("string(//code[@class='local-org-client-secret'])") == \
        running.client.client_secret
    users = doc.xpath("//table[contains(@class,'local-org-users')]//th[@scope='row']//text()")
    assert users == [user.username for user in local_org.state.config.users]


@pytest.mark.parametrize("key", ["curl", "simple-salesforce", "jsforce", "zeep"])
def test_local_org_snippets_work(start_app, local_org, tmp_path, key):
    running = start_app(local_org)
    as_local_org(running)
    doc = lxml.html.fromstring(requests.get(f"{running.url}/local-org", timeout=30).text)
    setup = doc.xpath("string(//pre[@id='copy-local-org-setup'])")
    code = doc.xpath(f"string(//pre[@id='copy-local-org-{key}'])")
    assert code
    exported = subprocess.run(
        ["bash", "-c", setup + 'printf "%s\\n" "$SF_ACCESS_TOKEN" "$SF_INSTANCE_URL" "$SF_ID_URL"'],
        env=_env({}), capture_output=True, text=True, timeout=60, check=True)
    token, instance_url, id_url = exported.stdout.split()
    assert token.startswith("00D") and instance_url == local_org.url
    values = {"SF_ACCESS_TOKEN": token, "SF_INSTANCE_URL": instance_url, "SF_ID_URL": id_url}
    expected = requests.get(f"{local_org.url}/services/data/v66.0/query/", timeout=30,
                            params={"q": "SELECT Id, Name FROM Account ORDER BY Name LIMIT 5"},
                            headers={"Authorization": f"Bearer {token}"}).json()
    ids = [record["Id"] for record in expected["records"]]
    answer = run({"simple-salesforce": "python"}.get(key, key), code, tmp_path, **values)
    if key == "curl":
        assert answer.status == 200, answer.out
        assert [r["Id"] for r in json.loads(answer.body)["records"]] == ids
    else:  # "5 [ids]"
        count, _, listed = answer.out.strip().partition(" ")
        assert int(count) == 5, answer.out
        assert json.loads(listed.replace("'", '"')) == ids


@pytest.mark.parametrize("key", ["curl", "python", "javascript"])
def test_with_openid_the_discovery_keys_and_userinfo_snippets_answer_as_the_app_saw(
        start_app, local_org, tmp_path, key):
    from tests.helpers.oidc import start_openid_app

    running = start_openid_app(start_app, local_org)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    found = exchanges(http.get(f"{running.url}/flow"))
    tokens = token_set(running, http)
    by_path = {urlsplit(re.search(r": [A-Z]+ (\S+) \(", e.snippets["curl"]).group(1)).path: e
               for e in found if e.snippets}
    for path in ("/.well-known/openid-configuration", "/id/keys", "/services/oauth2/userinfo"):
        exchange = by_path[path]
        code = exchange.snippets[key]
        assert leaks(code, {tokens.access_token, running.client.client_secret}) == []
        answer = run(key, code, tmp_path, SF_ACCESS_TOKEN=tokens.access_token)
        assert answer.status == exchange.status == 200, (path, answer.out)
        seen, got = json.loads(exchange.response_body), json.loads(answer.body)
        field_ = {"/.well-known/openid-configuration": "issuer", "/id/keys": "keys",
                  "/services/oauth2/userinfo": "sub"}[path]
        assert got[field_] == seen[field_], path
    assert "OpenID Connect Core §5.3" in by_path["/services/oauth2/userinfo"].snippets[key]


@pytest.mark.parametrize("key", ["curl", "python", "javascript"])
def test_soql_that_shells_and_string_literals_would_break_is_copied_exactly(connect_to,
                                                                            local_org, tmp_path,
                                                                            key):
    """Quotes, `$`, a backtick, a backslash and non-ASCII in the SOQL reach the org unchanged
    from every language: the same records as the app's, through SOAP and REST (/compare)."""
    soql = ("SELECT Id, Name FROM Account WHERE Name != 'O\\'Brien $HOME `id` \\\\ Zoë \"q\"' "
            "ORDER BY Name LIMIT 3")
    running, http = connect_to(local_org)
    assert http.get(f"{running.url}/compare", params={"q": soql}).status_code == 200
    found = exchanges(http.get(f"{running.url}/flow"))
    values = {"SF_ACCESS_TOKEN": token_set(running, http).access_token}
    soap, rest = last(found, "SOAP request", body="Zoë"), last(found, "REST query")
    seen = _ID_RE.findall(soap.response_body)
    assert len(set(seen)) == 3
    answer = run(key, soap.snippets[key], tmp_path, **values)
    assert answer.status == 200 and _ID_RE.findall(answer.body) == seen, answer.out
    answer = run(key, rest.snippets[key], tmp_path, **values)
    assert answer.status == 200, answer.out
    assert [r["Id"] for r in json.loads(answer.body)["records"]] == \
        [r["Id"] for r in json.loads(rest.response_body)["records"]]


def test_every_parameter_the_trace_masks_has_its_environment_variable():
    """A secret the trace masks or hides is written as an environment variable in the code, never
    as its masked text: every such parameter (sfconnect.redaction) has one."""
    from sfconnect import redaction
    from sfconnect.learn.snippets import env_for

    assert [name for name in redaction.SECRET_PARAMS if env_for(name, "x") is None] == []
