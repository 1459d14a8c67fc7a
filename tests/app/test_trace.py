"""The trace of the flow: every exchange of a full flow (with a refresh and a revoke) in order,
and no secret that crossed the wire anywhere in the page, the HAR download or the logs."""
from __future__ import annotations

import logging
from pathlib import Path

import requests

from sfconnect.learn.trace_store import LIMIT, TraceStore
from sfconnect.redaction import mask
from tests.helpers.flow import logout_csrf, sign_in
from tests.helpers.learn import leaks, start_capturing_org, steps_of

SOQL = "SELECT Id, FirstName, LastName, Account.Name FROM Contact ORDER BY LastName LIMIT 5"


def test_full_flow_trace_in_order_and_no_secret_anywhere(start_app, caplog):
    caplog.set_level(logging.DEBUG)
    org, capture = start_capturing_org()
    try:
        running = start_app(org)
        http = requests.Session()
        assert sign_in(http, running.url).response.url == running.url + "/"
        assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
        org.state.tokens.expire_all()
        assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200

        page = http.get(f"{running.url}/flow")
        assert page.status_code == 200
        assert steps_of(page) == [
            "authorization request", "sign-in and consent at Salesforce", "callback",
            "token request", "signature check", "identity request",
            "endpoint chosen with {version} filled", "SOAP request",
            "SOAP request",  # INVALID_SESSION_ID: the token expired
            "expired session and refresh", "signature check", "SOAP request",
        ]
        assert "INVALID_SESSION_ID" in page.text
        assert "RFC 7636" in page.text and "RFC 6749" in page.text
        har = http.get(f"{running.url}/flow.har")
        svg = http.get(f"{running.url}/flow.svg")

        home = http.get(running.url + "/")
        assert http.post(f"{running.url}/logout",
                         data={"csrf_token": logout_csrf(home.text)}).status_code == 200
        after = http.get(f"{running.url}/flow")
        # The signed-in session's trace is gone; the logout's own revoke begins the next one.
        assert steps_of(after) == ["revoke", "revoke"]  # refresh, then access token
        har_after = http.get(f"{running.url}/flow.har")
    finally:
        org.server.shutdown()

    kinds = capture.kinds
    assert {"code", "code_verifier", "client_secret", "access_token", "refresh_token",
            "token"} <= set(kinds), kinds.keys()
    assert len(kinds["access_token"]) == 2  # the first, and the refreshed one
    secrets = capture.secrets | {running.client.client_secret}
    # Every record, the local org's own included (it runs in this process): all are redacted.
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert len(caplog.records) > 20
    for name, text in (("page", page.text), ("har", har.text), ("svg", svg.text),
                       ("page after logout", after.text), ("har after logout", har_after.text),
                       ("logs", logs)):
        found = leaks(text, secrets)
        context = [(kind, text[max(0, text.find(s) - 300):text.find(s) + 60])
                   for s in found for kind, values in kinds.items() if s in values]
        assert found == [], (name, context)
    # Masked, not dropped: the first 6 and last 4 characters remain, the secret and the verifier
    # are hidden entirely.
    first_access = next(iter(kinds["access_token"]))
    assert any(mask(token) in page.text for token in kinds["access_token"]), first_access[:6]
    assert mask(next(iter(kinds["code"]))) in page.text
    assert "client_secret=[hidden]" in page.text and "code_verifier=[hidden]" in page.text


def test_trace_is_kept_in_redis_with_redis_sessions_and_deleted_at_logout(start_app, fresh_org,
                                                                           redis_server):
    import redis

    running = start_app(fresh_org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    # /flow first: a request's entries are stored once its page has been sent, and /flow waits
    # for that; reading Redis directly does not.
    assert steps_of(http.get(f"{running.url}/flow"))[:3] == [
        "authorization request", "sign-in and consent at Salesforce", "callback"]
    client = redis.Redis.from_url(redis_server.url)
    before = {key.decode() for key in client.keys("sfconnect:trace:*")}
    assert len(before) == 1
    http.post(f"{running.url}/logout",
              data={"csrf_token": logout_csrf(http.get(running.url).text)})
    after = {key.decode() for key in client.keys("sfconnect:trace:*")}
    assert not before & after  # the signed-in trace is gone
    assert steps_of(http.get(f"{running.url}/flow")) == ["revoke", "revoke"]


def test_trace_keeps_the_last_hundred_entries(tmp_path):
    from cryptography.fernet import Fernet

    from sfconnect.store import FileRecords, SealedRecords

    key = Fernet.generate_key()
    entries = SealedRecords(FileRecords(tmp_path / "entries", 3600), key)
    store = TraceStore(SealedRecords(FileRecords(tmp_path / "index", 3600), key), entries)
    trace_id = "t" * 43
    for batch in range(12):
        store.append(trace_id, [{"step": f"step {batch}-{i}", "started": 0.0,
                                 "started_iso": ""} for i in range(10)])
    document = store.load(trace_id)
    assert len(document["entries"]) == LIMIT == 100
    assert document["dropped"] == 20
    assert document["entries"][0]["seq"] == 21 and document["entries"][-1]["seq"] == 120
    assert document["entries"][-1]["step"] == "step 11-9"
    assert len(list((tmp_path / "entries").glob("*.json"))) == 100  # cut entries are deleted
    store.delete(trace_id)
    assert store.load(trace_id)["entries"] == []
    assert not list((tmp_path / "entries").glob("*.json"))


def test_flow_page_before_any_exchange_and_outside_requests(start_app, local_org):
    running = start_app(local_org)
    # An exchange outside any request (CLI, start-up) is not recorded anywhere, and harmless.
    from tests.helpers.app import gate_for

    assert gate_for(local_org.url, purpose="oauth").get(
        f"{local_org.url}/services/data").status_code < 500
    page = requests.get(f"{running.url}/flow")
    assert page.status_code == 200 and "Nothing yet" in page.text


def test_a_page_leaves_before_its_trace_is_stored_and_readers_wait_for_it(start_app, local_org,
                                                                          monkeypatch):
    """A query's trace entries (64 KB of its reply, encrypted) are stored once the page has been
    sent; /flow right after shows them, and logout deletes the trace only once they are in.
    Each append is held until the test, or a reader or a delete of the trace, lets it go, so the
    order is the same on every run; the held pages' connections are closed, so the next request
    comes on another one (as a browser's may) and is not queued behind the held append."""
    import threading

    order: list[str] = []
    append, load, delete = TraceStore.append, TraceStore.load, TraceStore.delete
    let_go = threading.Event()

    def held_append(self, trace_id, entries):  # noqa: ANN001, ANN202
        let_go.wait(30)  # a bound, not a delay: whoever reads or deletes the trace lets it go
        append(self, trace_id, entries)
        order.append("stored")

    def reading(self, trace_id):  # noqa: ANN001, ANN202
        order.append("read")
        let_go.set()
        return load(self, trace_id)

    def deleting(self, trace_id):  # noqa: ANN001, ANN202
        order.append("delete")
        let_go.set()
        delete(self, trace_id)

    running = start_app(local_org)
    http = requests.Session()
    close = {"Connection": "close"}
    assert sign_in(http, running.url).response.url == running.url + "/"
    http.get(f"{running.url}/flow")  # a reader: returns once the sign-in's entries are stored
    monkeypatch.setattr(TraceStore, "append", held_append)
    monkeypatch.setattr(TraceStore, "load", reading)
    monkeypatch.setattr(TraceStore, "delete", deleting)
    page = http.get(f"{running.url}/query", params={"q": "SELECT Name FROM Account LIMIT 3"},
                    headers=close)
    order.append("page received")
    assert page.status_code == 200
    assert steps_of(http.get(f"{running.url}/flow"))[-1] == "SOAP request"
    assert order == ["page received", "read", "stored"]

    let_go.clear()
    traces = Path(running.app.extensions["sfconnect.settings"].session_file_dir) / "traces"
    before = {p.name for p in traces.glob("*.json")}
    http.get(f"{running.url}/query", params={"q": "SELECT Name FROM Account LIMIT 2"},
             headers=close)
    home = http.get(running.url, headers=close)
    http.post(f"{running.url}/logout", data={"csrf_token": logout_csrf(home.text)})
    assert order[3] == "delete"  # while the second query's entries were held
    assert steps_of(http.get(f"{running.url}/flow")) == ["revoke", "revoke"]
    assert before and not before & {p.name for p in traces.glob("*.json")}  # none came back
    assert order.count("stored") >= 3  # the second query's, and the logout's revoke


def test_a_large_reply_masked_later_reads_as_one_masked_at_once():
    """A query's reply is masked when its entry is read or stored, not while the page waits;
    the entry is then what masking at once gives, secrets and cut included."""
    from sfconnect.learn.trace import BODY_LIMIT, _mask_bodies, exchange_entry

    token = "00D5g000004ZbXy!AQ4AQH0dMHZfz4dS8.Ru6dFVKgt1hJ1k3AbCdEfGhIjKlMnOpQrStUvWxYz"
    for size in (BODY_LIMIT + 10, 3 * BODY_LIMIT, 20 * BODY_LIMIT):
        body = (f"<sessionId>{token}</sessionId><x>東京 " + "y" * size + "</x>").encode()
        request = requests.Request("POST", "http://127.0.0.1:9/services/Soap/u/66.0/00D",
                                   data=b"<q/>", headers={"Content-Type": "text/xml"}).prepare()
        response = requests.Response()
        response.status_code, response.reason, response._content = 200, "OK", body
        response.headers["Content-Type"] = "text/xml; charset=UTF-8"
        now = exchange_entry("partner", request, response, 1.0, 0.01, None)
        later = exchange_entry("partner", request, response, 1.0, 0.01, None, mask_later=True)
        assert later["response_body"] != now["response_body"]  # not masked yet
        assert _mask_bodies([later]) == [now]
        assert token not in later["response_body"] and mask(token) in later["response_body"]
        assert later["response_truncated"]


def test_entries_are_stored_even_when_the_server_never_closes_the_response(tmp_path):
    """A server may skip closing a response (werkzeug's does when the browser resets the
    connection after a redirect): the entries are stored once the response object is freed.
    The test frees it itself and then looks, instead of asking `load`, which would wait for the
    pending entries (up to its timeout) before the response is freed."""
    import gc
    import weakref

    from flask import Response

    import sfconnect
    from sfconnect.learn import trace

    app = sfconnect.create_app({
        "ENV": "testing", "SECRET_KEY": "k" * 32, "SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s",
        "SF_LOGIN_URL": "http://127.0.0.1:9", "SF_REDIRECT_URI": "http://127.0.0.1:8/oauth/callback",
        "SESSION_TYPE": "filesystem", "SESSION_FILE_DIR": str(tmp_path)})
    store = trace.store_of(app)
    with app.test_request_context("/"):
        from flask import session

        trace._buffer(create=True).append(trace._entry("callback", note="never closed"))
        response = Response("moved", status=303)
        trace._store_after_sending(store, response)
        trace_id = session[trace.SESSION_KEY]
        # Not before the response is done with: the trace is not in the store yet.
        assert store.store.read(trace_id) is None
        freed = weakref.ref(response)
        del response
        gc.collect()
        assert freed() is None  # nothing else held it: its finalizer has run, and stored them
        assert store.store.read(trace_id) is not None
        assert [e["note"] for e in store.load(trace_id)["entries"]] == ["never closed"]
