"""GET /flow.har: the trace as HAR 1.2, checked field by field against the spec
(http://www.softwareishard.com/blog/har-12-spec/), secrets masked."""
from __future__ import annotations

import json
import re
from datetime import datetime

import requests

from tests.helpers.flow import sign_in

SOQL = "SELECT Id, Name FROM Account ORDER BY Name LIMIT 3"
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _name_values(items, where: str) -> None:
    assert isinstance(items, list), where
    for item in items:
        assert isinstance(item, dict) and isinstance(item.get("name"), str) \
            and isinstance(item.get("value"), str), (where, item)


def validate_har_1_2(document: dict) -> None:
    """The required fields and types of HAR 1.2 (log, creator, entries, request, response,
    content, cache, timings), as the spec lists them."""
    log = document["log"]
    assert log["version"] == "1.2"
    assert isinstance(log["creator"]["name"], str) and isinstance(log["creator"]["version"], str)
    assert isinstance(log["entries"], list)
    for index, entry in enumerate(log["entries"]):
        where = f"entries[{index}]"
        assert ISO_8601.match(entry["startedDateTime"]), where
        datetime.fromisoformat(entry["startedDateTime"].replace("Z", "+00:00"))
        assert isinstance(entry["time"], int | float) and entry["time"] >= 0, where
        request, response = entry["request"], entry["response"]
        for key in ("method", "url", "httpVersion"):
            assert isinstance(request[key], str) and request[key], (where, key)
        _name_values(request["cookies"], where + ".request.cookies")
        _name_values(request["headers"], where + ".request.headers")
        _name_values(request["queryString"], where + ".request.queryString")
        assert isinstance(request["headersSize"], int) and isinstance(request["bodySize"], int)
        if "postData" in request:
            assert isinstance(request["postData"]["mimeType"], str)
            assert isinstance(request["postData"].get("text", ""), str)
            if "params" in request["postData"]:
                _name_values(request["postData"]["params"], where + ".postData.params")
        assert isinstance(response["status"], int)
        assert isinstance(response["statusText"], str)
        assert isinstance(response["httpVersion"], str)
        _name_values(response["cookies"], where + ".response.cookies")
        _name_values(response["headers"], where + ".response.headers")
        content = response["content"]
        assert isinstance(content["size"], int) and isinstance(content["mimeType"], str)
        assert isinstance(content.get("text", ""), str)
        assert isinstance(response["redirectURL"], str)
        assert isinstance(response["headersSize"], int) and isinstance(response["bodySize"], int)
        assert isinstance(entry["cache"], dict)
        timings = entry["timings"]
        for key in ("send", "wait", "receive"):
            assert isinstance(timings[key], int | float) and timings[key] >= -1, (where, key)
        parts = sum(t for t in (timings[k] for k in ("send", "wait", "receive")) if t > 0)
        assert abs(parts - entry["time"]) < 0.01, where  # time is the sum of the timings


def test_flow_har_parses_as_har_1_2_with_every_exchange(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    sign_in(http, running.url)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    response = http.get(f"{running.url}/flow.har")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "attachment" in response.headers["Content-Disposition"]
    assert ".har" in response.headers["Content-Disposition"]
    document = json.loads(response.text)
    validate_har_1_2(document)

    entries = document["log"]["entries"]
    urls = [entry["request"]["url"] for entry in entries]
    assert urls[0].startswith(running.url + "/login")
    assert entries[0]["response"]["status"] == 302
    assert "/services/oauth2/authorize" in entries[0]["response"]["redirectURL"]
    assert any("/oauth/callback" in url for url in urls)
    token = next(e for e in entries if e["request"]["url"].endswith("/services/oauth2/token"))
    params = {p["name"]: p["value"] for p in token["request"]["postData"]["params"]}
    assert params["grant_type"] == "authorization_code"
    assert params["client_secret"] == "[hidden]" and params["code_verifier"] == "[hidden]"
    assert "…" in params["code"]
    assert json.loads(token["response"]["content"]["text"])["access_token"].count("…") == 1
    soap = next(e for e in entries if "/services/Soap/u/" in e["request"]["url"])
    assert soap["request"]["method"] == "POST"
    assert "<sf:Name>" in soap["response"]["content"]["text"]
    assert "sessionId>" in soap["request"]["postData"]["text"]
    assert running.client.client_secret not in response.text
    # Started times are in order.
    started = [entry["startedDateTime"] for entry in entries]
    assert started == sorted(started)


def test_empty_trace_is_a_valid_har(start_app, local_org):
    running = start_app(local_org)
    document = requests.get(f"{running.url}/flow.har").json()
    validate_har_1_2(document)
    assert document["log"]["entries"] == []
