"""The trace's byte budget (TRACE_BUDGET_KB): a long session of large queries keeps its stored
trace within the budget, measured with Redis's own MEMORY USAGE over the user's keys; the oldest
bodies are shortened first, then the oldest entries dropped, the newest kept whole, and /flow says
what was shortened. Over real HTTP, against the local org, with a real Redis."""
from __future__ import annotations

import os
import secrets

import lxml.html
import pytest
import redis
import requests
from cryptography.fernet import Fernet

from sfconnect.learn.trace import SESSION_KEY
from sfconnect.learn.trace_store import (
    SHORT_BODY,
    CompressedRecords,
    TraceStore,
    budget_note,
)
from sfconnect.settings import ConfigError, load_settings
from sfconnect.store import REDIS_PREFIXES, FileRecords, SealedRecords
from tests.helpers.flow import sign_in
from tests.helpers.org import module_org
from tests.helpers.paths import REPO

org = module_org(2500)
SOQL = "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact LIMIT 2000"
SESSION_PREFIX = "sfconnect:session:"
KB = 1024
SHORTENED_NOTE = "Bodies shortened to their first 2 KB to keep the trace within its budget."


def run_queries(running, http: requests.Session, count: int) -> None:
    """`count` queries of 2,000 records each (a page of one batch), then /flow, which returns
    once every entry is stored."""
    for _ in range(count):
        page = http.get(f"{running.url}/query", params={"q": SOQL, "batch": 2000})
        assert page.status_code == 200 and page.text.count("<tr>") >= 2000
    assert http.get(f"{running.url}/flow").status_code == 200


def user_keys(client: redis.Redis) -> dict[str, list[str]]:
    """Every key of this Redis under the app's prefixes (store.REDIS_PREFIXES and the sessions'),
    by kind: the tests' Redis serves one user, so these are all that user's keys."""
    prefixes = {**REDIS_PREFIXES, "session": SESSION_PREFIX}
    return {kind: [key.decode() for key in client.scan_iter(match=prefix + "*")]
            for kind, prefix in prefixes.items()}


def memory_kb(client: redis.Redis, keys: list[str]) -> float:
    """What Redis says `keys` take (MEMORY USAGE, every element counted), in KB."""
    return sum(client.memory_usage(key, samples=0) or 0 for key in keys) / KB


def flow_entries(page: requests.Response) -> list[dict]:
    """/flow's entries: step, note, and the length of each body shown."""
    doc = lxml.html.fromstring(page.text)
    entries = []
    for item in doc.xpath("//li[contains(@class,'trace-entry')]"):
        heading = item.xpath("./h2[@class='trace-step']")[0].text_content()
        entries.append({
            "seq": int(heading.strip().split(".", 1)[0]),
            "step": heading.split(".", 1)[1].split("→")[0].strip(),
            "note": " ".join(item.xpath("./p[@class='trace-note']//text()")),
            "bodies": [len(body.text_content())
                       for body in item.xpath(".//pre[@class='trace-body']")],
        })
    return entries


def budget_notice(page: requests.Response) -> str:
    found = lxml.html.fromstring(page.text).xpath("//p[@id='trace-budget']")
    return found[0].text_content().strip() if found else ""


def test_a_long_session_keeps_its_redis_trace_within_the_budget(start_app, org, redis_server):
    """50 queries of 2,000 records (4.8 MB of Redis without the budget): the user's keys take at
    most 512 KB, the trace at most its 384 KB (the default), the newest exchanges stay whole, and
    /flow says how many older ones were shortened."""
    running = start_app(org, SESSION_TYPE="redis", REDIS_URL=redis_server.url)
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    run_queries(running, http, 50)

    client = redis.Redis.from_url(redis_server.url)
    keys = user_keys(client)
    sid = http.cookies.get("sfconnect_session")
    assert keys["session"] == [SESSION_PREFIX + sid]
    session = running.app.session_interface.serializer.decode(client.get(SESSION_PREFIX + sid))
    trace_id = session[SESSION_KEY]
    assert keys["traces"] == [REDIS_PREFIXES["traces"] + trace_id]
    assert keys["tokens"] == [REDIS_PREFIXES["tokens"] + session["sf"]["token_record"]]
    index = running.app.extensions["sfconnect.trace"].store.read(trace_id).document
    # Every entry record is one the trace names: dropped and cut entries were deleted.
    assert sorted(keys["trace-entries"]) == sorted(REDIS_PREFIXES["trace-entries"] + entry_id
                                                   for entry_id in index["ids"])

    # The user's keys, and whatever else this Redis holds (the token records' shared expiry
    # index, with one member: this user's): all of it counts.
    total_kb = memory_kb(client, [key.decode() for key in client.scan_iter()])
    trace_kb = memory_kb(client, keys["traces"] + keys["trace-entries"])
    assert total_kb <= 512, (total_kb, trace_kb)
    assert trace_kb <= 384, trace_kb
    # Token records and sessions stay as small as they were.
    assert memory_kb(client, keys["tokens"]) < 2 and memory_kb(client, keys["session"]) < 4

    page = http.get(f"{running.url}/flow")
    entries = flow_entries(page)
    soap = [entry for entry in entries if entry["step"] == "SOAP request"]
    assert len(soap) == 50
    shortened = [entry for entry in soap if SHORTENED_NOTE in entry["note"]]
    assert 5 <= len(shortened) < 45, len(shortened)
    # Oldest first: every shortened exchange is older than every whole one, and it shows 2 KB.
    assert soap[:len(shortened)] == shortened
    assert all(max(entry["bodies"]) <= SHORT_BODY for entry in shortened)
    assert all(max(entry["bodies"]) > 60_000 for entry in soap[len(shortened):])
    assert budget_notice(page) == (
        f"To keep this trace within its 384 KB budget, the bodies of {len(shortened)} older "
        "exchanges were shortened to 2 KB.")
    # Nothing was dropped: the sign-in is still there, numbered from 1.
    assert entries[0]["seq"] == 1 and entries[0]["step"] == "authorization request"
    assert http.get(f"{running.url}/flow.har").status_code == 200


def test_a_tight_budget_on_file_store_shortens_then_drops_the_oldest(start_app, org, tmp_path):
    """With SESSION_TYPE=filesystem and a 64 KB budget, 30 large queries: the trace's files stay
    within 64 KB, the oldest entries are dropped, the older ones kept are shortened, the newest
    is whole, and /flow says both."""
    running = start_app(org, TRACE_BUDGET_KB="64", SESSION_FILE_DIR=str(tmp_path / "store"))
    http = requests.Session()
    assert sign_in(http, running.url).response.url == running.url + "/"
    run_queries(running, http, 30)

    stored = [path for kind in ("traces", "trace-entries")
              for path in (tmp_path / "store" / kind).glob("*.json")]
    assert sum(os.path.getsize(path) for path in stored) <= 64 * KB
    page = http.get(f"{running.url}/flow")
    entries = flow_entries(page)
    seqs = [entry["seq"] for entry in entries]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the newest, without a gap
    dropped = seqs[0] - 1
    assert dropped > 0
    shortened = [entry for entry in entries if SHORTENED_NOTE in entry["note"]]
    assert shortened and entries[:len(shortened)] == shortened  # the oldest kept ones
    assert max(entries[-1]["bodies"]) > 60_000  # the newest query's reply, whole
    assert budget_notice(page) == (
        f"To keep this trace within its 64 KB budget, the bodies of {len(shortened)} older "
        f"exchanges were shortened to 2 KB and {dropped} dropped.")
    assert "older entries were dropped" not in page.text  # the 100-entry limit cut nothing


def test_the_store_shortens_oldest_first_then_drops_and_reads_older_records(tmp_path):
    """TraceStore on files, step by step: bodies that do not compress (so sizes are known), a
    budget of about four whole entries. Entries stored before the budget (uncompressed, an index
    without sizes) are measured and shortened like the others."""
    key = Fernet.generate_key()
    index = SealedRecords(FileRecords(tmp_path / "traces", 3600), key)
    plain = SealedRecords(FileRecords(tmp_path / "trace-entries", 3600), key)
    trace_id = "t" * 43

    def entry(number: int) -> dict:
        return {"step": f"SOAP request {number}", "started": 0.0, "started_iso": "",
                "request_body": "<q/>", "response_body": os.urandom(6000).hex(), "note": ""}

    # A trace stored before the budget: entries uncompressed, an index of ids only.
    old_ids = [secrets.token_urlsafe(32) for _ in range(2)]
    for number, entry_id in enumerate(old_ids):
        plain.create(entry_id, {**entry(number), "seq": number + 1})
    index.create(trace_id, {"ids": old_ids, "dropped": 0, "next": 3})
    store = TraceStore(index, CompressedRecords(plain.records, key), budget=64 * KB)
    assert [e["step"] for e in store.load(trace_id)["entries"]] == ["SOAP request 0",
                                                                   "SOAP request 1"]
    for number in range(2, 6):
        store.append(trace_id, [entry(number)])
    document = store.load(trace_id)
    assert [e["seq"] for e in document["entries"]] == [1, 2, 3, 4, 5, 6]  # none dropped yet
    shortened = [bool(e.get("shortened_to")) for e in document["entries"]]
    # 12,000 hex digits per entry (8 KB once compressed and encrypted; 16 KB uncompressed): the
    # oldest shortened first, the newest whole.
    assert shortened[0] and not shortened[-1] and shortened == sorted(shortened, reverse=True)
    assert document["budget_note"] == (
        f"To keep this trace within its 64 KB budget, the bodies of {sum(shortened)} older "
        f"exchange{'s' if sum(shortened) > 1 else ''} were shortened to 2 KB.")

    # An entry that another request dropped meanwhile (its record deleted, this index not yet
    # told) is not written back by the shortening that reaches it.
    whole_ids = [entry_id for entry_id, entry in zip(
        index.read(trace_id).document["ids"], document["entries"], strict=True)
        if not entry.get("shortened_to")]
    gone = whole_ids[0]
    plain.delete(gone)
    store.append(trace_id, [entry(6)])
    assert plain.records.read(gone) is None
    for number in range(7, 60):
        store.append(trace_id, [entry(number)])
    document = store.load(trace_id)
    seqs = [e["seq"] for e in document["entries"]]
    assert seqs[-1] == 60 and seqs == list(range(seqs[0], 61)) and seqs[0] > 1
    assert not document["entries"][-1].get("shortened_to")
    shortened = sum(1 for e in document["entries"] if e.get("shortened_to"))
    assert document["budget_note"] == (
        f"To keep this trace within its 64 KB budget, the bodies of {shortened} older exchanges "
        f"were shortened to 2 KB and {seqs[0] - 1} dropped.")
    files = list((tmp_path / "trace-entries").glob("*.json"))
    assert len(files) == len(seqs)  # dropped entries are deleted
    assert sum(os.path.getsize(path) for path in files) <= 64 * KB
    # One entry alone over the budget: it is shortened, never dropped.
    store.budget = 4 * KB
    store.append(trace_id, [entry(99)])
    (last,) = store.load(trace_id)["entries"]
    assert last["step"] == "SOAP request 99" and len(last["response_body"]) == SHORT_BODY
    store.delete(trace_id)
    assert not list((tmp_path / "trace-entries").glob("*.json"))


def test_the_budget_note_in_words():
    assert budget_note(384 * KB, 0, 0) is None
    assert budget_note(None, 3, 3) is None
    assert budget_note(384 * KB, 1, 0) == ("To keep this trace within its 384 KB budget, the "
                                           "bodies of 1 older exchange were shortened to 2 KB.")
    assert budget_note(384 * KB, 31, 12) == (
        "To keep this trace within its 384 KB budget, the bodies of 31 older exchanges were "
        "shortened to 2 KB and 12 dropped.")
    assert budget_note(64 * KB, 0, 2) == ("To keep this trace within its 64 KB budget, 2 older "
                                          "exchanges were dropped.")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "2000000", "²"])
def test_trace_budget_kb_is_checked(value):
    with pytest.raises(ConfigError) as refused:
        load_settings({"ENV": "testing", "SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s",
                       "TRACE_BUDGET_KB": value}, environ={}, dotenv_path="/nonexistent/.env")
    assert refused.value.variable == "TRACE_BUDGET_KB"


def test_trace_budget_kb_default_and_off():
    base = {"ENV": "testing", "SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s"}
    assert load_settings(base, environ={}, dotenv_path="/nonexistent/.env").trace_budget_kb == 384
    off = load_settings({**base, "TRACE_BUDGET_KB": "0"}, environ={},
                        dotenv_path="/nonexistent/.env")
    assert off.trace_budget_kb == 0
    assert (REPO / ".env.example").read_text().count("TRACE_BUDGET_KB=384") == 1
