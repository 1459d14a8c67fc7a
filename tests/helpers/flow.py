"""The web server flow driven with requests the way a browser drives it: GET /login, the org's
login and consent pages, back through the callback; and what the app holds for a browser."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import lxml.html
import requests
from werkzeug.wrappers import Request, Response

from devorg import RunningServer, serve_in_thread
from tests.helpers.org import ADMIN


def form_fields(html: str, base_url: str, button: str | None = None) -> tuple[str, dict]:
    """The first form of a page: its absolute action and its fields (plus the pressed button)."""
    doc = lxml.html.fromstring(html)
    form = doc.forms[0]
    fields = {name: value for name, value in form.form_values()}
    if button is not None:
        pressed = form.xpath(f".//button[@value='{button}']")
        assert pressed, f"no {button!r} button in the form"
        fields[pressed[0].get("name")] = button
    return urljoin(base_url, form.action or base_url), fields


@dataclass
class SignIn:
    """What a sign-in went through: the authorize URL and the final response."""

    authorize_url: str
    response: requests.Response

    @property
    def authorize_params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.authorize_url).query).items()}


def start_login(http: requests.Session, app_url: str, **params) -> str:
    """GET /login and return the authorize URL it redirects to."""
    response = http.get(f"{app_url}/login", params=params, allow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def sign_in_at(http: requests.Session, authorize_url: str, user: tuple[str, str] = ADMIN,
               action: str = "allow", follow: bool = True) -> requests.Response:
    """Open the authorize URL, sign in on the login page, answer the consent page.

    With follow=False the last redirect (to the app's callback) is returned, not followed.
    """
    page = http.get(authorize_url)
    assert page.status_code == 200, page.text
    if 'name="password"' in page.text:
        action_url, fields = form_fields(page.text, page.url)
        fields.update(username=user[0], password=user[1])
        page = http.post(action_url, data=fields)
        assert page.status_code in (200, 302, 303), page.text
    if "Allow Access" in page.text:
        action_url, fields = form_fields(page.text, page.url, button=action)
        page = http.post(action_url, data=fields, allow_redirects=False)
        assert page.status_code in (302, 303), page.text
        if follow:
            page = http.get(page.headers["Location"])
    return page


def forget_org_login(http: requests.Session) -> None:
    """Drop the local org's own sign-in cookie, so that its next authorize asks who signs in
    (the org remembers a signed-in user, as Salesforce does)."""
    for cookie in [c for c in http.cookies if c.name == "devorg_session"]:
        http.cookies.clear(cookie.domain, cookie.path, cookie.name)


def sign_in(http: requests.Session, app_url: str, user: tuple[str, str] = ADMIN,
            action: str = "allow", **params) -> SignIn:
    """The whole web server flow, from GET /login to the app's landing page."""
    authorize_url = start_login(http, app_url, **params)
    return SignIn(authorize_url, sign_in_at(http, authorize_url, user, action))


class Relay:
    """A real HTTP relay in front of the local org that can rewrite its token responses.

    Stands in for a network attacker (or a broken proxy) between the app and Salesforce:
    `tamper(body_dict) -> body_dict` is applied to each JSON reply of /services/oauth2/token.
    """

    def __init__(self, target: str, tamper: Callable[[dict], dict]) -> None:
        self.target = target
        self.tamper = tamper
        self.tampered = 0
        self._lock = threading.Lock()
        self._http = requests.Session()
        self._http.trust_env = False
        self.server: RunningServer = serve_in_thread(self._wsgi)
        self.url = self.server.url

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        upstream = self._http.request(
            request.method, self.target + request.full_path.rstrip("?"),
            data=request.get_data(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            allow_redirects=False,
        )
        body = upstream.content
        if request.path == "/services/oauth2/token" and upstream.status_code == 200:
            document = json.loads(body)
            document = self.tamper(document)
            with self._lock:
                self.tampered += 1
            body = json.dumps(document).encode()
        headers = [(k, v) for k, v in upstream.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                        "content-encoding")]
        return Response(body, upstream.status_code, headers)(environ, start_response)

    def shutdown(self) -> None:
        self.server.shutdown()


def connection_of(running, http: requests.Session) -> dict:
    """The browser session's "sf" entry (its connection), read from the app's session store."""
    sid = http.cookies.get("sfconnect_session")
    interface = running.app.session_interface
    if hasattr(interface, "cache"):
        data = interface.cache.get(f"sfconnect:session:{sid}")
    else:
        raw = interface.client.get(f"sfconnect:session:{sid}")
        data = interface.serializer.decode(raw) if raw else None
    assert data and "sf" in data, "the browser is not connected"
    return data["sf"]


def token_set(running, http: requests.Session):
    """The TokenSet the app holds for this browser, read through the app's own stores."""
    record_id = connection_of(running, http)["token_record"]
    record = running.app.extensions["sfconnect.tokens"].vault.load(record_id)
    assert record is not None
    return record.tokens


def logout_csrf(page_html: str) -> str:
    """The csrf_token of the page's logout form."""
    return lxml.html.fromstring(page_html).xpath(
        "//form[@class='logout-form']//input[@name='csrf_token']/@value")[0]
