"""Benchmark the results page: the HTML page of one 2,000-record batch against the raw
fetch-and-parse of that batch (requests + lxml), both against the same local org.

    .venv/bin/python bench/page.py [--runs 40]

The org and the app run in subprocesses (bench/harness.py; the app under gunicorn's threaded
workers, as the Dockerfile runs it). The page's time is its server time: from the request's
arrival in the app to the whole page made, measured around the WSGI app in the app's process
(a Server-Timing header; the time as the client saw it is printed too). The raw time is one query
call with its records parsed into rows, timed in a process of its own, so that neither side pays
the other's memory upkeep (the allocator tidies a freed document at its next large allocation).
The two alternate, one request each at a time; the figure is the median of the --runs ratios of
a page and the raw fetch that followed it. Target: app/raw at most 1.5. The last line is
machine-readable:

    page: app/raw=1.2
"""
from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402  (bench/ must be on sys.path first)

SOQL = harness.SOQL + " LIMIT 2000"
SERVER_TIME = re.compile(r"\bapp;dur=([0-9.]+)")


def raw_worker(connection, endpoint: str, session_id: str) -> None:  # noqa: ANN001
    """The raw client's process: one timed fetch-and-parse per request on `connection`."""
    http = requests.Session()
    http.trust_env = False
    while connection.recv():
        began = time.perf_counter()
        rows, _locator = harness.raw_batch(http, endpoint, session_id, "query", "queryString",
                                           SOQL, 2000)
        connection.send((time.perf_counter() - began, len(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    with harness.org_and_app(args.contacts) as (org, app):
        browser = harness.connect(app.url)
        session_id, endpoint = harness.password_token(org, app)
        parent, child = multiprocessing.get_context("spawn").Pipe()
        raw = multiprocessing.get_context("spawn").Process(
            target=raw_worker, args=(child, endpoint, session_id), daemon=True)
        raw.start()
        page_times, seen_times, raw_times = [], [], []
        try:
            for run in range(args.runs + 1):
                began = time.perf_counter()
                page = browser.get(f"{app.url}/query", params={"q": SOQL, "batch": 2000})
                seen_s = time.perf_counter() - began
                page.raise_for_status()
                page_s = float(SERVER_TIME.search(page.headers["Server-Timing"]).group(1)) / 1000
                parent.send(True)
                raw_s, rows = parent.recv()
                if run:  # the first run warms both paths
                    page_times.append(page_s)
                    seen_times.append(seen_s)
                    raw_times.append(raw_s)
        finally:
            parent.send(False)
            raw.join(timeout=10)
        assert rows == 2000 and page.text.count("<tr>") >= 2000
    page_ms, raw_ms = statistics.median(page_times) * 1000, statistics.median(raw_times) * 1000
    seen_ms = statistics.median(seen_times) * 1000
    print(f"page: {page_ms:.0f} ms of server time for the HTML of 2,000 records "
          f"({len(page.content):,} bytes; {seen_ms:.0f} ms as the client saw it)")
    print(f" raw: {raw_ms:.0f} ms to fetch and parse the same batch")
    # Each page and the raw fetch after it ran moments apart: the median of their ratios is
    # steadier than the ratio of the medians when the machine's speed drifts.
    ratio = statistics.median(p / r for p, r in zip(page_times, raw_times, strict=True))
    print(f"page: app/raw={ratio:.2f}")


if __name__ == "__main__":
    main()
