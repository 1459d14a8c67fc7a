"""The Fetch Metadata guard over real HTTP: a request another site sends (Sec-Fetch-Site:
cross-site or same-site) to a page that calls Salesforce calls nothing and gets a page saying what
would run; its same-origin, CSRF-checked button runs exactly that; Continue is no open redirect;
requests without the header, or from the app's own pages, run as before."""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import lxml.html
import pytest
import requests

from tests.helpers.org import counters

SOQL = "SELECT Id, FirstName, LastName, Account.Name FROM Contact LIMIT 20"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


def _interstitial(response: requests.Response, running) -> dict[str, object]:
    """The page another site's request gets: what it shows, and its Continue form."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    doc = lxml.html.fromstring(response.text)
    assert doc.xpath("//h1")[0].text_content().strip() == "Another site sent you here"
    forms = doc.xpath("//form[contains(@class, 'cross-site-form')]")
    assert len(forms) == 1
    form = forms[0]
    assert form.get("method") == "post"
    action = urljoin(response.url, form.get("action"))
    assert urlsplit(action)[:2] == urlsplit(running.url)[:2], "Continue posts to the app itself"
    fields = {field.get("name"): field.get("value") or ""
              for field in form.xpath(".//input[@type='hidden']")}
    assert fields.get("csrf_token")
    return {"action": action, "fields": fields,
            "text": doc.xpath("//section[contains(@class, 'cross-site')]")[0].text_content(),
            "soql": "".join(doc.xpath("//pre[contains(@class, 'cross-site-soql')]//text()")),
            "button": form.xpath(".//button")[0].text_content().strip()}


def _original(response: requests.Response) -> str:
    """The path and query string a request was sent with."""
    return response.request.path_url


def _continue(http: requests.Session, page: dict[str, object]) -> requests.Response:
    """Press the interstitial's button, as a browser does (same origin), not following the 303."""
    return http.post(page["action"], data=page["fields"], headers=SAME_ORIGIN,
                     allow_redirects=False)


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_query_calls_nothing_and_its_continue_runs_it(connect_to, fresh_org, site):
    running, http = connect_to(fresh_org)
    before = counters(fresh_org)
    response = http.get(f"{running.url}/query", params={"q": SOQL},
                        headers={"Sec-Fetch-Site": site})
    page = _interstitial(response, running)
    assert counters(fresh_org) == before, "another site's request called Salesforce"
    assert page["soql"] == SOQL
    assert "Run a SOQL query in Salesforce" in page["text"]
    assert page["button"] == "Run the query"

    moved = _continue(http, page)
    assert moved.status_code == 303
    assert moved.headers["Location"] == _original(response)
    assert counters(fresh_org) == before
    results = http.get(urljoin(running.url, moved.headers["Location"]), headers=SAME_ORIGIN)
    assert results.status_code == 200
    doc = lxml.html.fromstring(results.text)
    assert len(doc.xpath("//table[contains(@class,'records')]/tbody/tr")) == 20
    assert counters(fresh_org).get("soap.query", 0) == before.get("soap.query", 0) + 1


@pytest.mark.parametrize("header", [None, "same-origin", "none"])
def test_query_without_the_header_or_from_this_origin_runs_as_before(connect_to, fresh_org,
                                                                     header):
    running, http = connect_to(fresh_org)
    before = counters(fresh_org).get("soap.query", 0)
    response = http.get(f"{running.url}/query", params={"q": SOQL},
                        headers={"Sec-Fetch-Site": header} if header else {})
    assert response.status_code == 200
    doc = lxml.html.fromstring(response.text)
    assert not doc.xpath("//form[contains(@class, 'cross-site-form')]")
    assert len(doc.xpath("//table[contains(@class,'records')]/tbody/tr")) == 20
    assert counters(fresh_org)["soap.query"] == before + 1


@pytest.mark.parametrize("path,kind", [("/export.csv", "CSV"), ("/export.json", "JSON")])
def test_cross_site_export_calls_nothing_and_its_continue_downloads_it(connect_to, fresh_org,
                                                                       path, kind):
    running, http = connect_to(fresh_org)
    before = counters(fresh_org)
    response = http.get(running.url + path, params={"q": SOQL, "all": "1"},
                        headers={"Sec-Fetch-Site": "cross-site"})
    page = _interstitial(response, running)
    assert counters(fresh_org) == before
    assert "Content-Disposition" not in response.headers
    assert page["soql"] == SOQL
    assert f"as a {kind} file" in page["text"] and "(queryAll)" in page["text"]
    assert page["button"] == f"Download the {kind} export"

    moved = _continue(http, page)
    assert moved.status_code == 303 and moved.headers["Location"] == _original(response)
    export = http.get(urljoin(running.url, moved.headers["Location"]), headers=SAME_ORIGIN)
    assert export.status_code == 200
    assert export.headers["Content-Disposition"].startswith("attachment")
    assert counters(fresh_org)["soap.queryAll"] == before.get("soap.queryAll", 0) + 1


def test_cross_site_compare_calls_nothing_and_its_continue_runs_it(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    before = counters(fresh_org)
    response = http.get(f"{running.url}/compare", params={"q": SOQL},
                        headers={"Sec-Fetch-Site": "cross-site"})
    page = _interstitial(response, running)
    assert counters(fresh_org) == before, "neither the SOAP nor the REST query may run"
    assert page["soql"] == SOQL and "REST API and the SOAP partner API" in page["text"]

    moved = _continue(http, page)
    assert moved.status_code == 303 and moved.headers["Location"] == _original(response)
    compared = http.get(urljoin(running.url, moved.headers["Location"]), headers=SAME_ORIGIN)
    assert compared.status_code == 200
    assert counters(fresh_org)["soap.query"] == before.get("soap.query", 0) + 1


def test_cross_site_login_does_not_redirect_to_the_org_until_continue(start_app, fresh_org):
    running = start_app(fresh_org)
    stranger = requests.Session()
    before = counters(fresh_org)
    response = stranger.get(f"{running.url}/login", params={"q": SOQL},
                            headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    page = _interstitial(response, running)
    assert "Location" not in response.headers
    assert counters(fresh_org) == before
    assert f"Start signing in to Salesforce at My Domain (127.0.0.1) ({fresh_org.url})" \
        in page["text"]
    assert page["soql"] == SOQL and "it does not run" in page["text"]
    assert page["button"] == "Continue to Salesforce"

    moved = _continue(stranger, page)
    assert moved.status_code == 303 and moved.headers["Location"] == _original(response)
    login = stranger.get(urljoin(running.url, moved.headers["Location"]), headers=SAME_ORIGIN,
                         allow_redirects=False)
    assert login.status_code == 302
    assert login.headers["Location"].startswith(f"{fresh_org.url}/services/oauth2/authorize?")


def test_a_long_query_named_by_its_id_is_shown_by_its_id_and_runs_on_continue(connect_to,
                                                                              fresh_org):
    running, http = connect_to(fresh_org)
    long_soql = ("SELECT Id, LastName FROM Contact WHERE LastName NOT IN ("
                 + ", ".join(f"'Name{i:05d}'" for i in range(400)) + ")")
    home = lxml.html.fromstring(http.get(running.url + "/").text)
    fields = {field.get("name"): field.get("value") or ""
              for field in home.get_element_by_id("soql-form").xpath(".//input[@type='hidden']")}
    posted = http.post(running.url + "/query", data={**fields, "q": long_soql},
                       allow_redirects=False)
    location = posted.headers["Location"]
    assert "qid=" in location
    before = counters(fresh_org)
    response = http.get(urljoin(running.url, location), headers={"Sec-Fetch-Site": "cross-site"})
    page = _interstitial(response, running)
    assert counters(fresh_org) == before
    query_id = urlsplit(location).query.split("qid=")[1].split("&")[0]
    assert f"under the id {query_id}" in page["text"]

    moved = _continue(http, page)
    assert moved.headers["Location"] == location
    assert http.get(urljoin(running.url, location), headers=SAME_ORIGIN).status_code == 200
    assert counters(fresh_org)["soap.query"] == before.get("soap.query", 0) + 1


def test_the_interstitial_escapes_what_the_url_carries(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    soql = "SELECT Id FROM Contact WHERE LastName = '<script>alert(1)</script>'"
    response = http.get(f"{running.url}/query", params={"q": soql, "batch": "<b>500</b>"},
                        headers={"Sec-Fetch-Site": "cross-site"})
    page = _interstitial(response, running)
    assert page["soql"] == soql
    assert "<script>alert(1)" not in response.text and "&lt;script&gt;" in response.text
    doc = lxml.html.fromstring(response.text)
    assert [script.get("src") for script in doc.xpath("//script")] == ["/static/app.js"]


@pytest.mark.parametrize("path", ["/describe", "/describe/Account"])
def test_cross_site_describe_is_a_json_403_and_calls_nothing(connect_to, fresh_org, path):
    running, http = connect_to(fresh_org)
    before = counters(fresh_org)
    refused = http.get(running.url + path, headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert refused.headers["Cache-Control"] == "no-store"
    assert refused.json()["error"] == "CROSS_SITE_REQUEST" and refused.json()["message"]
    assert counters(fresh_org) == before
    assert http.get(running.url + path, headers=SAME_ORIGIN).status_code == 200  # as before


@pytest.mark.parametrize("target", [
    "//evil.example/x",
    "https://evil.example",
    "https://evil.example/query?q=x",
    "/\\evil.example",
    "/\t/evil.example",
    "/%2F%2Fevil.example/query",
    "query?q=x",
    "",
    "/flow",  # a page of the app, but not one Continue leads to
    "/healthz",
    "/query#fragment",
])
def test_continue_refuses_anything_but_a_guarded_page_of_the_app(connect_to, fresh_org, target):
    running, http = connect_to(fresh_org)
    page = _interstitial(http.get(f"{running.url}/query", params={"q": SOQL},
                                  headers={"Sec-Fetch-Site": "cross-site"}), running)
    refused = http.post(page["action"], data={**page["fields"], "target": target},
                        headers=SAME_ORIGIN, allow_redirects=False)
    assert refused.status_code == 400
    assert "Location" not in refused.headers


def test_continue_needs_its_csrf_token_and_the_apps_own_page(connect_to, fresh_org):
    running, http = connect_to(fresh_org)
    page = _interstitial(http.get(f"{running.url}/query", params={"q": SOQL},
                                  headers={"Sec-Fetch-Site": "cross-site"}), running)
    without_token = http.post(page["action"], data={"target": page["fields"]["target"]},
                              headers=SAME_ORIGIN, allow_redirects=False)
    assert without_token.status_code == 400 and "Location" not in without_token.headers
    from_elsewhere = http.post(page["action"], data=page["fields"],
                               headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    assert from_elsewhere.status_code == 403 and "Location" not in from_elsewhere.headers
