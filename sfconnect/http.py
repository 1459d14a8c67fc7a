"""Every outbound HTTP exchange of the app goes through a session built here.

One place, so that the trace of the flow (sfconnect.trace, with secrets masked) hooks every request
without touching call sites: each purpose gets its own `requests.Session` with a default timeout,
and its adapter tells the observers registered with `observe_exchanges` about every exchange.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter

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


def outbound_session(purpose: str,
                     timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> requests.Session:
    """A session for one purpose ("oauth", "identity", "partner" ...), timeouts on every call.

    It keeps no cookies: one session serves every user of the process, and one user's cookie
    must never ride along with another's request.
    """
    session = requests.Session()
    session.headers["User-Agent"] = f"sfconnect/{purpose}"
    session.trust_env = False  # proxies from the environment must not see the tokens
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = _TimeoutAdapter(timeout, purpose, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
