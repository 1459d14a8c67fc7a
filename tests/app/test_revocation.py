"""No token family is dropped alive: a second sign-in, log out, a failed refresh, an identity
mismatch and the end of the browser session each revoke the tokens they drop (refresh token, then
access token). Each test asks the local org over real HTTP whether a token still answers: the
access token at the SOAP partner endpoint and the identity service, the refresh token with a
refresh_token grant."""
from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from urllib.parse import urljoin

import lxml.html
import pytest
import requests

from sfconnect.auth.expiry import TOUCH_EVERY_S, ExpirySweeper
from tests.helpers.flow import (
    connection_of,
    logout_csrf,
    sign_in,
    sign_in_at,
    start_login,
    token_set,
)
from tests.helpers.org import ZOE, counters
from tests.helpers.revocation import (
    assert_alive,
    assert_dead,
    soap_accepts,
)

# ------------------------------------------------------------------------------ app helpers


def log_out(running, http: requests.Session) -> requests.Response:
    home = http.get(running.url + "/")
    response = http.post(f"{running.url}/logout", data={"csrf_token": logout_csrf(home.text)})
    assert response.status_code == 200 and "Not connected" in response.text
    return response


def refresh_identity(running, http: requests.Session) -> requests.Response:
    home = http.get(running.url + "/")
    return http.post(f"{running.url}/identity/refresh",
                     data={"csrf_token": logout_csrf(home.text)}, allow_redirects=False)


def store_overrides(store: str, redis_server, tmp_path) -> dict[str, str]:
    if store == "redis":
        return {"SESSION_TYPE": "redis", "REDIS_URL": redis_server.url}
    return {"SESSION_FILE_DIR": str(tmp_path / "store")}


# ------------------------------------------------------------------------ signing in again

def test_sign_in_again_then_log_out_leaves_no_token_of_either_sign_in_alive(connect_to,
                                                                            fresh_org):
    running, http = connect_to(fresh_org)
    first = token_set(running, http)
    again = sign_in(http, running.url)  # the same browser, already connected
    assert again.response.url == running.url + "/" and "Ada Admin" in again.response.text
    second = token_set(running, http)
    assert second.access_token != first.access_token

    assert "revoked" in log_out(running, http).text
    assert_dead(fresh_org, running.client, first)
    assert_dead(fresh_org, running.client, second)


def test_a_second_sign_in_revokes_the_first_sign_ins_tokens(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    first = token_set(running, http)
    first_record = connection_of(running, http)["token_record"]
    vault = running.app.extensions["sfconnect.tokens"].vault
    revokes = counters(fresh_org).get("revoke", 0)

    again = sign_in(http, running.url).response
    assert again.url == running.url + "/" and "could not be reached" not in again.text
    # The refresh token (which ends its family), then the access token.
    assert counters(fresh_org)["revoke"] == revokes + 2
    assert vault.load(first_record) is None
    assert_dead(fresh_org, running.client, first)
    # The new sign-in's tokens are the ones in use, and alive.
    second = token_set(running, http)
    assert_alive(fresh_org, second)
    assert http.get(f"{running.url}/query",
                    params={"q": "SELECT Name FROM Account LIMIT 2"}).status_code == 200


def test_a_step_by_step_sign_in_revokes_the_tokens_it_replaces_once_it_knows_who(connect_to,
                                                                              fresh_org):
    def continue_link(page: requests.Response) -> str:
        return lxml.html.fromstring(page.text).xpath("//a[@id='continue']/@href")[0]

    def press_continue(page: requests.Response) -> requests.Response:
        form = lxml.html.fromstring(page.text).xpath("//form[@class='continue-form']")[0]
        return http.post(urljoin(running.url + "/", form.action), data=dict(form.form_values()))

    running, http = connect_to(fresh_org)
    first = token_set(running, http)
    home = lxml.html.fromstring(http.get(running.url + "/").text)
    switch = home.xpath("//form[contains(@class,'step-switch-form')]")[0]
    assert http.post(urljoin(running.url + "/", switch.action), data=dict(switch.form_values()),
                     allow_redirects=False).status_code == 303

    authorize = http.get(running.url + continue_link(http.get(running.url + "/login")),
                         allow_redirects=False)
    token_step = sign_in_at(http, authorize.headers["Location"])
    assert_alive(fresh_org, first)  # nothing is replaced before the code is exchanged
    identity_step = press_continue(token_step)  # the token request: a new family is stored
    assert "step-identity" in identity_step.text
    # Who signed in is known at the identity call: until then the new family might be another
    # user or org, added beside the first rather than replacing it.
    assert_alive(fresh_org, first)

    landed = press_continue(identity_step)
    assert landed.url == running.url + "/" and "Ada Admin" in landed.text
    assert_dead(fresh_org, running.client, first)  # the same user of the same org: replaced
    second = token_set(running, http)
    log_out(running, http)
    assert_dead(fresh_org, running.client, second)


def test_log_out_after_the_org_revoked_the_grant_says_revoked(connect_to, fresh_org):
    """Salesforce answers 400 to revoking a token that is already dead: that token is dead, which
    is what log out wants, so it is not reported as a failure."""
    running, http = connect_to(fresh_org)
    tokens = token_set(running, http)
    fresh_org.state.tokens.revoke(tokens.refresh_token)  # e.g. an admin revoked the app
    response = log_out(running, http)
    assert "Salesforce token was revoked" in response.text
    assert "could not be reached" not in response.text
    assert_dead(fresh_org, running.client, tokens)


# ------------------------------------------------------------------------ failed refresh

def test_a_dead_grant_at_refresh_revokes_the_access_token_it_held(connect_to, fresh_org):
    """The identity service refuses the access token (a 403 fault) while the SOAP API still
    accepts it, and the refresh grant is dead because the consumer secret was rotated in
    Salesforce's setup (invalid_client, one of the dead-grant errors). The app drops the
    connection: the access token it held, still alive, must be revoked, not just forgotten."""
    running, http = connect_to(fresh_org)
    tokens = token_set(running, http)
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": "403"}).raise_for_status()
    fresh_org.state.register_client(dataclasses.replace(running.client,
                                                        client_secret="rotated-in-setup"))
    assert soap_accepts(fresh_org, tokens.access_token)  # alive when the refresh fails

    response = refresh_identity(running, http)
    assert response.status_code == 302
    page = http.get(running.url + response.headers["Location"])
    assert "Connect again" in page.text and "invalid_client" in page.text
    assert counters(fresh_org)["token.refresh_token"] == 1

    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": None}).raise_for_status()
    fresh_org.state.register_client(running.client)  # to ask the org about the refresh token
    assert_dead(fresh_org, running.client, tokens)


def test_no_refresh_token_to_refresh_with_revokes_the_access_token(connect_to, fresh_org):
    """Scope without refresh_token: when the identity service refuses the access token (a 403
    fault) there is nothing to refresh with; the access token, still alive at the SOAP API, is
    revoked as the connection is dropped."""
    running, http = connect_to(fresh_org, SF_SCOPES="api")
    tokens = token_set(running, http)
    assert tokens.refresh_token is None
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": "403"}).raise_for_status()
    assert soap_accepts(fresh_org, tokens.access_token)

    response = refresh_identity(running, http)
    assert response.status_code == 302
    assert "Connect again" in http.get(running.url + response.headers["Location"]).text
    requests.post(f"{fresh_org.url}/__admin/faults",
                  json={"identity_endpoint": None}).raise_for_status()
    assert_dead(fresh_org, running.client, tokens)


# ------------------------------------------------------------------------ identity mismatch

def test_an_identity_mismatch_revokes_the_token_the_record_held(connect_to, fresh_org):
    """A token record that holds another user's tokens (set up here by writing Zoë's tokens into
    Ada's record): the identity service names Zoë, the app signs Ada's browser out with 409 and
    revokes the tokens it found there."""
    running, http = connect_to(fresh_org)
    zoe_browser = requests.Session()
    assert sign_in(zoe_browser, running.url, user=ZOE).response.url == running.url + "/"
    zoe = token_set(running, zoe_browser)
    vault = running.app.extensions["sfconnect.tokens"].vault
    record = connection_of(running, http)["token_record"]
    assert vault.replace(record, vault.load(record).version, zoe) is not None

    assert refresh_identity(running, http).status_code == 409
    assert vault.load(record) is None
    assert_dead(fresh_org, running.client, zoe)
    assert "Not connected" in http.get(running.url + "/").text


# ------------------------------------------------------------------ the end of the session

@pytest.mark.parametrize("store", ["filesystem", "redis"])
def test_the_sweep_revokes_the_tokens_of_a_session_that_ended(connect_to, fresh_org,
                                                              redis_server, tmp_path, store):
    running, http = connect_to(fresh_org,
                            **store_overrides(store, redis_server, tmp_path))
    tokens = token_set(running, http)
    record = connection_of(running, http)["token_record"]
    service = running.app.extensions["sfconnect.tokens"]
    lifetime = running.app.extensions["sfconnect.settings"].session_lifetime
    signed_in = time.time()
    assert http.get(f"{running.url}/query",
                    params={"q": "SELECT Name FROM Account LIMIT 2"}).status_code == 200

    # While the browser session may still be alive, its tokens are left alone.
    assert service.sweep_expired(now=signed_in + lifetime) == 0
    assert_alive(fresh_org, tokens)

    # Once its logical expiry has passed: revoked at the org and gone from the store.
    ended = time.time() + lifetime + TOUCH_EVERY_S + 1
    assert service.sweep_expired(now=ended) == 1
    assert_dead(fresh_org, running.client, tokens)
    assert service.vault.load(record) is None
    assert service.sweep_expired(now=ended) == 0  # claimed once, swept once
    # The browser (whose session would have ended by then) is asked to connect again.
    page = http.get(f"{running.url}/query", params={"q": "SELECT Name FROM Account LIMIT 2"})
    assert "Not connected" in page.text


@pytest.mark.parametrize("store", ["filesystem", "redis"])
def test_two_apps_sweeping_the_same_store_at_once_revoke_each_record_once(
        start_app, connect_to, fresh_org, redis_server, tmp_path, store):
    """Two app instances (as two processes would) share one store and sweep it at the same time:
    each ended record is claimed by one of them, so each family is revoked exactly once."""
    shared = {"SECRET_KEY": "k" * 64, **store_overrides(store, redis_server, tmp_path)}
    first, _ = connect_to(fresh_org, **shared)
    second = start_app(fresh_org, **shared)
    browsers = [requests.Session() for _ in range(6)]
    for browser in browsers:
        assert sign_in(browser, first.url).response.url == first.url + "/"
    held = [token_set(first, browser) for browser in browsers]
    lifetime = first.app.extensions["sfconnect.settings"].session_lifetime
    ended = time.time() + lifetime + TOUCH_EVERY_S + 1
    revokes = counters(fresh_org).get("revoke", 0)

    counts: list[int] = []
    start = threading.Barrier(2)

    def sweep(running) -> None:
        start.wait()
        counts.append(running.app.extensions["sfconnect.tokens"].sweep_expired(now=ended))

    threads = [threading.Thread(target=sweep, args=(app,)) for app in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 7  # the six browsers' records and connect()'s own
    assert counters(fresh_org)["revoke"] == revokes + 2 * 7
    for tokens in held:
        assert_dead(fresh_org, first.client, tokens)


def test_a_response_sets_off_the_sweep_once_a_minute_per_process(connect_to, fresh_org):
    """The sweep runs after a response has been sent, at most once per interval; here its clock
    is moved past the session's end, and a thread event says when the sweep is done."""

    class WatchedSweeper(ExpirySweeper):
        def __init__(self) -> None:
            super().__init__(clock=lambda: self.now)
            self.now = time.time()
            self.done = threading.Event()
            self.swept: list[int] = []

        def sweep(self, service) -> int:  # noqa: ANN001
            count = super().sweep(service)
            self.swept.append(count)
            self.done.set()
            return count

    running, http = connect_to(fresh_org)
    tokens = token_set(running, http)
    lifetime = running.app.extensions["sfconnect.settings"].session_lifetime
    sweeper = WatchedSweeper()
    running.app.extensions["sfconnect.sweeper"] = sweeper

    assert http.get(running.url + "/").status_code == 200
    assert sweeper.done.wait(30) and sweeper.swept == [0]  # the session is alive
    assert_alive(fresh_org, tokens)

    sweeper.done.clear()
    assert not sweeper.due()  # within the minute, this process does not sweep again
    sweeper.now += lifetime + TOUCH_EVERY_S + 1  # the session has ended
    assert requests.get(running.url + "/healthz").status_code == 200  # any response will do
    assert sweeper.done.wait(30) and sweeper.swept == [0, 1]
    assert_dead(fresh_org, running.client, tokens)


def test_a_sign_in_whose_token_record_cannot_be_written_revokes_its_tokens(start_app, fresh_org):
    """The code was exchanged, but the store refuses the token record (its folder is gone): the
    sign-in fails with a page, and the tokens just issued are revoked, not left alive."""
    running = start_app(fresh_org)
    http = requests.Session()
    answer = sign_in_at(http, start_login(http, running.url), follow=False)
    folder = running.app.extensions["sfconnect.tokens"].vault.records.records.directory
    shutil.rmtree(folder)
    folder.write_text("not a folder any more")
    revoked = counters(fresh_org).get("revoke", 0)
    landed = http.get(answer.headers["Location"], allow_redirects=False)
    assert landed.status_code >= 500 and "Traceback" not in landed.text
    assert counters(fresh_org).get("revoke", 0) == revoked + 2  # refresh, then access token
    assert "Not connected" in http.get(running.url + "/").text
