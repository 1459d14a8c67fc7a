"""Exports through the whole app, connected by the local org's login and consent pages."""
from __future__ import annotations

import csv
import io
import json
import re

import requests


def test_not_connected_goes_home(local_org, start_app):
    app = start_app(local_org)
    response = requests.get(f"{app.url}/export.csv", params={"q": "SELECT Id FROM Contact"},
                            allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"].rstrip("/") in ("", app.url)


def test_csv_has_every_record_dotted_columns_and_a_download_name(connected, local_org):
    app, browser = connected
    soql = "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact"
    response = browser.get(f"{app.url}/export.csv", params={"q": soql, "batch": 200})
    assert response.status_code == 200
    assert re.fullmatch(r'attachment; filename="Contact-\d{8}-\d{4}\.csv"',
                        response.headers["Content-Disposition"])
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8"))))
    assert rows[0] == ["Id", "LastName", "Account.Name", "Account.Owner.Name"]
    live = [r for r in local_org.state.data.records("Contact") if not r.get("IsDeleted")]
    assert len(rows) - 1 == len(live)
    assert len({row[0] for row in rows[1:]}) == len(live)


def test_json_is_rest_shaped_with_children(connected):
    app, browser = connected
    soql = "SELECT Name, (SELECT LastName FROM Contacts) FROM Account"
    response = browser.get(f"{app.url}/export.json", params={"q": soql})
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["totalSize"] == len(body["records"]) > 0
    first = body["records"][0]
    assert first["attributes"]["type"] == "Account"
    children = [r["Contacts"] for r in body["records"] if r["Contacts"] is not None]
    assert children and set(children[0]) == {"totalSize", "done", "records"}


def test_fault_before_the_first_byte_is_a_json_400(connected):
    app, browser = connected
    response = browser.get(f"{app.url}/export.json", params={"q": "SELECT Asdf FROM Contact"})
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_FIELD"
    assert (response.json()["row"], response.json()["column"]) == (1, 8)
