"""The accessibility check of the browser fixtures is not vacuous: axe-core runs on every page
load (under a Content-Security-Policy of `script-src 'self'`, as the app's), reports a broken page
with the rule it breaks, checks a page as it is after a click, and finishes the check of the page
loaded last before a test ends. Pages on another host (a test's stand-in for another site) are not
checked."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from werkzeug.wrappers import Request, Response

from devorg import RunningServer, serve_in_thread
from tests.helpers.browser import assert_accessible, watch_accessibility

pytestmark = pytest.mark.browser

PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        '<body><main><h1>{title}</h1>{body}</main></body></html>')
PAGES = {
    "/clean": PAGE.format(title="Clean", body='<label for="q">Query</label> <input id="q">'
                                               ' <a href="/unlabeled">Next</a>'),
    "/unlabeled": PAGE.format(title="Unlabeled", body='<input id="q">'),
    "/late": PAGE.format(title="Late", body='<button id="add" type="button">Add a field</button>'
                                             '<script src="/late.js"></script>'),
}
# Same-origin script only, as the app's pages: an inline script would be refused.
LATE_JS = ('document.getElementById("add").addEventListener("click", () => '
           'document.querySelector("main").append(document.createElement("input")));')


@Request.application
def _site(request: Request) -> Response:
    headers = {"Content-Security-Policy": "default-src 'self'; script-src 'self'"}
    if request.path == "/late.js":
        return Response(LATE_JS, mimetype="text/javascript", headers=headers)
    if request.path in PAGES:
        return Response(PAGES[request.path], mimetype="text/html", headers=headers)
    if request.path == "/favicon.ico":
        return Response(status=204)
    return Response("not found", status=404)


@pytest.fixture(scope="module")
def site() -> Iterator[RunningServer]:
    server = serve_in_thread(_site)
    yield server
    server.shutdown()


@pytest.fixture
def own_page(browser):
    """A page whose context is watched, without the `page` fixture's failing teardown (these
    tests break pages on purpose), and the console errors it logs."""
    context = browser.new_context()
    audit = watch_accessibility(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("console", lambda message: page.errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page, audit
    context.close()


def test_a_clean_page_passes_and_is_checked_on_load(page, site):
    page.goto(site.url + "/clean")
    assert_accessible(page)
    assert page.context.accessibility_audit.checked == [site.url + "/clean"] * 2  # load, now
    assert page.problems == []


def test_an_unlabeled_field_fails_with_its_rule_and_target(own_page, site):
    page, audit = own_page
    page.goto(site.url + "/unlabeled")
    with pytest.raises(pytest.fail.Exception) as failure:
        assert_accessible(page, now=False)
    report = str(failure.value)
    assert "label (critical)" in report, report
    assert f"on {site.url}/unlabeled" in report
    assert "#q" in report
    assert audit.violations == [] and audit.errors == []  # reported once
    assert page.errors == []  # axe ran under the page's CSP without a complaint


def test_the_check_of_the_page_loaded_last_finishes_before_the_test_ends(own_page, site):
    page, audit = own_page
    page.goto(site.url + "/clean")
    page.get_by_role("link", name="Next").click()  # no wait for the new page's load
    audit.settle(page)  # what the `page` fixture's teardown waits for
    assert [v.rule for v in audit.violations] == ["label"]
    assert audit.violations[0].url == site.url + "/unlabeled"
    assert audit.checked == [site.url + "/clean", site.url + "/unlabeled"]


def test_a_field_added_after_load_is_found_by_a_check_of_the_page_as_it_is(own_page, site):
    page, audit = own_page
    page.goto(site.url + "/late")
    audit.settle(page)
    assert audit.violations == [] and audit.checked == [site.url + "/late"]
    page.get_by_role("button", name="Add a field").click()
    with pytest.raises(pytest.fail.Exception, match=r"label \(critical\)"):
        assert_accessible(page)
    assert page.errors == []


def test_another_host_is_not_checked(own_page, site):
    page, audit = own_page
    page.goto(f"http://localhost:{site.port}/unlabeled")
    audit.settle(page)
    assert audit.checked == [] and audit.violations == []
