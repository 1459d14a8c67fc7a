"""Masking of secrets in text that leaves the app: log lines, and the trace of the flow.

Tokens, codes and the client secret must never reach a log, a page or a URL; this module is the one
place that knows how to shorten them to something a person can still recognise. Two strengths:
`mask()` keeps the first 6 and last 4 characters (codes, access and refresh tokens, the SOAP
sessionId), `HIDDEN` replaces the whole value (the client secret, the PKCE code verifier,
passwords, JWT assertions).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

HIDDEN = "[hidden]"
ELLIPSIS = "…"

# Parameters (query string, form, JSON) whose values are hidden entirely.
HIDDEN_PARAMS = ("client_secret", "code_verifier", "password", "assertion", "client_assertion")
# Parameters whose values are shortened to their first 6 and last 4 characters.
MASKED_PARAMS = ("code", "access_token", "refresh_token", "token", "id_token", "sessionId")
# Query-string and form parameters whose values are secrets (kept for existing callers).
SECRET_PARAMS = MASKED_PARAMS + HIDDEN_PARAMS
# Headers hidden entirely; Authorization: Bearer is masked, any other scheme hidden.
HIDDEN_HEADERS = ("cookie", "set-cookie", "proxy-authorization")

_PARAM_RE = re.compile(r"(?P<key>\b(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<value>[^&\s\"']+)")
_BEARER_RE = re.compile(r"(?P<key>Bearer\s+)(?P<value>[A-Za-z0-9!._~+/=-]+)")
_SESSION_ID_RE = re.compile(r"(?P<key><(?:[\w.-]+:)?sessionId>)(?P<value>[^<]+)")
# A Salesforce access token on its own: the 15- or 18-character org id, "!", then opaque text.
_ACCESS_TOKEN_RE = re.compile(
    r"(?P<key>)(?P<value>\b00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?![A-Za-z0-9._-]{20,})")
# "name": "value" in JSON, 'name': 'value' in a Python repr, name: 'value' in a log line.
_NAMED_SECRET_RE = re.compile(
    r"(?P<key>\b(?:" + "|".join(SECRET_PARAMS) + r")['\"]?\s*:\s*['\"]?)(?P<value>[^'\"\s,}]+)")


def _already_masked(value: str) -> bool:
    return value == HIDDEN or (ELLIPSIS in value and len(value) <= 11) or set(value) == {"*"}


def mask(value: str) -> str:
    """Keep the first 6 and last 4 characters of a secret, enough to tell two of them apart."""
    if _already_masked(value):
        return value  # masking twice must not hide what the first pass kept
    if len(value) <= 12:
        return "*" * len(value)
    return f"{value[:6]}{ELLIPSIS}{value[-4:]}"


def mask_param(name: str, value: str) -> str:
    """The value of parameter `name`: hidden, masked, or unchanged when it is no secret."""
    if name in HIDDEN_PARAMS:
        return HIDDEN
    if name in MASKED_PARAMS:
        return mask(value)
    return value


def _masked_match(match: re.Match) -> str:
    key = match.group("key")
    value = match.group("value")
    if _already_masked(value):
        return key + value
    if any(name in key for name in HIDDEN_PARAMS):
        return key + HIDDEN
    return key + mask(value)


# Each pattern with the literals one of which any match must contain: a reply of megabytes
# without them is not scanned by that pattern at all (`in` is far cheaper than a regex pass).
_PATTERNS_AND_TRIGGERS = (
    (_PARAM_RE, tuple(f"{name}=" for name in SECRET_PARAMS)),
    (_NAMED_SECRET_RE, SECRET_PARAMS),
    (_BEARER_RE, ("Bearer",)),
    (_SESSION_ID_RE, ("sessionId>",)),
    (_ACCESS_TOKEN_RE, ("!",)),
)


def redact(text: str) -> str:
    """Mask every secret this module can recognise in `text`."""
    for pattern, triggers in _PATTERNS_AND_TRIGGERS:
        if any(trigger in text for trigger in triggers):
            text = pattern.sub(_masked_match, text)
    return text


def mask_url(url: str) -> str:
    """A URL with the secrets of its query string masked (codes, tokens) or hidden."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    return urlunsplit(parts._replace(query=mask_form(parts.query)))


def mask_form(body: str) -> str:
    """An application/x-www-form-urlencoded body (or query string) with its secrets masked."""
    pairs = []
    for pair in body.split("&"):
        name, sep, raw = pair.partition("=")
        key = unquote_plus(name)
        if sep and (key in HIDDEN_PARAMS or key in MASKED_PARAMS):
            masked = mask_param(key, unquote_plus(raw))
            pair = f"{name}={quote(masked, safe='[]*').replace('%E2%80%A6', ELLIPSIS)}"
        pairs.append(pair)
    return "&".join(pairs)


def mask_json(document: object) -> object:
    """A parsed JSON document with the values of secret keys masked or hidden, at any depth."""
    if isinstance(document, dict):
        return {key: (mask_param(key, value) if isinstance(value, str) else mask_json(value))
                for key, value in document.items()}
    if isinstance(document, list):
        return [mask_json(item) for item in document]
    return document


def mask_header(name: str, value: str) -> str:
    """One header's value: Authorization: Bearer masked, other credentials hidden."""
    lowered = name.lower()
    if lowered == "authorization":
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and credentials:
            return f"{scheme} {mask(credentials.strip())}"
        return HIDDEN
    if lowered in HIDDEN_HEADERS:
        return HIDDEN
    return redact(value)


def mask_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers as (name, value) pairs with every credential masked."""
    return [(name, mask_header(name, value)) for name, value in headers]


def mask_body(text: str, content_type: str | None) -> str:
    """A request or response body with its secrets masked, by its content type; anything the
    type does not tell is run through `redact`."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return redact(mask_form(text))
    if kind.endswith("json"):
        try:
            document = json.loads(text)
        except ValueError:
            return redact(text)
        return redact(json.dumps(mask_json(document), indent=2, ensure_ascii=False))
    return redact(text)


class RedactedLogRecord(logging.LogRecord):
    """A log record whose message has its secrets masked, whichever logger or handler emits it."""

    def getMessage(self) -> str:  # noqa: N802 - logging's own name
        return redact(super().getMessage())


def install_log_redaction() -> None:
    """Mask secrets in every log record of this process (werkzeug, gunicorn, zeep, ours)."""
    if logging.getLogRecordFactory() is not RedactedLogRecord:
        logging.setLogRecordFactory(RedactedLogRecord)
