"""Faults of Salesforce and of the session store, and bad input: each gets a clear page (a JSON
error for the exports), a log line without secrets, and never a 5xx the user could have avoided.
Upstream failures are not the user's fault: they answer 502/503 with a page that says what failed.

Everything over real HTTP; the local org's /__admin/faults switches make it misbehave, and a real
redis-server is stopped and started again under a connected session.
"""
from __future__ import annotations

import json
import logging
import socket
import time
from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import redis
import requests

from tests.helpers.flow import form_fields, logout_csrf, sign_in_at, start_login, token_set
from tests.helpers.org import ADMIN, counters
from tests.helpers.servers import start_redis

SOQL = "SELECT Id, FirstName, LastName, Account.Name FROM Contact LIMIT 20"


def _faults(org, **switches) -> None:
    requests.post(f"{org.url}/__admin/faults", json=switches).raise_for_status()


def _error_code(response: requests.Response) -> str:
    return lxml.html.fromstring(response.text).xpath("string(//p[@class='error-code']/code)")


def _rows(response: requests.Response) -> int:
    return len(lxml.html.fromstring(response.text).xpath("//table[@class='records']/tbody/tr"))


def _assert_clean_logs(caplog, *secrets_: str) -> str:
    """The app's log lines (not the org's own) hold none of `secrets_`; returns them joined."""
    lines = "\n".join(record.getMessage() for record in caplog.records
                      if record.name.startswith(("sfconnect", "werkzeug", "urllib3", "zeep")))
    for secret in secrets_:
        assert secret not in lines, "a secret reached the log"
    return lines


def _secrets(running, http) -> tuple[str, ...]:
    tokens = token_set(running, http)
    return tokens.access_token, tokens.refresh_token, running.client.client_secret


# ------------------------------------------------------------------------ the token endpoint

@pytest.mark.parametrize(("fault", "detail"), [
    ("503", "answered HTTP 503"),
    ("nonjson", "answered something unreadable"),
])
def test_token_endpoint_failing_during_a_refresh_keeps_the_session(connect_to, fresh_org, caplog,
                                                                   fault, detail):
    caplog.set_level(logging.INFO)
    running, http = connect_to(fresh_org)
    secrets_ = _secrets(running, http)
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    _faults(fresh_org, token_endpoint=fault)
    response = http.get(f"{running.url}/query", params={"q": SOQL})
    assert response.status_code == 502
    assert _error_code(response) == "oauth_unavailable"
    assert detail in response.text
    assert "Traceback" not in response.text
    assert "upstream error from oauth" in _assert_clean_logs(caplog, *secrets_)
    # Not the user's fault, and not the end of their session: once the org answers, it works.
    _faults(fresh_org, token_endpoint=None)
    response = http.get(f"{running.url}/query", params={"q": SOQL})
    assert response.status_code == 200
    assert _rows(response) == 20


def test_token_endpoint_slower_than_the_timeout(connect_to, fresh_org, caplog):
    caplog.set_level(logging.INFO)
    # The org's own tokens must not expire while it sleeps on the slow ones.
    running, http = connect_to(fresh_org, SF_HTTP_TIMEOUT="1")
    secrets_ = _secrets(running, http)
    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    _faults(fresh_org, token_endpoint="slow", token_delay_s=3)
    response = http.get(f"{running.url}/query", params={"q": SOQL})
    assert response.status_code == 502
    assert _error_code(response) == "oauth_unavailable"
    assert "did not answer in time" in response.text
    assert "did not answer in time" in _assert_clean_logs(caplog, *secrets_)

    # The same during sign-in (Ada approved the app already: the login goes straight back to the
    # callback, whose code exchange times out): a clear page, no session.
    other = requests.Session()
    login_page = other.get(start_login(other, running.url))
    action, fields = form_fields(login_page.text, login_page.url)
    fields.update(username=ADMIN[0], password=ADMIN[1])
    page = other.post(action, data=fields)
    assert page.url.startswith(running.url + "/oauth/callback")
    assert page.status_code == 502
    assert "did not answer in time" in page.text
    assert "Not connected" in page.text


def test_http_timeout_setting_is_checked():
    from sfconnect.settings import ConfigError, load_settings

    base = {"ENV": "testing", "SF_CLIENT_ID": "x", "SF_CLIENT_SECRET": "y"}
    assert load_settings(base, environ={}).http_timeouts == (5.0, 30.0)
    assert load_settings({**base, "SF_HTTP_TIMEOUT": "1.5"}, environ={}).http_timeouts == (1.5, 1.5)
    for bad in ("0", "-3", "abc", "nan", "1e9"):
        with pytest.raises(ConfigError) as refused:
            load_settings({**base, "SF_HTTP_TIMEOUT": bad}, environ={})
        assert refused.value.variable == "SF_HTTP_TIMEOUT"


# --------------------------------------------------------------------- the identity service

@pytest.mark.parametrize(("fault", "status", "code"), [
    ("403", 502, "Bad_OAuth_Token"),
    ("500", 502, "identity_unavailable"),
])
def test_identity_service_failing_after_sign_in(connect_to, fresh_org, caplog, fault, status, code):
    caplog.set_level(logging.INFO)
    running, http = connect_to(fresh_org)
    secrets_ = _secrets(running, http)
    home = http.get(running.url + "/")
    _faults(fresh_org, identity_endpoint=fault)
    response = http.post(f"{running.url}/identity/refresh",
                         data={"csrf_token": logout_csrf(home.text)})
    assert response.status_code == status
    assert _error_code(response) == code
    assert "Traceback" not in response.text
    logged = {"403": "session refused again after a refresh (Bad_OAuth_Token)",
              "500": "upstream error from identity"}[fault]
    assert logged in _assert_clean_logs(caplog, *secrets_)
    # Queries do not need the identity service: the session still works.
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200


# ------------------------------------------------------------------------ the SOAP endpoint

@pytest.mark.parametrize("fault", ["502", "empty"])
def test_soap_endpoint_answering_html_or_nothing(connect_to, fresh_org, caplog, fault):
    caplog.set_level(logging.INFO)
    running, http = connect_to(fresh_org)
    secrets_ = _secrets(running, http)
    _faults(fresh_org, soap_endpoint=fault)
    base = counters(fresh_org)
    response = http.get(f"{running.url}/query", params={"q": SOQL})
    assert response.status_code == 502
    assert _error_code(response) == "partner_unavailable"
    assert "Traceback" not in response.text
    for kind in ("json", "csv"):
        export = http.get(f"{running.url}/export.{kind}", params={"q": SOQL})
        assert export.status_code == 502
        assert export.headers["Content-Type"].startswith("application/json")
        assert export.json()["error"] == "UPSTREAM_ERROR"
    # A broken endpoint is not a dead session: no refresh was tried.
    assert counters(fresh_org).get("token.refresh_token", 0) == base.get("token.refresh_token", 0)
    assert "partner" in _assert_clean_logs(caplog, *secrets_)
    _faults(fresh_org, soap_endpoint=None)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200


# ------------------------------------------------------------------------ the session store

def test_redis_stopped_mid_session_gives_503_and_the_app_recovers(connect_to, fresh_org,
                                                                   redis_server, tmp_path,
                                                                   caplog):
    caplog.set_level(logging.INFO)
    running, http = connect_to(fresh_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    secrets_ = _secrets(running, http)

    # Stop Redis, saving its data to disk as a Redis with persistence would.
    redis.Redis.from_url(redis_server.url).shutdown(save=True)
    redis_server.process.wait(timeout=10)
    restarted = None
    try:
        for path in ("/", "/query?q=" + SOQL):
            response = http.get(running.url + path)
            assert response.status_code == 503, response.text
            assert _error_code(response) == "session_store_unavailable"
            assert "cannot reach its session store" in response.text
            assert "Traceback" not in response.text
        export = http.get(f"{running.url}/export.json", params={"q": SOQL})
        assert export.status_code == 503
        assert export.json()["error"] == "SESSION_STORE_UNAVAILABLE"
        refused = http.post(f"{running.url}/logout", data={"csrf_token": "whatever"})
        assert refused.status_code == 503  # not a misleading CSRF error
        assert http.get(f"{running.url}/healthz").status_code == 503
        assert http.get(f"{running.url}/static/app.css").status_code == 200
        assert "session store unavailable" in _assert_clean_logs(caplog, *secrets_)

        restarted = start_redis(tmp_path / "redis", port=redis_server.port)
        # The app reconnects by itself, and the session (saved by Redis) is still there.
        assert http.get(f"{running.url}/healthz").status_code == 200
        home = http.get(running.url + "/")
        assert home.status_code == 200
        assert "Ada Admin" in home.text
        response = http.get(f"{running.url}/query", params={"q": SOQL})
        assert response.status_code == 200
        assert _rows(response) == 20
        http.post(f"{running.url}/logout", data={"csrf_token": logout_csrf(home.text)})
    finally:
        if restarted is not None:
            restarted.stop()


# ------------------------------------------------------------------------------ bad input

def test_callback_with_duplicated_missing_or_oversized_parameters(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    authorize_url = start_login(http, running.url)
    redirect = sign_in_at(http, authorize_url, follow=False)
    params = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["Location"]).query).items()}
    state, code = params["state"], params["code"]
    before = counters(local_org).get("token.authorization_code", 0)
    callback = f"{running.url}/oauth/callback"
    cases = [
        f"?state={state}&state={state}&code={code}",  # duplicated
        f"?state={state}&code={code}&code={code}",
        f"?state={state}&code={code}&error=x&error=y",
        f"?code={code}",  # missing
        "",
        f"?state={state}&code={'c' * 20_000}",  # oversized
        f"?state={'s' * 20_000}&code={code}",
        f"?state={state}&code={code}&error_description={'d' * 20_000}",
    ]
    for query in cases:
        response = http.get(callback + query, allow_redirects=False)
        assert response.status_code == 400, (query[:80], response.status_code)
        assert "Traceback" not in response.text
        assert lxml.html.fromstring(response.text).xpath("//h1"), "a page that says what failed"
    assert counters(local_org).get("token.authorization_code", 0) == before
    # The sign-in this browser started still finishes normally afterwards.
    response = http.get(callback, params={"state": state, "code": code}, allow_redirects=False)
    assert response.status_code == 302
    assert counters(local_org)["token.authorization_code"] == before + 1


def test_soql_of_100_kb(connect_to, local_org):
    running, http = connect_to(local_org)
    padding = "x" * 60_000
    long_soql = f"SELECT Id FROM Contact WHERE LastName = '{padding}'"
    response = http.get(f"{running.url}/query", params={"q": long_soql})
    assert response.status_code == 200
    assert _rows(response) == 0
    assert padding in response.text  # kept in the form
    # One character over Salesforce's limit is the user's mistake: 400, never 5xx.
    too_long = "SELECT Id FROM Contact WHERE LastName = '" + "x" * 100_000 + "'"
    for path in ("/query", "/export.json", "/export.csv", "/"):
        response = http.get(running.url + path, params={"q": too_long})
        # Over 64 KB the request line itself is refused by the HTTP server (414), before the app.
        assert 400 <= response.status_code < 500, (path, response.status_code)


def _raw_get(url: str, target: bytes, cookie: str | None = None) -> tuple[int, bytes]:
    """Send a request line with raw bytes in it (no client library would), return status, body."""
    parts = urlsplit(url)
    headers = b"Host: " + parts.netloc.encode() + b"\r\nConnection: close\r\n"
    if cookie:
        headers += b"Cookie: sfconnect_session=" + cookie.encode() + b"\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_non_utf8_bytes_in_query_strings(connect_to, local_org):
    running, http = connect_to(local_org)
    cookie = http.cookies.get("sfconnect_session")
    targets = [b"/query?q=%FF%FE", b"/query?q=SELECT+Id+FROM+Contact+WHERE+Name+=+'%C3%28'",
               b"/?q=%FF", b"/login?q=%FF", b"/oauth/callback?state=%FF&code=%FE",
               b"/export.csv?q=%FF", b"/export.json?q=%FF%FE&batch=%FF",
               b"/query?q=\xff\xfe", b"/?q=\xc3\x28", b"/oauth/callback?state=\xff&code=\xfe",
               b"/export.json?q=\xff", b"/\xff\xfe"]
    for target in targets:
        for with_cookie in (cookie, None):
            status, body = _raw_get(running.url, target, with_cookie)
            assert status < 500, (target, status, body[:300])
            assert b"Traceback" not in body
    # The session survived all of it.
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200


def test_faults_are_logged_once_each_without_secrets(connect_to, fresh_org, caplog):
    """One log line per failure, naming the service and what happened (and nothing secret)."""
    caplog.set_level(logging.INFO)
    running, http = connect_to(fresh_org)
    secrets_ = _secrets(running, http)
    _faults(fresh_org, soap_endpoint="502")
    started = time.time()
    http.get(f"{running.url}/query", params={"q": SOQL})
    records = [r for r in caplog.records if r.created >= started and r.name.startswith("sfconnect")
               and r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "partner" in records[0].getMessage()
    _assert_clean_logs(caplog, *secrets_)
    json.dumps([r.getMessage() for r in records])  # plain text, serialisable as is
