"""Every outbound HTTP exchange of the app goes through a gate built here.

Each purpose ("oauth", "identity", "partner", "rest") gets its own `TokenGate`: a
`requests.Session` that, on each prepared request just before it is sent, checks the URL with the
trust policy as the sender will parse it (`sfconnect.auth.trust.target_of`), follows no redirect (a
3xx becomes `RedirectRefused`, naming where it pointed), uses no proxy and keeps no cookie. There
is no other kind of session in the app, so no call site can send a token around the gate (RFC 9700
4.9 and 4.12).

Its adapter applies a default timeout and tells the observers registered with `observe_exchanges`
(the trace of the flow, secrets masked) about every exchange, without touching call sites.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from sfconnect.auth.trust import TrustPolicy
from sfconnect.errors import RedirectRefused

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds

# observer(purpose, request, response or None, started epoch seconds, elapsed seconds, error)
ExchangeObserver = Callable[[str, requests.PreparedRequest, "requests.Response | None", float,
                             float, "BaseException | None"], None]
_observers: list[ExchangeObserver] = []
log = logging.getLogger(__name__)


def observe_exchanges(observer: ExchangeObserver) -> None:
    """Call `observer` after every outbound exchange of this process (once per observer)."""
    if observer not in _observers:
        _observers.append(observer)


def _notify(*args: object) -> None:
    for observer in tuple(_observers):
        try:
            observer(*args)
        except Exception:  # noqa: BLE001 - an observer must never break the request it watches
            log.exception("exchange observer failed")


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request that does not set one; reports exchanges."""

    def __init__(self, timeout: float | tuple[float, float], purpose: str = "",
                 **kwargs) -> None:
        self.timeout = timeout
        self.purpose = purpose
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' own signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if not _observers:
            return super().send(request, **kwargs)
        started, began = time.time(), time.perf_counter()
        try:
            response = super().send(request, **kwargs)
            if not kwargs.get("stream"):
                response.content  # noqa: B018 - read now, so the time includes the body
        except Exception as error:
            _notify(self.purpose, request, None, started, time.perf_counter() - began, error)
            raise
        _notify(self.purpose, request, response, started, time.perf_counter() - began, None)
        return response


class TokenGate(requests.Session):
    """The one way a request carrying a token (or the client secret) leaves the app."""

    def __init__(self, purpose: str, trust: TrustPolicy,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.purpose = purpose
        self.trust = trust
        self.headers["User-Agent"] = f"sfconnect/{purpose}"
        self.trust_env = False  # proxies from the environment must not see the tokens
        self.proxies = {}
        # One session serves every user of the process: one user's cookie must never ride along
        # with another's request.
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = _TimeoutAdapter(timeout, purpose, pool_maxsize=32)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:  # noqa: ANN003
        """Send `request` if the policy trusts where it connects; never follow a redirect."""
        self.trust.check(request.url or "")  # the prepared URL, which the adapter connects to
        kwargs["allow_redirects"] = False
        kwargs["proxies"] = {}
        response = super().send(request, **kwargs)
        if 300 <= response.status_code < 400:
            location = response.headers.get("Location", "")
            response.close()
            raise RedirectRefused(request.url or "", response.status_code, location,
                                  _host_of(request.url or "", location))
        return response


def _host_of(base: str, location: str) -> str:
    """The host a redirect's Location would have sent the request to (for the error page)."""
    try:
        return parse_url(urljoin(base, location)).host or ""
    except ValueError:
        return location[:200]


def token_gate(purpose: str, trust: TrustPolicy,
               timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> TokenGate:
    """The gate for one purpose ("oauth", "identity", "partner" ...), timeouts on every call."""
    return TokenGate(purpose, trust, timeout)
