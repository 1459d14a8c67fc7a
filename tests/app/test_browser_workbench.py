"""The workbench in a real browser (Playwright driving Debian's Chromium): suggestions while typing,
an export from the query page with its progress bar run to the end, and one cancelled."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers.app import export_threads
from tests.helpers.browser import app_problems, assert_accessible, sign_in
from tests.helpers.org import counters, module_org
from tests.helpers.wait import until

CONTACTS = 20_000


org = module_org(CONTACTS)


def live(org) -> int:
    return sum(1 for r in org.state.data.records("Contact") if not r.get("IsDeleted"))


def run_query(page, soql: str) -> None:
    page.get_by_label("SOQL query").fill(soql)
    page.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*/query\?q=.*"))


def test_suggestions_export_with_progress_to_the_end(page, start_app, org, tmp_path):
    running = start_app(org)
    sign_in(page, running, org)

    # Objects after FROM, then the fields of the FROM object, then a parent's fields.
    field = page.get_by_label("SOQL query")
    field.fill("SELECT Id FROM Con")
    expect(page.locator("#soql-suggestions li").first).to_contain_text("Contact")
    field.press("Enter")  # takes the suggestion, does not run the query
    expect(field).to_have_value("SELECT Id FROM Contact")
    field.fill("SELECT Id, Acc FROM Contact")
    field.evaluate("el => el.setSelectionRange(14, 14)")  # after "Acc"
    field.press("o")
    expect(page.locator("#soql-suggestions")).to_contain_text("AccountId")
    expect(page.locator("#soql-suggestions")).to_contain_text("Account.")
    assert_accessible(page)  # the page with its suggestions open, which no page load shows
    page.locator("#soql-suggestions li", has_text="Account.").first.click()
    expect(page.locator("#soql-suggestions")).to_contain_text("Name")
    field.press("Escape")
    expect(page.locator("#soql-suggestions")).to_be_hidden()

    run_query(page, "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact")
    total = live(org)
    expect(page.locator(".record-count")).to_have_text(f"{total:,}")
    with page.expect_download(timeout=60_000) as download_info:
        page.locator("a.export-link", has_text="CSV").click()
        expect(page.locator("#export-progress")).to_be_visible()
    download = download_info.value
    assert re.fullmatch(r"Contact-\d{8}-\d{4}\.csv", download.suggested_filename)
    expect(page.locator(".export-status")).to_have_text(
        f"Done: {total:,} records saved as {download.suggested_filename}")
    assert page.locator("#export-bar").evaluate("el => [el.value, el.max]") == [total, total]
    assert_accessible(page)  # with the export's progress shown
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert len(saved.read_text(encoding="utf-8").splitlines()) == total + 1
    assert app_problems(page, running) == [], page.problems


def test_cancelling_an_export_stops_the_query_more_loop(page, start_app, org):
    running = start_app(org)
    sign_in(page, running, org)
    run_query(page, "SELECT Id, LastName, Account.Name FROM Contact")
    page.select_option("#batch", "200")
    page.get_by_role("button", name="Run query").click()
    page.wait_for_url(re.compile(r".*batch=200.*"))
    # Exports take the page's query and batch size: 100 batches, long enough to cancel.
    assert "batch=200" in page.locator("a.export-link", has_text="CSV").get_attribute("href")
    before = counters(org).get("soap.queryMore", 0)
    earlier = export_threads()
    page.locator("a.export-link", has_text="CSV").click()
    expect(page.locator(".export-status")).to_contain_text(re.compile(r"[1-9][\d,]* of "))
    loops = export_threads() - earlier
    assert loops  # the export's queryMore loop, with most of its batches to go
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".export-status")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    # The server stops asking for batches: its loop ends well below the whole query.
    until(lambda: not any(loop.is_alive() for loop in loops),
          message="the cancelled export's queryMore loop did not end")
    settled = counters(org).get("soap.queryMore", 0)
    batches = -(-live(org) // 200)
    assert settled - before < batches - 1
    # and it stays stopped: the loop has ended, nothing is left to ask for a batch
    assert counters(org).get("soap.queryMore", 0) == settled
