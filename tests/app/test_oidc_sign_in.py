"""Sign in with OpenID Connect, over real HTTP against a local org of each test's own: with
`openid` in SF_SCOPES the authorize request carries a nonce and the callback checks the id_token
(keys from the login host's discovery and JWKS) and userinfo's sub before signing in; the org's
`id_token` fault switch spoils one thing at a time, and each is refused, its tokens revoked."""
from __future__ import annotations

from collections import deque

import lxml.html
import pytest
import requests

from sfconnect.http import observe_exchanges
from tests.helpers.flow import sign_in, start_login
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


@pytest.mark.parametrize("spoiler", [None, "nonce"])
def test_step_by_step_sign_in_checks_the_id_token_too(start_app, fresh_org, spoiler):
    """In step-by-step mode the token request runs at its Continue: the id_token is checked there,
    before the tokens are kept (the nonce travels with the paused step)."""
    from urllib.parse import urljoin

    from tests.helpers.flow import sign_in_at

    running = start_openid_app(start_app, fresh_org)
    set_spoiler(fresh_org, spoiler)
    url, http = running.url, requests.Session()
    home = lxml.html.fromstring(http.get(url + "/").text)
    form = home.xpath("//form[contains(@class,'step-switch-form')]")[0]
    http.post(urljoin(url + "/", form.action), data=dict(form.form_values()))
    login = lxml.html.fromstring(http.get(url + "/login").text)
    go = http.get(urljoin(url, login.xpath("//a[@id='continue']/@href")[0]),
                  allow_redirects=False)
    token_page = sign_in_at(http, go.headers["Location"])
    form = lxml.html.fromstring(token_page.text).xpath("//form[@class='continue-form']")[0]
    revoked = counters(fresh_org).get("revoke", 0)
    after = http.post(urljoin(url + "/", form.action), data=dict(form.form_values()))
    if spoiler is None:
        assert "step-identity" in after.text, page_text(after)  # on to the identity step
        assert counters(fresh_org).get("revoke", 0) == revoked
        # The sign-in's iss, aud and sub are kept with the tokens, for a refresh to compare.
        vault = running.app.extensions["sfconnect.tokens"].vault
        kept = [stored.tokens.id_claims for stored in map(vault.load, _record_ids(vault))]
        assert [claims["aud"] for claims in kept if claims] == [running.client.client_id]
    else:
        assert after.status_code == 400 and "check 'nonce' failed" in page_text(after)
        assert counters(fresh_org).get("revoke", 0) > revoked
        assert "admin@devorg.local" not in http.get(url + "/").text


def _record_ids(vault) -> list[str]:
    """The ids of the token records in a filesystem store."""
    folder = vault.records.records.directory
    return [path.stem for path in folder.glob("*.json")]
