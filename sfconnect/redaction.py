"""Masking of secrets in text that leaves the app: log lines now, the flow trace later.

Tokens, codes and the client secret must never reach a log, a page or a URL; this module is the one
place that knows how to shorten them to something a person can still recognise.
"""
from __future__ import annotations

import logging
import re

# Query-string and form parameters whose values are secrets.
SECRET_PARAMS = ("code", "access_token", "refresh_token", "client_secret", "code_verifier",
                 "token", "assertion", "password", "sessionId")

_PARAM_RE = re.compile(r"(?P<key>\b(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<value>[^&\s\"']+)")
_BEARER_RE = re.compile(r"(?P<key>Bearer\s+)(?P<value>[A-Za-z0-9!._~+/=-]+)")
_SESSION_ID_RE = re.compile(r"(?P<key><(?:\w+:)?sessionId>)(?P<value>[^<]+)")
# A Salesforce access token on its own: the 15- or 18-character org id, "!", then opaque text.
_ACCESS_TOKEN_RE = re.compile(
    r"(?P<key>)(?P<value>\b00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?![A-Za-z0-9._-]{20,})")


def mask(value: str) -> str:
    """Keep the first 6 and last 4 characters of a secret, enough to tell two of them apart."""
    if len(value) <= 12:
        return "*" * len(value)
    return f"{value[:6]}…{value[-4:]}"


def redact(text: str) -> str:
    """Mask every secret this module can recognise in `text`."""
    for pattern in (_PARAM_RE, _BEARER_RE, _SESSION_ID_RE, _ACCESS_TOKEN_RE):
        text = pattern.sub(lambda m: m.group("key") + mask(m.group("value")), text)
    return text


class RedactedLogRecord(logging.LogRecord):
    """A log record whose message has its secrets masked, whichever logger or handler emits it."""

    def getMessage(self) -> str:  # noqa: N802 - logging's own name
        return redact(super().getMessage())


def install_log_redaction() -> None:
    """Mask secrets in every log record of this process (werkzeug, gunicorn, zeep, ours)."""
    if logging.getLogRecordFactory() is not RedactedLogRecord:
        logging.setLogRecordFactory(RedactedLogRecord)
