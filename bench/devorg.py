"""Benchmark the local org's partner endpoint: query + queryMore through 100,000 Contacts.

    .venv/bin/python bench/devorg.py [--contacts 100000] [--batch-size 2000]

Starts a local org in-process on a free port, mints a token straight from its token store, and
pages through a five-field Contact query with a parent field using plain requests + lxml.
batch_ms is the median server time of one 2,000-record batch (the org's WSGI app, from request to
finished response body), round trips are also shown as the client sees them, and records_per_s is
the end-to-end rate including HTTP and the client's parsing. The last line is machine-readable:

    devorg: batch_ms=31 records_per_s=61000
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

import requests
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import devorg  # noqa: E402  (the repo root must be on sys.path first)
from devorg import OrgConfig  # noqa: E402

SOQL = "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact"
NS = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "p": "urn:partner.soap.sforce.com"}


def envelope(session_id: str, batch_size: int, operation: str, argument: str, value: str) -> bytes:
    """A partner API request, as any SOAP client would send it."""
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:p="urn:partner.soap.sforce.com"><soapenv:Header><p:SessionHeader>'
            f"<p:sessionId>{escape(session_id)}</p:sessionId></p:SessionHeader><p:QueryOptions>"
            f"<p:batchSize>{batch_size}</p:batchSize></p:QueryOptions></soapenv:Header>"
            f"<soapenv:Body><p:{operation}><p:{argument}>{escape(value)}</p:{argument}>"
            f"</p:{operation}></soapenv:Body></soapenv:Envelope>").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per batch
    started = time.perf_counter()
    app = devorg.create_app(OrgConfig(contact_count=args.contacts, account_count=500))
    server_times: list[float] = []
    wsgi_app = app.wsgi_app

    def timed_app(environ, start_response):
        # The body is built inside the app call, so this times the whole batch on the server.
        began = time.perf_counter()
        try:
            return wsgi_app(environ, start_response)
        finally:
            server_times.append(time.perf_counter() - began)

    app.wsgi_app = timed_app
    server = devorg.serve_in_thread(app)
    org = devorg.org_of(app)
    print(f"seeded {args.contacts} Contacts in {time.perf_counter() - started:.1f} s; "
          f"serving on {server.url}")
    user = org.data.user_by_username("admin@devorg.local")
    session_id = org.tokens.issue(client_id="bench", user_id=user["Id"], scope="api",
                                  with_refresh=False).access_token
    url = f"{server.url}/services/Soap/u/{org.latest_version}/{org.org_id}"
    http = requests.Session()
    http.headers["Content-Type"] = "text/xml; charset=utf-8"
    http.headers["SOAPAction"] = '""'

    try:
        batch_times: list[float] = []
        records = 0
        body = envelope(session_id, args.batch_size, "query", "queryString", SOQL)
        began = time.perf_counter()
        while True:
            sent = time.perf_counter()
            response = http.post(url, data=body, timeout=60)
            content = response.content
            batch_times.append(time.perf_counter() - sent)
            if response.status_code != 200:
                raise SystemExit(f"HTTP {response.status_code}: {content[:500]!r}")
            result = etree.fromstring(content).find("soapenv:Body/*/p:result", NS)
            records += len(result.findall("p:records", NS))  # `size` is the query's total
            if result.findtext("p:done", namespaces=NS) == "true":
                break
            locator = result.findtext("p:queryLocator", namespaces=NS)
            body = envelope(session_id, args.batch_size, "queryMore", "queryLocator", locator)
        elapsed = time.perf_counter() - began
    finally:
        server.shutdown()

    if records != args.contacts:
        raise SystemExit(f"paged {records} records, expected {args.contacts}")
    # The first call also runs the query over every row; the median is the steady batch.
    batch_ms = statistics.median(server_times) * 1000
    print(f"batches: {len(server_times)}  server: first (query) {server_times[0] * 1000:.1f} ms, "
          f"median {batch_ms:.1f} ms, max {max(server_times) * 1000:.1f} ms")
    print(f"round trip seen by the client: median {statistics.median(batch_times) * 1000:.1f} ms")
    print(f"records: {records} in {elapsed:.2f} s")
    print(f"devorg: batch_ms={round(batch_ms)} records_per_s={round(records / elapsed)}")


if __name__ == "__main__":
    main()
