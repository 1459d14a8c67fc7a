"""Benchmark the flow trace's byte budget: Redis memory per user after 50 queries of 2,000
records, with the budget (TRACE_BUDGET_KB, 384 by default), without one (0), and as the trace was
stored before the budget (no budget, entries not compressed).

    .venv/bin/python bench/trace_budget.py [--queries 50] [--budget-kb 384] [--contacts 2500]

Starts the local org in a subprocess (bench/harness.py) and one redis-server. For each of the
three, an app of its own (in this process, SESSION_TYPE=redis, a Redis database of its own) and
one user who signs in through the org's login and consent pages like a browser, runs --queries
queries of one 2,000-record batch each, then opens /flow (which returns once every trace entry
is stored). The figure is Redis's own MEMORY USAGE summed over every key of that database: the
user's session, token record, trace index and entries, and the token records' expiry index. The
page time as the client saw it is printed too (the trace is written after each page has been
sent). Target: at most 512 KB per user. "Before" sets trace_store.COMPRESSION_LEVEL to 0 (zlib's
stored blocks: the size of the JSON), which is why the apps run in this process. The last line
is machine-readable, its ratios against the unlimited budget and against the trace as before:

    trace_budget: redis_kb_per_user=382 (unlimited=430, ratio=0.89; uncompressed=4835, ratio=0.08)
"""
from __future__ import annotations

import argparse
import logging
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402  (bench/ must be on sys.path first)

SOQL = harness.SOQL + " LIMIT 2000"
KB = 1024


def start_redis(workdir: str) -> tuple[subprocess.Popen, int]:
    """redis-server on a free loopback port, no persistence; returns once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing (apt-get install redis-server)")
    port = harness.free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)


class _LateApp:
    """A WSGI app whose target is set once the server knows its port (the redirect URI)."""

    target = None

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204 - WSGI
        return self.target(environ, start_response)


def one_user(org: harness.Running, redis_url: str, budget_kb: int, queries: int,
             compress: bool = True) -> dict:
    """An app with TRACE_BUDGET_KB=`budget_kb` on its own Redis database, and one user's session
    of `queries` queries; what that database holds afterwards."""
    sys.path.insert(0, str(harness.REPO))
    import sfconnect
    from sfconnect.learn import trace_store

    level = trace_store.COMPRESSION_LEVEL
    trace_store.COMPRESSION_LEVEL = level if compress else 0

    holder = _LateApp()
    server = make_server("127.0.0.1", 0, holder, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    client = requests.post(f"{org.url}/__admin/clients", json={
        "name": "sfconnect (bench)", "redirect_uris": [f"{url}/oauth/callback"]}, timeout=10)
    client.raise_for_status()
    fields = client.json()
    holder.target = sfconnect.create_app({
        "ENV": "testing", "SECRET_KEY": secrets.token_hex(32), "SF_LOGIN_URL": org.url,
        "SF_CLIENT_ID": fields["client_id"], "SF_CLIENT_SECRET": fields["client_secret"],
        "SF_REDIRECT_URI": f"{url}/oauth/callback", "SESSION_TYPE": "redis",
        "REDIS_URL": redis_url, "TRACE_BUDGET_KB": str(budget_kb)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        browser = harness.connect(url)
        page_times = []
        for _ in range(queries):
            began = time.perf_counter()
            page = browser.get(f"{url}/query", params={"q": SOQL, "batch": 2000})
            page_times.append(time.perf_counter() - began)
            page.raise_for_status()
        began = time.perf_counter()
        flow = browser.get(f"{url}/flow")
        flow_s = time.perf_counter() - began
        flow.raise_for_status()
    finally:
        server.shutdown()
        trace_store.COMPRESSION_LEVEL = level
    store = redis.Redis.from_url(redis_url)
    keys = list(store.scan_iter())
    usage = {key: store.memory_usage(key, samples=0) or 0 for key in keys}
    trace = [key for key in keys if key.startswith(b"sfconnect:trace")]
    return {"kb": sum(usage.values()) / KB, "keys": len(keys),
            "trace_kb": sum(usage[key] for key in trace) / KB, "trace_keys": len(trace),
            "page_ms": statistics.median(page_times) * 1000, "flow_ms": flow_s * 1000,
            "flow_bytes": len(flow.content),
            "shortened": flow.text.count("Bodies shortened to their first"),
            "note": "trace-budget" in flow.text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--budget-kb", type=int, default=384)
    parser.add_argument("--contacts", type=int, default=2500)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    org = harness.start_org(args.contacts)
    try:
        with tempfile.TemporaryDirectory(prefix="sfconnect-bench-") as workdir:
            process, port = start_redis(workdir)
            try:
                runs = (("budget", args.budget_kb, True), ("unlimited", 0, True),
                        ("uncompressed", 0, False))
                results = {label: one_user(org, f"redis://127.0.0.1:{port}/{db}", budget,
                                           args.queries, compress)
                           for db, (label, budget, compress) in enumerate(runs)}
            finally:
                process.terminate()
                process.wait(timeout=10)
    finally:
        org.stop()
    settings = {"budget": f"TRACE_BUDGET_KB={args.budget_kb}", "unlimited": "TRACE_BUDGET_KB=0",
                "uncompressed": "0, no zlib (before)"}
    for label, found in results.items():
        print(f"{settings[label]:>19}: {found['kb']:.0f} KB of Redis for one user after "
              f"{args.queries} queries of 2,000 records ({found['keys']} keys; the trace "
              f"{found['trace_kb']:.0f} KB in {found['trace_keys']} keys, {found['shortened']} "
              f"exchanges shortened); "
              f"page {found['page_ms']:.0f} ms, /flow {found['flow_ms']:.0f} ms "
              f"({found['flow_bytes']:,} bytes)")
    budget, unlimited = results["budget"]["kb"], results["unlimited"]["kb"]
    uncompressed = results["uncompressed"]["kb"]
    print(f"trace_budget: redis_kb_per_user={budget:.0f} (unlimited={unlimited:.0f}, "
          f"ratio={budget / unlimited:.2f}; uncompressed={uncompressed:.0f}, "
          f"ratio={budget / uncompressed:.2f})")


if __name__ == "__main__":
    main()
