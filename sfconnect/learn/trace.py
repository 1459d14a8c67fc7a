"""The trace of the flow: every outbound exchange of the current browser session, secrets masked.

`sfconnect.http` tells `observe` about each exchange of any outbound session; inside a request of
a browser session the exchange is masked at once (sfconnect.redaction), named after the step of
the flow it belongs to (from its purpose and URL path, so no call site knows about the trace) and
buffered in `flask.g` (a large reply's body is masked later, when the entry is read or stored);
once the response has been sent the buffer is appended to the session's trace, and a reader of
the trace waits for that. Outside a request (the CLI, start-up) nothing is recorded. The steps
the app controls in the browser (the authorization redirect, the callback) are recorded as entries
of their own, and so are the checks between exchanges (the token response's signature, the
endpoint chosen from the identity).

The trace lives server-side next to the token records, in the same kind of store (a file per trace,
or a Redis hash), encrypted with the token key because it holds the user's records; the session
keeps only its random id. It keeps the last 100 entries, compressed and within a byte budget
(TRACE_BUDGET_KB: past it the oldest bodies are shortened, then the oldest entries dropped), and is
deleted at logout (sfconnect.learn.trace_store).

A little over 400 lines because a quarter of it is teaching text: what each step of the flow is
for and the rule it follows (STEPS), which /flow shows beside each exchange.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import requests
from flask import Flask, Response, current_app, g, has_request_context, request, session

from sfconnect import ext, hooks, redaction
from sfconnect.auth import oidc
from sfconnect.auth.tokens import SignatureMismatch, verify_signature
from sfconnect.http import observe_exchanges
from sfconnect.learn.trace_store import CompressedRecords, TraceStore
from sfconnect.settings import Settings

log = logging.getLogger(__name__)

SESSION_KEY = "flow_trace"  # the session's trace id
BODY_LIMIT = 64 * 1024  # characters of a body kept in an entry
# Characters of a response that are masked (room for a secret across the cut), and the bytes that
# surely hold them (UTF-8 is at most 4 bytes a character): a queryMore batch is megabytes.
_MASKED_CHARS = BODY_LIMIT + 4096
_MASKED_BYTES = 4 * _MASKED_CHARS + 4

# Every step of the flow: what it is for, and the rule it follows.
STEPS: dict[str, str] = {
    "authorization request": (
        "The app answers Connect with a redirect that sends the browser to Salesforce's "
        "/services/oauth2/authorize with response_type=code, its client_id, the registered "
        "redirect_uri, the scope, a one-time state and a PKCE code_challenge. RFC 6749 §4.1.1 "
        "defines the request; RFC 7636 §4.3 adds code_challenge (S256: BASE64URL(SHA256("
        "code_verifier))), so a stolen code is useless without the verifier. Salesforce documents "
        "the parameters in \"OAuth 2.0 Web Server Flow for Web App Integration\"."),
    "sign-in and consent at Salesforce": (
        "The browser is at Salesforce: the user signs in and allows the scopes on the consent "
        "page (RFC 6749 §4.1, steps B and C). The app sees none of it, and no password ever "
        "reaches it; Salesforce skips the consent page once the user has approved the app."),
    "callback": (
        "Salesforce sends the browser back to the redirect_uri with a code and the same state "
        "(RFC 6749 §4.1.2). The app first checks the state against the one kept in the "
        "server-side session (RFC 6749 §10.12, against cross-site request forgery); the code is "
        "single-use and lives 15 minutes at Salesforce."),
    "token request": (
        "Server to server, the app POSTs the code to /services/oauth2/token with "
        "grant_type=authorization_code, the same redirect_uri, its client_id and client_secret, "
        "and the PKCE code_verifier (RFC 6749 §4.1.3, RFC 7636 §4.5). The secret and the "
        "verifier never pass through the browser."),
    "token response": (
        "Salesforce answers with access_token, refresh_token (with the refresh_token scope), "
        "instance_url, id (the identity URL), issued_at and signature (RFC 6749 §5.1 and "
        "Salesforce's additions). The tokens go into the app's encrypted token record; the "
        "browser's cookie holds only an opaque session id."),
    "signature check": (
        "Salesforce signs the token response: signature = Base64(HMAC-SHA256(client_secret, "
        "id + issued_at)). The app recomputes it in constant time and refuses a response that "
        "does not match (Salesforce's web server flow documentation, \"signature\"), so the id "
        "URL it is about to call really came from Salesforce for this app."),
    "id_token checks": (
        "With openid in the scope the token response (and a refresh's) carries an id_token, a "
        "JWT signed by the login host. Before the tokens are used the app checks it (OpenID "
        "Connect Core §3.1.3.7): the RS256 signature with a key of the host's JWKS, iss is the "
        "login host, aud holds the client_id, exp and iat are sane, nonce is the one sent with "
        "this sign-in, at_hash matches the access token, sub is present, and userinfo's sub is "
        "the same; a refresh's id_token has no nonce and must repeat the sign-in's iss, aud and "
        "sub (§12.2). A failed check revokes the tokens: no sign-in."),
    "identity request": (
        "The app GETs the id URL with Authorization: Bearer and the access token (RFC 6750) to "
        "learn who signed in and where the org serves its APIs (Salesforce's \"Identity URLs\"). "
        "A dead token is answered with 403 Bad_OAuth_Token, not 401."),
    "endpoint chosen with {version} filled": (
        "The identity response lists the org's endpoints in urls with a literal {version}; the "
        "app fills in its API version (its partner WSDL's, or SF_API_VERSION) and checks the "
        "host against its trust policy before the token is ever sent there (Salesforce's "
        "\"Identity URLs\" and SOAP API Developer Guide, \"Log In to the Login Server\")."),
    "SOAP request": (
        "SOQL goes to urls.partner as a SOAP envelope built by zeep from the partner WSDL. The "
        "access token travels as the sessionId of the SessionHeader, not in an HTTP header "
        "(Salesforce's SOAP API Developer Guide, \"SessionHeader\" and \"query()\")."),
    "SOAP response": (
        "A QueryResult: records, size, done, and a queryLocator for queryMore. An expired or "
        "revoked token is answered with HTTP 500 and the fault INVALID_SESSION_ID, which means "
        "\"refresh\" (SOAP API Developer Guide, \"API Fault Element\")."),
    "expired session and refresh": (
        "After INVALID_SESSION_ID the app trades its refresh token for a new access token at "
        "/services/oauth2/token with grant_type=refresh_token and its client secret (RFC 6749 "
        "§6, Salesforce's \"OAuth 2.0 Refresh Token Flow\"), once, then retries the call once. "
        "With refresh token rotation on, the answer carries a new refresh token as well."),
    "revoke": (
        "At logout (and whenever a connection is replaced or dropped) the app POSTs its refresh "
        "token to /services/oauth2/revoke, which ends it and every access token issued from it, "
        "then its access token, in case the server kept that one alive (RFC 7009, Salesforce's "
        "\"Revoke OAuth Tokens\"); a 400 invalid_token for it means it was dead already. The "
        "token record and the trace of the signed-in session are deleted as well."),
    "REST query": (
        "The same SOQL through the REST API: GET urls.query (with {version} filled) and ?q=, "
        "Authorization: Bearer (Salesforce's REST API Developer Guide, \"Query\"). The answer is "
        "JSON; an expired token gets 401 INVALID_SESSION_ID."),
}
# The steps in the order of the flow (the diagram draws them in this order).
ORDER = tuple(STEPS)


def now_iso(epoch: float) -> str:
    """An epoch time as ISO 8601 with milliseconds and a Z (HAR's startedDateTime)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# ------------------------------------------------------------------------------------ naming

def step_names(purpose: str, method: str, url: str, form: Mapping[str, str]) -> tuple[str, str]:
    """(request step, response step) of an exchange, from its purpose and URL path."""
    path = urlsplit(url).path
    if path.endswith("/services/oauth2/token"):
        grant = form.get("grant_type", "")
        if grant == "authorization_code":
            return "token request", "token response"
        if grant == "refresh_token":
            return "expired session and refresh", "token response"
        return f"token request ({grant or 'no grant_type'})", "token response"
    if path.endswith("/services/oauth2/revoke"):
        return "revoke", "revoke response"
    if "/services/Soap/" in path:
        return "SOAP request", "SOAP response"
    if "/services/data/" in path or purpose == "rest":
        return "REST query", "REST response"
    if path.startswith("/id/") or purpose == "identity":
        return "identity request", "identity response"
    return f"{purpose} request", f"{purpose} response"


def explanation(step: str) -> str:
    """The two or three sentences on a step (token requests of other grants share one)."""
    if step.startswith("token request"):
        return STEPS["token request"]
    return STEPS.get(step, "")


# -------------------------------------------------------------------------------- recording

def _text(data: object) -> str | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    if isinstance(data, str):
        return data
    return "(a streamed body, not recorded)"


def _cut(text: str | None) -> tuple[str | None, bool]:
    if text is None or len(text) <= BODY_LIMIT:
        return text, False
    return text[:BODY_LIMIT], True


def _mime(headers: Mapping[str, str]) -> str:
    return headers.get("Content-Type", "") or ""


def _entry(step: str, **fields: object) -> dict:
    started = float(fields.pop("started", None) or time.time())
    entry = {"step": step, "response_step": None, "http": True, "started": started,
             "started_iso": now_iso(started), "time_ms": 0.0, "method": "GET", "url": "",
             "request_headers": [], "request_body": None, "request_mime": "",
             "request_size": 0, "request_truncated": False, "status": 0, "status_text": "",
             "response_headers": [], "response_body": None, "response_mime": "",
             "response_size": 0, "response_truncated": False, "note": "", "purpose": ""}
    entry.update(fields)
    return entry


def _masked_response(content: bytes | str | bool | None, mime: str) -> tuple[str | None, bool]:
    """A response body as kept in an entry, masked, and whether it was cut."""
    # Mask only what can be kept: masking is linear in the body, and a queryMore batch is
    # megabytes. Only the bytes that hold the kept characters are decoded.
    if isinstance(content, bytes):
        response_text = _text(content[:_MASKED_BYTES])
        longer = len(content) > _MASKED_BYTES
    else:
        response_text = _text(content) if content is not False else "(streamed, not recorded)"
        longer = False
    longer = longer or len(response_text or "") > _MASKED_CHARS
    masked = (redaction.mask_body(response_text[:_MASKED_CHARS], mime)
              if response_text else None)
    response_body, cut = _cut(masked)
    return response_body, cut or longer


class _UnmaskedBody:
    """The head of a large response body, masked only when its entry is read or stored."""

    __slots__ = ("head", "longer", "mime")

    def __init__(self, head: bytes, longer: bool, mime: str) -> None:
        self.head, self.longer, self.mime = head, longer, mime

    def masked(self) -> tuple[str | None, bool]:
        body, truncated = _masked_response(self.head, self.mime)
        return body, truncated or self.longer


def _mask_bodies(entries: list[dict]) -> list[dict]:
    """Mask the bodies left for later in `entries` (in place); returns `entries`."""
    for entry in entries:
        body = entry.get("response_body")
        if isinstance(body, _UnmaskedBody):
            entry["response_body"], entry["response_truncated"] = body.masked()
    return entries


def exchange_entry(purpose: str, request: requests.PreparedRequest,
                   response: requests.Response | None, started: float, elapsed: float,
                   error: BaseException | None, *, summary: str | None = None,
                   mask_later: bool = False) -> dict:
    """One outbound exchange as a trace entry, every secret masked.

    With a `summary` (a note saying why), a successful response is recorded without its body:
    status, headers, size and time only. The request is recorded in full, masked, either way.
    With `mask_later`, a large response body is masked when the entry is read (`pending`) or
    stored, not now.
    """
    raw_body = _text(request.body) or ""
    request_mime = _mime(request.headers)
    form = dict(parse_qsl(raw_body)) if "urlencoded" in request_mime else {}
    step, response_step = step_names(purpose, request.method or "GET", request.url or "", form)
    body, cut = _cut(redaction.mask_body(raw_body, request_mime) if raw_body else None)
    entry = _entry(step, response_step=response_step, purpose=purpose, started=started,
                   time_ms=round(elapsed * 1000, 1), method=request.method or "GET",
                   url=redaction.mask_url(request.url or ""),
                   request_headers=redaction.mask_headers(request.headers.items()),
                   request_body=body, request_mime=request_mime,
                   request_size=len(raw_body.encode()), request_truncated=cut)
    if response is None:
        entry["note"] = f"No answer: {type(error).__name__}."
        return entry
    content = getattr(response, "_content", False)
    response_mime = _mime(response.headers)
    entry.update(status=response.status_code, status_text=response.reason or "",
                 response_headers=redaction.mask_headers(response.headers.items()),
                 response_mime=response_mime,
                 response_size=len(content) if isinstance(content, bytes) else 0)
    if summary is not None and response.status_code == 200:
        # A summary: no copy of the body and no masking pass over it (faults stay in full).
        entry["note"] = summary
    elif mask_later and isinstance(content, bytes) and len(content) > BODY_LIMIT:
        # Masked when the entry is read or stored (after the page has been sent): a query's
        # reply is 800 KB, and only its first 64 KB are kept.
        entry.update(response_body=_UnmaskedBody(content[:_MASKED_BYTES],
                                                 len(content) > _MASKED_BYTES, response_mime))
    else:
        response_body, truncated = _masked_response(content, response_mime)
        entry.update(response_body=response_body, response_truncated=truncated)
    if step == "SOAP request" and b"INVALID_SESSION_ID" in (content or b"")[:4096]:
        entry["note"] = ("INVALID_SESSION_ID: the access token expired or was revoked; the app "
                         "refreshes it once and retries.")
    return entry


# Claims of an id_token whose values are shown masked, as tokens are (hashes of tokens, the nonce).
MASKED_CLAIMS = ("nonce", "at_hash", "c_hash", "s_hash", "sid")
# The checks the app makes on an id_token, in its order, and what each compares (for /flow).
ID_TOKEN_CHECKS = (
    ("signature", "RS256, by a key of the login host's JWKS (the kid names it)"),
    ("iss", "the login host (its discovery document's issuer)"),
    ("aud", "contains this app's client_id (and azp is it, when there are several)"),
    ("exp", f"later than now ({oidc.LEEWAY_S} s leeway)"),
    ("iat", f"no later than now ({oidc.LEEWAY_S} s leeway)"),
    ("nonce", "the nonce sent with this sign-in (none at a refresh)"),
    ("at_hash", "the left half of SHA-256 of the access token"),
    ("sub", "present; at a refresh, the sign-in's iss, aud and sub again"),
    ("userinfo sub", "userinfo's sub is the id_token's (at sign-in)"),
)
def decoded_id_token(id_token: str) -> dict | None:
    """An id_token's header and claims for display, read without any verification (the app
    verifies it elsewhere); token-like claim values masked, the signature by its length only."""
    parts = id_token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = oidc.unverified_part(id_token, 0), oidc.unverified_part(id_token, 1)
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    shown = {name: redaction.mask(value) if name in MASKED_CLAIMS and isinstance(value, str)
             else value for name, value in redaction.mask_json(claims).items()}
    return {"header": redaction.mask_json(header), "claims": shown,
            "signature": f"[signature, {len(parts[2])} characters, not shown]"}


def _on_id_token_checked(_app: Flask, id_token: str, refresh: bool,
                         verdicts: Mapping[str, str]) -> None:
    """The core checked an id_token: an entry with each check, its rule, the value in the token
    and its verdict (the core's own, sfconnect.hooks.id_token_checked)."""
    if not has_request_context():
        return
    decoded = decoded_id_token(id_token)
    claims = decoded["claims"] if decoded else {}
    rules = dict(ID_TOKEN_CHECKS)
    # The core's checks in /flow's order, then any other it reported (alg, kid, nbf...).
    names = [*rules, *(name for name in verdicts if name not in rules)]
    failed = [name for name, verdict in verdicts.items() if verdict == "failed"]
    # userinfo is asked after the id_token's checks pass, at sign-in only.
    pending = "checked next" if not refresh and not failed else "not checked"
    rows = [[name, rules.get(name, "as the error names it"),
             "" if name in ("signature", "userinfo sub", "alg", "kid")
             else json.dumps(claims.get(name)) if name in claims else "(absent)",
             verdicts.get(name) or (pending if name == "userinfo sub" else "not checked")]
            for name in names]
    _buffer(create=True).append(_entry(
        "id_token checks", http=False, method="", url=str(claims.get("iss", "")),
        id_checks=rows, id_verdict="refused" if failed else "passed", refresh=refresh,
        note=(f"Refused: the check '{failed[0]}' failed; the tokens were revoked." if failed
              else "Every check of the id_token passed." + (
                  "" if refresh else " Next, userinfo's sub must be the id_token's."))))


def _on_userinfo_checked(_app: Flask, verdict: str) -> None:
    """userinfo's sub was compared with the id_token's: the verdict goes on this request's
    id_token checks entry (or, in step-by-step mode, where userinfo is its own step, an entry)."""
    if not has_request_context():
        return
    entries = _buffer(create=True)
    checks = next((e for e in reversed(entries) if e["step"] == "id_token checks"), None)
    if checks is None:
        checks = _entry("id_token checks", http=False, method="", url="", refresh=False,
                        id_checks=[["userinfo sub", dict(ID_TOKEN_CHECKS)["userinfo sub"], "",
                                    verdict]], id_verdict="passed")
        entries.append(checks)
    for row in checks["id_checks"]:
        if row[0] == "userinfo sub":
            row[3] = verdict
    if verdict == "failed":
        checks["id_verdict"] = "refused"
        checks["note"] = ("Refused: userinfo's sub is not the id_token's; the tokens were "
                          "revoked.")
    else:
        checks["note"] = "Every check passed: the app went on with these tokens."


def _followers(entry: dict, response: requests.Response | None) -> list[dict]:
    """The checks the app makes right after an exchange: the signature, the id_token, the
    endpoint."""
    if response is None or response.status_code != 200:
        return []
    settings = ext.settings()
    if entry["response_step"] == "token response":
        try:
            token = response.json()
        except ValueError:
            return []
        if not isinstance(token, dict):
            return []
        followers = []
        if "signature" in token:
            try:
                verify_signature(token, settings.client_secret)
                verdict = ("The signature matches HMAC-SHA256(client_secret, id + issued_at): "
                           "the response was issued for this app and not altered.")
            except SignatureMismatch:
                verdict = "The signature does NOT match: the response is refused."
            followers.append(_entry("signature check", http=False, method="",
                                    url=str(token.get("id", "")), note=verdict))
        if isinstance(token.get("id_token"), str):
            entry["id_token"] = decoded_id_token(token["id_token"])
        return followers
    if entry["response_step"] == "identity response":
        try:
            urls = response.json().get("urls") or {}
        except (ValueError, AttributeError):
            return []
        if not isinstance(urls, dict):
            return []
        partner = str(urls.get("partner") or "")
        version = api_version()
        return [_entry("endpoint chosen with {version} filled", http=False, method="",
                       url=partner.replace("{version}", version),
                       note=f"urls.partner is {partner}; with {{version}} = {version} the SOAP "
                            f"calls go to {partner.replace('{version}', version)}.")]
    return []


def api_version() -> str:
    """The API version the app fills into `{version}` (SF_API_VERSION, else the WSDL's)."""
    return ext.partner().api_version


def observe(purpose: str, request: requests.PreparedRequest, response: requests.Response | None,
            started: float, elapsed: float, error: BaseException | None) -> None:
    """sfconnect.http's observer: buffer the exchange for this browser session (no-op outside
    a request, or in an app without the trace)."""
    if not has_request_context() or "sfconnect.trace" not in current_app.extensions:
        return
    # Bulk repeats (an export's queryMore batches) are kept without their bodies: a learner needs
    # one SOAP exchange in full (the export's first, `query`), not fifty megabyte replies; each
    # still gets an entry with its request, status, size and time, and the note says why.
    entry = exchange_entry(purpose, request, response, started, elapsed, error,
                           summary=hooks.bulk_note(), mask_later=True)
    followers = _followers(entry, response)
    acting = hooks.acting()  # the connection whose tokens it used (several orgs at once)
    for each in (entry, *followers) if acting else ():
        each.update(connection=acting[0], connection_label=acting[1])
    _buffer(create=True).extend([entry, *followers])


def pending(create: bool = False) -> list[dict]:
    """The entries recorded during this request and not yet stored, every body masked."""
    return _mask_bodies(_buffer(create))


def _buffer(create: bool = False) -> list[dict]:
    # The entries as recorded: a large body may still wait for its masking.
    entries = g.get("trace_pending")
    if entries is None:
        entries = []
        if create:
            g.trace_pending = entries
    return entries


def store_of(app: Flask) -> TraceStore:
    """The app's trace store."""
    return app.extensions["sfconnect.trace"]


def current_trace() -> dict:
    """The trace of this browser session, with the entries of this request at the end."""
    document = store_of(current_app).load(session.get(SESSION_KEY))
    g.trace_budget_note = document["budget_note"]  # for /flow's note (`_budget_context`)
    return {**document, "entries": [*document["entries"], *pending()]}


# ---------------------------------------------------------------------------- request hooks

def _before() -> None:
    g.trace_id_at_start = session.get(SESSION_KEY)
    if request.endpoint != "oauth.callback":
        return
    settings = ext.settings()
    login = next((h.url for h in settings.login_hosts), "")
    now = time.time()
    _buffer(create=True).extend([
        _entry("sign-in and consent at Salesforce", http=False, method="", url=login,
               started=now, note="In the browser, at Salesforce; the time is from the "
               "authorization request to the callback."),
        _entry("callback", started=now, method=request.method, url=redaction.mask_url(request.url),
               purpose="browser", note="The browser's request to the app's redirect_uri."),
    ])


def _after(response: Response) -> Response:
    entries = _buffer(create=True)
    callback = next((e for e in entries if e["step"] == "callback"), None)
    if callback is not None:
        callback.update(status=response.status_code, status_text=response.status.partition(" ")[2],
                        time_ms=round((time.time() - callback["started"]) * 1000, 1),
                        response_headers=redaction.mask_headers(
                            [(k, v) for k, v in response.headers.items() if k == "Location"]))
    # Connect's redirect, or in step-by-step mode the authorize step's Continue.
    redirects_to_salesforce = request.endpoint in ("oauth.login", "steps.authorize")
    if redirects_to_salesforce and response.status_code in (302, 303):
        location = response.headers.get("Location", "")
        entries.insert(0, _entry(
            "authorization request", purpose="browser", method=request.method,
            url=redaction.mask_url(request.url), status=response.status_code,
            status_text="FOUND", response_headers=[("Location", redaction.mask_url(location))],
            note="The app's answer to Connect: a redirect to Salesforce's authorize endpoint."))
    store = store_of(current_app)
    if request.endpoint == "oauth.logout" and response.status_code in (302, 303):
        # The signed-in session's trace goes with it; the logout's own revoke starts a new one.
        store.delete(g.get("trace_id_at_start"))
        session.pop(SESSION_KEY, None)
    if response.is_streamed:  # an export: what it records while streaming follows these
        _flush(store, create=True)
    else:
        _store_after_sending(store, response)
    return response


def entries_of(entries: list[dict], connection: str | None) -> list[dict]:
    """The entries made with one connection (all of them when `connection` is None)."""
    if not connection:
        return entries
    return [entry for entry in entries if entry.get("connection") == connection]


def connections_in(entries: list[dict]) -> list[tuple[str, str]]:
    """(key, label) of each connection the entries name, in the order they first appear."""
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.get("connection"):
            seen.setdefault(str(entry["connection"]), str(entry.get("connection_label") or ""))
    return list(seen.items())


def _store_after_sending(store: TraceStore, response: Response) -> None:
    """Store this request's entries once `response` has been sent (a query's trace entry holds
    64 KB of its reply: masking, encrypting and writing it costs milliseconds nobody should wait
    for)."""
    entries = _buffer()
    if not entries:
        return
    append = store.append_later(_trace_id(create=True), list(entries))
    entries.clear()
    # After the response has been sent (the server closes it), or, should a server skip the
    # close (werkzeug's does when the browser resets the connection after a redirect), once the
    # response object is freed: a finalizer runs once, whichever comes first.
    response.call_on_close(weakref.finalize(response, append))


def _flush(store: TraceStore, create: bool) -> None:
    entries = _buffer()
    if not entries:
        return
    trace_id = _trace_id(create)
    if trace_id is None:
        return  # a streamed response after the session was saved: nowhere to keep it
    store.append(trace_id, list(entries))
    entries.clear()


def _trace_id(create: bool) -> str | None:
    """The session's trace id; with `create`, a new one when it has none (the session keeps it:
    decided while the response has not been sent, before the cookie)."""
    trace_id = session.get(SESSION_KEY)
    if trace_id is None and create:
        trace_id = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return trace_id


def flush() -> None:
    """Store the entries recorded so far in this request context. For a worker thread of a
    streamed response (an export): the response can end, and the user open /flow, before the
    worker's context ends."""
    if has_request_context() and "sfconnect.trace" in current_app.extensions:
        _flush(store_of(current_app), create=False)


def _teardown(_error: BaseException | None) -> None:
    # Exchanges made while a streamed response was being sent (exports) arrive after _after.
    if has_request_context() and "sfconnect.trace" in current_app.extensions:
        _flush(store_of(current_app), create=False)


def init_app(app: Flask, settings: Settings) -> TraceStore:
    """Keep traces next to the token records (Redis or files) and record every exchange."""
    backend = ext.backend(app)
    # Entries compressed before they are encrypted, within the session's budget.
    entries = CompressedRecords(backend.records("trace-entries"), settings.token_key)
    store = TraceStore(backend.sealed("traces"), entries, prepare=_mask_bodies,
                       budget=settings.trace_budget_kb * 1024)
    app.extensions["sfconnect.trace"] = store
    app.context_processor(_budget_context)
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    observe_exchanges(observe)
    hooks.checkpoint.connect(_on_checkpoint, app)
    hooks.connected.connect(_on_connected, app)
    hooks.id_token_checked.connect(_on_id_token_checked, app)
    hooks.userinfo_checked.connect(_on_userinfo_checked, app)
    return store


def _on_connected(_app: Flask, key: str, label: str) -> None:
    """A sign-in finished in this request: who signed in is known only now, and the exchanges
    that made the connection (code, id_token, identity) are its own."""
    if has_request_context():
        for entry in _buffer():
            entry.setdefault("connection", key)
            entry.setdefault("connection_label", label)


def _on_checkpoint(_app: Flask) -> None:
    flush()


def _budget_context() -> dict:
    # What the trace's budget shortened and dropped, once a page has read the trace.
    return {"trace_budget_note": g.get("trace_budget_note")}


def params_of(entry: Mapping[str, object]) -> list[tuple[str, str]]:
    """The (masked) query and form parameters of an entry, for the page's parameter tables."""
    url = str(entry.get("url") or "")
    if entry.get("step") == "authorization request":  # the redirect's target is what matters
        url = next((str(v) for k, v in entry.get("response_headers") or [] if k == "Location"),
                   url)
    params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    body = entry.get("request_body")
    if body and "urlencoded" in str(entry.get("request_mime")):
        params += parse_qsl(str(body), keep_blank_values=True)
    return params

