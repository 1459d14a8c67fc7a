"""Browser fixtures shared by every browser test: one headless Debian Chromium for the run
(driven by Playwright; no browser is ever downloaded), a fresh page per test that collects console
errors, and signing in through the local org's login and consent pages."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page of its own context (no cookies shared between tests); `page.problems` lists the
    console errors and uncaught script errors seen (a CSP violation shows up there)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(
        f"{message.location.get('url')}: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    yield page
    context.close()


def app_problems(page, running) -> list[str]:
    """Console errors of the app's pages (the local org's own pages are not under test)."""
    return [p for p in page.problems if p.startswith(running.url)]


def sign_in(page, running, org, username: str = "admin@devorg.local",
            password: str = "Welcome1!") -> None:
    """Connect from the app's home page: sign in at the local org and allow access."""
    page.goto(running.url + "/")
    expect(page.locator(".status-text")).to_have_text("Not connected")
    page.get_by_role("button", name="Connect to Salesforce").click()
    page.wait_for_url(re.compile(re.escape(org.url) + r"/services/oauth2/authorize\?.*"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log In").click()
    expect(page.get_by_role("heading", name="Allow Access?")).to_be_visible()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(running.url + "/")
