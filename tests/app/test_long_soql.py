"""SOQL of any length up to Salesforce's 100,000 characters runs from the form: it is posted (with
its CSRF token), and the results page, its Next link and its exports name it by a short id."""
from __future__ import annotations

import lxml.html

# A real query of about 90 KB: a long IN list, the shape people paste from spreadsheets.
NAMES = [f"Name{i:05d}" for i in range(7000)]
LONG_SOQL = ("SELECT Id, LastName FROM Contact WHERE LastName NOT IN ("
             + ", ".join(f"'{n}'" for n in NAMES) + ") ORDER BY LastName")


def _form(html: str) -> dict[str, str]:
    form = lxml.html.fromstring(html).get_element_by_id("soql-form")
    assert form.get("method") == "post"
    return {field.get("name"): field.get("value") or "" for field in form.xpath(".//input")
            if field.get("name") and field.get("type") == "hidden"}


def test_a_90_kb_query_runs_from_the_form_and_pages_and_exports(connect_to, local_org):
    running, http = connect_to(local_org)
    assert len(LONG_SOQL) > 80_000
    fields = _form(http.get(running.url + "/").text)
    posted = http.post(running.url + "/query", data={**fields, "q": LONG_SOQL, "batch": "200"},
                       allow_redirects=False)
    assert posted.status_code == 303
    location = posted.headers["Location"]
    assert "qid=" in location and len(location) < 200  # the SOQL itself stays server-side
    page = http.get(running.url + location if location.startswith("/") else location)
    assert page.status_code == 200
    doc = lxml.html.fromstring(page.text)
    assert doc.get_element_by_id("soql").text_content().strip() == LONG_SOQL  # kept in the form
    assert len(doc.xpath("//table[contains(@class,'records')]/tbody/tr")) == 200
    next_link = doc.xpath("//a[@rel='next']/@href") or doc.xpath("//a[contains(., 'Next')]/@href")
    assert next_link and "qid=" in next_link[0] and len(next_link[0]) < 400
    assert http.get(running.url + next_link[0]).status_code == 200
    export_link = doc.xpath("//a[contains(@href, 'export.csv')]/@href")[0]
    export = http.get(running.url + export_link)
    assert export.status_code == 200
    live = sum(1 for c in local_org.state.data.records("Contact") if not c["IsDeleted"])
    assert len(export.text.strip().splitlines()) == live + 1  # header + every record


def test_the_form_needs_its_csrf_token(connect_to, local_org):
    running, http = connect_to(local_org)
    refused = http.post(running.url + "/query", data={"q": "SELECT Id FROM Contact"},
                        allow_redirects=False)
    assert refused.status_code == 400


def test_over_salesforce_limit_is_a_clear_400_with_the_query_kept(connect_to, local_org):
    running, http = connect_to(local_org)
    fields = _form(http.get(running.url + "/").text)
    too_long = "SELECT Id FROM Contact WHERE LastName = '" + "x" * 100_000 + "'"
    response = http.post(running.url + "/query", data={**fields, "q": too_long})
    assert response.status_code == 400
    assert "MALFORMED_QUERY" in response.text
    assert "x" * 100_000 in response.text


def test_an_unknown_query_id_goes_home(connect_to, local_org):
    running, http = connect_to(local_org)
    response = http.get(running.url + "/query", params={"qid": "0" * 20},
                        allow_redirects=False)
    assert response.status_code == 302
