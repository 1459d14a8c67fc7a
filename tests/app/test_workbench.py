"""The query workbench over real HTTP: paging with queryMore, expired locators, queryAll, columns,
describe suggestions, the session's history and batch sizes. The app talks to a local org."""
from __future__ import annotations

import re
from html import unescape

import lxml.html
import pytest
import requests

from tests.helpers.org import counters, module_org

CONTACTS = 2500


org = module_org(CONTACTS)  # the module's own org: some tests shorten its cursors
# Every test is connected to it.
pytestmark = pytest.mark.parametrize("connected", ["org"], indirect=True)


def doc(response: requests.Response):
    return lxml.html.fromstring(response.text)


def text_of(page, css_class: str) -> str:
    return " ".join(page.xpath(f"string(//*[contains(@class, '{css_class}')])").split())


def headers(page) -> list[str]:
    return [th.text_content() for th in page.xpath("//table[@class='records']/thead/tr/th")]


def rows(page) -> list[list]:
    return page.xpath("//table[@class='records']/tbody/tr")


def first_column(page) -> list[str]:
    return [row.xpath("string(./td[1])") for row in rows(page)]


def next_href(page) -> str | None:
    links = page.xpath("//a[@rel='next']/@href")
    return links[0] if links else None


def live_contacts(org) -> int:
    return sum(1 for r in org.state.data.records("Contact") if not r.get("IsDeleted"))


# -- paging -----------------------------------------------------------------------------------

def test_pages_show_records_x_to_y_of_n_and_next_reads_the_following_batch(connected, org):
    app, browser = connected
    total = live_contacts(org)
    soql = "SELECT Id, LastName, Account.Name FROM Contact"
    response = browser.get(f"{app.url}/query", params={"q": soql, "batch": 500})
    assert response.status_code == 200
    page = doc(response)
    assert text_of(page, "range") == f"Showing rows 1–500 of {total:,}"
    assert page.xpath("string(//*[@class='record-count'])") == f"{total:,}"
    ids = first_column(page)
    before = counters(org).get("soap.queryMore", 0)
    for first, last in ((501, 1000), (1001, 1500)):
        href = next_href(page)
        assert href and "batch=500" in href and "locator=" in href
        assert "Next 500 records" in page.xpath("string(//a[@rel='next'])")
        response = browser.get(app.url + href)
        assert response.status_code == 200
        page = doc(response)
        assert text_of(page, "range") == f"Showing rows {first:,}–{last:,} of {total:,}"
        ids += first_column(page)
    assert counters(org).get("soap.queryMore", 0) - before == 2  # one call per page
    assert len(ids) == len(set(ids)) == 1500
    # A paged page offers the query from its first record again, and keeps the options.
    assert page.xpath("//select[@name='batch']/option[@selected]/@value") == ["500"]


def test_expired_locator_offers_to_run_the_query_again(connected, org):
    app, browser = connected
    soql = "SELECT Id, LastName FROM Contact"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql, "batch": 500}))
    href = next_href(page)
    cursors = org.state.query_cursors
    idle = cursors.idle_timeout_s
    cursors.idle_timeout_s = 0  # every open cursor is idle too long at its next use
    try:
        response = browser.get(app.url + href)
    finally:
        cursors.idle_timeout_s = idle
    assert response.status_code == 410
    page = doc(response)
    assert page.xpath("string(//*[@class='fault-code'])") == "INVALID_QUERY_LOCATOR"
    assert "Showing rows" not in response.text
    assert page.xpath("//textarea[@name='q']")[0].text == soql  # the form keeps the query
    rerun = page.xpath("//a[contains(@class, 'rerun')]/@href")
    assert rerun and "locator" not in rerun[0] and "batch=500" in rerun[0]
    again = browser.get(app.url + unescape(rerun[0]))
    assert again.status_code == 200
    assert text_of(doc(again), "range").startswith("Showing rows 1–500 of ")


def test_used_up_locator_offers_to_run_the_query_again(connected, org):
    app, browser = connected
    soql = "SELECT Id FROM Contact"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql}))  # 2,000 then the rest
    href = next_href(page)
    last = doc(browser.get(app.url + href))
    assert next_href(last) is None  # read to the end: Salesforce closes the cursor
    response = browser.get(app.url + href)  # the same locator, used again
    assert response.status_code == 410
    assert "INVALID_QUERY_LOCATOR" in response.text
    assert doc(response).xpath("//a[contains(@class, 'rerun')]")


# -- queryAll ---------------------------------------------------------------------------------

def test_include_deleted_runs_query_all(connected, org):
    app, browser = connected
    soql = "SELECT Id, LastName FROM Contact WHERE IsDeleted = true"
    plain = browser.get(f"{app.url}/query", params={"q": soql})
    assert doc(plain).xpath("string(//*[@class='record-count'])") == "0"
    before = counters(org).get("soap.queryAll", 0)
    response = browser.get(f"{app.url}/query", params={"q": soql, "all": "1"})
    assert response.status_code == 200
    page = doc(response)
    deleted = sum(1 for r in org.state.data.records("Contact") if r.get("IsDeleted"))
    assert deleted > 0
    assert page.xpath("string(//*[@class='record-count'])") == str(deleted)
    assert len(rows(page)) == deleted
    assert counters(org).get("soap.queryAll", 0) == before + 1
    assert page.xpath("//input[@name='all']/@checked")
    # Exports of a queryAll page export deleted records too.
    assert all("all=1" in href for href in page.xpath("//a[contains(@class,'export-link')]/@href"))


def test_count_only_is_shown_as_its_number(connected, org):
    app, browser = connected
    page = doc(browser.get(f"{app.url}/query", params={"q": "SELECT COUNT() FROM Contact"}))
    assert headers(page) == ["COUNT()"]
    assert first_column(page) == [str(live_contacts(org))]


# -- columns ----------------------------------------------------------------------------------

def test_deep_parent_paths_are_dotted_columns(connected):
    app, browser = connected
    soql = "SELECT Name, Account.Name, Account.Owner.Name FROM Contact WHERE AccountId != null"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql, "batch": 200}))
    assert headers(page) == ["Name", "Account.Name", "Account.Owner.Name"]
    owners = [row.xpath("string(./td[3])") for row in rows(page)]
    assert owners and all(owners)


def test_sparse_columns_come_from_every_record_not_the_first(connected):
    app, browser = connected
    # The first records have no Account: their Account.Name cells are empty, not missing, and
    # later records' account names land in the Account.Name column.
    soql = "SELECT LastName, Account.Name FROM Contact ORDER BY AccountId NULLS FIRST"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql}))
    assert headers(page) == ["LastName", "Account.Name"]
    table_rows = rows(page)
    assert table_rows[0].xpath("./td[2]/@class") == ["null"]
    assert table_rows[-1].xpath("string(./td[2])")
    assert all(len(row.xpath("./td")) == 2 for row in table_rows)


def test_child_subqueries_are_nested_tables_and_aggregates_use_alias_or_expr(connected):
    app, browser = connected
    soql = "SELECT Name, (SELECT LastName, Email FROM Contacts) FROM Account ORDER BY Name"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql}))
    assert headers(page) == ["Name", "Contacts"]
    nested = page.xpath("//table[@class='records records-nested']")
    assert nested
    assert [th.text_content() for th in nested[0].xpath("./thead/tr/th")] == ["LastName", "Email"]

    soql = "SELECT LeadSource, COUNT(Id) n, COUNT(Id) FROM Contact GROUP BY LeadSource"
    page = doc(browser.get(f"{app.url}/query", params={"q": soql}))
    assert headers(page) == ["LeadSource", "n", "expr0"]
    assert all(row.xpath("string(./td[2])") == row.xpath("string(./td[3])") for row in rows(page))


# -- describe suggestions ---------------------------------------------------------------------

def test_describe_endpoints_feed_suggestions_and_are_cached_in_the_session(connected, org):
    app, browser = connected
    before = counters(org)
    objects = browser.get(f"{app.url}/describe")
    assert objects.status_code == 200
    names = [o["name"] for o in objects.json()["sobjects"]]
    assert {"Account", "Contact"} <= set(names)
    contact = browser.get(f"{app.url}/describe/Contact").json()
    fields = {f["name"]: f for f in contact["fields"]}
    assert "LastName" in fields
    assert fields["AccountId"]["relationshipName"] == "Account"
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    account = browser.get(f"{app.url}/describe/account").json()  # any casing
    assert "Contacts" in [c["relationshipName"] for c in account["childRelationships"]]
    for _ in range(3):
        assert browser.get(f"{app.url}/describe").status_code == 200
        assert browser.get(f"{app.url}/describe/Contact").status_code == 200
    after = counters(org)
    assert after.get("soap.describeGlobal", 0) - before.get("soap.describeGlobal", 0) == 1
    assert after.get("soap.describeSObject", 0) - before.get("soap.describeSObject", 0) == 2

    missing = browser.get(f"{app.url}/describe/NoSuchThing")
    assert missing.status_code == 404 and missing.json()["error"] == "INVALID_TYPE"
    assert browser.get(f"{app.url}/describe/no-such").status_code == 404
    anonymous = requests.get(f"{app.url}/describe")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "NOT_CONNECTED"


def test_query_page_offers_suggestions_examples_and_options(connected):
    app, browser = connected
    page = doc(browser.get(f"{app.url}/"))
    form = page.get_element_by_id("soql-form")
    assert form.get("data-describe-url") == "/describe"
    assert page.get_element_by_id("soql-suggestions").get("role") == "listbox"
    assert len(page.xpath("//a[@class='example']")) >= 3
    assert page.xpath("//input[@type='checkbox'][@name='all']")
    assert page.xpath("//select[@name='batch']/option/@value") == ["200", "500", "1000", "2000"]


# -- history ----------------------------------------------------------------------------------

def test_history_keeps_the_last_20_queries_newest_first_and_re_runnable(connected):
    app, browser = connected
    for limit in range(1, 23):
        soql = f"SELECT Id FROM Contact LIMIT {limit}"
        assert browser.get(f"{app.url}/query", params={"q": soql}).status_code == 200
    browser.get(f"{app.url}/query", params={"q": "SELECT Id FROM Contact LIMIT 5", "all": "1"})
    browser.get(f"{app.url}/query", params={"q": "SELECT Id FROM Contact LIMIT 22"})  # again
    page = doc(browser.get(f"{app.url}/"))
    entries = page.xpath("//ol[@class='history-list']/li")
    assert len(entries) == 20
    texts = [entry.xpath("string(.//code)") for entry in entries]
    assert texts[0] == "SELECT Id FROM Contact LIMIT 22"
    assert texts[1] == "SELECT Id FROM Contact LIMIT 5" and "queryAll" in entries[1].text_content()
    assert texts.count("SELECT Id FROM Contact LIMIT 22") == 1
    assert "SELECT Id FROM Contact LIMIT 1" not in texts  # the oldest fell off
    rerun = browser.get(app.url + entries[1].xpath(".//a/@href")[0])
    assert rerun.status_code == 200
    assert doc(rerun).xpath("//input[@name='all']/@checked")
    assert len(rows(doc(rerun))) == 5
    # Paging through a query does not add pages to the history.
    first = doc(browser.get(f"{app.url}/query", params={"q": "SELECT Id FROM Contact"}))
    browser.get(app.url + next_href(first))
    page = doc(browser.get(f"{app.url}/"))
    texts = [e.xpath("string(.//code)") for e in page.xpath("//ol[@class='history-list']/li")]
    assert texts.count("SELECT Id FROM Contact") == 1


# -- batch size -------------------------------------------------------------------------------

def test_batch_size_is_clamped_to_200_to_2000(connected):
    app, browser = connected
    for given, expected in [("50", 200), ("500", 500), ("1999", 1999), ("99999", 2000),
                            ("abc", 2000), ("", 2000), ("-5", 200), ("1e3", 2000)]:
        response = browser.get(f"{app.url}/query",
                               params={"q": "SELECT Id FROM Contact", "batch": given})
        assert response.status_code == 200, given
        page = doc(response)
        assert len(rows(page)) == expected, given
        assert re.search(rf"Showing rows 1–{expected:,} of ", text_of(page, "range")), given
