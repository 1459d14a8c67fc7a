"""GET /compare: the same SOQL through the REST API (urls.query) and the SOAP partner API, side
by side, with the same records both ways, payloads masked; an expired token is refreshed once."""
from __future__ import annotations

import lxml.html
import requests

from tests.helpers.flow import sign_in
from tests.helpers.org import counters

SOQL = "SELECT Id, Name, Industry FROM Account ORDER BY Name LIMIT 7"


def _side(page, key: str) -> dict:
    doc = lxml.html.fromstring(page.text)
    side = doc.get_element_by_id(f"side-{key}")
    items = side.xpath(".//ol[@class='record-ids']/li")
    return {"ids": [li.text_content().strip() for li in items],
            "count": side.xpath(".//dd[@class='record-count']")[0].text_content().strip(),
            "text": side.text_content()}


def test_compare_shows_the_same_records_through_rest_and_soap(start_app, fresh_org):
    running = start_app(fresh_org)
    http = requests.Session()
    sign_in(http, running.url)
    page = http.get(f"{running.url}/compare", params={"q": SOQL})
    assert page.status_code == 200, page.text
    soap, rest = _side(page, "soap"), _side(page, "rest")
    assert soap["count"] == rest["count"] == "7"
    assert soap["ids"] == rest["ids"] and len(set(soap["ids"])) == 7
    assert all(record_id.startswith("001") for record_id in rest["ids"])
    assert "Same records both ways: 7." in page.text
    # Raw payloads, masked: the REST URL is urls.query with {version} filled, the token masked.
    assert "/services/data/v66.0/query/?q=SELECT" in rest["text"]
    assert '"totalSize": 7' in rest["text"]
    assert "queryResponse" in soap["text"] and "sessionId>00D5g0…" in soap["text"]
    assert counters(fresh_org).get("rest.query", 0) == 1
    doc = lxml.html.fromstring(page.text)
    assert doc.xpath("//dd[@class='response-size']")  # sizes are shown

    # The trace has the REST query, its bearer token masked.
    flow = http.get(f"{running.url}/flow")
    assert "REST query" in flow.text and "Authorization: Bearer 00D5g0…" in flow.text

    # An expired session: each side refreshes once and still shows the same records.
    fresh_org.state.tokens.expire_all()
    again = http.get(f"{running.url}/compare", params={"q": SOQL})
    assert again.status_code == 200
    assert _side(again, "soap")["ids"] == _side(again, "rest")["ids"] == soap["ids"]
    assert counters(fresh_org).get("token.refresh_token", 0) == 1


def test_compare_fault_and_not_connected(start_app, local_org):
    running = start_app(local_org)
    assert requests.get(f"{running.url}/compare", params={"q": SOQL},
                        allow_redirects=False).status_code == 302
    http = requests.Session()
    sign_in(http, running.url)
    form = http.get(f"{running.url}/compare")
    assert form.status_code == 200 and "Run both" in form.text
    bad = http.get(f"{running.url}/compare", params={"q": "SELECT Nope FROM Account"})
    assert bad.status_code == 400 and "INVALID_FIELD" in bad.text
