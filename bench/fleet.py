"""Benchmark a fleet: app instances behind a load balancer sharing one Redis, with users signed in
while an instance dies, Redis restarts and every Salesforce session expires.

    .venv/bin/python bench/fleet.py [--users 24] [--queries 20] [--instances 3]

The topology, from Debian's packages and the venv, every process on loopback on a free port:

- redis-server with AOF persistence (`--appendonly yes --dir <tmp>`);
- --instances app instances under gunicorn as the Dockerfile runs them (`gunicorn
  "sfconnect:create_app()"` with --workers and --threads), configured identically by environment:
  ENV=production, one SECRET_KEY and SF_TOKEN_KEY, SF_CLIENT_ID/SECRET, SF_LOGIN_URL, the
  SF_REDIRECT_URI through the load balancer, SESSION_TYPE=redis and REDIS_URL;
- HAProxy in front: round-robin (--balance leastconn to compare), no stickiness, `option httpchk
  GET /healthz`, a connection that is refused is retried on another instance (`retries`, `option
  redispatch`), and a GET whose instance died under it is sent again to another (`retry-on
  conn-failure empty-response`, never a POST, as deploy/haproxy.cfg; --no-l7-retry to compare);
  requests that ended abnormally or were retried are logged, without query strings;
- the local org (`python -m devorg --admin`) with a client app registered for that redirect URI.

Each user is a thread with a requests.Session of its own (a browser): Connect through the org's
login and consent pages, --queries queries each read on two pages (the first batch, then Next:
queryMore), one CSV export of every Contact (batch by batch), log out. While they run, one after
the other as the users' pages reach --kill-at and --redis-at of the total: one app instance is
SIGKILLed (with its workers) and started again; Redis is restarted (SIGTERM, it flushes its AOF;
started again on the same folder, it comes back from it). At --expire-at of their queries the
users wait until the org has expired every access token (/__admin/expire-sessions); each user's
next query is then sent together with a /describe request, as a page and its script would, so
that both may meet INVALID_SESSION_ID on different instances at once. Before they log out, the
users wait again while Redis's memory is measured.

The last line is machine-readable:

    fleet: users=24 requests=N errors=E errors_fault=F lost_sessions=L
           refresh_grants_per_expiry=R p50_ms=.. p95_ms=.. redis_kb_per_user=K   (one line)

- requests: every request a user sent to the app through the load balancer, retries included
  (the org's own login and consent pages are not counted);
- errors: requests that failed: no answer or a cut one, a 502/503/504 from HAProxy, the app's
  503 "session store unavailable", or any other answer than the one expected;
- errors_fault: those of the first four kinds that overlapped the killed instance's or Redis's
  restart window (from the kill or the stop until HAProxy sees every instance up again, plus 1 s);
  the user retries such a request (a failed sign-in callback: the whole Connect). Also counted:
  a Next that answers 410 Results expired because a request that died with the instance had
  read the query locator to its end at the org (the user then runs the query from its first page);
- lost_sessions: users who had to sign in again (a page that said "Not connected" or sent them
  home while they were connected);
- refresh_grants_per_expiry: refresh_token grants counted by the org (its `token.refresh_token`
  counter, read by /__admin/counters) from the expiry to the end, divided by the users;
- p50_ms, p95_ms: the time of the successful requests, streamed exports excepted;
- redis_kb_per_user: Redis's MEMORY USAGE summed over every key, measured when every user has
  exported and none has logged out yet, divided by the users.

Targets: lost_sessions=0, errors=errors_fault, errors_fault at most 1% of requests,
refresh_grants_per_expiry=1.00, redis_kb_per_user at most 512. The run is bounded (--max-seconds)
and every process it started is stopped on the way out, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import html
import io
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import redis
import requests
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The org's seeded users; the simulated users take turns with them. Salesforce keeps at most 10
# open query cursors per user (the local org too: the oldest dies), so the simulated users are
# spread over all three, and each query is read to its end, which closes its cursor.
ORG_USERS = (("admin@devorg.local", "Welcome1!"), ("zoë.müller@devorg.local", "Welcome1!"),
             ("integration@devorg.local", "Integr8!on"))
# Two pages of --batch records: the first batch (query), then Next (queryMore), which reads the
# cursor to its end.
SOQL = "SELECT Id, FirstName, LastName, Email, Account.Name FROM Contact LIMIT {limit}"
EXPORT_SOQL = "SELECT Id, FirstName, LastName, Email, Account.Name FROM Contact"
EXPORT_BATCH = 500
MAX_ATTEMPTS = 8  # of one request, when it fails
TIMEOUT_S = 60
GATEWAY = (502, 503, 504)
LOST = "lost"  # what a check says of a page that shows the user is no longer connected
EXPIRED = "Results expired"  # the title of the 410 page of a query locator that died
NEXT_LINK = re.compile(r'<a class="button" rel="next" href="([^"]+)"')
LOGOUT_CSRF = re.compile(r'action="/logout"[^>]*>\s*<input type="hidden" name="csrf_token" '
                         r'value="([^"]+)"')
ORG_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
TITLE = re.compile(r"<title>([^<]*)</title>")


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A process of the fleet, in a process group of its own: a SIGKILL takes its workers with
    it, as when a container dies. Output goes to a log file in the work folder."""

    def __init__(self, name: str, argv: list[str], log: Path, *, env: dict | None = None,
                 cwd: Path | None = None) -> None:
        self.name, self.argv, self.log, self.env, self.cwd = name, argv, log, env, cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group, at once."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the group, then SIGKILL what is left."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)  # workers that outlived their master, too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def debian_binary(name: str, package: str) -> str:
    """The path of a Debian package's program; installed with apt-get when missing (as root)."""
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if binary is None and os.geteuid() == 0:
        print(f"{name} is missing: apt-get install -y {package} ...", flush=True)
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", package], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ,
                                                       "DEBIAN_FRONTEND": "noninteractive"})
        binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if binary is None:
        raise SystemExit(f"{name} is missing: apt-get update && apt-get install -y {package}")
    return binary


def wait_for(what: str, ready: Callable[[], object], timeout: float,
              child: Child | None = None) -> None:
    """Poll `ready` until it is true; SystemExit when `child` dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.process is not None and child.process.poll() is not None:
            raise SystemExit(f"{what}: exited with {child.process.returncode} (see {child.log})")
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready within {timeout:.0f} s")
        time.sleep(0.05)


HAPROXY_CONFIG = """\
global
    maxconn 1000

defaults
    mode http
    # Requests that ended abnormally or were retried, with their termination state
    # (haproxy.log); paths without their query strings, as the app's own access log: the
    # callback's code must not reach a log.
    log stdout format raw local0
    option dontlog-normal
    log-format "%ci:%cp [%tr] %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %bc/%sc/%rc %HM %HPO"
    timeout connect 2s
    timeout check 3s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
    # A connection the instance refuses (it is dead) is tried again on another one.
    retries 3
    option redispatch 1

frontend fleet
    bind 127.0.0.1:{lb_port}
    default_backend apps

backend apps
    balance {balance}
{l7_retry}    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
{servers}

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


# --l7-retry: a GET whose instance closed the connection without answering (it died under it) is
# sent again to another instance; never a POST (it may have taken effect).
L7_RETRY = """\
    retry-on conn-failure empty-response
    http-request disable-l7-retry if METH_POST
"""


class Fleet:
    """Redis, the local org, the app instances and HAProxy, started and stopped together."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.children: list[Child] = []
        self.redis_port = free_port()
        self.org_port = free_port()
        self.lb_port = free_port()
        self.stats_port = free_port()
        self.app_ports = [free_port() for _ in range(args.instances)]
        self.org_url = f"http://127.0.0.1:{self.org_port}"
        self.lb_url = f"http://127.0.0.1:{self.lb_port}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis: Child | None = None
        self.apps: list[Child] = []
        self.app_env: dict[str, str] = {}

    def _child(self, name: str, argv: list[str], **kwargs: object) -> Child:
        child = Child(name, argv, self.workdir / f"{name}.log", **kwargs)
        self.children.append(child)
        return child

    def start(self) -> None:
        self.start_redis()
        self._start_org()
        self._start_apps()
        self._start_haproxy()

    # Redis
    def start_redis(self) -> None:
        (self.workdir / "redis").mkdir(exist_ok=True)
        binary = debian_binary("redis-server", "redis-server")
        if self.redis is None:
            self.redis = self._child("redis", [
                binary, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--appendonly", "yes", "--save", "", "--dir", str(self.workdir / "redis")])
        self.redis.start()
        wait_for("redis-server", self.redis_answers, 30, self.redis)

    def redis_client(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, socket_timeout=5)

    def redis_answers(self) -> bool:
        with contextlib.closing(self.redis_client()) as client:
            return bool(client.ping())  # raises while the AOF is loading

    def restart_redis(self, down_s: float = 0) -> tuple[int, int]:
        """Stop Redis (SIGTERM: it flushes its AOF) and start it again on the same folder, after
        `down_s` seconds; (keys before the stop, keys once it answers again)."""
        assert self.redis is not None
        with contextlib.closing(self.redis_client()) as client:
            before = client.dbsize()
        self.redis.stop()
        time.sleep(down_s)
        self.redis.start()
        wait_for("redis-server (restarted)", self.redis_answers, 30, self.redis)
        with contextlib.closing(self.redis_client()) as client:
            return before, client.dbsize()

    # the local org
    def _start_org(self) -> None:
        org = self._child("devorg", [
            PYTHON, "-m", "devorg", "--port", str(self.org_port), "--contacts",
            str(self.args.contacts), "--admin", *(["--rotation"] if self.args.rotation else [])],
            cwd=REPO)
        org.start()
        wait_for("the local org", lambda: self.get(f"{self.org_url}/__admin/counters").ok,
                 120, org)

    def admin(self, method: str, path: str, **kwargs: object) -> dict:
        reply = self.get(f"{self.org_url}/__admin/{path}", method, **kwargs)
        reply.raise_for_status()
        return reply.json()

    @staticmethod
    def get(url: str, method: str = "GET", **kwargs: object) -> requests.Response:
        """One request of the conductor's own (a session each: several threads use this)."""
        with requests.Session() as http:
            http.trust_env = False
            return http.request(method, url, timeout=10, **kwargs)

    # the app instances
    def _start_apps(self) -> None:
        client = self.admin("POST", "clients", json={
            "name": "sfconnect (fleet)", "redirect_uris": [f"{self.lb_url}/oauth/callback"]})
        self.app_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # The work folder holds no .env: every instance reads exactly these settings.
            "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
            "ENV": "production",
            "FORWARDED_ALLOW_IPS": "",  # as the image: gunicorn believes no forwarded header
            "SECRET_KEY": secrets.token_hex(32),
            "SF_TOKEN_KEY": Fernet.generate_key().decode(),
            "SF_LOGIN_URL": self.org_url,
            "SF_CLIENT_ID": client["client_id"],
            "SF_CLIENT_SECRET": client["client_secret"],
            "SF_REDIRECT_URI": f"{self.lb_url}/oauth/callback",
            "SESSION_TYPE": "redis",
            "REDIS_URL": self.redis_url,
            "SF_LEARNING": self.args.learning,
        }
        for number, port in enumerate(self.app_ports, start=1):
            self.apps.append(self._child(f"app{number}", self._gunicorn(port, number),
                                         env=self.app_env, cwd=self.workdir))
        for app in self.apps:
            app.start()
        for app, port in zip(self.apps, self.app_ports, strict=True):
            self._wait_app(app, port)

    def _gunicorn(self, port: int, number: int) -> list[str]:
        # As the Dockerfile's CMD, bound to loopback; the access log goes to a file of its own.
        return [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", str(self.args.workers), "--threads", str(self.args.threads),
                "--limit-request-line", "8190",
                # Each container has a control socket of its own; here they would share one path.
                "--no-control-socket",
                "--access-logfile", str(self.workdir / f"app{number}.access.log"),
                "--access-logformat", '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
                "sfconnect:create_app()"]

    def _wait_app(self, app: Child, port: int) -> None:
        wait_for(app.name, lambda: self.get(f"http://127.0.0.1:{port}/healthz").ok, 120, app)

    def kill_app(self, index: int) -> None:
        """SIGKILL one instance, master and workers at once."""
        self.apps[index].kill()

    def restart_app(self, index: int) -> None:
        """Start the killed instance again on its port; back once its /healthz answers."""
        self.apps[index].start()
        self._wait_app(self.apps[index], self.app_ports[index])

    # HAProxy
    def _start_haproxy(self) -> None:
        binary = debian_binary("haproxy", "haproxy")
        servers = "\n".join(f"    server app{n} 127.0.0.1:{port} check"
                            for n, port in enumerate(self.app_ports, start=1))
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(lb_port=self.lb_port, servers=servers,
                                                stats_port=self.stats_port,
                                                balance=self.args.balance,
                                                l7_retry=L7_RETRY if self.args.l7_retry else ""))
        proxy = self._child("haproxy", [binary, "-db", "-f", str(config)])
        proxy.start()
        wait_for("haproxy", self.all_up, 30, proxy)

    def server_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's statistics of each instance (status, scur: requests under way ...)."""
        reply = self.get(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        rows = csv.DictReader(io.StringIO(reply.text.lstrip("# ")))
        return {row["svname"]: row for row in rows
                if row["pxname"] == "apps" and row["svname"].startswith("app")}

    def server_states(self) -> dict[str, str]:
        """HAProxy's view of each instance: "UP", "DOWN", "UP 1/2" ..."""
        return {name: row["status"] for name, row in self.server_stats().items()}

    def all_up(self) -> bool:
        states = self.server_states()
        return len(states) == len(self.app_ports) and all(s == "UP" for s in states.values())

    def stop(self) -> None:
        """Stop every process this fleet started, the load balancer first."""
        for child in reversed(self.children):
            child.stop()


# -- the users ---------------------------------------------------------------------------------

class Aborted(Exception):
    """The run is being stopped (deadline, Ctrl-C)."""


class GaveUp(Exception):
    """A user could not get a request through after MAX_ATTEMPTS."""


class SessionLost(Exception):
    """A page showed the user as no longer connected."""


class Interrupted(Exception):
    """A request that is not retried as it is failed: the user starts over (Connect again after
    a failed callback, the query from its first page after a dead query locator)."""


@dataclass
class Attempt:
    """One request a user sent to the app, and how it ended."""

    user: int
    what: str
    began: float
    ended: float
    status: int | None
    failure: str | None = None  # None: it succeeded
    gateway: bool = False  # failed as a dying instance or a restarting store makes requests fail


@dataclass
class Window:
    """When a fault was under way: from its start until HAProxy saw every instance up again."""

    name: str
    began: float
    ended: float | None = None


class Gate:
    """A point every user waits at until the conductor opens it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.opened = threading.Event()


@dataclass
class Run:
    """What the users and the conductor share."""

    lb_url: str
    org_url: str
    users: int
    queries: int
    contacts: int
    expire_before: int  # the query before which every session expires
    batch: int  # records per results page
    attempts: list[Attempt] = field(default_factory=list)
    lost: set[int] = field(default_factory=set)
    states: dict[int, str] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    pages: int = 0
    abort: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    gates: dict[str, Gate] = field(default_factory=lambda: {
        "expiry": Gate("expiry"), "measure": Gate("measure")})

    def note(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def paged(self, count: int) -> None:
        with self.lock:
            self.pages += count

    def wait_at(self, user: int, gate: Gate) -> None:
        self.states[user] = f"at {gate.name}"
        while not gate.opened.wait(0.1):
            if self.abort.is_set():
                raise Aborted()
        self.states[user] = "running"

    def at_gate(self, gate: Gate) -> bool:
        """Every user waits at `gate`, or has finished (or failed)."""
        return len(self.states) == self.users and all(
            state in (f"at {gate.name}", "done", "failed") for state in self.states.values())


def title_of(page: str) -> str:
    found = TITLE.search(page)
    return html.unescape(found.group(1)).strip() if found else " ".join(page.split())[:80]


def results_page(response: requests.Response) -> str | None:
    """A results page with its rows; LOST when it sent the user home instead."""
    if response.status_code in (302, 303):
        return LOST if urlsplit(response.headers.get("Location", "")).path == "/" else (
            f"HTTP {response.status_code} to {response.headers.get('Location')}")
    if response.status_code == 200 and "Showing rows" in response.text \
            and "Connected as" in response.text:
        return None
    return f"HTTP {response.status_code} {title_of(response.text)}"


def home_connected(response: requests.Response) -> str | None:
    if response.status_code == 200 and "Connected as" in response.text:
        return None
    if response.status_code == 200 and "Not connected" in response.text:
        return LOST
    return f"HTTP {response.status_code} {title_of(response.text)}"


def home_signed_out(response: requests.Response) -> str | None:
    if response.status_code == 200 and "Not connected" in response.text:
        return None
    return f"HTTP {response.status_code} {title_of(response.text)} (still connected?)"


def redirect_home(response: requests.Response) -> str | None:
    if response.status_code in (302, 303) and \
            urlsplit(response.headers.get("Location", "")).path == "/":
        return None
    return f"HTTP {response.status_code} {title_of(response.text)}"


def describe_json(response: requests.Response) -> str | None:
    if response.status_code == 200 and '"fields"' in response.text:
        return None
    if response.status_code == 401 and "NOT_CONNECTED" in response.text:
        return LOST
    return f"HTTP {response.status_code} {response.text[:120]}"


class User:
    """One simulated user: a browser (requests.Session) driving the app through the balancer."""

    def __init__(self, run: Run, number: int) -> None:
        self.run = run
        self.number = number
        self.username, self.password = ORG_USERS[number % len(ORG_USERS)]
        self.http = self._browser()

    @staticmethod
    def _browser() -> requests.Session:
        browser = requests.Session()
        browser.trust_env = False
        return browser

    def __call__(self) -> None:
        self.run.states[self.number] = "running"
        try:
            self.connect()
            for query in range(self.run.queries):
                if query == self.run.expire_before:
                    self.run.wait_at(self.number, self.run.gates["expiry"])
                self.query(with_describe=query == self.run.expire_before)
            self.export()
            self.run.wait_at(self.number, self.run.gates["measure"])
            self.logout()
            self.run.states[self.number] = "done"
        except Aborted:
            self.run.states[self.number] = "failed"
        except Exception as error:  # noqa: BLE001 - reported with the figures, never hidden
            self.run.failures[self.number] = f"{type(error).__name__}: {error}"
            self.run.states[self.number] = "failed"
        finally:
            self.http.close()

    # one request to the app, retried as a user retries
    def send(self, what: str, method: str, url: str,
             check: Callable[[requests.Response], str | None], *, retry: bool = True,
             stream: bool = False, browser: requests.Session | None = None,
             **kwargs: object) -> requests.Response:
        """Send until the answer passes `check` (None); SessionLost when it says LOST."""
        http = browser or self.http
        url = urljoin(self.run.lb_url, url)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self.run.abort.is_set():
                raise Aborted()
            began = time.monotonic()
            response, status, failure, gateway = None, None, None, False
            try:
                response = http.request(method, url, allow_redirects=False, timeout=TIMEOUT_S,
                                        stream=stream, **kwargs)
                status = response.status_code
                response.content  # noqa: B018 - the whole body: a cut stream fails here
            except requests.RequestException as error:
                reason = str(error.__context__ or error).split(": ")[-1][:60]
                failure, gateway = f"{type(error).__name__} ({reason})", True
            ended = time.monotonic()
            if response is not None and failure is None:
                if status in GATEWAY and ("Content-Security-Policy" not in response.headers
                                          or "session_store_unavailable" in response.text):
                    # HAProxy's own answer (no instance could take it), or the app's while its
                    # session store restarts.
                    failure, gateway = f"HTTP {status} {title_of(response.text)}", True
                else:
                    verdict = check(response)
                    if verdict == LOST:
                        self.run.note(Attempt(self.number, what, began, ended, status))
                        raise SessionLost(what)
                    failure = verdict
            self.run.note(Attempt(self.number, what, began, ended, status, failure, gateway))
            if failure is None:
                return response
            if not retry or EXPIRED in failure:
                raise Interrupted(failure)
            time.sleep(min(0.1 * 2 ** attempt, 1.0))
        raise GaveUp(f"{what}: {MAX_ATTEMPTS} attempts failed, the last with {failure}")

    def org(self, method: str, url: str, expect: tuple[int, ...], **kwargs: object,
            ) -> requests.Response:
        """A request to the org's login and consent pages (not through the balancer)."""
        response = self.http.request(method, url, allow_redirects=False, timeout=TIMEOUT_S,
                                     **kwargs)
        if response.status_code not in expect:
            raise GaveUp(f"the org answered {method} {urlsplit(url).path} with HTTP "
                         f"{response.status_code}: {title_of(response.text)}")
        return response

    # what the user does
    def connect(self) -> None:
        """Connect: /login, the org's login and consent pages, the callback, home."""
        for _ in range(MAX_ATTEMPTS):
            start = self.send("login", "GET", "/login", lambda r: None if r.status_code == 302
                              and r.headers["Location"].startswith(self.run.org_url)
                              else f"HTTP {r.status_code}")
            authorize = start.headers["Location"]
            page = self.org("GET", authorize, (200,))
            answer = self.org("POST", authorize, (303,), data={
                "_csrf": ORG_CSRF.search(page.text).group(1), "action": "login",
                "username": self.username, "password": self.password})
            consent_url = urljoin(authorize, answer.headers["Location"])
            answer = self.org("GET", consent_url, (200, 302))
            if answer.status_code == 200:  # first time for this org user: Allow
                answer = self.org("POST", consent_url, (302,), data={
                    "_csrf": ORG_CSRF.search(answer.text).group(1), "action": "allow"})
            callback = answer.headers["Location"]
            try:
                self.send("callback", "GET", callback, redirect_home, retry=False)
            except Interrupted:
                continue  # the code may have been spent: Connect again, as a user would
            try:
                self.send("home", "GET", "/", home_connected)
            except SessionLost:
                self.run.lost.add(self.number)
                continue
            return
        raise GaveUp("could not connect")

    def query(self, with_describe: bool = False) -> None:
        """One query, on two pages: the first batch, then Next (queryMore)."""
        for _ in range(3):
            try:
                side = self._describe_alongside() if with_describe else None
                first = self.send("query", "GET", "/query", results_page, params={
                    "q": SOQL.format(limit=2 * self.run.batch), "batch": self.run.batch})
                if side is not None:
                    side.join()
                    if side.error is not None:
                        raise side.error
                found = NEXT_LINK.search(first.text)
                if found is None:
                    raise GaveUp(f"no Next link: the query did not span pages "
                                 f"(--contacts {self.run.contacts} <= {self.run.batch}?)")
                self.send("query_more", "GET", html.unescape(found.group(1)), results_page)
                self.run.paged(2)
                return
            except Interrupted:  # the locator died (an error of its own): from the first page
                with_describe = False
            except SessionLost:
                self.run.lost.add(self.number)
                self.connect()
                with_describe = False
        raise GaveUp("the query failed three times in a row")

    def _describe_alongside(self) -> _SideRequest:
        # A second browser connection with the same cookie, as a page's script fetches while
        # the page loads.
        side_browser = self._browser()
        side_browser.cookies.update(self.http.cookies)
        def describe() -> None:
            with side_browser:
                self.send("describe", "GET", "/describe/Contact", describe_json,
                          browser=side_browser)

        side = _SideRequest(describe)
        side.start()
        return side

    def export(self) -> None:
        """Every Contact as CSV; checks that every row arrived and no #error line ended it."""
        def complete(response: requests.Response) -> str | None:
            if response.status_code in (302, 303):
                return LOST  # sent home: not connected any more
            if response.status_code != 200:
                return f"HTTP {response.status_code} {response.text[:120]}"
            lines = response.content.decode("utf-8").splitlines()
            if any(line.startswith("#error") for line in lines):
                return f"export ended with {[x for x in lines if x.startswith('#error')][0]}"
            expected = int(response.headers.get("X-Total-Size", "-1"))
            if len(lines) - 1 != expected:
                return f"export has {len(lines) - 1} rows of {expected}"
            return None

        for _ in range(3):
            try:
                self.send("export", "GET", "/export.csv", complete, stream=True,
                          params={"q": EXPORT_SOQL, "batch": EXPORT_BATCH})
                return
            except SessionLost:
                self.run.lost.add(self.number)
                self.connect()
        raise GaveUp("the session was lost three times in a row")

    def logout(self) -> None:
        """Log out with the page's form (POST with its CSRF token); then signed out at home."""
        try:
            home = self.send("home", "GET", "/", home_connected)
        except SessionLost:
            self.run.lost.add(self.number)
            self.connect()
            home = self.send("home", "GET", "/", home_connected)
        token = LOGOUT_CSRF.search(home.text)
        if token is None:
            raise GaveUp("the home page has no logout form")
        self.send("logout", "POST", "/logout", redirect_home,
                  data={"csrf_token": html.unescape(token.group(1))})
        self.send("home", "GET", "/", home_signed_out)


class _SideRequest(threading.Thread):
    def __init__(self, send: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._send = send
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send()
        except BaseException as error:  # noqa: BLE001 - re-raised by the user's thread
            self.error = error


# -- the conductor -----------------------------------------------------------------------------

def in_background(name: str, work: Callable[[], None], errors: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - reported with the figures
            errors.append(f"{name}: {type(error).__name__}: {error}")
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def redis_usage(fleet: Fleet) -> tuple[int, Counter, Counter, Counter]:
    """MEMORY USAGE summed over every key: (bytes, bytes by key prefix, keys by key prefix,
    keys that never expire by key prefix)."""
    sizes: Counter = Counter()
    counts: Counter = Counter()
    forever: Counter = Counter()
    with contextlib.closing(fleet.redis_client()) as client:
        for key in client.scan_iter(count=1000):
            size = client.memory_usage(key, samples=0) or 0
            prefix = ":".join(key.decode(errors="replace").split(":")[:2])
            sizes[prefix] += size
            counts[prefix] += 1
            if client.ttl(key) == -1:
                forever[prefix] += 1
    return sum(sizes.values()), sizes, counts, forever


def conduct(fleet: Fleet, run: Run, args: argparse.Namespace) -> dict:
    """Start the users; kill an instance, restart Redis, expire every session and measure Redis
    as the run reaches each point; wait for every user (at most --max-seconds)."""
    fleet.admin("POST", "counters/reset")
    began = time.monotonic()
    deadline = began + args.max_seconds
    total_pages = run.users * run.queries * 2
    windows: list[Window] = []
    background: list[threading.Thread] = []
    problems: list[str] = []
    facts: dict = {"began": began, "windows": windows, "problems": problems}
    victim = args.instances // 2  # the middle instance

    def kill_and_restart() -> None:
        facts["in_flight_at_kill"] = {name: int(row["scur"] or 0)
                                      for name, row in fleet.server_stats().items()}
        window = Window(f"kill app{victim + 1}", time.monotonic())
        windows.append(window)
        fleet.kill_app(victim)
        time.sleep(args.restart_delay)  # as long as a container takes to be replaced
        fleet.restart_app(victim)
        wait_for("the restarted instance in HAProxy", fleet.all_up, 60)
        window.ended = time.monotonic()

    def restart_redis() -> None:
        window = Window("restart redis", time.monotonic())
        windows.append(window)
        facts["redis_keys_kept"] = fleet.restart_redis(args.redis_down_s)
        facts["redis_down_s"] = time.monotonic() - window.began
        wait_for("every instance in HAProxy after Redis", fleet.all_up, 60)
        window.ended = time.monotonic()

    events = [(args.kill_at, "kill", kill_and_restart), (args.redis_at, "redis", restart_redis)]
    threads = [threading.Thread(target=User(run, number), name=f"user{number}", daemon=True)
               for number in range(run.users)]
    for thread in threads:
        thread.start()
    expired = measured = False
    while any(thread.is_alive() for thread in threads):
        if time.monotonic() > deadline:
            run.abort.set()
            problems.append(f"the run passed --max-seconds {args.max_seconds}; users stopped")
            break
        progress = run.pages / total_pages
        busy = any(thread.is_alive() for thread in background)
        if events and progress >= events[0][0] and not busy:
            # One at a time: Redis restarts once the killed instance is back.
            _, name, work = events.pop(0)
            background.append(in_background(name, work, problems))
            busy = True
        if events and not busy and run.at_gate(run.gates["expiry"]):
            problems.append(f"the users reached the expiry before the {events[0][1]} event's "
                            f"point ({run.pages}/{total_pages} pages): it ran without load")
            _, name, work = events.pop(0)
            background.append(in_background(name, work, problems))
            busy = True
        events_done = not events and not busy
        if not expired and events_done and run.at_gate(run.gates["expiry"]):
            facts["refresh_before"] = fleet.admin("GET", "counters").get("token.refresh_token", 0)
            fleet.admin("POST", "expire-sessions")
            facts["expired_at"] = time.monotonic()
            expired = True
            run.gates["expiry"].opened.set()
        if not measured and expired and run.at_gate(run.gates["measure"]):
            facts["redis_bytes"], facts["redis_sizes"], facts["redis_keys"], _ = \
                redis_usage(fleet)
            measured = True
            run.gates["measure"].opened.set()
        time.sleep(0.05)
    for thread in (*threads, *background):
        thread.join(timeout=30)
    facts["seconds"] = time.monotonic() - began
    facts["counters"] = fleet.admin("GET", "counters")
    facts["after_logout_bytes"], _, facts["after_logout_keys"], facts["forever"] = \
        redis_usage(fleet)
    facts["served"] = {}
    for number in range(1, args.instances + 1):
        log = fleet.workdir / f"app{number}.access.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        facts["served"][f"app{number}"] = sum(1 for line in lines if "/healthz" not in line)
    return facts


# -- the figures -------------------------------------------------------------------------------

def overlaps(attempt: Attempt, window: Window, margin_s: float = 1.0) -> bool:
    ended = window.ended if window.ended is not None else float("inf")
    return attempt.began <= ended + margin_s and attempt.ended >= window.began


def fault_caused(attempts: list[Attempt], windows: list[Window]) -> tuple[list, list]:
    """The failed requests a fault caused: (in a fault's window, follow-ons).

    In a window: no answer, a cut one, HAProxy's 502/503/504 or the app's 503 for its session
    store, while a fault was under way. A follow-on: a Next that answered 410 Results expired
    because a request that died with the killed instance had already read its query locator to
    the end at the org (Salesforce closes such a cursor; no client can replay it): the user's
    retry of a failed request, or HAProxy's own replay (--l7-retry) while the instance died."""
    in_window: list[Attempt] = []
    follow_on: list[Attempt] = []
    previous: dict[int, Attempt] = {}
    for attempt in sorted(attempts, key=lambda a: a.began):
        before = previous.get(attempt.user)
        previous[attempt.user] = attempt
        if attempt.failure is None:
            continue
        if attempt.gateway and any(overlaps(attempt, window) for window in windows):
            in_window.append(attempt)
        elif EXPIRED in attempt.failure and (
                (before is not None and before in in_window and before.what == attempt.what)
                or any(overlaps(attempt, w, margin_s=0) for w in windows
                       if w.name.startswith("kill"))):
            follow_on.append(attempt)
    return in_window, follow_on


def report(run: Run, facts: dict, args: argparse.Namespace) -> None:
    began = facts["began"]
    attempts = run.attempts
    failed = [a for a in attempts if a.failure is not None]
    in_window, follow_on = fault_caused(attempts, facts["windows"])
    fault = in_window + follow_on
    others = [a for a in failed if a not in fault]
    timed = [(a.ended - a.began) * 1000 for a in attempts
             if a.failure is None and a.what != "export"]
    exports = [(a.ended - a.began) * 1000 for a in attempts
               if a.failure is None and a.what == "export"]
    p50 = statistics.median(timed) if timed else float("nan")
    p95 = statistics.quantiles(timed, n=20)[-1] if len(timed) >= 20 else float("nan")
    refresh = facts["counters"].get("token.refresh_token", 0)
    # The grants the expiry caused (the org line shows the run's total).
    per_expiry = ((refresh - facts["refresh_before"]) / args.users if "refresh_before" in facts
                  else float("nan"))
    redis_bytes = facts.get("redis_bytes")

    print(f"ran {facts['seconds']:.1f} s: {args.users} users, {args.instances} instances "
          f"({args.workers} workers x {args.threads} threads), {args.contacts} Contacts")
    def window_of(attempt: Attempt) -> Window:
        # The latest fault under way when the request ended (windows may follow closely).
        return [w for w in facts["windows"] if w.began <= attempt.ended][-1]

    for window in facts["windows"]:
        ended = f"{window.ended - began:.1f}" if window.ended is not None else "?"
        hit = sum(1 for a in in_window if window_of(a) is window)
        load = sum(1 for a in attempts if overlaps(a, window, margin_s=0))
        print(f"  {window.name}: {window.began - began:.1f} s to {ended} s (until HAProxy saw "
              f"every instance up): {load} requests under way, {hit} failed")
    if "in_flight_at_kill" in facts:
        print("  requests under way at each instance just before the kill (HAProxy): " + ", ".join(
            f"{name}={count}" for name, count in facts["in_flight_at_kill"].items()))
    if "redis_down_s" in facts:
        before, after = facts["redis_keys_kept"]
        print(f"  redis answered again {facts['redis_down_s']:.2f} s after its stop, with "
              f"{after} keys from its AOF ({before} before the stop)")
    if "expired_at" in facts:
        print(f"  every session expired at {facts['expired_at'] - began:.1f} s")
    counters = facts["counters"]
    # Each user's /describe after the expiry: a second describeSObject call means the first met
    # INVALID_SESSION_ID while the user's query, on another instance, was refreshing.
    print(f"org: authorize={counters.get('authorize', 0)} "
          f"code_grants={counters.get('token.authorization_code', 0)} "
          f"refresh_grants={refresh} revokes={counters.get('revoke', 0)} "
          f"describeSObject={counters.get('soap.describeSObject', 0)} "
          f"(those above {args.users} met the expired session)")
    print("requests served per instance (access logs): " + ", ".join(
        f"{name}={count}" for name, count in facts["served"].items()))
    print("requests by kind: " + ", ".join(
        f"{what}={count}" for what, count in sorted(Counter(a.what for a in attempts).items())))
    if exports:
        print(f"exports: median {statistics.median(exports):.0f} ms for {args.contacts} rows")
    if redis_bytes is not None:
        print(f"redis before logout: {redis_bytes / 1024:.0f} KB in "
              f"{sum(facts['redis_keys'].values())} keys; by prefix: " + ", ".join(
                  f"{prefix} {size / 1024:.0f} KB/{facts['redis_keys'][prefix]}"
                  for prefix, size in facts["redis_sizes"].most_common()))
    print(f"redis after logout: {facts['after_logout_bytes'] / 1024:.0f} KB in "
          f"{sum(facts['after_logout_keys'].values())} keys ("
          + ", ".join(f"{p} {n}" for p, n in facts["after_logout_keys"].most_common()) + ")"
          + ("; without expiry: " + ", ".join(f"{p} {n}" for p, n in facts["forever"].items())
             if facts["forever"] else "; every key expires"))
    for attempt in fault:
        kind = "fault" if attempt in in_window else "fault (follow-on)"
        print(f"  {kind}: user{attempt.user} {attempt.what} at {attempt.began - began:.2f}-"
              f"{attempt.ended - began:.2f} s: {attempt.failure}")
    for attempt in others:
        print(f"  ERROR: user{attempt.user} {attempt.what} at {attempt.began - began:.2f}-"
              f"{attempt.ended - began:.2f} s: {attempt.failure}")
    for user in sorted(run.lost):
        print(f"  LOST SESSION: user{user}")
    for user, failure in sorted(run.failures.items()):
        print(f"  USER FAILED: user{user}: {failure}")
    for problem in facts["problems"]:
        print(f"  PROBLEM: {problem}")
    kb = f"{redis_bytes / 1024 / args.users:.0f}" if redis_bytes is not None else "nan"
    print(f"fleet: users={args.users} requests={len(attempts)} errors={len(failed)} "
          f"errors_fault={len(fault)} lost_sessions={len(run.lost)} "
          f"refresh_grants_per_expiry={per_expiry:.2f} p50_ms={p50:.0f} "
          f"p95_ms={p95:.0f} redis_kb_per_user={kb}")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt()  # SIGTERM cleans up as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--queries", type=int, default=20,
                        help="queries per user, each read on two pages (query, queryMore)")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--contacts", type=int, default=1000, help="Contacts in the local org")
    parser.add_argument("--batch", type=int, default=200,
                        help="records per results page (200 to 2000); each query reads two")
    parser.add_argument("--balance", choices=("roundrobin", "leastconn"), default="roundrobin",
                        help="HAProxy's balance algorithm (no stickiness either way)")
    parser.add_argument("--l7-retry", action=argparse.BooleanOptionalAction, default=True,
                        help="HAProxy resends a GET that died with its instance (retry-on "
                        "empty-response), as deploy/haproxy.cfg does; --no-l7-retry to compare")
    parser.add_argument("--rotation", action="store_true",
                        help="the org rotates refresh tokens: a second, racing refresh grant "
                        "would fail (invalid_grant) and sign its user out")
    parser.add_argument("--learning", choices=("on", "off"), default="on",
                        help="SF_LEARNING of the instances (the trace lives in Redis)")
    parser.add_argument("--kill-at", type=float, default=0.1,
                        help="share of the query pages read when an instance is killed")
    parser.add_argument("--redis-at", type=float, default=0.3,
                        help="share of the query pages read when Redis restarts")
    parser.add_argument("--restart-delay", type=float, default=1.0,
                        help="seconds between the kill and the instance's new start")
    parser.add_argument("--expire-at", type=float, default=0.75,
                        help="share of each user's queries done when every session expires")
    parser.add_argument("--redis-down-s", type=float, default=0,
                        help="seconds Redis stays stopped before it starts again")
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--workdir", help="keep the logs and configuration here (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()
    if args.users < 1 or args.queries < 2 or args.instances < 2:
        parser.error("at least 1 user, 2 queries and 2 instances")
    if not 200 <= args.batch <= 2000 or args.contacts < 2 * args.batch:
        parser.error("--batch from 200 to 2000, and --contacts at least twice --batch")
    if not 0 < args.kill_at < args.redis_at < args.expire_at < 1:
        parser.error("0 < --kill-at < --redis-at < --expire-at < 1: the kill and Redis's "
                     "restart happen before the expiry")
    signal.signal(signal.SIGTERM, _terminate)

    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="sfconnect-fleet-")))
        fleet = Fleet(args, workdir)
        stack.callback(fleet.stop)
        print(f"starting redis, the local org, {args.instances} instances and haproxy "
              f"(logs in {workdir}) ...", flush=True)
        fleet.start()
        print(f"balancer at {fleet.lb_url}, org at {fleet.org_url}; {args.users} users start",
              flush=True)
        run = Run(fleet.lb_url, fleet.org_url, args.users, args.queries, args.contacts,
                  expire_before=min(args.queries - 1, max(1, round(args.queries * args.expire_at))),
                  batch=args.batch)
        try:
            facts = conduct(fleet, run, args)
        finally:
            run.abort.set()
    report(run, facts, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("fleet: interrupted; every process it started was stopped", file=sys.stderr)
        sys.exit(130)
