"""A refresh of an OpenID Connect sign-in, over real HTTP against a local org of each test's own:
the refresh grant's new id_token gets the sign-in's checks (but the nonce), and its iss, aud and
sub must be the sign-in's; a refused one revokes the tokens and the user must connect again."""
from __future__ import annotations

from dataclasses import replace

import lxml.html
import pytest
import requests

from sfconnect.auth.tokens import TokenSet
from tests.helpers.flow import connection_of, sign_in
from tests.helpers.oidc import page_text, set_spoiler, start_openid_app
from tests.helpers.org import counters

SOQL = "SELECT Id, Name FROM Account LIMIT 5"
# The check each spoiler of the refresh's id_token must fail, as the message names it.
SPOILED_CHECKS = {"aud": "aud", "issuer-mismatch": "iss", "bad-sig": "signature"}








def signed_in_ok(running) -> requests.Session:
    http = requests.Session()
    signed = sign_in(http, running.url)
    assert signed.response.url == running.url + "/", page_text(signed.response)
    assert "admin@devorg.local" in signed.response.text
    return http


def token_record(running, http: requests.Session) -> str:
    """The id of this browser's token record, read from the app's session store."""
    return connection_of(running, http)["token_record"]


def expire_sessions(org) -> None:
    requests.post(f"{org.url}/__admin/expire-sessions", timeout=10).raise_for_status()


def test_refresh_with_a_clean_id_token_runs_the_query(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    http = signed_in_ok(running)
    expire_sessions(fresh_org)
    before = counters(fresh_org)
    page = http.get(f"{running.url}/query", params={"q": SOQL})
    assert page.status_code == 200 and page.text.count("<tr") >= 5, page_text(page)
    after = counters(fresh_org)
    assert after["token.refresh_token"] == before.get("token.refresh_token", 0) + 1
    assert after.get("revoke", 0) == before.get("revoke", 0)


def test_the_sign_in_keeps_its_iss_aud_and_sub_with_the_tokens(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    http = signed_in_ok(running)
    vault = running.app.extensions["sfconnect.tokens"].vault
    kept = vault.load(token_record(running, http)).tokens.id_claims
    assert kept is not None and set(kept) == {"iss", "aud", "sub"}
    assert kept["iss"] == fresh_org.url
    assert kept["sub"]


def test_a_refresh_id_token_for_another_sub_disconnects(start_app, fresh_org):
    """The refresh's id_token is valid, yet names another user than the sign-in's did."""
    running = start_openid_app(start_app, fresh_org)
    http = signed_in_ok(running)
    vault = running.app.extensions["sfconnect.tokens"].vault
    record_id = token_record(running, http)
    stored = vault.load(record_id)
    other = {**stored.tokens.id_claims, "sub": "https://example.invalid/id/00D/005OTHER"}
    assert vault.replace(record_id, stored.version, replace(stored.tokens, id_claims=other))
    expire_sessions(fresh_org)
    revoked = counters(fresh_org).get("revoke", 0)
    page = http.get(f"{running.url}/query", params={"q": SOQL})
    text = page_text(page)
    assert "check 'sub' failed" in text and "005OTHER" in text, text
    assert counters(fresh_org).get("revoke", 0) > revoked
    assert vault.load(record_id) is None


@pytest.mark.parametrize("spoiler", sorted(SPOILED_CHECKS))
def test_a_spoiled_refresh_id_token_disconnects(start_app, fresh_org, spoiler):
    running = start_openid_app(start_app, fresh_org)
    http = signed_in_ok(running)
    expire_sessions(fresh_org)
    set_spoiler(fresh_org, spoiler)
    revoked = counters(fresh_org).get("revoke", 0)
    page = http.get(f"{running.url}/query", params={"q": SOQL}, allow_redirects=False)
    assert page.status_code == 302, page.text
    home = http.get(running.url + page.headers["Location"].removeprefix(running.url))
    text = page_text(home)
    assert f"check '{SPOILED_CHECKS[spoiler]}' failed" in text, text
    assert "connect again" in text
    assert counters(fresh_org).get("revoke", 0) > revoked
    assert "admin@devorg.local" not in http.get(running.url + "/").text


def test_old_token_records_without_id_claims_still_load():
    fields = {"access_token": "a", "refresh_token": "r", "instance_url": "https://x.example",
              "id_url": "https://x.example/id/1/2", "issued_at": "1", "login_url": "https://l",
              "scope": "api", "token_type": "Bearer"}
    assert TokenSet(**fields).id_claims is None


def test_flow_shows_each_id_token_decoded_and_its_checks(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    http = signed_in_ok(running)
    expire_sessions(fresh_org)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200
    flow = lxml.html.fromstring(http.get(f"{running.url}/flow").text)
    checks = flow.xpath("//li[h2[contains(., 'id_token checks')]]")
    assert len(checks) == 2, "one for the sign-in's id_token, one for the refresh's"
    for entry in checks:
        text = " ".join(entry.text_content().split())
        assert "Checks: passed" in text and "at_hash" in text and "userinfo sub" in text
    claims = flow.xpath("//table[contains(@class,'id-token-claims')]")
    assert len(claims) == 2
    names = [row.xpath("string(th)") for row in claims[0].xpath(".//tbody/tr")]
    assert {"iss", "aud", "sub", "exp", "iat", "nonce", "at_hash"} <= set(names)
    iss = claims[0].xpath(".//tr[th='iss']/td")[0].text_content()
    assert iss == fresh_org.url
    # The nonce and at_hash are masked; the signature is not shown; raw id_tokens stay masked.
    nonce = claims[0].xpath(".//tr[th='nonce']/td")[0].text_content()
    assert "…" in nonce or set(nonce) == {"*"}
    page = lxml.html.tostring(flow, encoding="unicode")
    assert "[signature," in page
    assert not any(part.count(".") == 2 and len(part) > 200
                   for part in page.replace('"', " ").split()), "a whole JWT on the page"


def test_flow_shows_a_refused_id_token_check_by_name(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, "aud")
    http = requests.Session()
    assert sign_in(http, running.url).response.status_code == 400
    flow = lxml.html.fromstring(http.get(f"{running.url}/flow").text)
    entry = flow.xpath("//li[h2[contains(., 'id_token checks')]]")[0]
    text = " ".join(entry.text_content().split())
    assert "Checks: refused" in text and "the check 'aud' failed" in text, text
