"""A real browser (Playwright driving Debian's Chromium): the Salesforce session expires between
two queries, and the second query still shows its records (one refresh grant, behind the scenes)."""
from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from tests.helpers.browser import app_problems, sign_in
from tests.helpers.org import counters

FIRST = "SELECT FirstName, LastName, Account.Name FROM Contact ORDER BY LastName LIMIT 12"
SECOND = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"


def _run(page, soql: str) -> None:
    page.get_by_label("SOQL query").fill(soql)
    page.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/query\?q=.*"))


def test_session_expires_between_two_queries_and_the_second_still_shows_records(
        page, start_app, fresh_org, artifacts):
    running = start_app(fresh_org)
    sign_in(page, running, fresh_org)
    _run(page, FIRST)
    expect(page.locator("table.records > tbody > tr")).to_have_count(12)

    requests.post(f"{fresh_org.url}/__admin/expire-sessions").raise_for_status()
    refreshes = counters(fresh_org).get("token.refresh_token", 0)

    _run(page, SECOND)
    expect(page.locator(".record-count")).to_have_text("5")
    expect(page.locator("table.records > tbody > tr")).to_have_count(5)
    expect(page.locator("table.records > thead th")).to_have_text(["Name", "Industry"])
    expect(page.get_by_label("SOQL query")).to_have_value(SECOND)
    expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")
    expect(page.locator(".notice")).to_have_count(0)  # no error, no "connect again"
    assert counters(fresh_org)["token.refresh_token"] == refreshes + 1
    page.screenshot(path=str(artifacts / "expiry.png"), full_page=True)
    assert app_problems(page, running) == [], page.problems
