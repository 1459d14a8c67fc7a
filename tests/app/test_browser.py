"""A real browser (Playwright driving Debian's Chromium) through the whole flow: Connect, sign in
on the local org's login page, Allow, run a query, see the records. Saves a screenshot."""
from __future__ import annotations

import os
import re
import shutil

from playwright.sync_api import expect

from tests.helpers.browser import app_problems, sign_in
from tests.helpers.paths import REPO

SOQL = ("SELECT FirstName, LastName, Title, Email, Account.Name FROM Contact "
        "ORDER BY LastName LIMIT 12")


def test_connect_sign_in_allow_query_and_screenshot(page, start_app, local_org, artifacts):
    running = start_app(local_org)
    sign_in(page, running, local_org)
    expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")
    expect(page.locator("#who")).to_have_text("Ada Admin")
    expect(page.locator(".org-id")).to_have_text(local_org.state.org_id)

    page.get_by_label("SOQL query").fill(SOQL)
    page.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/query\?q=.*"))
    expect(page.locator(".record-count")).to_have_text("12")
    rows = page.locator("table.records > tbody > tr")
    expect(rows).to_have_count(12)
    headers = page.locator("table.records > thead th")
    expect(headers).to_have_text(["FirstName", "LastName", "Title", "Email", "Account.Name"])
    expect(page.get_by_label("SOQL query")).to_have_value(SOQL)

    page.screenshot(path=str(artifacts / "flow.png"), full_page=True)
    # The README's screenshot is refreshed on request only, so a test run leaves the tree clean.
    if os.environ.get("SFCONNECT_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(artifacts / "flow.png", REPO / "docs" / "screenshot.png")
    assert app_problems(page, running) == [], page.problems


def test_fault_then_logout_in_the_browser(page, start_app, local_org, artifacts):
    running = start_app(local_org)
    sign_in(page, running, local_org)
    soql = "SELECT Asdf FROM Contact"
    field = page.get_by_label("SOQL query")
    field.fill(soql)
    field.press("Control+Enter")  # app.js: Ctrl+Enter runs the query
    page.wait_for_url(re.compile(r".*/query\?q=.*"))
    expect(page.locator(".fault-code")).to_have_text("INVALID_FIELD")
    expect(page.locator(".fault-row")).to_have_text("1")
    expect(page.locator(".fault-column")).to_have_text("8")
    expect(page.get_by_label("SOQL query")).to_have_value(soql)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(running.url + "/")
    expect(page.locator(".status-text")).to_have_text("Not connected")
    expect(page.locator(".notice")).to_contain_text("revoked")
    page.screenshot(path=str(artifacts / "logout.png"))
    # The fault page's 400 is logged by Chromium as a failed resource; nothing else may be.
    assert [p for p in app_problems(page, running) if "status of 400" not in p] == [], \
        page.problems
