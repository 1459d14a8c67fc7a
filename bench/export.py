"""Benchmark the CSV export against a raw client and a naive zeep loop, over 100,000 Contacts.

    .venv/bin/python bench/export.py [--contacts 100000] [--pairs 3]

Starts the local org (`python -m devorg --contacts N --admin`) and the app in subprocesses of
their own, connects through the org's login and consent pages, then times (a) and (b) in turn
--pairs times (app/raw is the median of the pairs' ratios), then (c) once:

  (a) app   GET /export.csv through the app (batch 2000), read as a browser would
  (b) raw   requests + lxml: the same query/queryMore loop against the same org, rows extracted
  (c) zeep  client.service.query/queryMore with zeep.helpers.serialize_object on each batch

The app's RSS is sampled (psutil) during (a): its peak up to the 10,000th record received and over
the whole export. Targets: app/raw >= 0.8, app/zeep >= 3, RSS growth 10k -> 100k under 30 MB,
first byte under 1 s. The last line is machine-readable:

    export: app/raw=0.93 app/zeep=4.1 rss_growth_mb=12 first_byte_s=0.21
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil
import zeep
import zeep.helpers
from lxml import etree
from zeep.transports import Transport

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402  (bench/ must be on sys.path first)

WSDL = str(harness.REPO / "sfconnect" / "salesforce" / "wsdl" / "partner.wsdl")
MB = 1024 * 1024


class RssSampler:
    """Samples a process's RSS every few milliseconds; `peak` is the highest seen so far."""

    def __init__(self, pid: int, every_s: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.every_s)

    def sample(self) -> int:
        rss = self.process.memory_info().rss
        self.peak = max(self.peak, rss)
        return rss

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def time_app_export(app: harness.Running, browser, contacts: int) -> dict:  # noqa: ANN001
    """(a): the whole CSV export through the app, with time to first byte and RSS samples."""
    sampler = RssSampler(app.process.pid)
    records = -1  # the header line is not a record
    peak_at_10k = None
    with sampler:
        began = time.perf_counter()
        with browser.get(f"{app.url}/export.csv", params={"q": harness.SOQL, "batch": 2000},
                         stream=True) as response:
            response.raise_for_status()
            first_byte = None
            for chunk in response.iter_content(chunk_size=None):
                if first_byte is None:
                    first_byte = time.perf_counter() - began
                # Values hold no line breaks here, so lines are records.
                records += chunk.count(b"\n")
                if peak_at_10k is None and records >= 10_000:
                    sampler.sample()
                    peak_at_10k = sampler.peak
        elapsed = time.perf_counter() - began
    return {"records": records, "seconds": elapsed, "first_byte_s": first_byte,
            "peak_10k": peak_at_10k or sampler.peak, "peak_all": sampler.peak}


def time_raw(endpoint: str, session_id: str) -> dict:
    """(b): requests + lxml, the same loop, batch 2000."""
    began = time.perf_counter()
    records = harness.raw_export(endpoint, session_id, harness.SOQL, 2000)
    return {"records": records, "seconds": time.perf_counter() - began}


def time_zeep(endpoint: str, session_id: str) -> dict:
    """(c): a straightforward zeep loop on our partner WSDL, serialize_object on each batch."""
    import requests

    http = requests.Session()
    http.trust_env = False
    client = zeep.Client(WSDL, transport=Transport(session=http, timeout=60,
                                                   operation_timeout=60))
    binding = next(port.binding.name for service in client.wsdl.services.values()
                   for port in service.ports.values())
    service = client.create_service(binding, endpoint)
    header = client.get_element(f"{{{harness.P}}}SessionHeader")(sessionId=session_id)
    options = client.get_element(f"{{{harness.P}}}QueryOptions")(batchSize=2000)
    began = time.perf_counter()
    # The reply has output headers (LimitInfoHeader), so zeep answers {"header", "body"}.
    result = zeep.helpers.serialize_object(
        service.query(harness.SOQL, _soapheaders=[header, options]))["body"]["result"]
    records = _zeep_rows(result)
    while not result["done"]:
        result = zeep.helpers.serialize_object(service.queryMore(
            result["queryLocator"], _soapheaders=[header, options]))["body"]["result"]
        records += _zeep_rows(result)
    return {"records": records, "seconds": time.perf_counter() - began}


def _zeep_rows(result: dict) -> int:
    # Records are xsd:any: after serialize_object each is a dict whose fields beyond type and Id
    # come as lxml elements in _value_1; a caller still has to read their text.
    count = 0
    for record in result["records"] or []:
        row = []
        for value in record.get("_value_1") or []:
            if isinstance(value, etree._Element):
                row.append(value.text if len(value) == 0 else [p.text for p in value])
            else:
                row.append(value)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3, help="app and raw runs, alternating")
    args = parser.parse_args()

    print(f"starting the local org with {args.contacts:,} Contacts and the app ...", flush=True)
    with harness.org_and_app(args.contacts) as (org, app):
        browser = harness.connect(app.url)
        session_id, endpoint = harness.password_token(org, app)
        # Warm both paths once (zeep's WSDL, the first query), then measure.
        browser.get(f"{app.url}/query", params={"q": harness.SOQL + " LIMIT 10"})
        harness.raw_export(endpoint, session_id, harness.SOQL + " LIMIT 10")

        # App and raw alternate: a pair ran moments apart, and the median of the pairs' ratios
        # is steadier than one run of each when the machine's speed drifts.
        pairs = []
        for _ in range(args.pairs):
            pairs.append((time_app_export(app, browser, args.contacts),
                          time_raw(endpoint, session_id)))
        zeep_run = time_zeep(endpoint, session_id)

    def rate(run: dict) -> float:
        return run["records"] / run["seconds"]

    app_runs = [app_run for app_run, _raw in pairs]
    for name, run in [*(("app", a) for a in app_runs), *(("raw", r) for _a, r in pairs),
                      ("zeep", zeep_run)]:
        print(f"{name:>5}: {run['records']:>7,} records in {run['seconds']:6.2f} s = "
              f"{rate(run):>8,.0f} records/s")
        if run["records"] != args.contacts:
            print(f"warning: {name} read {run['records']:,} records, not {args.contacts:,}")
    app_raw = statistics.median(rate(a) / rate(r) for a, r in pairs)
    app_zeep = statistics.median(map(rate, app_runs)) / rate(zeep_run)
    # The largest growth and the median first byte of the app's runs.
    growth = max(run["peak_all"] - run["peak_10k"] for run in app_runs) / MB
    first_byte = statistics.median(run["first_byte_s"] for run in app_runs)
    worst = max(app_runs, key=lambda run: run["peak_all"] - run["peak_10k"])
    print(f"app peak RSS: {worst['peak_10k'] / MB:.1f} MB at 10,000 records, "
          f"{worst['peak_all'] / MB:.1f} MB at {worst['records']:,} records (largest growth)")
    print(f"time to first byte: {first_byte:.3f} s (median)")
    print(f"export: app/raw={app_raw:.2f} app/zeep={app_zeep:.1f} rss_growth_mb={growth:.0f} "
          f"first_byte_s={first_byte:.2f}")


if __name__ == "__main__":
    main()
