"""The one gate every token-bearing request passes (sfconnect.http.TokenGate), over real HTTP.

A listener of the test stands where a token must never arrive: a raw TCP socket that counts every
connection made to it, so "nothing was sent" means not even a TLS handshake reached it.
"""
from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import example, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter

from sfconnect.auth.trust import SALESFORCE_DOMAINS, TrustPolicy
from sfconnect.errors import RedirectRefused, UntrustedHost
from sfconnect.http import token_gate
from tests.helpers.app import gate_for
from tests.helpers.flow import sign_in
from tests.helpers.org import counters, mint_token

SOQL = "SELECT Id, Name FROM Account LIMIT 5"


class Listener:
    """A TCP listener on loopback that records every connection and answers an empty 200."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    running = Listener()
    yield running
    running.close()


@pytest.fixture
def https_port_listener():
    """The listener on port 443, where an https URL without a port connects (the tests run as
    root in CI; scripts/test.sh says so)."""
    try:
        running = Listener(443)
    except PermissionError:
        pytest.fail("binding 127.0.0.1:443 needs root (or CAP_NET_BIND_SERVICE)")
    yield running
    running.close()


def _set_faults(org, **switches) -> None:
    requests.post(f"{org.url}/__admin/faults", json=switches).raise_for_status()


def test_partner_endpoint_answering_307_gets_nothing_sent_on(connect_to, fresh_org, listener):
    """RFC 9700 §4.12: a trusted partner endpoint answers 307 to a host of the test's; zeep's own
    transport would re-POST the envelope, sessionId included. The gate follows nothing."""
    running, http = connect_to(fresh_org)
    _set_faults(fresh_org, soap_redirect_to=f"http://localhost:{listener.port}")
    before = counters(fresh_org)

    page = http.get(f"{running.url}/query", params={"q": SOQL})
    assert page.status_code == 502
    assert "REDIRECT_REFUSED" in page.text and "Redirect refused" in page.text
    assert "localhost" in page.text and "307" in page.text  # the Location host is named

    export = http.get(f"{running.url}/export.csv", params={"q": SOQL})
    assert export.status_code == 502 and export.json()["error"] == "REDIRECT_REFUSED"
    described = http.get(f"{running.url}/describe")
    assert described.status_code == 502 and described.json()["error"] == "REDIRECT_REFUSED"

    assert listener.received == []
    after = counters(fresh_org)
    # The org saw the calls (and answered 307); nothing refreshed or retried them elsewhere.
    assert after.get("token.refresh_token", 0) == before.get("token.refresh_token", 0)
    _set_faults(fresh_org, soap_redirect_to=None)
    assert http.get(f"{running.url}/query", params={"q": SOQL}).status_code == 200


def test_identity_naming_a_partner_url_that_parses_two_ways_is_refused(start_app, fresh_org,
                                                                        https_port_listener):
    """`https://localhost\\.my.salesforce.com/...` is a Salesforce host to urllib.parse and
    localhost:443 to urllib3 (where the test listens): the sign-in is refused before any request
    goes there, and the tokens just issued are revoked."""
    listener = https_port_listener
    two_ways = (f"https://localhost\\.my.salesforce.com"
                f"/services/Soap/u/{{version}}/{fresh_org.state.org_id[:15]}")
    assert urlsplit(two_ways).hostname.endswith(".my.salesforce.com")  # the old reading
    _set_faults(fresh_org, identity_partner_url=two_ways)
    running = start_app(fresh_org)
    http = requests.Session()
    before = counters(fresh_org)

    signed = sign_in(http, running.url)
    assert signed.response.status_code == 502
    assert "UNTRUSTED_HOST" in signed.response.text
    assert "Not connected" in signed.response.text
    assert counters(fresh_org)["revoke"] > before.get("revoke", 0)  # the new tokens died
    assert listener.received == []


def test_the_gate_checks_the_url_as_sent_whatever_the_caller_checked(local_org, listener):
    """The gate reads the prepared request's URL, the one the adapter connects to: a call site
    that skipped its own check cannot get a two-way URL past it."""
    gate = gate_for(local_org.url, "https://login.salesforce.com")
    token = mint_token(local_org)
    for url in (f"https://localhost:{listener.port}\\.my.salesforce.com/services/data",
                f"http://localhost:{listener.port}/services/data",
                f"https://login.salesforce.com@localhost:{listener.port}/x"):
        with pytest.raises(UntrustedHost):
            gate.get(url, headers={"Authorization": f"Bearer {token}"})
    assert listener.received == []
    # The login host itself goes through.
    assert gate.get(f"{local_org.url}/services/data").status_code == 200


def test_a_redirect_from_a_trusted_host_is_never_followed(local_org, listener):
    """Any 3xx to any request of the gate: RedirectRefused, naming the host it pointed at."""
    from werkzeug.wrappers import Response

    from devorg import serve_in_thread

    redirector = serve_in_thread(Response("", 308, {
        "Location": f"http://localhost:{listener.port}/steal"}))
    try:
        gate = gate_for(redirector.url)
        with pytest.raises(RedirectRefused) as caught:
            gate.post(f"{redirector.url}/services/oauth2/revoke", data={"token": "t"})
        assert caught.value.status == 308 and caught.value.location_host == "localhost"
    finally:
        redirector.shutdown()
    assert listener.received == []


# -- the property: whatever passes the gate connects to a trusted host and port -------------

LOGIN_HOSTS = ("https://login.salesforce.com", "http://127.0.0.1:5001", "http://[::1]:5002")
LISTED = ("api.partner.example", ".corp.example", "gw.partner.example:8443")


def trusted(scheme: str, host: str, port: int) -> bool:
    """The oracle, written apart from sfconnect.auth.trust: where the token may go."""
    host = host.lower().strip("[]")
    if (scheme, host, port) in {("https", "login.salesforce.com", 443),
                                ("http", "127.0.0.1", 5001), ("http", "::1", 5002)}:
        return True
    if scheme != "https":
        return False
    if port == 443 and any(host == d or host.endswith("." + d) for d in SALESFORCE_DOMAINS):
        return True
    return (port == 443 and (host == "api.partner.example" or host.endswith(".corp.example"))
            or (port == 8443 and host == "gw.partner.example"))


class _Recorder(HTTPAdapter):
    """Records where urllib3 would connect (requests' own pool key), and connects nowhere."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[tuple[str, str, int]] = []

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN201
        host_params, _ = self.build_connection_pool_key_attributes(request, True)
        port = host_params["port"] or {"https": 443, "http": 80}[host_params["scheme"]]
        self.targets.append((host_params["scheme"], host_params["host"], port))
        response = requests.Response()
        response.status_code, response._content, response.url = 200, b"", request.url
        return response


_PIECES = st.sampled_from([
    "login.salesforce.com", "acme.my.salesforce.com", "127.0.0.1", "localhost", "[::1]",
    "api.partner.example", "x.corp.example", "gw.partner.example", "attacker.example",
    "127.0.0.2", "[::2]", "evilsalesforce.com", "salesforce.com.attacker.example",
    "\\", "%2F", "%5C", "%40", "%2e", "@", "#", "?", "/", ";", ",", ":", ".", "..", "\t", " ",
    "\n", "\x00", "%00", "\u3002", "\uff0e", "\u0131", "xn--bcher-kva", "b\u00fccher", "[",
    "]", ":443", ":80", ":5001", ":5002", ":8443", ":0", ":99999", ":+443", "user:pw@",
])
_URLS = st.builds(
    lambda scheme, head, tail, path: f"{scheme}//{head}{tail}{path}",
    st.sampled_from(["https:", "http:", "HTTPS:", "ftp:", "https:/", ""]),
    st.lists(_PIECES, min_size=1, max_size=5).map("".join),
    st.one_of(st.just(""), st.text(max_size=6)),
    st.sampled_from(["", "/", "/services/Soap/u/66.0/00D", "\\x", "/@evil.example",
                     "?a=@b", "#@c"]),
)


@settings(max_examples=1500, deadline=None)
@given(_URLS)
@example("https://attacker.example\\.salesforce.com/services/Soap/u/66.0/00D")
@example("https://login.salesforce.com@attacker.example/x")
@example("https://attacker.example%2F.salesforce.com/x")
@example("https://acme.my.salesforce.com:8443/x")
@example("https://login.salesforce.com./x")
@example("https://b\u00fccher.my.salesforce.com/x")
@example("http://[::1]:5002/x")
@example("https://acme.my.salesforce.com/x")
def test_whatever_the_gate_lets_through_connects_to_a_trusted_host(url):
    policy = TrustPolicy(LOGIN_HOSTS, LISTED)
    gate = token_gate("partner", policy)
    recorder = _Recorder()
    gate.mount("http://", recorder)
    gate.mount("https://", recorder)
    try:
        gate.post(url, data=b"<sessionId>secret</sessionId>")
    except (UntrustedHost, requests.RequestException, ValueError, UnicodeError):
        pass  # refused by the gate, or unsendable by requests: nothing left
    for scheme, host, port in recorder.targets:
        assert trusted(scheme, host, port), (url, scheme, host, port)
    # The early checks at call sites read the raw URL the same way: what they pass is sendable
    # only to a trusted host too.
    try:
        policy.check(url)
    except UntrustedHost:
        return
    prepared = requests.Request("POST", url).prepare()
    host_params, _ = HTTPAdapter().build_connection_pool_key_attributes(prepared, True)
    port = host_params["port"] or {"https": 443, "http": 80}[host_params["scheme"]]
    assert trusted(host_params["scheme"], host_params["host"], port), url


def test_the_property_is_not_vacuous():
    """Trusted URLs of every kind do pass the gate (so the property above is not met by refusing
    everything)."""
    policy = TrustPolicy(LOGIN_HOSTS, LISTED)
    gate = token_gate("partner", policy)
    recorder = _Recorder()
    gate.mount("http://", recorder)
    gate.mount("https://", recorder)
    for url in ("https://login.salesforce.com/services/oauth2/token",
                "https://acme.my.salesforce.com:443/services/Soap/u/66.0/00D",
                "http://127.0.0.1:5001/id/00D/005", "http://[::1]:5002/x",
                "https://a.b.corp.example/x", "https://gw.partner.example:8443/x",
                "https://xn--bcher-kva.my.salesforce.com/x"):
        gate.post(url, data=b"")
    assert len(recorder.targets) == 7
