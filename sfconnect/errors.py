"""Errors a user or Salesforce can cause; each kind is turned into a page by one handler."""
from __future__ import annotations


class SalesforceFault(Exception):
    """A SOAP fault from the partner API (MALFORMED_QUERY, INVALID_FIELD ...), or a REST error."""

    def __init__(self, code: str, message: str, row: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.row = row
        self.column = column


class InvalidSession(SalesforceFault):
    """The session (access token) is expired, revoked or unknown: INVALID_SESSION_ID, 401, 403."""


class UpstreamError(Exception):
    """Salesforce could not be used: unreachable, too slow, or answering something unreadable."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail


class NotConnected(Exception):
    """The browser has no Salesforce session with this app (or it could not be refreshed)."""


class UntrustedHost(Exception):
    """A URL would carry the access token to a host the configuration does not trust."""

    def __init__(self, url: str) -> None:
        super().__init__(f"refusing to send the access token to {url}")
        self.url = url
