"""A real browser connects two local orgs (two login hosts on two ports) and moves between them
with the header's switcher; every page it visits passes axe-core (the page fixture)."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from devorg.config import SeedUser
from tests.helpers.browser import app_problems, assert_accessible, sign_in
from tests.helpers.org import LocalOrg, start_org

BO = ("bo.builder@second.local", "Welcome2!")


@pytest.fixture
def second_org() -> Iterator[LocalOrg]:
    org = start_org(org_id="00D5g000007QrStEAK", contact_count=37, seed=7,
                    users=[SeedUser(BO[0], BO[1], "Bo", "Builder", "bo@second.local")])
    yield org
    org.server.shutdown()


def test_connect_two_orgs_and_switch_with_the_header(page, start_app, fresh_org, second_org,
                                                     artifacts):
    running = start_app(fresh_org, SF_LOGIN_HOSTS=f"Second org={second_org.url}")
    second_org.register(f"{running.url}/oauth/callback", client_id=running.client.client_id,
                        client_secret=running.client.client_secret)
    sign_in(page, running, fresh_org)
    expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")

    # Connect another org: the home page offers each login host.
    page.get_by_role("link", name="Second org").click()
    page.wait_for_url(re.compile(re.escape(second_org.url) + r"/services/oauth2/authorize\?.*"))
    page.get_by_label("Username").fill(BO[0])
    page.get_by_label("Password").fill(BO[1])
    page.get_by_role("button", name="Log In").click()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(running.url + "/")
    expect(page.locator(".status-text")).to_contain_text("Connected as Bo Builder")
    assert_accessible(page)

    page.goto(running.url + "/query?q=" + "SELECT COUNT() FROM Contact")
    expect(page.locator(".record-count")).to_have_text("37")

    # The header's switcher: open it, switch to Ada's org.
    page.locator(".org-switcher summary").click()
    assert_accessible(page)
    page.get_by_role("button", name=re.compile("Switch to Ada Admin")).click()
    expect(page.locator(".status-text")).to_contain_text("Connected as Ada Admin")
    notice = page.get_by_role("status").filter(has_text="Now using admin@devorg.local")
    expect(notice).to_be_visible()
    page.goto(running.url + "/query?q=" + "SELECT COUNT() FROM Contact")
    expect(page.locator(".record-count")).to_have_text(
        str(fresh_org.state.config.contact_count))

    page.goto(running.url + "/orgs")
    expect(page.locator("tr.org-row")).to_have_count(2)
    expect(page.locator("tr.org-active")).to_contain_text("admin@devorg.local")
    assert_accessible(page)
    page.screenshot(path=str(artifacts / "orgs.png"), full_page=True)
    assert app_problems(page, running) == [], page.problems
