"""What a step page shows for each kind of pending step: the request the app is about to send,
parameter by parameter, secrets masked exactly as in the trace (sfconnect.redaction), and what
each parameter is for. Used by sfconnect.learn.steps; reads the step's data, changes nothing
(a step whose tokens or connection are gone raises StaleStep or NotConnected; the caller drops
it)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import (
    url_for,
)
from lxml import etree

from sfconnect import ext, redaction
from sfconnect.auth import oidc
from sfconnect.auth.connection import current_connection
from sfconnect.auth.tokens import StoredTokens
from sfconnect.errors import NotConnected
from sfconnect.learn import trace


class StaleStep(Exception):
    """A Continue for a step that is not pending: already continued, replaced or discarded."""


@dataclass(frozen=True)
class Row:
    """One parameter or header of a step: its name, its (masked) value, what it is for."""

    name: str
    value: str
    purpose: str = ""


@dataclass(frozen=True)
class StepPage:
    """What step.html shows for a pending step."""

    step_id: str
    kind: str
    number: int
    title: str
    lead: str
    trace_step: str  # the step's name in the trace, for its explanation
    method: str
    url: str
    params_caption: str
    params: list[Row]
    headers: list[Row] = field(default_factory=list)
    body: str | None = None
    body_caption: str = "Body"
    received_caption: str = ""
    received: list[Row] = field(default_factory=list)
    continue_url: str | None = None  # a link (GET); otherwise the Continue form posts to /step
    continue_label: str = "Continue"
    note: str = ""

    @property
    def why(self) -> str:
        """The two or three sentences the trace gives for this step."""
        return trace.explanation(self.trace_step)


AUTHORIZE_PARAMS = {
    "response_type": "code: the web server flow. Salesforce answers with an authorization code "
                     "for the app to exchange, never with a token in the URL (RFC 6749 §4.1.1).",
    "client_id": "The consumer key: which External Client App (Connected App) is asking "
                 "(RFC 6749 §2.2, §4.1.1).",
    "redirect_uri": "Where Salesforce sends the browser back with the code. It must equal one of "
                    "the app's registered callback URLs exactly, or Salesforce answers "
                    "redirect_uri_mismatch (RFC 6749 §3.1.2, §4.1.1).",
    "scope": "What the app asks to be allowed: api for the APIs, refresh_token to stay "
             "connected, openid (when set) for an id_token saying who signed in (RFC 6749 §3.3; "
             "Salesforce's \"OAuth Tokens and Scopes\").",
    "state": "A one-time random value kept in this app's server-side session. The callback must "
             "bring it back unchanged, so an answer to a sign-in this browser did not start is "
             "refused (RFC 6749 §4.1.1, §10.12).",
    "code_challenge": "BASE64URL(SHA256(code_verifier)). The verifier itself stays on the server "
                      "until the token request, so a code stolen on its way back is useless "
                      "(RFC 7636 §4.2, §4.3).",
    "code_challenge_method": "S256: the challenge is the SHA-256 hash of the verifier, never the "
                             "verifier itself (RFC 7636 §4.3).",
    "nonce": "OpenID Connect (only with openid in the scope): a random value kept with the "
             "state; the id_token must carry it back, so a replayed id_token is refused "
             "(OpenID Connect Core §3.1.2.1, §3.1.3.7).",
    "prompt": "Whether Salesforce must ask again: login, consent (OpenID Connect Core §3.1.2.1).",
}
TOKEN_PARAMS = {
    "grant_type": "authorization_code: trade the code from the callback for tokens "
                  "(RFC 6749 §4.1.3).",
    "code": "The code the callback brought. Single use, and Salesforce lets it live 15 minutes. "
            "Masked to its first 6 and last 4 characters, as in the trace.",
    "client_id": "The consumer key again (RFC 6749 §4.1.3).",
    "client_secret": "The consumer secret, in the body (client_secret_post, RFC 6749 §2.3.1): the "
                     "app proves it is the registered app. It never reaches the browser; hidden "
                     "entirely.",
    "redirect_uri": "The same redirect_uri as in the authorization request; Salesforce checks "
                    "that they match (RFC 6749 §4.1.3).",
    "code_verifier": "The PKCE secret whose hash was the code_challenge: Salesforce hashes it "
                     "and compares (RFC 7636 §4.5). Hidden entirely.",
}
TOKEN_ORDER = ("grant_type", "code", "client_id", "client_secret", "redirect_uri",
               "code_verifier")
JWT_HEADER = {
    "alg": "The signing algorithm: must be RS256 (the app pins it; none and HS256 are refused).",
    "kid": "Which key of the JWKS signed it.",
    "typ": "JWT.",
}
FORM_HEADERS = (
    Row("Content-Type", "application/x-www-form-urlencoded",
        "The parameters travel in the body, never in the URL (RFC 6749 §4.1.3)."),
    Row("Accept", "application/json", "Salesforce answers with JSON."),
)


def describe(step: Mapping[str, object]) -> StepPage:
    """The page of a pending step. Raises StaleStep when what it needs is gone."""
    kind = str(step["kind"])
    data = step["data"]
    assert isinstance(data, dict)
    step_id = str(step["id"])
    if kind == "authorize":
        return _authorize_page(step_id, data)
    if kind == "token":
        return _token_page(step_id, data)
    if kind == "jwks":
        return _jwks_page(step_id, data)
    if kind == "userinfo":
        return _userinfo_page(step_id, data)
    if kind == "identity":
        return _identity_page(step_id, data)
    return _soap_page(step_id, data)


def _openid_steps() -> int:
    """The steps OpenID Connect adds before the identity call (the key set, userinfo)."""
    return 2 if oidc.has_openid(ext.settings().scopes) else 0


def paused_record(data: dict) -> tuple[str, StoredTokens]:
    """The token record a paused sign-in keeps: its id, and its version and tokens. StaleStep
    when it is gone (dropped with the step, or swept)."""
    record_id = str(data.get("token_record") or "")
    stored = ext.tokens().vault.load(record_id)
    if stored is None:
        raise StaleStep()
    return record_id, stored


def _jwks_page(step_id: str, data: dict) -> StepPage:
    login = str(data["login"])
    id_token = str(data.get("id_token") or "")
    decoded = trace.decoded_id_token(id_token) if id_token else None
    header = decoded["header"] if decoded else {}
    claims = decoded["claims"] if decoded else {}
    params = [Row(f"header {name}", str(value), JWT_HEADER.get(name, ""))
              for name, value in header.items()]
    params += [Row(name, str(claims[name]) if name in claims else "(absent)", rule)
               for name, rule in trace.ID_TOKEN_CHECKS if name not in ("signature",
                                                                       "userinfo sub")]
    return StepPage(
        step_id=step_id, kind="jwks", number=3, title="The id_token's keys",
        lead="The token response carried an id_token, a JWT the login host signed. Before the "
             "app uses any token, it checks it: next it fetches the login host's discovery "
             "document, then the key set (JWKS) it names, and verifies the RS256 signature with "
             "the key the header's kid names; then each claim below.",
        trace_step="id_token checks", method="GET",
        url=f"{login}/.well-known/openid-configuration",
        params_caption="The id_token to check (decoded, not yet verified; the nonce masked)",
        params=params,
        headers=[Row("Accept", "application/json", "The discovery document (OpenID Connect "
                     "Discovery §4), then the JWKS at its jwks_uri (RFC 7517). No token is "
                     "sent: both are public.")],
        received_caption="What the sign-in kept for this check",
        received=[Row("nonce", redaction.mask(str(data.get("nonce") or "")),
                      "Sent in the authorize request and kept with the state: the id_token "
                      "must carry the same (OpenID Connect Core §3.1.3.7, step 11)."),
                  Row("issuer", login, "The login host the flow started at: iss must be it.")],
        note="The app fetches the JWKS again when an unknown kid appears (at most once a "
             "minute), so a rotated key is found; the algorithm is pinned to RS256, never read "
             "from the token. A failed check revokes the tokens just issued: no sign-in.")


def _userinfo_page(step_id: str, data: dict) -> StepPage:
    tokens = paused_record(data)[1].tokens
    endpoint = ext.oidc().metadata(str(data["login"]))["userinfo_endpoint"]
    bearer = redaction.mask_header("Authorization", f"Bearer {tokens.access_token}")
    return StepPage(
        step_id=step_id, kind="userinfo", number=4, title="The userinfo request",
        lead="Every check of the id_token passed. Last, the app asks the userinfo endpoint who "
             "the access token belongs to: its sub must be the id_token's, so the tokens and "
             "the id_token are known to describe the same user (OpenID Connect Core §5.3.2).",
        trace_step="id_token checks", method="GET", url=endpoint,
        params_caption="Query parameters", params=[],
        headers=[Row("Authorization", bearer, "The access token as a Bearer token "
                     "(RFC 6750 §2.1). Masked, as in the trace."),
                 Row("Accept", "application/json", "The claims, as JSON.")],
        received_caption="What the id_token said",
        received=[Row("sub", str(data.get("sub") or ""), "userinfo's sub must be this.")])


def _authorize_page(step_id: str, data: dict) -> StepPage:
    url = str(data["url"])
    params = [Row(name, redaction.mask_param(name, value), AUTHORIZE_PARAMS.get(name, ""))
              for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True)]
    return StepPage(
        step_id=step_id, kind="authorize", number=1, title="The authorization request",
        lead="Instead of redirecting your browser at once, the app shows the URL it is about to "
             "send it to: Salesforce's authorize endpoint, with these parameters. The state and "
             "the PKCE pair are made and kept already; Continue follows the URL to Salesforce's "
             "sign-in page.",
        trace_step="authorization request", method="GET", url=redaction.mask_url(url),
        params_caption="Query parameters", params=params,
        note="Not in the URL: the code_verifier ([hidden]), kept in this app's server-side "
             "session for the token request.",
        continue_url=url_for("steps.authorize", step=step_id),
        continue_label="Continue to Salesforce")


def _token_page(step_id: str, data: dict) -> StepPage:
    settings = ext.settings()
    form = {"grant_type": "authorization_code", "code": str(data["code"]),
            "client_id": settings.client_id, "client_secret": settings.client_secret,
            "redirect_uri": str(data.get("redirect_uri") or settings.redirect_uri)}
    if data.get("code_verifier"):
        form["code_verifier"] = str(data["code_verifier"])
    params = [Row(name, redaction.mask_param(name, form[name]), TOKEN_PARAMS[name])
              for name in TOKEN_ORDER if name in form]
    body = redaction.mask_body(urlencode(form), "application/x-www-form-urlencoded")
    return StepPage(
        step_id=step_id, kind="token", number=2, title="The token request",
        lead="Salesforce sent your browser back with a code, and the state matched the one kept "
             "in this session. Next, the app exchanges the code for tokens: this POST goes from "
             "the app to Salesforce directly, so the secret and the verifier never pass through "
             "your browser.",
        trace_step="token request", method="POST", url=str(data["token_url"]),
        params_caption="Form parameters (the body)", params=params,
        headers=list(FORM_HEADERS), body=body,
        received_caption="What the callback brought",
        received=[Row("code", redaction.mask(str(data["code"])),
                      "Kept on the server, encrypted, while this page waits; used once."),
                  Row("state", "matched", "Compared with the state kept in this session, then "
                      "deleted: the same answer cannot be used twice.")],
        note="The code expires 15 minutes after Salesforce issued it; Continue after that and "
             "Salesforce answers invalid_grant.")


def _identity_page(step_id: str, data: dict) -> StepPage:
    tokens = paused_record(data)[1].tokens
    bearer = redaction.mask_header("Authorization", f"Bearer {tokens.access_token}")
    received = [Row("access_token", redaction.mask(tokens.access_token),
                    "The session: sent as Bearer to the identity service and as the SOAP "
                    "sessionId."),
                Row("refresh_token", redaction.mask(tokens.refresh_token)
                    if tokens.refresh_token else "(none: no refresh_token scope)",
                    "Trades for a new access token when this one expires."),
                Row("instance_url", tokens.instance_url, "The org's own host."),
                Row("id", tokens.id_url, "The identity URL, called next."),
                Row("issued_at", tokens.issued_at, "When, in milliseconds since 1970."),
                Row("signature", "checked",
                    "Base64(HMAC-SHA256(client_secret, id + issued_at)) matched: the answer "
                    "came from Salesforce for this app.")]
    if tokens.scope:
        received.append(Row("scope", tokens.scope, "What was granted."))
    return StepPage(
        step_id=step_id, kind="identity", number=3 + _openid_steps(),
        title="The identity request",
        lead="The token response arrived and its signature checked out; the tokens are in the "
             "app's encrypted token record. Next, the app asks Salesforce's identity service who "
             "signed in and where the org serves its APIs.",
        trace_step="identity request", method="GET", url=tokens.id_url,
        params_caption="Query parameters", params=[],
        headers=[Row("Authorization", bearer, "The access token as a Bearer token "
                     "(RFC 6750 §2.1). Masked to its first 6 and last 4 characters, as in the "
                     "trace."),
                 Row("Accept", "application/json", "The identity document, as JSON.")],
        received_caption="What the token response gave (masked)", received=received)


def _soap_page(step_id: str, data: dict) -> StepPage:
    connection = current_connection()
    if connection is None:
        raise NotConnected()
    service = ext.tokens()
    stored = service.vault.load(connection.token_record)
    if stored is None:
        raise NotConnected("Your Salesforce session has ended. Connect again.")
    endpoint = service.endpoint(connection)  # {version} filled, host trusted
    operation = str(data["operation"])
    argument = str(data["argument"])
    batch_size = int(data["batch_size"]) if data.get("batch_size") else None
    masked_session = redaction.mask(stored.tokens.access_token)
    envelope = redaction.redact(soap_envelope(ext.partner(),
                                              endpoint, masked_session, operation, argument,
                                              batch_size))
    argument_name = "queryLocator" if operation == "queryMore" else "queryString"
    params = [Row("sessionId", masked_session, "SessionHeader: the access token travels inside "
                  "the envelope, not in an HTTP header (SOAP API Developer Guide, "
                  "\"SessionHeader\"). Masked, as in the trace."),
              Row(argument_name, argument,
                  "The locator of the next batch (queryMore)." if operation == "queryMore" else
                  "The SOQL, as you wrote it (" + ("queryAll: deleted and archived records "
                                                   "too" if operation == "queryAll" else
                                                   "query") + ").")]
    if batch_size:
        params.append(Row("batchSize", str(batch_size), "QueryOptions header: at most this many "
                          "records per batch; the rest comes through queryMore."))
    version = trace.api_version()
    return StepPage(
        step_id=step_id, kind="soap", number=4 + _openid_steps(), title="The SOAP request",
        lead=f"Next, the app sends {operation}() to the partner API: this envelope, built by zeep "
             "from the partner WSDL, POSTed to the endpoint the identity service named.",
        trace_step="SOAP request", method="POST", url=endpoint,
        params_caption=f"The {operation} call", params=params,
        headers=[Row("Content-Type", "text/xml; charset=utf-8", "SOAP 1.1."),
                 Row("SOAPAction", '""', "The partner WSDL's soapAction for every operation.")],
        body=envelope, body_caption="The envelope",
        received_caption="Where it goes",
        received=[Row("urls.partner", connection.partner_url,
                      "From the identity service, with a literal {version}."),
                  Row("{version}", version, "The app's API version (its partner WSDL's, or "
                      "SF_API_VERSION)."),
                  Row("endpoint", endpoint, "Checked against the trust policy before the token "
                      "goes there.")],
        note="If Salesforce answers INVALID_SESSION_ID, the app refreshes the token once and "
             "sends the envelope again with the new one, without another pause (the trace shows "
             "both).")


def soap_envelope(partner: object, endpoint: str, session_id: str, operation: str,
                  argument: str, batch_size: int | None) -> str:
    """The envelope zeep would send for `operation(argument)`, pretty-printed, without sending."""
    envelope = partner.envelope(endpoint, session_id, operation, argument, batch_size=batch_size)
    return etree.tostring(envelope, pretty_print=True, encoding="unicode")
