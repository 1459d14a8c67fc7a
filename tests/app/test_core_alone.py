"""The core runs alone: with SF_LEARNING=off nothing of sfconnect.learn is wired in, and the whole
flow still works over real HTTP (sign in, query, page, export, refresh on an expired session, log
out); no trace is kept and the learning pages do not exist."""
from __future__ import annotations

import requests

from tests.helpers.org import counters

SOQL = "SELECT Id, Name FROM Account ORDER BY Name LIMIT 5"


def test_the_flow_works_with_the_learning_features_off(connect_to, fresh_org):
    running, http = connect_to(fresh_org, SF_LEARNING="off")
    app = running.app
    assert "learn" not in app.blueprints and "steps" not in app.blueprints
    assert "sfconnect.trace" not in app.extensions

    home = http.get(f"{running.url}/")
    assert home.status_code == 200 and "Connected as" in home.text
    assert "step-switch" not in home.text  # no learning partials on the home page

    page = http.get(f"{running.url}/query", params={"q": SOQL})
    assert page.status_code == 200 and page.text.count("<tr") >= 5

    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    before = counters(fresh_org)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    assert counters(fresh_org)["token.refresh_token"] == before.get("token.refresh_token", 0) + 1

    export = http.get(f"{running.url}/export.csv", params={"q": SOQL})
    assert export.status_code == 200 and export.text.count("\r\n") == 6  # header and 5 rows

    for path in ("/flow", "/flows", "/compare", "/setup", "/step"):
        assert http.get(f"{running.url}{path}").status_code == 404, path

    csrf = home.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    out = http.post(f"{running.url}/logout", data={"csrf_token": csrf})
    assert out.status_code == 200 and "Not connected" in out.text
