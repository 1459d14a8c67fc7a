"""A real browser through the learning pages: Connect, sign in, run a query, open /flow; saves
screenshots of the trace and the sequence diagram."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import app_problems, assert_accessible, sign_in

SOQL = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"

pytestmark = pytest.mark.browser


def test_trace_and_diagram_in_the_browser(page, start_app, local_org, artifacts):
    running = start_app(local_org)
    sign_in(page, running, local_org)
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
    # Opened, long bodies scroll: each must be a focusable, named region.
    page.locator("details.trace-details").evaluate_all("ds => ds.forEach(d => d.open = true)")
    assert_accessible(page)
    page.screenshot(path=str(artifacts / "learn-trace.png"), full_page=True)
    diagram.screenshot(path=str(artifacts / "learn-diagram.png"))
    assert (artifacts / "learn-trace.png").stat().st_size > 10_000
    assert (artifacts / "learn-diagram.png").stat().st_size > 5_000

    page.goto(running.url + "/compare?q=" + SOQL.replace(" ", "+"))
    expect(page.locator(".compare-verdict")).to_contain_text("Same records both ways: 5.")
    page.screenshot(path=str(artifacts / "learn-compare.png"), full_page=True)
    assert app_problems(page, running) == [], page.problems
