"""A real browser (Playwright driving Debian's Chromium) walks step-by-step mode from Connect to
the first query: the switch, the four step pages and their Continue buttons, then the trace and
its diagram. Saves a screenshot of each to test-artifacts/step-*.png."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import assert_accessible, watch_accessibility

SOQL = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"

pytestmark = pytest.mark.browser


def _param(page, name: str):
    return page.locator(f".step-params tr[data-name='{name}'] .step-value")


def test_step_by_step_from_connect_to_the_first_query(browser, start_app, local_org, artifacts):
    running = start_app(local_org)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watch_accessibility(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"{message.location.get('url')}: "
                                                       f"{message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    step_page = re.compile(re.escape(running.url) + r"/(step|login|query)(\?.*)?$")
    try:
        page.goto(running.url + "/")
        expect(page.locator(".step-switch-state")).to_have_text("off")
        page.get_by_role("button", name="Turn on step-by-step mode").click()
        expect(page.locator(".step-switch-state")).to_have_text("on")
        expect(page.locator(".notice")).to_contain_text("Step-by-step mode is on")

        # 1. Connect pauses on the authorize URL.
        page.get_by_role("button", name="Connect to Salesforce").click()
        page.wait_for_url(step_page)
        expect(page.get_by_role("heading", name="The authorization request")).to_be_visible()
        expect(_param(page, "response_type")).to_have_text("code")
        expect(_param(page, "code_challenge_method")).to_have_text("S256")
        expect(page.locator("tr.step-param")).to_have_count(7)
        page.screenshot(path=str(artifacts / "step-1-authorize.png"), full_page=True)
        page.get_by_role("link", name="Continue to Salesforce").click()

        page.wait_for_url(re.compile(re.escape(local_org.url) + r"/services/oauth2/authorize\?.*"))
        page.get_by_label("Username").fill("admin@devorg.local")
        page.get_by_label("Password").fill("Welcome1!")
        page.get_by_role("button", name="Log In").click()
        page.get_by_role("button", name="Allow").click()

        # 2. Back at the app: the token request waits.
        page.wait_for_url(running.url + "/step")
        expect(page.get_by_role("heading", name="The token request")).to_be_visible()
        expect(_param(page, "client_secret")).to_have_text("[hidden]")
        expect(_param(page, "code_verifier")).to_have_text("[hidden]")
        expect(_param(page, "code")).to_contain_text("…")
        page.screenshot(path=str(artifacts / "step-2-token.png"), full_page=True)
        page.get_by_role("button", name="Continue").click()

        # 3. The identity call waits, its Bearer token masked.
        expect(page.get_by_role("heading", name="The identity request")).to_be_visible()
        expect(page.locator(".step-headers tr[data-name='Authorization'] .step-value")
               ).to_have_text(re.compile(r"^Bearer \S{6}…\S{4}$"))
        page.screenshot(path=str(artifacts / "step-3-identity.png"), full_page=True)
        page.get_by_role("button", name="Continue").click()

        page.wait_for_url(running.url + "/")
        expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")
        expect(page.locator(".step-switch-state")).to_have_text("on")

        # 4. The first query waits with its SOAP envelope.
        page.get_by_label("SOQL query").fill(SOQL)
        page.get_by_role("button", name="Run query").click()
        expect(page.get_by_role("heading", name="The SOAP request")).to_be_visible()
        expect(page.locator("pre.step-body")).to_contain_text("sessionId")
        expect(page.locator("pre.step-body")).to_contain_text(SOQL)
        expect(page.locator("code.step-url")).not_to_contain_text("{version}")
        page.screenshot(path=str(artifacts / "step-4-soap.png"), full_page=True)
        page.get_by_role("button", name="Continue").click()

        expect(page.locator(".record-count")).to_have_text("5")
        expect(page).to_have_url(re.compile(re.escape(running.url) + r"/query\?q=.*"))
        page.screenshot(path=str(artifacts / "step-5-results.png"), full_page=True)

        # The trace of what was sent, and its diagram.
        page.goto(running.url + "/flow")
        expect(page.get_by_role("heading", name="The flow, exchange by exchange")).to_be_visible()
        expect(page.locator("h2.trace-step").first).to_contain_text("authorization request")
        expect(page.locator("h2.trace-step", has_text="token request")).to_have_count(1)
        expect(page.locator("h2.trace-step", has_text="identity request")).to_have_count(1)
        # the query, and the SOQL form's describe lookups (SOAP too, never paused)
        expect(page.locator("h2.trace-step", has_text="SOAP request").first).to_be_visible()
        diagram = page.locator("#sequence-diagram svg")
        expect(diagram).to_be_visible()
        page.screenshot(path=str(artifacts / "step-trace.png"), full_page=True)
        diagram.screenshot(path=str(artifacts / "step-diagram.png"))
        for name in ("step-1-authorize", "step-2-token", "step-3-identity", "step-4-soap",
                     "step-5-results", "step-trace", "step-diagram"):
            assert (artifacts / f"{name}.png").stat().st_size > 5_000, name
        assert [p for p in problems if p.startswith(running.url)] == [], problems
        assert_accessible(page)
    finally:
        context.close()
