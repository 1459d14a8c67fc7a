"""The app served over https, as it is in production when it terminates TLS itself: a real
browser's forms work. Flask-WTF checks on https that a form's Referer is this origin, so the app
must let the browser send it for its own pages (Referrer-Policy: same-origin) while other origins
still get no Referer at all."""
from __future__ import annotations

import urllib.parse

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import watch_accessibility
from tests.helpers.org import ADMIN

pytestmark = pytest.mark.browser


@pytest.fixture
def https_app(start_app, fresh_org):
    """The app served over https (a self-signed certificate for 127.0.0.1)."""
    return start_app(fresh_org, tls=True).server


def test_forms_work_when_the_app_itself_speaks_https(browser, https_app, fresh_org):
    https_app = https_app.url
    assert https_app.startswith("https://")
    context = browser.new_context(ignore_https_errors=True)
    watch_accessibility(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(https_app + "/")
        response = page.request.get(https_app + "/")
        assert response.headers["referrer-policy"] == "same-origin"
        # A form that changes state (CSRF token, and on https the same-origin Referer).
        page.get_by_role("button", name="Turn on step-by-step mode").click()
        expect(page.get_by_text("Step-by-step mode is on")).to_be_visible()
        page.get_by_role("button", name="Turn off step-by-step mode").click()
        expect(page.get_by_text("Step-by-step mode is off")).to_be_visible()

        page.get_by_role("button", name="Connect to Salesforce").click()
        page.get_by_label("Username").fill(ADMIN[0])
        page.get_by_label("Password").fill(ADMIN[1])
        page.get_by_role("button", name="Log In").click()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(https_app + "/")
        page.get_by_label("SOQL query").fill("SELECT Id, Name FROM Account LIMIT 3")
        page.get_by_role("button", name="Run query").click()
        expect(page.locator(".record-count")).to_have_text("3")
        page.get_by_role("button", name="Log out").click()
        expect(page.locator(".status-text")).to_have_text("Not connected")
    finally:
        context.close()


def test_a_form_posted_over_https_without_a_same_origin_referer_is_refused(https_app):
    """The check the Referer serves: another origin's (or no) Referer is still refused."""
    import requests

    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override the session's verify
    http.verify = str(https_app.certificate)  # the app's self-signed certificate
    https_app = https_app.url
    home = http.get(https_app + "/")
    token = home.text.split('name="csrf_token" value="')[1].split('"')[0]
    data = {"csrf_token": token, "mode": "on"}
    other = http.post(https_app + "/step", data=data, allow_redirects=False,
                      headers={"Referer": "https://attacker.example/"})
    assert other.status_code == 400
    same = http.post(https_app + "/step", data=data, allow_redirects=False,
                     headers={"Referer": urllib.parse.urljoin(https_app, "/")})
    assert same.status_code == 303
