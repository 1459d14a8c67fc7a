"""Copy as, in a real browser: on /flow each exchange's Copy button puts its snippet on the
clipboard, exactly as the page shows it, under the app's Content-Security-Policy; /local-org's
buttons do the same; both pages pass axe-core with every Copy as panel open."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import app_problems, assert_accessible, sign_in
from tests.helpers.learn import as_local_org

SOQL = "SELECT Name, Industry FROM Account ORDER BY Name LIMIT 5"

pytestmark = pytest.mark.browser


def _copy_and_read(page, snippet) -> str:
    """Click the Copy button of `snippet` (its div); what the clipboard then holds."""
    page.evaluate("() => navigator.clipboard.writeText('')")
    snippet.get_by_role("button", name=re.compile(r"^Copy")).click()
    expect(snippet.locator(".copy-status")).to_have_text("Copied.")
    return page.evaluate("() => navigator.clipboard.readText()")


def test_copy_puts_the_exact_snippet_on_the_clipboard(page, start_app, local_org, artifacts):
    running = start_app(local_org)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=running.url)
    sign_in(page, running, local_org)
    page.get_by_label("SOQL query").fill(SOQL)
    page.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/query\?q=.*"))

    page.goto(running.url + "/flow")
    token = page.locator("li.trace-entry", has=page.locator("h2.trace-step",
                                                            has_text="token request"))
    token.locator("details.copy-as > summary").click()
    for key in ("curl", "python", "javascript", "jsforce"):
        snippet = token.locator(f"div.copy-as-snippet[data-copy-key='{key}']")
        shown = snippet.locator("pre.copy-as-code").text_content()
        assert "$SF_CODE" in shown or "SF_CODE" in shown
        assert _copy_and_read(page, snippet) == shown, key

    # The query's own SOAP request (the form's describe lookups are SOAP requests too).
    soap = page.locator("li.trace-entry", has=page.locator("h2.trace-step",
                                                           has_text="SOAP request")).filter(
        has_text=SOQL).last
    soap.locator("details.copy-as > summary").click()
    zeep = soap.locator("div.copy-as-snippet[data-copy-key='zeep']")
    copied = _copy_and_read(page, zeep)
    assert copied == zeep.locator("pre.copy-as-code").text_content()
    assert 'os.environ["SF_ACCESS_TOKEN"]' in copied and SOQL in copied
    token.screenshot(path=str(artifacts / "copy-as.png"))

    # Every Copy as panel open: still accessible.
    page.locator("details.copy-as").evaluate_all("ds => ds.forEach(d => d.open = true)")
    assert_accessible(page)

    as_local_org(running)
    page.goto(running.url + "/setup")
    page.get_by_role("link", name="use the local org from your own code").click()
    page.wait_for_url(running.url + "/local-org")
    expect(page.locator(".local-org-client-id")).to_have_text(running.client.client_id)
    setup = page.locator("div.copy-as-snippet[data-copy-key='setup']")
    assert _copy_and_read(page, setup) == setup.locator("pre").text_content()
    jsforce = page.locator("div.copy-as-snippet[data-copy-key='jsforce']")
    assert _copy_and_read(page, jsforce) == jsforce.locator("pre").text_content()
    assert_accessible(page)
    assert app_problems(page, running) == [], page.problems
