"""A real browser (Playwright driving Debian's Chromium): the Salesforce session expires between
two queries, and the second query still shows its records (one refresh grant, behind the scenes)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from conftest_flow import counters
from playwright.sync_api import expect, sync_playwright
from test_browser import CHROMIUM, CHROMIUM_ARGS, sign_in

FIRST = "SELECT FirstName, LastName, Account.Name FROM Contact ORDER BY LastName LIMIT 12"
SECOND = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        page.on("console", lambda message: problems.append(
            f"{message.location.get('url')}: {message.text}") if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.problems = problems
        yield page
        context.close()
        browser.close()


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
    # Console errors of the app's pages (the local org's own pages are not under test).
    assert [p for p in page.problems if p.startswith(running.url)] == [], page.problems
