"""PartnerClient against the local org over real HTTP, with our WSDL and Salesforce's v66.0 WSDL."""
from __future__ import annotations

import logging
import socket
import threading

import pytest

from sfconnect.errors import InvalidSession, SalesforceFault, UpstreamError
from sfconnect.salesforce.partner import PartnerClient
from tests.helpers.app import gate_for
from tests.helpers.org import mint_token, partner_url_template
from tests.helpers.paths import FIXTURES, REPO, RESPONSES

OWN_WSDL = str(REPO / "sfconnect" / "salesforce" / "wsdl" / "partner.wsdl")
REAL_WSDL = str(FIXTURES / "partner-v66.0.wsdl")


@pytest.fixture(scope="module", params=[OWN_WSDL, REAL_WSDL], ids=["own-wsdl", "v66-wsdl"])
def client(request, local_org) -> PartnerClient:
    return PartnerClient(request.param, gate_for(local_org.url), timeout=30)


def endpoint_of(org, client: PartnerClient) -> str:
    return client.endpoint(partner_url_template(org))


def test_version_comes_from_the_wsdl(client):
    assert client.api_version == "66.0"
    assert client.endpoint("https://x/services/Soap/u/{version}/00D").endswith("/u/66.0/00D")


def test_query_and_query_more_read_every_record(local_org, client):
    session_id, endpoint = mint_token(local_org), endpoint_of(local_org, client)
    total = client.query(endpoint, session_id, "SELECT COUNT() FROM Contact").size
    batch = client.query(endpoint, session_id, "SELECT Id, LastName FROM Contact", batch_size=200)
    seen = list(batch.records)
    assert len(seen) == 200 and not batch.done and batch.query_locator
    while not batch.done:
        batch = client.query_more(endpoint, session_id, batch.query_locator, batch_size=200)
        seen.extend(batch.records)
    assert len(seen) == total
    assert batch.query_locator is None
    assert len({r[1].text for r in seen}) == total  # every record once


def test_size_is_the_query_total_not_the_batch(local_org, client):
    # Salesforce's QueryResult.size is the number of rows of the whole query (progress bars use it).
    session_id, endpoint = mint_token(local_org), endpoint_of(local_org, client)
    total = client.query(endpoint, session_id, "SELECT COUNT() FROM Contact").size
    batch = client.query(endpoint, session_id, "SELECT Id FROM Contact", batch_size=200)
    assert batch.size == total > 200


def test_query_all_sees_deleted_records(local_org, client):
    session_id, endpoint = mint_token(local_org), endpoint_of(local_org, client)
    live = client.query(endpoint, session_id, "SELECT COUNT() FROM Contact").size
    every = client.query(endpoint, session_id, "SELECT COUNT() FROM Contact",
                         include_deleted=True).size
    assert every > live


def test_faults_carry_code_message_row_and_column(local_org, client):
    session_id, endpoint = mint_token(local_org), endpoint_of(local_org, client)
    with pytest.raises(SalesforceFault) as caught:
        client.query(endpoint, session_id, "SELECT Asdf FROM Contact")
    assert caught.value.code == "INVALID_FIELD"
    assert (caught.value.row, caught.value.column) == (1, 8)
    assert "No such column 'Asdf'" in caught.value.message
    with pytest.raises(SalesforceFault) as caught:
        client.query(endpoint, session_id, "SELECT FROM Contact")
    assert caught.value.code == "MALFORMED_QUERY"
    with pytest.raises(SalesforceFault) as caught:
        client.query_more(endpoint, session_id, "01gD0000000XXXXIAW-500")
    assert caught.value.code == "INVALID_QUERY_LOCATOR"


def test_invalid_session_id_is_invalid_session(local_org, client):
    with pytest.raises(InvalidSession) as caught:
        client.query(endpoint_of(local_org, client), "00Dbogus!nope", "SELECT Id FROM Contact")
    assert caught.value.code == "INVALID_SESSION_ID"


@pytest.mark.parametrize("fault", ["502", "empty"])
def test_unreadable_replies_are_upstream_errors(fresh_org, fault):
    client = PartnerClient(OWN_WSDL, gate_for(fresh_org.url), timeout=10)
    fresh_org.state.faults.soap_endpoint = fault
    with pytest.raises(UpstreamError):
        client.query(endpoint_of(fresh_org, client), mint_token(fresh_org), "SELECT Id FROM User")


def test_silent_server_times_out_as_upstream_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection in the backlog, never answers
    try:
        silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = PartnerClient(OWN_WSDL, gate_for(silent, timeout=0.5), timeout=0.5)
        url = f"{silent}/services/Soap/u/66.0/00D"
        with pytest.raises(UpstreamError) as caught:
            client.query(url, "00Dx!y", "SELECT Id FROM User")
        assert "timeout" in caught.value.detail
    finally:
        listener.close()


def test_threads_never_share_a_session(local_org):
    """8 threads, half with live sessions and half with revoked ones, on one client at once.

    A header leaking between threads would give a live thread INVALID_SESSION_ID or a revoked
    thread records: the org's own session check is the witness.
    """
    client = PartnerClient(OWN_WSDL, gate_for(local_org.url), timeout=30)
    endpoint = endpoint_of(local_org, client)
    sessions = [mint_token(local_org, u) for u in ("admin@devorg.local",
                                                    "zoë.müller@devorg.local") * 4]
    for revoked in sessions[4:]:
        local_org.state.tokens.revoke(revoked)
    outcomes: dict[int, list[str]] = {i: [] for i in range(8)}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(15):
            try:
                client.query(endpoint, sessions[i], "SELECT Id FROM User LIMIT 1")
                outcomes[i].append("ok")
            except InvalidSession:
                outcomes[i].append("invalid")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i in range(8):
        assert outcomes[i] == (["ok"] if i < 4 else ["invalid"]) * 15, i


def test_session_id_never_reaches_the_debug_log(local_org, client, caplog):
    session_id = mint_token(local_org)
    with caplog.at_level(logging.DEBUG):
        client.query(endpoint_of(local_org, client), session_id, "SELECT Id FROM User")
        with pytest.raises(InvalidSession):
            client.query(endpoint_of(local_org, client), session_id + "x", "SELECT Id FROM User")
    assert "HTTP Post to" in caplog.text  # zeep did log the envelope...
    assert "sessionId>***<" in caplog.text
    assert session_id not in caplog.text  # ...without the session id
    assert session_id[16:40] not in caplog.text




def test_the_head_of_a_query_reply_names_the_next_locator_as_the_whole_reply_does(local_org,
                                                                                    client):
    """An export asks for the next batch from the reply's head; what the head says must be what
    the whole reply says, live and on Salesforce's recorded replies."""
    session_id, endpoint = mint_token(local_org), endpoint_of(local_org, client)
    batch = client.query(endpoint, session_id, "SELECT Id, Name FROM Contact", batch_size=200)
    locator, heads = batch.query_locator, 0
    while locator:
        content = client.query_more_unread(endpoint, session_id, locator, batch_size=200)
        read = client.read_batch(content)
        assert client.next_of(content) == (read.done, read.query_locator)
        locator, heads = read.query_locator, heads + 1
    assert heads >= 1
    recorded = [p for p in RESPONSES.rglob("*.xml") if b"queryLocator" in p.read_bytes()]
    assert recorded
    told = 0
    for path in recorded:
        content = path.read_bytes()
        said = client.next_of(content)
        if said is not None:  # a fragment or a fault does not tell
            read = client.read_batch(content, "query")
            assert said == (read.done, read.query_locator), path.name
            told += 1
    assert told >= 5  # Salesforce's own replies write done and queryLocator first


def test_a_head_that_does_not_tell_gives_none(client):
    records_first = (
        b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        b'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        b'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><queryMoreResponse><result>'
        b'<records/><done>false</done><queryLocator>01gX-400</queryLocator><size>9</size>'
        b'</result></queryMoreResponse></soapenv:Body></soapenv:Envelope>')
    assert client.next_of(records_first) is None
    assert client.read_batch(records_first).query_locator == "01gX-400"  # read whole instead
    assert client.next_of(b"<not xml") is None
    fault = next(RESPONSES.glob("*fault_INVALID_FIELD*.xml")).read_bytes()
    assert client.next_of(fault) is None


def test_an_export_reads_replies_whose_head_does_not_tell(start_app, local_org, monkeypatch):
    """The worker then reads the whole reply before asking for the next: same CSV."""
    import requests

    from tests.helpers.flow import sign_in

    running = start_app(local_org)
    http = requests.Session()
    sign_in(http, running.url)
    soql = "SELECT Id, LastName FROM Contact ORDER BY Id LIMIT 700"
    told = http.get(f"{running.url}/export.csv", params={"q": soql, "batch": 200}).text
    monkeypatch.setattr(PartnerClient, "next_of", staticmethod(lambda content: None))
    untold = http.get(f"{running.url}/export.csv", params={"q": soql, "batch": 200}).text
    assert told == untold and told.count("\r\n") > 201  # more than one batch of 200
