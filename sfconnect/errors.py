"""Errors a user or Salesforce can cause, and the two ways the app answers one: a page
(`error_page`) or, for what scripts and downloads read, JSON with Salesforce's error code
(`json_error`). Each kind of error is turned into one of them by one handler
(sfconnect.web.views)."""
from __future__ import annotations

from flask import Response, jsonify, render_template


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


class UnknownConnection(NotConnected):
    """A link names a connection (`org=<key>`) this browser session no longer has."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no connection {key!r} in this browser session")
        self.key = key


class GateRefused(Exception):
    """The outbound gate refused a request that carries a token (see sfconnect.http)."""

    code = "GATE_REFUSED"


class UntrustedHost(GateRefused):
    """A URL would carry the access token to a host the configuration does not trust."""

    code = "UNTRUSTED_HOST"

    def __init__(self, url: str) -> None:
        super().__init__(f"refusing to send the access token to {url}")
        self.url = url


class RedirectRefused(GateRefused):
    """A token-bearing request was answered with a redirect; it was not followed."""

    code = "REDIRECT_REFUSED"

    def __init__(self, url: str, status: int, location: str, location_host: str) -> None:
        super().__init__(f"HTTP {status} from {url} to {location_host or 'nowhere'}: not followed")
        self.url = url
        self.status = status
        self.location = location
        self.location_host = location_host


def error_page(status: int, code: str, message: str,
               title: str = "Something went wrong") -> tuple[str, int]:
    """templates/error.html with the error's code and message, and `status`."""
    return render_template("error.html", title=title, code=code, message=message,
                           status=status), status


def json_error(status: int, code: str, message: str, **extra: object) -> Response:
    """`{"error": code, "message": message, ...extra}` with `status`, never cached."""
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
