"""The app with Salesforce's own full partner WSDL (v66.0) instead of the project's, and with an
API version of its choosing: the same flow, queries and exports work, at the version asked for."""
from __future__ import annotations

import json

import lxml.html
import pytest

from tests.helpers.org import counters
from tests.helpers.paths import FIXTURES

REAL_WSDL = FIXTURES / "partner-v66.0.wsdl"
QUERIES = {
    "parent": "SELECT Id, LastName, Account.Name, Account.Owner.Name FROM Contact LIMIT 5",
    "child": "SELECT Name, (SELECT LastName FROM Contacts) FROM Account ORDER BY Name LIMIT 5",
    "aggregate": "SELECT StageName, COUNT(Id) deals, MAX(Amount) FROM Opportunity "
                 "GROUP BY StageName",
}


def _columns(html: str) -> list[str]:
    return [th.text_content().strip() for th in lxml.html.fromstring(html).xpath(
        "//table[contains(@class,'records')][1]/thead/tr/th")]


@pytest.mark.parametrize("version", [None, "60.0"])
def test_the_real_partner_wsdl_runs_queries_and_exports(connect_to, fresh_org, version):
    overrides = {"SF_PARTNER_WSDL": str(REAL_WSDL)}
    if version:
        overrides["SF_API_VERSION"] = version
    running, http = connect_to(fresh_org, **overrides)
    for kind, soql in QUERIES.items():
        page = http.get(f"{running.url}/query", params={"q": soql})
        assert page.status_code == 200, (kind, page.text[:500])
        assert _columns(page.text)[:2] == {
            "parent": ["Id", "LastName"], "child": ["Name", "Contacts"],
            "aggregate": ["StageName", "deals"]}[kind]
    exported = http.get(f"{running.url}/export.json", params={"q": QUERIES["parent"]})
    assert exported.status_code == 200
    records = json.loads(exported.text)["records"]
    assert len(records) == 5 and records[0]["attributes"]["type"] == "Contact"
    assert any(r["Account"] and "Owner" in r["Account"] for r in records)
    used = {name for name, count in counters(fresh_org).items()
            if name.startswith("soap.version.") and count}
    assert used == {f"soap.version.{version or '66.0'}"}
