"""A real browser signs in with OpenID Connect through the local org's pages, then finds the
sign-in's id_token decoded on /flow (header, claims, its checks), every page checked by axe-core
(the page fixture)."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import app_problems, assert_accessible, sign_in

OPENID_SCOPES = "api refresh_token openid"

pytestmark = pytest.mark.browser


def test_flow_shows_the_decoded_id_token_in_the_browser(page, start_app, fresh_org, artifacts):
    running = start_app(fresh_org, client_fields={"scopes": OPENID_SCOPES},
                        SF_SCOPES=OPENID_SCOPES)
    sign_in(page, running, fresh_org)
    expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")

    page.goto(running.url + "/flow")
    expect(page.get_by_role("heading", name="The flow, exchange by exchange")).to_be_visible()
    claims = page.locator("table.id-token-claims")
    expect(claims).to_have_count(1)
    def claim(name: str):  # noqa: ANN202
        return claims.locator("tr", has=page.locator("th", has_text=name)).locator("td")

    expect(claim("iss")).to_have_text(fresh_org.url)
    expect(claim("aud")).not_to_be_empty()
    expect(page.locator("pre.id-token-header")).to_contain_text('"alg": "RS256"')
    checks = page.locator("li.trace-entry", has=page.locator("h2.trace-step",
                                                             has_text="id_token checks"))
    expect(checks).to_have_count(1)
    expect(checks.locator("table.id-token-checks caption")).to_have_text("Checks: passed")
    expect(checks).to_contain_text("userinfo sub")
    page.locator("details.trace-details").evaluate_all("ds => ds.forEach(d => d.open = true)")
    assert_accessible(page)
    page.screenshot(path=str(artifacts / "learn-id-token.png"), full_page=True)
    assert app_problems(page, running) == [], page.problems
