"""What the workbench benchmarks share: the local org and the app, each in a subprocess of its own,
a browser-like connection to the app, a token for the raw clients, and the raw partner client.

    org = start_org(contacts=100_000)          # python -m devorg --admin, on a free port
    app = start_app(org)                       # registers a client app via POST /__admin/clients
    browser = connect(app.url)                 # the org's login and consent pages, with requests
    token, endpoint = password_token(org, app) # for the raw requests+lxml and zeep loops
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import requests
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
USER = ("admin@devorg.local", "Welcome1!")
API_VERSION = "66.0"
SOQL = "SELECT Id, FirstName, LastName, Email, Phone, Account.Name FROM Contact"
P = "urn:partner.soap.sforce.com"
S = "urn:sobject.partner.soap.sforce.com"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with contextlib.suppress(requests.ConnectionError):
            requests.get(url, timeout=5)
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s")


@dataclass
class Running:
    url: str
    process: subprocess.Popen
    client_id: str = ""
    client_secret: str = ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_org(contacts: int) -> Running:
    """`python -m devorg --port P --contacts N --admin` in a subprocess."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "devorg", "--port", str(port), "--contacts", str(contacts), "--admin"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(url + "/__admin/counters", process, "the local org")
    return Running(url, process)


def start_app(org: Running, workdir: str) -> Running:
    """sfconnect in a subprocess (gunicorn, see serve_app), registered with the org."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = requests.post(f"{org.url}/__admin/clients", json={
        "name": "sfconnect (bench)", "redirect_uris": [f"{url}/oauth/callback"]}, timeout=10)
    client.raise_for_status()
    fields = client.json()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [PYTHON, str(Path(__file__).resolve()), "--serve-app", "--port", str(port),
         "--login-url", org.url, "--client-id", fields["client_id"],
         "--client-secret", fields["client_secret"], "--workdir", workdir],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_until_up(url + "/healthz", process, "the app")
    return Running(url, process, fields["client_id"], fields["client_secret"])


@contextlib.contextmanager
def org_and_app(contacts: int) -> Iterator[tuple[Running, Running]]:
    """Both subprocesses, stopped on the way out."""
    org = start_org(contacts)
    try:
        with tempfile.TemporaryDirectory(prefix="sfconnect-bench-") as workdir:
            app = start_app(org, workdir)
            try:
                yield org, app
            finally:
                app.stop()
    finally:
        org.stop()


def connect(app_url: str) -> requests.Session:
    """Sign in through the app like a browser: /login, the org's login page, Allow."""
    browser = requests.Session()
    browser.trust_env = False
    page = browser.get(f"{app_url}/login")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
    page = browser.post(page.url, data={"_csrf": csrf, "action": "login",
                                        "username": USER[0], "password": USER[1]})
    if 'value="allow"' in page.text:
        csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)
        page = browser.post(page.url, data={"_csrf": csrf, "action": "allow"})
    if page.url.rstrip("/") != app_url:
        raise SystemExit(f"could not connect the app: ended at {page.url}")
    return browser


def password_token(org: Running, app: Running) -> tuple[str, str]:
    """An access token (password grant of the bench's client app) and the partner endpoint."""
    reply = requests.post(f"{org.url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": app.client_id,
        "client_secret": app.client_secret, "username": USER[0], "password": USER[1]},
        timeout=10)
    reply.raise_for_status()
    token = reply.json()
    org_id = token["id"].rstrip("/").split("/")[-2]
    return token["access_token"], f"{org.url}/services/Soap/u/{API_VERSION}/{org_id[:15]}"


# -- the raw client: requests + lxml, no SOAP library ------------------------------------------

def envelope(session_id: str, batch_size: int, operation: str, argument: str, value: str) -> bytes:
    """A partner API request as any SOAP client would send it."""
    return ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:p="{P}"><soapenv:Header><p:SessionHeader>'
            f"<p:sessionId>{escape(session_id)}</p:sessionId></p:SessionHeader><p:QueryOptions>"
            f"<p:batchSize>{batch_size}</p:batchSize></p:QueryOptions></soapenv:Header>"
            f"<soapenv:Body><p:{operation}><p:{argument}>{escape(value)}</p:{argument}>"
            f"</p:{operation}></soapenv:Body></soapenv:Envelope>").encode()


_RESULT = f".//{{{P}}}result"
_RECORDS = f"{{{P}}}records"
_DONE = f"{{{P}}}done"
_LOCATOR = f"{{{P}}}queryLocator"


def raw_rows(record: etree._Element) -> list:
    """One record's values in document order, a parent's fields inline (nil is None)."""
    row: list = []
    for element in record[2:]:  # after sf:type and the sObject's own Id
        if len(element):
            row.extend(None if part.get(XSI_NIL) else part.text for part in element[2:])
        else:
            row.append(None if element.get(XSI_NIL) else element.text)
    return row


def raw_batch(http: requests.Session, endpoint: str, session_id: str, operation: str,
              argument: str, value: str, batch_size: int) -> tuple[list, str | None]:
    """One query/queryMore call: (rows, next locator or None)."""
    reply = http.post(endpoint, data=envelope(session_id, batch_size, operation, argument, value),
                      headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'},
                      timeout=60)
    reply.raise_for_status()
    result = etree.fromstring(reply.content).find(_RESULT)
    rows = [raw_rows(r) for r in result.iterchildren(_RECORDS)]
    done = result.findtext(_DONE) == "true"
    return rows, None if done else result.findtext(_LOCATOR)


def raw_export(endpoint: str, session_id: str, soql: str, batch_size: int = 2000) -> int:
    """The raw client's whole query + queryMore loop; returns the number of records."""
    http = requests.Session()
    http.trust_env = False
    rows, locator = raw_batch(http, endpoint, session_id, "query", "queryString", soql,
                              batch_size)
    count = len(rows)
    while locator:
        rows, locator = raw_batch(http, endpoint, session_id, "queryMore", "queryLocator",
                                  locator, batch_size)
        count += len(rows)
    return count


# -- the app in a subprocess -------------------------------------------------------------------

def server_timing(app, path: str):  # noqa: ANN001, ANN201 - WSGI apps
    """`app` with the server time of each request for `path` in a Server-Timing header (`app;dur=`
    in ms): from the request's arrival to its whole body made, before a byte is sent. The body is
    gathered first, so only for pages, never for a streamed export."""
    from werkzeug.wsgi import ClosingIterator

    def timed(environ, start_response):  # noqa: ANN001, ANN202
        if environ.get("PATH_INFO") != path:
            return app(environ, start_response)
        began = time.perf_counter()
        started = []
        body = app(environ, lambda *args: started.append(args))
        chunks = list(body)
        elapsed_ms = (time.perf_counter() - began) * 1000
        status, headers, *exc_info = started[0]
        start_response(status, [*headers, ("Server-Timing", f"app;dur={elapsed_ms:.2f}")],
                       *exc_info)
        # The server closes the body once it is sent: callbacks on close run then, not before.
        return ClosingIterator(chunks, getattr(body, "close", None))
    return timed


def serve_app(argv: list[str]) -> None:
    """`harness.py --serve-app ...`: create sfconnect and serve it until terminated, with gunicorn
    and its threaded workers, as the Dockerfile does (one worker: one client at a time here)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-app", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from gunicorn.app.base import BaseApplication

    import sfconnect

    config = {
        "ENV": "testing", "SECRET_KEY": secrets.token_hex(32), "SF_LOGIN_URL": args.login_url,
        "SF_CLIENT_ID": args.client_id, "SF_CLIENT_SECRET": args.client_secret,
        "SF_REDIRECT_URI": f"http://127.0.0.1:{args.port}/oauth/callback",
        "SESSION_TYPE": "filesystem", "SESSION_FILE_DIR": args.workdir,
    }

    class Server(BaseApplication):
        def load_config(self) -> None:
            for name, value in {"bind": f"127.0.0.1:{args.port}", "workers": 1, "threads": 4,
                                "worker_class": "gthread", "loglevel": "warning"}.items():
                self.cfg.set(name, value)

        def load(self):  # noqa: ANN202 - the WSGI app
            return server_timing(sfconnect.create_app(config), "/query")

    Server().run()


if __name__ == "__main__":
    serve_app(sys.argv[1:])
