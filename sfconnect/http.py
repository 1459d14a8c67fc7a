"""Every outbound HTTP exchange of the app goes through a session built here.

One place, so that a later trace of the flow (with secrets masked) can hook every request without
touching call sites. Each purpose gets its own `requests.Session` with a default timeout.
"""
from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds


class _TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request that does not set one."""

    def __init__(self, timeout: float | tuple[float, float], **kwargs) -> None:
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 - requests' own signature
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def outbound_session(purpose: str,
                     timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> requests.Session:
    """A session for one purpose ("oauth", "identity", "partner" ...), timeouts on every call."""
    session = requests.Session()
    session.headers["User-Agent"] = f"sfconnect/{purpose}"
    session.trust_env = False  # proxies from the environment must not see the tokens
    adapter = _TimeoutAdapter(timeout, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
