"""For the learning pages' tests: an org that records every secret it hands out or takes, a
search for those secrets in any text, and the steps /flow shows."""
from __future__ import annotations

import io
import json
import threading
from urllib.parse import parse_qs, quote, urlsplit

import lxml.html
import requests

import devorg
from devorg import OrgConfig, serve_in_thread
from tests.helpers.org import LocalOrg

SECRET_FORM_FIELDS = ("code", "code_verifier", "client_secret", "refresh_token", "token",
                      "assertion", "password")


class SecretCapture:
    """WSGI middleware around the local org: keeps every secret that crosses it, both ways
    (codes in redirects, verifiers, secrets and refresh tokens in token requests, tokens in token
    responses, tokens sent to revoke)."""

    def __init__(self, app) -> None:
        self.app = app
        self.secrets: set[str] = set()
        self.kinds: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _keep(self, kind: str, value: str | None) -> None:
        if value:
            with self._lock:
                self.secrets.add(value)
                self.kinds.setdefault(kind, set()).add(value)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.startswith("/services/oauth2/"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            for name, values in parse_qs(body.decode()).items():
                if name in SECRET_FORM_FIELDS:
                    for value in values:
                        self._keep(name, value)

        def capture_start(status, headers, exc_info=None):
            for name, value in headers:
                if name.lower() == "location":
                    for code in parse_qs(urlsplit(value).query).get("code", []):
                        self._keep("code", code)
            return start_response(status, headers, exc_info)

        chunks = self.app(environ, capture_start)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        if path == "/services/oauth2/token":
            try:
                answer = json.loads(body)
            except ValueError:
                answer = {}
            for name in ("access_token", "refresh_token"):
                self._keep(name, answer.get(name))
        return [body]


def start_capturing_org(**config) -> tuple[LocalOrg, SecretCapture]:
    """A local org of the test's own behind a SecretCapture."""
    config.setdefault("admin_enabled", True)
    app = devorg.create_app(OrgConfig(**config))
    capture = SecretCapture(app)
    server = serve_in_thread(capture)
    return LocalOrg(server.url, devorg.org_of(app), server), capture


def leaks(text: str, secrets: set[str]) -> list[str]:
    """The secrets found in `text`, as they are or URL-encoded or JSON-escaped."""
    found = []
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
        if any(form in text for form in forms):
            found.append(secret)
    return found


def steps_of(page: requests.Response) -> list[str]:
    """The step names of /flow, in order."""
    doc = lxml.html.fromstring(page.text)
    names = []
    for heading in doc.xpath("//li[contains(@class,'trace-entry')]/h2[@class='trace-step']"):
        text = heading.text_content().strip()
        text = text.split(".", 1)[1].strip()  # "3. callback → ..." -> "callback → ..."
        names.append(text.split("→")[0].strip())
    return names


def as_local_org(running) -> None:  # noqa: ANN001 - a RunningApp
    """Mark the app as app.py marks it when it started the local org itself."""
    from app import local_org_demo

    running.app.config["SFCONNECT_LOCAL_ORG_DEMO"] = local_org_demo(
        {"SF_LOGIN_URL": running.org.url}, running.org.state)
