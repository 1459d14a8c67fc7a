"""The learning side of Sign in with OpenID Connect, over real HTTP against a local org of each
test's own: /setup says whether openid is on and how to turn it on, /flows says what the id_token
and the identity URL are for, the diagram marks the id_token checks a sign-in made, and the
step-by-step authorize page explains the nonce."""
from __future__ import annotations

from urllib.parse import urljoin

import lxml.html
import pytest
import requests
from lxml import etree
from playwright.sync_api import expect

from sfconnect.learn.diagram import ROWS
from tests.helpers.browser import assert_accessible
from tests.helpers.flow import sign_in
from tests.helpers.oidc import set_spoiler, start_openid_app

SVG = "{http://www.w3.org/2000/svg}"




def doc(response: requests.Response):
    return lxml.html.fromstring(response.text)


def text_of(element) -> str:
    return " ".join(element.text_content().split())


def diagram_marks(svg_text: str) -> dict[str, str]:
    """Each diagram row's step and its badge (✓ ×n when taken, · when not)."""
    root = etree.fromstring(svg_text.encode())
    badges = [t.text for t in root.iter(f"{SVG}text") if t.get("x") == "18"][:len(ROWS)]
    return dict(zip((row[3] for row in ROWS), badges, strict=True))


def test_setup_says_openid_is_on_and_shows_the_setting(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    page = requests.get(f"{running.url}/setup")
    assert page.status_code == 200
    section = doc(page).xpath("//section[contains(@class,'openid-setup')]")[0]
    assert section.xpath("string(.//*[@class='openid-verdict'])") == "on"
    assert section.xpath("string(.//pre[contains(@class,'openid-env')])") == \
        "SF_SCOPES=api refresh_token openid"
    text = text_of(section)
    assert "Access unique user identifiers (openid)" in text
    for change in ("nonce", "id_token", "userinfo"):
        assert change in text, change


def test_setup_says_openid_is_off_without_it(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org, scopes="api refresh_token")
    section = doc(requests.get(f"{running.url}/setup")).xpath(
        "//section[contains(@class,'openid-setup')]")[0]
    assert section.xpath("string(.//*[@class='openid-verdict'])") == "off"
    # How to turn it on is shown either way.
    assert "SF_SCOPES=api refresh_token openid" in text_of(section)


def test_flows_explains_the_id_token_and_the_identity_url(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    page = requests.get(f"{running.url}/flows")
    assert page.status_code == 200
    text = text_of(doc(page).xpath("//section[@id='openid']")[0])
    for claim in ("sub", "aud", "iat", "exp", "iss", "nonce", "at_hash", "JWKS"):
        assert claim in text, claim
    assert "replayed id_token is refused" in text
    for given in ("endpoints", "profile", "partner URL"):
        assert given in text, given
    assert "sign people in to your own app" in text and "federate" in text
    assert "where to call the APIs" in text


def test_diagram_marks_the_id_token_checks_of_an_openid_sign_in(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    http = requests.Session()
    signed = sign_in(http, running.url)
    assert signed.response.url == running.url + "/"
    marks = diagram_marks(http.get(f"{running.url}/flow.svg").text)
    assert marks["id_token checks"] == "✓ ×1"
    assert marks["token response"].startswith("✓") and marks["identity request"].startswith("✓")
    # The row sits between the token response and the identity request.
    steps = [row[3] for row in ROWS]
    assert steps.index("token response") < steps.index("id_token checks") < \
        steps.index("identity request")
    # /flow shows the same diagram.
    assert "id_token: JWKS signature" in http.get(f"{running.url}/flow").text


def test_diagram_does_not_mark_id_token_checks_without_openid(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org, scopes="api refresh_token")
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    marks = diagram_marks(http.get(f"{running.url}/flow.svg").text)
    assert marks["id_token checks"] == "·"
    assert marks["identity request"].startswith("✓")


def test_step_by_step_authorize_page_explains_the_nonce(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    url, http = running.url, requests.Session()
    form = doc(http.get(url + "/")).xpath("//form[contains(@class,'step-switch-form')]")[0]
    assert http.post(urljoin(url + "/", form.action), data=dict(form.form_values()),
                     allow_redirects=False).status_code == 303
    login = http.get(url + "/login", allow_redirects=False)
    assert login.status_code == 200
    rows = {row.get("data-name"): row for row in
            doc(login).xpath("//table[contains(@class,'step-params')]/tbody/tr")}
    assert {"state", "nonce"} <= set(rows)
    nonce_row = text_of(rows["nonce"])
    assert "a random value kept with the state" in nonce_row
    assert "the id_token must carry it back, so a replayed id_token is refused" in nonce_row
    nonce = rows["nonce"].xpath("string(.//code[@class='step-value'])")
    assert len(nonce) >= 16
    assert "openid" in rows["scope"].xpath("string(.//code[@class='step-value'])").split()


@pytest.mark.browser
def test_setup_and_flows_openid_sections_are_accessible_in_a_browser(page, start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    page.goto(running.url + "/setup")
    expect(page.get_by_role("heading", name="Sign in with OpenID Connect")).to_be_visible()
    expect(page.locator(".openid-verdict")).to_have_text("on")
    assert_accessible(page)
    page.goto(running.url + "/flows")
    expect(page.get_by_role("heading", name="The id_token and the identity URL")).to_be_visible()
    assert_accessible(page)


def check_verdicts(flow_html: str) -> list[dict[str, str]]:
    """Each id_token checks entry of /flow: check -> the result its row shows."""
    flow = lxml.html.fromstring(flow_html)
    return [{row.get("data-check"): row.xpath("string(td[last()])")
             for row in table.xpath(".//tr[contains(@class,'id-check')]")}
            for table in flow.xpath("//table[contains(@class,'id-token-checks')]")]


def test_flow_shows_every_id_token_check_passed_by_name(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    [verdicts] = check_verdicts(http.get(f"{running.url}/flow").text)
    assert verdicts == {"signature": "passed", "iss": "passed", "aud": "passed",
                        "exp": "passed", "iat": "passed", "nonce": "passed",
                        "at_hash": "passed", "sub": "passed", "userinfo sub": "passed"}


@pytest.mark.parametrize(("spoiler", "failed", "passed", "unchecked"), [
    ("issuer-mismatch", {"iss"}, {"signature", "aud", "exp", "nonce", "sub"}, {"userinfo sub"}),
    ("expired", {"exp"}, {"signature", "iss", "aud", "iat", "nonce", "sub"}, {"userinfo sub"}),
    ("nonce", {"nonce"}, {"signature", "iss", "aud", "exp", "sub"}, {"userinfo sub"}),
    ("no-iat", {"iat"}, {"signature", "iss", "aud", "exp"}, {"userinfo sub"}),
    ("bad-sig", {"signature"}, set(), {"iss", "aud", "exp", "nonce", "userinfo sub"}),
    ("userinfo-bad-sub", {"userinfo sub"}, {"signature", "iss", "aud", "exp", "nonce", "sub"},
     set()),
])
def test_flow_shows_each_checks_own_verdict_when_one_fails(start_app, fresh_org, spoiler,
                                                            failed, passed, unchecked):
    """Each claim is judged on its own (the same validators), so /flow says which passed and
    which failed; a bad signature leaves the claims unchecked, and userinfo is not asked."""
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, spoiler)
    http = requests.Session()
    assert sign_in(http, running.url).response.status_code in (400, 502)
    [verdicts] = check_verdicts(http.get(f"{running.url}/flow").text)
    assert {name for name, verdict in verdicts.items() if verdict == "failed"} == failed, verdicts
    assert all(verdicts[name] == "passed" for name in passed), verdicts
    assert all(verdicts[name] in ("not checked", "checked next") for name in unchecked), verdicts
