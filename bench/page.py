"""Benchmark the results page: the HTML page of one 2,000-record batch against the raw
fetch-and-parse of that batch (requests + lxml), both against the same local org.

    .venv/bin/python bench/page.py [--runs 15]

The org and the app run in subprocesses (bench/harness.py). The page's time is the whole request
as the client sees it (the app's server time plus loopback HTTP); the raw time is one query call
with its records parsed into rows. Medians of --runs each. Target: app/raw at most 1.5. The last
line is machine-readable:

    page: app/raw=1.2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402  (bench/ must be on sys.path first)

SOQL = harness.SOQL + " LIMIT 2000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    with harness.org_and_app(args.contacts) as (org, app):
        browser = harness.connect(app.url)
        session_id, endpoint = harness.password_token(org, app)
        http = requests.Session()
        http.trust_env = False
        page_times, raw_times = [], []
        for run in range(args.runs + 1):
            began = time.perf_counter()
            page = browser.get(f"{app.url}/query", params={"q": SOQL, "batch": 2000})
            page_s = time.perf_counter() - began
            page.raise_for_status()
            began = time.perf_counter()
            rows, _locator = harness.raw_batch(http, endpoint, session_id, "query",
                                               "queryString", SOQL, 2000)
            raw_s = time.perf_counter() - began
            if run:  # the first run warms both paths
                page_times.append(page_s)
                raw_times.append(raw_s)
        assert len(rows) == 2000 and page.text.count("<tr>") >= 2000
    page_ms, raw_ms = statistics.median(page_times) * 1000, statistics.median(raw_times) * 1000
    print(f"page: {page_ms:.0f} ms for the HTML of 2,000 records ({len(page.content):,} bytes)")
    print(f" raw: {raw_ms:.0f} ms to fetch and parse the same batch")
    print(f"page: app/raw={page_ms / raw_ms:.2f}")


if __name__ == "__main__":
    main()
