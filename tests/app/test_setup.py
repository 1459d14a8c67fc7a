"""GET /setup (what to register, checks of the running configuration, first errors), GET /flows,
and the endpoints panel of the home page."""
from __future__ import annotations

import lxml.html
import requests

from tests.helpers.flow import sign_in


def _checks(page) -> dict[str, str]:
    doc = lxml.html.fromstring(page.text)
    return {li.xpath("./strong")[0].text_content(): li.xpath(".//span[@class='check-verdict']")[0]
            .text_content() for li in doc.xpath("//li[contains(@class,'check ')]")}


def test_setup_shows_the_callback_the_env_and_checks_this_configuration(start_app, local_org):
    running = start_app(local_org)
    page = requests.get(f"{running.url}/setup")
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    assert doc.xpath("//code[@class='callback-url']")[0].text == f"{running.url}/oauth/callback"
    env = doc.xpath("//pre[contains(@class,'env-example')]")[0].text_content()
    assert "SF_CLIENT_ID=<Consumer Key>" in env and "SF_CLIENT_SECRET=<Consumer Secret>" in env
    assert "PKCE" in page.text and "S256" in page.text and "api refresh_token" in page.text
    for code in ("redirect_uri_mismatch", "invalid_client_id", "OAUTH_APPROVAL_ERROR_GENERIC",
                 "invalid_grant: expired authorization code", "test.salesforce.com"):
        assert code in page.text
    assert running.client.client_secret not in page.text
    checks = _checks(page)
    # The local org is plain http on loopback: not a Salesforce login URL.
    assert checks["Login URL is https and a Salesforce domain"] == "no"
    assert checks["Redirect URI host matches the host serving this page"] == "yes"
    assert checks["Client id (consumer key) present"] == "yes"
    assert checks["Client secret present"] == "yes"

    # Served under another host name than the redirect URI's: the check says so.
    other = requests.get(f"{running.url}/setup".replace("127.0.0.1", "localhost"))
    assert _checks(other)["Redirect URI host matches the host serving this page"] == "no"


def test_setup_with_a_salesforce_login_url(start_app, local_org):
    running = start_app(local_org, SF_LOGIN_URL="https://test.salesforce.com")
    checks = _checks(requests.get(f"{running.url}/setup"))
    assert checks["Login URL is https and a Salesforce domain"] == "yes"


def test_flows_page_explains_each_flow(start_app, local_org):
    running = start_app(local_org)
    page = requests.get(f"{running.url}/flows")
    assert page.status_code == 200
    for flow in ("jwt", "password", "refresh", "client-credentials"):
        assert f"sf token --flow {flow}" in page.text
    assert "Discouraged" in page.text and "certificate" in page.text
    assert "integration user" in page.text and "RFC 7523" in page.text


def test_home_page_endpoints_panel(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    home = sign_in(http, running.url).response
    doc = lxml.html.fromstring(home.text)
    rows = doc.xpath("//table[@class='endpoints-table']/tbody/tr")
    names = [row.xpath("./th")[0].text_content() for row in rows]
    # What the local org's identity service lists (it leaves out the URLs it does not serve).
    assert {"partner", "rest", "sobjects", "query"} <= set(names)
    urls = dict(zip(names, (row.xpath("./td")[0].text_content() for row in rows), strict=True))
    assert urls["partner"] == f"{local_org.url}/services/Soap/u/66.0/00D5g000004ZbXy"
    assert urls["query"] == f"{local_org.url}/services/data/v66.0/query/"
    assert not any("{version}" in url for url in urls.values())
    apex = doc.xpath("//code[@class='apex-endpoint']")[0].text_content()
    assert apex == f"{local_org.url}/services/Soap/class/<Namespace>/<Class>"
    assert "partner WSDL" in home.text  # each row says what its endpoint is for
