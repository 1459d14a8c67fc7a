"""Fixtures of the app's tests: a browser signed in to the app (`connected`, `connect_to`), and
for the browser tests one headless Chromium for the run and a page per test."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from playwright.sync_api import sync_playwright

from tests.helpers.app import RunningApp
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    assert_accessible,
    axe_source,
    watch_accessibility,
)
from tests.helpers.flow import sign_in
from tests.helpers.org import LocalOrg

Connected = tuple[RunningApp, requests.Session]


@pytest.fixture
def connect_to(start_app) -> Callable[..., Connected]:
    """`connect_to(org, **setting_overrides)`: start the app against `org` and sign a fresh
    browser (a requests.Session) in as Ada Admin through the org's login and consent pages;
    returns (running app, browser)."""

    def connect(org: LocalOrg, **overrides) -> Connected:
        running = start_app(org, **overrides)
        http = requests.Session()
        signed = sign_in(http, running.url)
        assert signed.response.url == running.url + "/", signed.response.text
        return running, http

    return connect


@pytest.fixture
def connected(request, connect_to) -> Connected:
    """(running app, browser signed in as Ada Admin) against the shared local org, or against
    the org fixture the test names by indirect parametrization:
    `@pytest.mark.parametrize("connected", ["fresh_org"], indirect=True)` (an org of the test's
    own), or `["org"]` (the module's own, from `module_org`)."""
    return connect_to(request.getfixturevalue(getattr(request, "param", "local_org")))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items) -> None:
    """A test that drives Chromium is a browser test, marked or not: `-m browser` selects it."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing (apt-get install chromium)")
    axe_source()  # fail before launching anything when node_modules is missing
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A page of its own context (no cookies shared between tests); `page.problems` lists the
    console errors and uncaught script errors seen (a CSP violation shows up there). Every page
    it loads is checked with axe-core; the test fails at teardown on any violation."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    watch_accessibility(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(
        f"{message.location.get('url')}: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    yield page
    try:
        assert_accessible(page, now=False)
    finally:
        context.close()
