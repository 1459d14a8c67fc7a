"""Several orgs at once, over real HTTP with two local orgs on two ports (different org ids, users
and data) configured as two login hosts: both connected in one browser session, /orgs lists
them, queries and exports go to the connection they were made for, each connection refreshes
and is revoked on its own, logout revokes both, and a My Domain outside Salesforce's domains is
refused before any redirect."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
import pytest
import requests

from devorg.config import DEFAULT_USERS, SeedUser
from sfconnect.auth.connection import MAX_CONNECTIONS
from tests.helpers.flow import forget_org_login, sign_in, token_set
from tests.helpers.org import ADMIN, ZOE, LocalOrg, counters, start_org
from tests.helpers.revocation import assert_alive, assert_dead

BO = ("bo.builder@second.local", "Welcome2!")
SECOND_ORG_ID = "00D5g000007QrStEAK"
COUNT_CONTACTS = "SELECT COUNT() FROM Contact"
CONTACTS = "SELECT Id, LastName FROM Contact"


@pytest.fixture
def second_org() -> Iterator[LocalOrg]:
    """Another local org: its own org id, its own user and fewer Contacts."""
    org = start_org(org_id=SECOND_ORG_ID, org_name="Second Org", contact_count=37, seed=7,
                    users=[SeedUser(BO[0], BO[1], "Bo", "Builder", "bo@second.local")])
    yield org
    org.server.shutdown()


@pytest.fixture
def two_orgs(start_app, fresh_org, second_org):  # noqa: ANN201
    """The app with the first org as its login host and the second as another
    (SF_LOGIN_HOSTS), the same client registered in both."""
    running = start_app(fresh_org, SF_LOGIN_HOSTS=f"Second org={second_org.url}")
    second_org.register(f"{running.url}/oauth/callback", client_id=running.client.client_id,
                        client_secret=running.client.client_secret)
    return running, fresh_org, second_org


def connect_both(running, second_key: str = "host2") -> requests.Session:
    """A browser connected to the first org (as Ada), then to the second (as Bo)."""
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    forget_org_login(http)
    signed = sign_in(http, running.url, user=BO, login=second_key)
    assert signed.response.url == running.url + "/", signed.response.text
    return http


def orgs_json(running, http: requests.Session) -> list[dict]:
    response = http.get(f"{running.url}/orgs", headers={"Accept": "application/json"})
    assert response.status_code == 200
    return response.json()["connections"]


def record_count(running, http: requests.Session, soql: str = COUNT_CONTACTS,
                 **params: str) -> int:
    page = http.get(f"{running.url}/query", params={"q": soql, **params})
    assert page.status_code == 200, page.text
    return int(lxml.html.fromstring(page.text).xpath("string(//*[@class='record-count'])")
               .replace(",", ""))


def post_form(running, http: requests.Session, action: str) -> requests.Response:
    """POST the /orgs page's form whose action is `action`, with its CSRF token."""
    page = lxml.html.fromstring(http.get(f"{running.url}/orgs").text)
    form = page.xpath(f"//form[@action='{action}']")[0]
    return http.post(urljoin(running.url + "/", form.action), data=dict(form.form_values()))


def test_two_orgs_side_by_side_query_switch_and_list(two_orgs):
    running, first, second = two_orgs
    http = connect_both(running)

    listed = orgs_json(running, http)
    assert [(c["org_id"], c["username"], c["active"]) for c in listed] == [
        (SECOND_ORG_ID, BO[0], True), (first.state.org_id, ADMIN[0], False)]
    assert {c["login_host"] for c in listed} == {first.url, second.url}
    assert set(listed[0]) == {"key", "org_id", "user_id", "username", "display_name",
                              "instance_url", "login_host", "is_sandbox", "active"}
    page = http.get(f"{running.url}/orgs", headers={"Accept": "application/json"}).text
    tokens = [token_set(running, http)]
    assert not any(t.access_token in page or (t.refresh_token or "-") in page for t in tokens)

    # The org connected last is active: the query goes there.
    assert record_count(running, http) == 37
    # The header's switcher offers the other one; switching is a POST with a CSRF token.
    first_key = listed[1]["key"]
    home = lxml.html.fromstring(http.get(running.url + "/").text)
    switch = home.xpath(f"//form[@action='/orgs/{first_key}/activate']")[0]
    refused = http.post(f"{running.url}/orgs/{first_key}/activate", data={})
    assert refused.status_code == 400 and "csrf" in refused.text.lower()
    switched = http.post(urljoin(running.url + "/", switch.action),
                         data=dict(switch.form_values()))
    assert switched.status_code == 200 and "Now using admin@devorg.local" in switched.text
    assert record_count(running, http) == first.state.config.contact_count
    assert [c["active"] for c in orgs_json(running, http)] == [True, False]

    # The query history remembers where each query ran.
    history = lxml.html.fromstring(http.get(running.url + "/").text).xpath(
        "//li[a[contains(@class,'history-query')]]")
    assert any(BO[0] in item.text_content() for item in history)


def test_an_export_link_made_before_a_switch_stays_on_its_org(two_orgs):
    running, first, _second = two_orgs
    http = connect_both(running)
    listed = orgs_json(running, http)
    first_key = listed[1]["key"]
    post_form(running, http, f"/orgs/{first_key}/activate")  # now the first org is active
    page = lxml.html.fromstring(http.get(f"{running.url}/query", params={"q": CONTACTS}).text)
    link = page.xpath("//a[@data-kind='csv']/@href")[0]
    assert parse_qs(urlsplit(link).query)["org"] == [first_key]
    post_form(running, http, f"/orgs/{listed[0]['key']}/activate")  # switch to the second
    assert record_count(running, http) == 37
    export = http.get(urljoin(running.url + "/", link))
    assert export.status_code == 200, export.text
    rows = list(csv.reader(io.StringIO(export.text)))
    assert len(rows) - 1 == first.state.config.contact_count  # the first org's records
    # A paging link made for one org stays on it too.
    assert parse_qs(urlsplit(page.xpath("//a[@data-kind='json']/@href")[0]).query)["org"] == \
        [first_key]


def test_expiring_one_orgs_sessions_refreshes_only_that_connection(two_orgs):
    running, first, second = two_orgs
    http = connect_both(running)
    first_key = orgs_json(running, http)[1]["key"]
    before = (counters(first).get("token.refresh_token", 0),
              counters(second).get("token.refresh_token", 0))
    requests.post(f"{second.url}/__admin/expire-sessions", timeout=10).raise_for_status()
    assert record_count(running, http) == 37  # the second org, refreshed on its own
    assert record_count(running, http, org=first_key) == first.state.config.contact_count
    after = (counters(first).get("token.refresh_token", 0),
             counters(second).get("token.refresh_token", 0))
    assert after == (before[0], before[1] + 1)
    assert [c["username"] for c in orgs_json(running, http)] == [BO[0], ADMIN[0]]


def test_disconnecting_one_revokes_only_its_tokens_and_logout_revokes_both(two_orgs):
    running, first, second = two_orgs
    http = connect_both(running)
    second_tokens = token_set(running, http)
    listed = orgs_json(running, http)
    post_form(running, http, f"/orgs/{listed[1]['key']}/activate")
    first_tokens = token_set(running, http)

    gone = post_form(running, http, f"/orgs/{listed[0]['key']}/disconnect")
    assert gone.status_code == 200 and "its tokens were revoked" in gone.text
    assert_dead(second, running.client, second_tokens)
    assert_alive(first, first_tokens)
    assert [c["username"] for c in orgs_json(running, http)] == [ADMIN[0]]
    # A link made for the connection that is gone: a clear page, nothing sent anywhere.
    stale = http.get(f"{running.url}/query", params={"q": CONTACTS, "org": listed[0]["key"]})
    assert stale.status_code == 404 and "no longer has" in stale.text
    assert record_count(running, http) == first.state.config.contact_count

    forget_org_login(http)
    assert sign_in(http, running.url, user=BO, login="host2").response.url == running.url + "/"
    second_again = token_set(running, http)
    home = http.get(running.url + "/").text
    token = lxml.html.fromstring(home).xpath(
        "//form[@class='logout-form']//input[@name='csrf_token']/@value")[0]
    out = http.post(f"{running.url}/logout", data={"csrf_token": token})
    assert "tokens were revoked" in out.text and "Not connected" in out.text
    assert_dead(first, running.client, first_tokens)
    assert_dead(second, running.client, second_again)


def test_the_same_user_of_the_same_org_replaces_its_connection(two_orgs):
    running, first, _second = two_orgs
    http = connect_both(running)
    listed = orgs_json(running, http)
    post_form(running, http, f"/orgs/{listed[1]['key']}/activate")
    old = token_set(running, http)
    assert sign_in(http, running.url).response.url == running.url + "/"  # Ada again
    now = orgs_json(running, http)
    assert [c["key"] for c in now] == [listed[1]["key"], listed[0]["key"]]
    assert_dead(first, running.client, old)


def test_a_sixth_connection_disconnects_the_one_used_longest_ago(start_app):
    """One org, six users: the sixth connection drops (and revokes) the first."""
    extra = [SeedUser(f"user{n}@devorg.local", "Welcome1!", "User", f"Number{n}",
                      f"user{n}@devorg.local") for n in range(MAX_CONNECTIONS + 1)]
    org = start_org(users=[*DEFAULT_USERS, *extra])
    try:
        running = start_app(org)
        http = requests.Session()
        first = None
        for index, user in enumerate(extra):
            forget_org_login(http)
            signed = sign_in(http, running.url, user=(user.username, user.password))
            assert signed.response.url == running.url + "/", signed.response.text
            if index == 0:
                first = token_set(running, http)
            if index == MAX_CONNECTIONS:
                assert "used longest ago, was disconnected" in signed.response.text
        listed = orgs_json(running, http)
        assert len(listed) == MAX_CONNECTIONS
        assert extra[0].username not in {c["username"] for c in listed}
        assert_dead(org, running.client, first)
    finally:
        org.server.shutdown()


@pytest.mark.parametrize("typed", [
    "https://evil.example.com",
    "https://acme.my.salesforce.com.evil.com",
    "http://acme.my.salesforce.com",
    "https://acme.my.salesforce.com:8443",
    "https://acme.my.salesforce.com/services/oauth2/authorize",
    "https://user@acme.my.salesforce.com",
    "javascript:alert(1)",
])
def test_a_my_domain_outside_salesforces_domains_is_refused_before_any_redirect(
        start_app, local_org, typed):
    running = start_app(local_org)
    response = requests.get(f"{running.url}/login", params={"my_domain": typed},
                            allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "INVALID_MY_DOMAIN" in response.text


def test_a_my_domain_under_salesforce_is_where_the_sign_in_starts(start_app, local_org):
    running = start_app(local_org)
    response = requests.get(f"{running.url}/login",
                            params={"my_domain": "acme--dev.sandbox.my.salesforce.com"},
                            allow_redirects=False)
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https", "acme--dev.sandbox.my.salesforce.com", "/services/oauth2/authorize")
    query = parse_qs(target.query)
    assert query["redirect_uri"] == [f"{running.url}/oauth/callback"]
    assert query["code_challenge_method"] == ["S256"] and query["state"]


def test_another_user_of_the_same_org_is_added_not_replaced(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    forget_org_login(http)
    assert sign_in(http, running.url, user=ZOE).response.url == running.url + "/"
    assert [c["username"] for c in orgs_json(running, http)] == [ZOE[0], ADMIN[0]]


def test_the_trace_labels_each_exchange_with_its_connection_and_filters_by_it(two_orgs):
    running, first, second = two_orgs
    http = connect_both(running)
    listed = orgs_json(running, http)
    second_key, first_key = listed[0]["key"], listed[1]["key"]
    assert record_count(running, http) == 37
    assert record_count(running, http, org=first_key) == first.state.config.contact_count

    def labelled(params: dict | None = None) -> list[tuple[str, str, str]]:
        page = lxml.html.fromstring(http.get(f"{running.url}/flow", params=params).text)
        return [(" ".join(item.xpath("string(.//h2[@class='trace-step'])").split()),
                 item.xpath("string(.//*[contains(@class,'trace-connection')]/@data-org)"),
                 item.xpath("string(.//code[@class='trace-url'])"))
                for item in page.xpath("//li[contains(@class,'trace-entry')]")]

    everything = labelled()
    soap = [(org, url) for step, org, url in everything if "SOAP request" in step]
    assert (second_key, True) in {(org, url.startswith(second.url)) for org, url in soap}
    assert (first_key, True) in {(org, url.startswith(first.url)) for org, url in soap}
    assert all(url.startswith(first.url if org == first_key else second.url)
               for org, url in soap)
    # Each sign-in's own exchanges (its token request, its identity call) are its connection's.
    tokens = [(org, url) for step, org, url in everything if "token request" in step]
    assert {org for org, _ in tokens} == {first_key, second_key}
    assert all(url.startswith(first.url if org == first_key else second.url)
               for org, url in tokens)

    only_first = labelled({"org": first_key})
    assert only_first and {org for _, org, _ in only_first} == {first_key}
    # Its exchanges went to its org (or are the browser's own requests to the app).
    assert all(url.startswith((first.url, running.url)) or not url.startswith("http")
               for _, _, url in only_first), only_first


def test_a_page_made_for_one_org_keeps_its_form_and_suggestions_on_it(two_orgs):
    running, first, _second = two_orgs
    http = connect_both(running)
    first_key = orgs_json(running, http)[1]["key"]  # not the active one
    page = lxml.html.fromstring(http.get(f"{running.url}/query",
                                         params={"q": CONTACTS, "org": first_key}).text)
    form = page.xpath("//form[@id='soql-form']")[0]
    assert parse_qs(urlsplit(form.get("data-describe-url")).query)["org"] == [first_key]
    described = http.get(urljoin(running.url + "/", form.get("data-describe-url")))
    assert described.status_code == 200 and described.json()["sobjects"]
    fields = dict(form.form_values())
    fields["q"] = COUNT_CONTACTS
    ran = http.post(urljoin(running.url + "/", form.action), data=fields)
    assert ran.status_code == 200
    count = lxml.html.fromstring(ran.text).xpath("string(//*[@class='record-count'])")
    assert int(count) == first.state.config.contact_count  # on the page's org, not the active


def test_a_connection_revoked_at_its_org_is_dropped_alone(two_orgs):
    """Salesforce revoked the second org's grant (an admin, or the user elsewhere): its next call
    fails to refresh, that connection is dropped with a message, and the first org's stays, now
    active."""
    running, first, second = two_orgs
    http = connect_both(running)
    revoked = token_set(running, http)  # the second org's, active
    requests.post(f"{second.url}/services/oauth2/revoke", data={"token": revoked.refresh_token},
                  timeout=10).raise_for_status()
    page = http.get(f"{running.url}/query", params={"q": COUNT_CONTACTS})
    assert page.url.startswith(running.url + "/") and "record-count" not in page.text
    assert "Connect" in page.text
    listed = orgs_json(running, http)
    assert [(c["username"], c["active"]) for c in listed] == [(ADMIN[0], True)]
    assert record_count(running, http) == first.state.config.contact_count
