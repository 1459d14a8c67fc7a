"""Sign in with OpenID Connect, over real HTTP against a local org of each test's own: with
`openid` in SF_SCOPES the authorize request carries a nonce and the callback checks the id_token
(keys from the login host's discovery and JWKS) and userinfo's sub before signing in; the org's
`id_token` fault switch spoils one thing at a time, and each is refused, its tokens revoked."""
from __future__ import annotations

from collections import deque
from urllib.parse import urljoin

import lxml.html
import pytest
import requests

from sfconnect.http import observe_exchanges
from tests.helpers.flow import sign_in, sign_in_at, start_login
from tests.helpers.oidc import page_text, set_spoiler, start_openid_app
from tests.helpers.org import counters

# The check each spoiler must fail, as the error page names it.
SPOILED_CHECKS = {
    "bad-sig": "signature",
    "issuer-mismatch": "iss",
    "aud": "aud",
    "expired": "exp",
    "nonce": "nonce",
    "alg-none": "alg",
    "no-sub": "sub",
    "no-iat": "iat",
    "userinfo-bad-sub": "userinfo sub",
}

# Every URL the app's gates sent a request to in this process (the newest few thousand).
_sent: deque[str] = deque(maxlen=5000)


def _note_sent(purpose, request, response, started, elapsed, error) -> None:  # noqa: ARG001
    _sent.append(request.url or "")


@pytest.fixture
def sent() -> deque[str]:
    """The URLs the app sends requests to from now on."""
    observe_exchanges(_note_sent)  # once per process: the same function is not added twice
    _sent.clear()
    return _sent








def signed_in_ok(running) -> tuple[requests.Session, object]:
    http = requests.Session()
    signed = sign_in(http, running.url)
    assert signed.response.url == running.url + "/", page_text(signed.response)
    assert "admin@devorg.local" in signed.response.text
    return http, signed


def test_clean_openid_sign_in_succeeds_and_sends_a_nonce(start_app, fresh_org, sent):
    running = start_openid_app(start_app, fresh_org)
    _, signed = signed_in_ok(running)
    params = signed.authorize_params
    assert "openid" in params["scope"].split()
    assert len(params.get("nonce", "")) >= 16
    assert f"{fresh_org.url}/.well-known/openid-configuration" in sent
    assert f"{fresh_org.url}/id/keys" in sent
    assert f"{fresh_org.url}/services/oauth2/userinfo" in sent
    assert counters(fresh_org).get("revoke", 0) == 0


@pytest.mark.parametrize("spoiler", sorted(SPOILED_CHECKS))
def test_each_spoiled_id_token_is_refused_and_its_tokens_revoked(start_app, fresh_org, spoiler):
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, spoiler)
    revoked = counters(fresh_org).get("revoke", 0)
    http = requests.Session()
    signed = sign_in(http, running.url)
    response = signed.response
    assert response.status_code in (400, 502), response.text
    text = page_text(response)
    check = SPOILED_CHECKS[spoiler]
    assert f"check '{check}' failed" in text, text
    assert "expected" in text and "received" in text
    assert counters(fresh_org).get("revoke", 0) > revoked
    # Not signed in: the home page offers Connect, not the user.
    home = http.get(running.url + "/")
    assert "admin@devorg.local" not in home.text


def test_spoiled_page_masks_the_nonce(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, "nonce")
    http = requests.Session()
    signed = sign_in(http, running.url)
    nonce = signed.authorize_params["nonce"]
    assert nonce not in signed.response.text
    assert nonce[:4] in page_text(signed.response)


def test_id_token_without_kid_is_accepted_while_one_key_is_published(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, "no-kid")
    signed_in_ok(running)
    assert counters(fresh_org).get("revoke", 0) == 0


def test_sign_in_after_key_rotation_fetches_the_key_set_again(start_app, fresh_org, sent):
    running = start_openid_app(start_app, fresh_org)
    signed_in_ok(running)
    assert sent.count(f"{fresh_org.url}/id/keys") == 1
    response = requests.post(f"{fresh_org.url}/__admin/rotate-signing-key", timeout=10)
    assert response.status_code == 200, response.text
    signed_in_ok(running)
    assert sent.count(f"{fresh_org.url}/id/keys") == 2
    # The discovery document was cached.
    assert sent.count(f"{fresh_org.url}/.well-known/openid-configuration") == 1


def test_without_openid_nothing_changes(start_app, fresh_org, sent):
    running = start_openid_app(start_app, fresh_org, scopes="api refresh_token")
    _, signed = signed_in_ok(running)
    assert "nonce" not in signed.authorize_params
    assert not [url for url in sent if "/.well-known/" in url or url.endswith("/id/keys")
                or "/userinfo" in url]
    assert counters(fresh_org).get("userinfo", 0) == 0


def test_id_token_without_kid_is_refused_while_two_keys_are_published(start_app, fresh_org):
    running = start_openid_app(start_app, fresh_org)
    response = requests.post(f"{fresh_org.url}/__admin/rotate-signing-key", timeout=10)
    assert response.status_code == 200, response.text
    set_spoiler(fresh_org, "no-kid")
    revoked = counters(fresh_org).get("revoke", 0)
    signed = sign_in(requests.Session(), running.url)
    assert signed.response.status_code == 400
    assert "check 'kid' failed" in page_text(signed.response)
    assert counters(fresh_org).get("revoke", 0) > revoked


def test_an_unknown_kid_fetches_the_key_set_again_at_most_once_per_interval(
        start_app, fresh_org, sent):
    running = start_openid_app(start_app, fresh_org)
    # An interval no test run reaches: the second unknown kid falls inside it, whatever the clock.
    running.app.extensions["sfconnect.oidc"].refetch_every_s = 24 * 3600
    keys_url = f"{fresh_org.url}/id/keys"
    signed_in_ok(running)
    requests.post(f"{fresh_org.url}/__admin/rotate-signing-key", timeout=10).raise_for_status()
    http, _ = signed_in_ok(running)  # unknown kid: fetched again
    assert sent.count(keys_url) == 2
    requests.post(f"{fresh_org.url}/__admin/rotate-signing-key", timeout=10).raise_for_status()
    # Signed in at the org and consented already: the authorize request comes straight back.
    response = http.get(start_login(http, running.url))
    assert response.status_code == 400, response.text
    assert "check 'kid' failed" in page_text(response)
    assert sent.count(keys_url) == 2, "a second unknown kid fetched the key set again"


def _continue(http: requests.Session, url: str, page: requests.Response) -> requests.Response:
    """Press the step page's Continue form."""
    form = lxml.html.fromstring(page.text).xpath("//form[@class='continue-form']")[0]
    return http.post(urljoin(url + "/", form.action), data=dict(form.form_values()))


def _step_mode_to_token_step(running) -> tuple[requests.Session, requests.Response]:
    """Step-by-step mode on, Connect, Continue to the local org, sign in: the token step."""
    url, http = running.url, requests.Session()
    home = lxml.html.fromstring(http.get(url + "/").text)
    form = home.xpath("//form[contains(@class,'step-switch-form')]")[0]
    http.post(urljoin(url + "/", form.action), data=dict(form.form_values()))
    login = lxml.html.fromstring(http.get(url + "/login").text)
    go = http.get(urljoin(url, login.xpath("//a[@id='continue']/@href")[0]),
                  allow_redirects=False)
    return http, sign_in_at(http, go.headers["Location"])


def test_step_by_step_pauses_before_the_key_set_and_before_userinfo(start_app, fresh_org, sent):
    """With openid, step-by-step mode shows two more steps: the key set (discovery and JWKS,
    with the id_token decoded and the nonce kept) and userinfo; nothing of either is fetched
    before its Continue. The tokens are kept with the sign-in's claims only after both."""
    running = start_openid_app(start_app, fresh_org)
    url = running.url
    http, token_page = _step_mode_to_token_step(running)
    assert "step 2 of 6" in page_text(token_page)
    sent.clear()
    jwks_page = _continue(http, url, token_page)
    assert "step-jwks" in jwks_page.text and "step 3 of 6" in page_text(jwks_page)
    text = page_text(jwks_page)
    assert f"{fresh_org.url}/.well-known/openid-configuration" in text
    assert "header alg RS256" in text and "nonce" in text
    assert not any("openid-configuration" in u or "/id/keys" in u for u in sent), list(sent)

    userinfo_page = _continue(http, url, jwks_page)
    assert "step-userinfo" in userinfo_page.text and "step 4 of 6" in page_text(userinfo_page)
    assert any(u.endswith("/id/keys") for u in sent), "the key set was fetched at its Continue"
    assert not any("userinfo" in u for u in sent), "userinfo waits for its own Continue"
    assert f"{fresh_org.url}/services/oauth2/userinfo" in page_text(userinfo_page)

    identity_page = _continue(http, url, userinfo_page)
    assert "step-identity" in identity_page.text and "step 5 of 6" in page_text(identity_page)
    assert any("userinfo" in u for u in sent)
    vault = running.app.extensions["sfconnect.tokens"].vault
    kept = [stored.tokens.id_claims for stored in map(vault.load, _record_ids(vault))]
    assert [claims["aud"] for claims in kept if claims] == [running.client.client_id]
    home = _continue(http, url, identity_page)
    assert "admin@devorg.local" in home.text


@pytest.mark.parametrize(("spoiler", "step"), [("nonce", "jwks"),
                                                ("userinfo-bad-sub", "userinfo")])
def test_step_by_step_refuses_a_spoiled_sign_in_at_its_check(start_app, fresh_org, spoiler,
                                                              step):
    """A spoiled id_token is refused at the key set's Continue, a spoiled userinfo at its own:
    the tokens are revoked and nobody is signed in."""
    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, spoiler)
    http, page = _step_mode_to_token_step(running)
    page = _continue(http, running.url, page)  # the token request
    if step == "userinfo":
        page = _continue(http, running.url, page)  # the key set: the id_token is fine
        assert "step-userinfo" in page.text, page_text(page)
    revoked = counters(fresh_org).get("revoke", 0)
    after = _continue(http, running.url, page)
    assert after.status_code in (400, 502)
    assert f"check '{SPOILED_CHECKS[spoiler]}' failed" in page_text(after)
    assert counters(fresh_org).get("revoke", 0) > revoked
    assert "admin@devorg.local" not in http.get(running.url + "/").text
    vault = running.app.extensions["sfconnect.tokens"].vault
    assert _record_ids(vault) == [], "the paused sign-in's token record is gone"


def _record_ids(vault) -> list[str]:
    """The ids of the token records in a filesystem store."""
    folder = vault.records.records.directory
    return [path.stem for path in folder.glob("*.json")]
