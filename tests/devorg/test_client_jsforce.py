"""jsforce 3 (Node) against the local org over real HTTP: the web server flow with jsforce's own
PKCE verifier, query and queryMore, describe and describeGlobal, identity() on a token-only
connection, the refresh token, logout with revoke, SOAP login, and a dead token.

Each call runs tests/js/jsforce_client.mjs in a node process (JSON in on stdin, JSON out); this
module plays the browser between jsforce's authorization URL and its code exchange. node and the
jsforce of package-lock.json (`npm ci`, as scripts/test.sh runs it) are required: without them the
tests fail, they do not skip.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from tests.helpers.flow import form_fields
from tests.helpers.org import ADMIN, LocalOrg, start_org, user_id
from tests.helpers.paths import REPO

SCRIPT = REPO / "tests" / "js" / "jsforce_client.mjs"
JSFORCE = REPO / "node_modules" / "jsforce" / "package.json"
# Nothing listens here: the test reads the code off the consent page's redirect.
REDIRECT_URI = "http://localhost:1717/callback"
VERSION = "64.0"
CONTACTS = 2500  # more than one REST batch (2,000)
ALL_CONTACTS = "SELECT Id, Name FROM Contact"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the jsforce tests need Node 20 (scripts/test.sh "
                    "installs npm, which brings node)")
    if not JSFORCE.exists():
        pytest.fail(f"jsforce is not installed ({JSFORCE} is missing): run `npm ci` at the "
                    "repository root, as scripts/test.sh does")
    return node


def jsforce(call: str, **params) -> dict:
    """Run one jsforce call in node; its result, or fail with jsforce's error."""
    answer = jsforce_answer(call, **params)
    assert "error" not in answer, f"jsforce {call} rejected: {answer['error']}"
    return answer["result"]


def jsforce_error(call: str, **params) -> dict:
    """Run one jsforce call that must reject; its error (name, errorCode, message)."""
    answer = jsforce_answer(call, **params)
    assert "error" in answer, f"jsforce {call} should have rejected: {answer['result']}"
    return answer["error"]


def jsforce_answer(call: str, **params) -> dict:
    """Run one jsforce call in node: {"result": ...} or {"error": {name, errorCode, message}}."""
    # jsforce sends every request through http(s)_proxy when set, even to the loopback org.
    env = {name: value for name, value in os.environ.items()
           if name.lower() not in ("http_proxy", "https_proxy")}
    done = subprocess.run([_node(), str(SCRIPT), call], input=json.dumps(params), env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, f"node {call} exited {done.returncode}: {done.stderr}"
    # jsforce may log to stdout; the answer is the last line.
    return json.loads(done.stdout.strip().splitlines()[-1])


def browser_sign_in(authorize_url: str) -> str:
    """A browser at the authorize URL signing in as the admin and allowing access (when the org
    asks): the redirect to REDIRECT_URI it ends with, not followed."""
    with requests.Session() as browser:
        browser.trust_env = False
        response = browser.get(authorize_url, allow_redirects=False, timeout=30)
        for _ in range(10):
            if response.is_redirect:
                location = response.headers["Location"]
                if location.startswith(REDIRECT_URI):
                    return location
                response = browser.get(urljoin(response.url, location), allow_redirects=False,
                                       timeout=30)
                continue
            assert response.status_code == 200, response.text
            if 'name="password"' in response.text:
                action, fields = form_fields(response.text, response.url)
                fields.update(username=ADMIN[0], password=ADMIN[1])
            else:
                assert "Allow Access" in response.text, response.text
                action, fields = form_fields(response.text, response.url, button="allow")
            response = browser.post(action, data=fields, allow_redirects=False, timeout=30)
    raise AssertionError(f"the sign-in did not come back to {REDIRECT_URI}")


class JsforceApp:
    """A client app registered with a local org, and the settings jsforce is given for it."""

    def __init__(self, org: LocalOrg) -> None:
        self.org = org
        self.client = org.register(REDIRECT_URI)

    @property
    def oauth2(self) -> dict:
        return {"loginUrl": self.org.url, "clientId": self.client.client_id,
                "clientSecret": self.client.client_secret, "redirectUri": REDIRECT_URI,
                "version": VERSION}

    def web_server_flow(self) -> dict:
        """jsforce's authorization URL, a browser signing in as the admin, then jsforce's
        authorize(code) with the verifier it made: the connection it holds."""
        state = secrets.token_urlsafe(16)
        start = jsforce("authorizationUrl", state=state, **self.oauth2)
        params = parse_qs(urlsplit(browser_sign_in(start["url"])).query)
        assert params["state"] == [state], params
        return jsforce("authorize", code=params["code"][0], codeVerifier=start["codeVerifier"],
                       **self.oauth2)

    def token(self, connection: dict) -> dict:
        """What a token-only connection is built from."""
        return {"instanceUrl": connection["instanceUrl"], "accessToken": connection["accessToken"],
                "version": VERSION}


@pytest.fixture(scope="module")
def org() -> Iterator[LocalOrg]:
    running = start_org(contact_count=CONTACTS)
    yield running
    running.server.shutdown()


@pytest.fixture(scope="module")
def app(org) -> JsforceApp:
    return JsforceApp(org)


@pytest.fixture(scope="module")
def connection(app) -> dict:
    """One authorization for the read-only calls."""
    return app.web_server_flow()


def test_jsforce_is_the_pinned_3x():
    package = json.loads((REPO / "package.json").read_text())
    pinned = package["devDependencies"]["jsforce"]
    assert pinned.startswith("3.")
    assert jsforce("version") == pinned


def test_authorization_url_carries_jsforce_pkce_challenge(app):
    start = jsforce("authorizationUrl", state="s", **app.oauth2)
    params = {k: v[0] for k, v in parse_qs(urlsplit(start["url"]).query).items()}
    assert start["url"].startswith(f"{app.org.url}/services/oauth2/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == app.client.client_id
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["code_challenge"]
    # jsforce's verifier: 128 random bytes, base64url (RFC 7636 allows 43 to 128 characters;
    # Salesforce and the local org take longer ones).
    assert len(start["codeVerifier"]) > 128


def test_web_server_flow_authorize(app, connection):
    assert connection["instanceUrl"] == app.org.url
    assert connection["accessToken"]
    assert connection["refreshToken"]
    info = connection["userInfo"]
    assert info["id"] == user_id(app.org)
    assert info["organizationId"] == app.org.state.org_id
    assert info["url"] == f"{app.org.url}/id/{app.org.state.org_id}/{user_id(app.org)}"


def test_authorize_rejects_a_wrong_verifier(app):
    start = jsforce("authorizationUrl", state="s", **app.oauth2)
    code = parse_qs(urlsplit(browser_sign_in(start["url"])).query)["code"][0]
    other = jsforce("authorizationUrl", state="s", **app.oauth2)["codeVerifier"]
    error = jsforce_error("authorize", code=code, codeVerifier=other, **app.oauth2)
    assert error["name"] == "invalid_grant", error


def test_query_and_query_more(app, connection):
    first = jsforce("query", soql=ALL_CONTACTS, **app.token(connection))
    assert first["totalSize"] == CONTACTS
    assert first["done"] is False
    assert len(first["ids"]) == 2000
    # jsforce hands back the locator as an absolute URL of its own making.
    assert first["nextRecordsUrl"].startswith(f"{app.org.url}/services/data/v{VERSION}/query/")
    more = jsforce("queryMore", locator=first["nextRecordsUrl"], **app.token(connection))
    assert more["done"] is True
    assert more["nextRecordsUrl"] is None
    assert len(more["ids"]) == CONTACTS - 2000
    assert len(set(first["ids"]) | set(more["ids"])) == CONTACTS


def test_query_auto_fetch_follows_every_batch(app, connection):
    fetched = jsforce("queryAutoFetch", soql=ALL_CONTACTS, maxFetch=10_000,
                      **app.token(connection))
    assert fetched["done"] is True
    assert fetched["totalSize"] == CONTACTS
    assert len(set(fetched["ids"])) == CONTACTS


def test_describe_contact(app, connection):
    described = jsforce("describe", sobject="Contact", **app.token(connection))
    assert described["name"] == "Contact"
    assert described["queryable"] is True
    assert described["keyPrefix"] == "003"
    fields = {field["name"]: field["type"] for field in described["fields"]}
    assert fields["Id"] == "id"
    assert fields["AccountId"] == "reference"
    assert "LastName" in fields
    assert described["urls"]["describe"] == f"/services/data/v{VERSION}/sobjects/Contact/describe"


def test_describe_global(app, connection):
    described = jsforce("describeGlobal", **app.token(connection))
    assert described["encoding"] == "UTF-8"
    assert described["maxBatchSize"] == 200
    names = {sobject["name"]: sobject for sobject in described["sobjects"]}
    assert {"Account", "Contact", "User"} <= set(names)
    assert names["Contact"]["keyPrefix"] == "003"


def test_identity_on_a_token_only_connection(app, connection):
    # No userInfo: jsforce finds the identity URL in the version's resource map.
    answer = jsforce("identity", **app.token(connection))
    identity = answer["identity"]
    assert identity["user_id"] == user_id(app.org)
    assert identity["organization_id"] == app.org.state.org_id
    assert identity["username"] == ADMIN[0]
    assert answer["userInfo"]["url"] == connection["userInfo"]["url"]


def test_refresh_token(app, connection):
    refreshed = jsforce("refreshToken", refreshToken=connection["refreshToken"],
                        **app.oauth2, instanceUrl=connection["instanceUrl"])
    answer = refreshed["answer"]
    assert answer["access_token"] != connection["accessToken"]
    assert answer["instance_url"] == app.org.url
    assert answer["id"] == connection["userInfo"]["url"]
    assert refreshed["probe"]["totalSize"] == 1


def test_logout_with_revoke_kills_the_session(app):
    connection = app.web_server_flow()
    assert jsforce("logout", revoke=True, refreshToken=connection["refreshToken"],
                   **app.oauth2, instanceUrl=connection["instanceUrl"],
                   accessToken=connection["accessToken"]) == {"accessToken": None,
                                                              "refreshToken": None}
    # Revoking the refresh token revokes the access tokens issued with it.
    error = jsforce_error("query", soql="SELECT Id FROM User", **app.token(connection))
    assert error["errorCode"] == "INVALID_SESSION_ID", error
    error = jsforce_error("refreshToken", refreshToken=connection["refreshToken"],
                          **app.oauth2, instanceUrl=connection["instanceUrl"])
    assert error["name"] == "invalid_grant", error


def test_logout_without_revoke_kills_the_access_token_only(app):
    connection = app.web_server_flow()
    jsforce("logout", revoke=False, refreshToken=connection["refreshToken"], **app.oauth2,
            instanceUrl=connection["instanceUrl"], accessToken=connection["accessToken"])
    error = jsforce_error("query", soql="SELECT Id FROM User", **app.token(connection))
    assert error["errorCode"] == "INVALID_SESSION_ID", error
    refreshed = jsforce("refreshToken", refreshToken=connection["refreshToken"],
                        **app.oauth2, instanceUrl=connection["instanceUrl"])
    assert refreshed["probe"]["totalSize"] == 1


def test_soap_login(app):
    logged_in = jsforce("soapLogin", loginUrl=app.org.url, version=VERSION, username=ADMIN[0],
                        password=ADMIN[1], soql="SELECT Id, Name FROM Contact LIMIT 3")
    assert logged_in["userInfo"]["id"] == user_id(app.org)
    assert logged_in["userInfo"]["organizationId"] == app.org.state.org_id
    assert logged_in["instanceUrl"] == app.org.url
    assert logged_in["probe"]["totalSize"] == 3


def test_soap_logout_ends_the_session(app):
    ended = jsforce("soapLogout", loginUrl=app.org.url, version=VERSION, username=ADMIN[0],
                    password=ADMIN[1])
    error = jsforce_error("query", instanceUrl=ended["instanceUrl"],
                          accessToken=ended["accessToken"], version=VERSION,
                          soql="SELECT Id FROM User")
    assert error["errorCode"] == "INVALID_SESSION_ID", error


def test_soap_login_with_a_wrong_password(app):
    error = jsforce_error("soapLogin", loginUrl=app.org.url, version=VERSION, username=ADMIN[0],
                          password="not-the-password", soql="SELECT Id FROM User")
    assert "INVALID_LOGIN" in error["message"], error


@pytest.fixture
def own_app() -> Iterator[JsforceApp]:
    """An org of the test's own: expiring its sessions touches no other test."""
    running = start_org()
    yield JsforceApp(running)
    running.server.shutdown()


def expire_sessions(org: LocalOrg) -> None:
    """Every access token of the org dies now (its admin control); refresh tokens live on."""
    with requests.Session() as admin:
        admin.trust_env = False
        expired = admin.post(f"{org.url}/__admin/expire-sessions", timeout=30)
    assert expired.status_code == 200, expired.text


def test_dead_token_is_invalid_session_id(own_app):
    connection = own_app.web_server_flow()
    expire_sessions(own_app.org)
    error = jsforce_error("query", soql="SELECT Id FROM User", **own_app.token(connection))
    assert error["errorCode"] == "INVALID_SESSION_ID", error
    assert error["name"] == "INVALID_SESSION_ID"


def test_connection_refreshes_a_dead_token_itself(own_app):
    connection = own_app.web_server_flow()
    expire_sessions(own_app.org)
    answer = jsforce("refreshOnDeadToken", soql="SELECT Id FROM User",
                     refreshToken=connection["refreshToken"], **own_app.oauth2,
                     instanceUrl=connection["instanceUrl"], accessToken=connection["accessToken"])
    assert answer["batch"]["totalSize"] >= 1
    assert answer["refreshed"] == [answer["accessToken"]]
    assert answer["accessToken"] != connection["accessToken"]
