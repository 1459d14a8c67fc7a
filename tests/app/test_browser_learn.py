"""A real browser through the learning pages: Connect, sign in, run a query, open /flow; saves
screenshots of the trace and the sequence diagram."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SOQL = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_trace_and_diagram_in_the_browser(browser, start_app, local_org, artifacts):
    running = start_app(local_org)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{message.location.get('url')}: "
                                                       f"{message.text}")
            if message.type == "error" else None)
    try:
        page.goto(running.url + "/")
        page.get_by_role("button", name="Connect to Salesforce").click()
        page.wait_for_url(re.compile(re.escape(local_org.url) + r"/services/oauth2/authorize\?.*"))
        page.get_by_label("Username").fill("admin@devorg.local")
        page.get_by_label("Password").fill("Welcome1!")
        page.get_by_role("button", name="Log In").click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(running.url + "/")
        expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")

        page.get_by_label("SOQL query").fill(SOQL)
        page.get_by_role("button", name="Run query").click()
        page.wait_for_url(re.compile(r".*/query\?q=.*"))

        page.goto(running.url + "/flow")
        expect(page.get_by_role("heading", name="The flow, exchange by exchange")).to_be_visible()
        steps = page.locator("h2.trace-step")
        expect(steps.first).to_contain_text("authorization request")
        expect(page.locator("h2.trace-step", has_text="SOAP request").first).to_be_visible()
        expect(page.locator("h2.trace-step", has_text="signature check")).to_have_count(1)
        diagram = page.locator("#sequence-diagram svg")
        expect(diagram).to_be_visible()
        page.locator("details.trace-details").nth(2).evaluate("d => d.open = true")
        page.screenshot(path=str(artifacts / "learn-trace.png"), full_page=True)
        diagram.screenshot(path=str(artifacts / "learn-diagram.png"))
        assert (artifacts / "learn-trace.png").stat().st_size > 10_000
        assert (artifacts / "learn-diagram.png").stat().st_size > 5_000

        page.goto(running.url + "/compare?q=" + SOQL.replace(" ", "+"))
        expect(page.locator(".compare-verdict")).to_contain_text("Same records both ways: 5.")
        page.screenshot(path=str(artifacts / "learn-compare.png"), full_page=True)
        assert [p for p in problems if p.startswith(running.url)] == [], problems
    finally:
        context.close()
