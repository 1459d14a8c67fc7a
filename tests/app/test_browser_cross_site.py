"""A real browser (Playwright driving Debian's Chromium) follows another site's link to a query
while signed in: the app shows what would run and calls nothing; its button runs the query.
Saves a screenshot of the page to test-artifacts/cross-site.png.

The other site is served at http://localhost:<port> and the app at http://127.0.0.1:<port>:
Chromium tells sites apart by host, so the link is `Sec-Fetch-Site: cross-site`."""
from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect
from werkzeug.wrappers import Response

from devorg import serve_in_thread
from tests.helpers.browser import app_problems, sign_in
from tests.helpers.org import counters

SOQL = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"

pytestmark = pytest.mark.browser


def test_a_link_from_another_site_shows_the_query_and_runs_it_on_continue(page, start_app,
                                                                         fresh_org, artifacts):
    running = start_app(fresh_org)
    target = f"{running.url}/query?{urlencode({'q': SOQL})}"
    other_site = serve_in_thread(Response(
        f'<!doctype html><title>Elsewhere</title><a href="{html.escape(target)}">Your '
        "report</a>", mimetype="text/html"))
    try:
        sign_in(page, running, fresh_org)
        before = counters(fresh_org)
        page.goto(f"http://localhost:{other_site.port}/")
        page.get_by_role("link", name="Your report").click()
        page.wait_for_url(target)

        expect(page.get_by_role("heading", level=1)).to_have_text("Another site sent you here")
        assert counters(fresh_org) == before, "the link alone called Salesforce"
        soql = page.get_by_role("region", name="SOQL query")
        expect(soql).to_have_text(SOQL)
        expect(page.get_by_role("heading", level=2)).to_have_text("What would run")
        expect(page.locator(".status-text")).to_contain_text("Connected as")
        page.screenshot(path=str(artifacts / "cross-site.png"), full_page=True)
        # The keyboard reaches the query's box (it scrolls) and then the button.
        soql.focus()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Run the query")).to_be_focused()

        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(re.escape(running.url) + r"/query\?q=.*"))
        expect(page.locator(".record-count")).to_have_text("5")
        expect(page.locator("table.records tbody tr")).to_have_count(5)
        assert counters(fresh_org)["soap.query"] == before.get("soap.query", 0) + 1
        assert app_problems(page, running) == []
    finally:
        other_site.shutdown()
