"""Pages for learning the flow: /flow (the trace, its HAR and its diagram), /flows (the other
OAuth flows), /compare (the same SOQL through REST and SOAP), /setup (registering the app), and
the endpoints panel of the home page."""
from __future__ import annotations

import json
from time import perf_counter
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    render_template,
    request,
)
from markupsafe import Markup

from sfconnect import ext
from sfconnect.auth.connection import (
    Connection,
    call_with_session,
    connected,
    current_connection,
    with_session_tokens,
)
from sfconnect.auth.tokens import TokenSet
from sfconnect.auth.trust import SALESFORCE_DOMAINS, is_loopback
from sfconnect.errors import NotConnected, SalesforceFault
from sfconnect.http import token_gate
from sfconnect.learn import diagram, har, own_code, trace, trace_store
from sfconnect.salesforce import rest
from sfconnect.settings import Settings

bp = Blueprint("learn", __name__)

DEFAULT_COMPARE_SOQL = "SELECT Id, Name, Industry FROM Account ORDER BY Name LIMIT 10"
MAX_SOQL = 100_000

# What each entry of the identity service's `urls` is for.
ENDPOINT_PURPOSES: dict[str, str] = {
    "enterprise": "SOAP enterprise API: strongly typed to this org's objects and fields "
                  "(enterprise WSDL, generated per org).",
    "metadata": "Metadata API (SOAP): retrieve and deploy the org's configuration.",
    "partner": "SOAP partner API: loosely typed, works with any org (partner WSDL). This app's "
               "queries go here, with the token as the SessionHeader's sessionId.",
    "rest": "REST API root of this version: lists the resources below.",
    "sobjects": "REST: describe objects, create, read, update and delete records.",
    "search": "REST: SOSL search.",
    "query": "REST: SOQL query (GET ?q=); /compare uses it.",
    "recent": "REST: the user's recently viewed records.",
    "tooling_soap": "Tooling API (SOAP): Apex classes and triggers, debug logs, for developer "
                    "tools.",
    "tooling_rest": "Tooling API (REST): the same, as JSON.",
    "profile": "The user's profile page in Salesforce's own UI (no API).",
    "feeds": "Connect REST API (Chatter): feeds.",
    "groups": "Connect REST API (Chatter): groups.",
    "users": "Connect REST API (Chatter): users.",
    "feed_items": "Connect REST API (Chatter): feed items.",
    "feed_elements": "Connect REST API (Chatter): feed elements.",
    "custom_domain": "The org's My Domain URL: its own login host.",
}

# The other OAuth flows: what they are, when to use them, and the command that runs each.
FLOWS = (
    {"name": "JWT bearer", "flow": "jwt", "grant": "urn:ietf:params:oauth:grant-type:jwt-bearer",
     "rule": "RFC 7523; Salesforce's \"OAuth 2.0 JWT Bearer Flow for Server-to-Server "
             "Integration\"",
     "when": "Server to server, no user present: the app signs a short JWT (iss = consumer key, "
             "sub = username, aud = login URL, exp) with the private key whose certificate is "
             "uploaded to the External Client App. No secret and no password travel; the user "
             "must be pre-authorized by an admin. No refresh token: sign a new assertion."},
    {"name": "Client credentials", "flow": "client-credentials", "grant": "client_credentials",
     "rule": "RFC 6749 §4.4; Salesforce's \"OAuth 2.0 Client Credentials Flow for "
             "Server-to-Server Integration\"",
     "when": "Server to server with the consumer key and secret alone: the token runs as the "
             "app's integration user (the \"Run As\" user set on the app), so give that user "
             "only the permissions the integration needs."},
    {"name": "Username-password", "flow": "password", "grant": "password",
     "rule": "RFC 6749 §4.3; Salesforce's \"OAuth 2.0 Username-Password Flow for Special "
             "Scenarios\"",
     "when": "Discouraged: the app handles the user's password (plus security token), which "
             "OAuth exists to avoid, and there is no refresh token. New orgs block it by default "
             "and an admin can block it at any time; use JWT bearer or client credentials "
             "instead."},
    {"name": "Refresh token", "flow": "refresh", "grant": "refresh_token",
     "rule": "RFC 6749 §6; Salesforce's \"OAuth 2.0 Refresh Token Flow\"",
     "when": "Renewing a session: trade the refresh token a web server flow gave (scope "
             "refresh_token) for a new access token when the old one expired, as this app does "
             "after INVALID_SESSION_ID. With rotation on, keep the new refresh token."},
)

# The errors people hit first when registering the app, and what they mean.
SETUP_ERRORS = (
    ("redirect_uri_mismatch",
     "The redirect_uri the app sends is not one of the app's registered callback URLs. Scheme, "
     "host, port and path must match exactly (http://localhost:5000 is not "
     "http://127.0.0.1:5000). Copy the callback URL above into the app, or set SF_REDIRECT_URI."),
    ("invalid_client_id",
     "Salesforce does not know the consumer key at this login host: a typo in SF_CLIENT_ID, an "
     "app created in another org (sandbox or production), or a new app that has not propagated "
     "yet (it can take several minutes)."),
    ("OAUTH_APPROVAL_ERROR_GENERIC",
     "Salesforce refused the sign-in at the consent step: the user's profile or permission set "
     "is not allowed to use the app (Manage policies: \"Admin approved users are pre-authorized\" "
     "without the user's profile), or the app is blocked in this org."),
    ("invalid_grant: expired authorization code",
     "The code was used already or is older than 15 minutes (a reloaded callback page, a "
     "second tab, a debugger pause). Start again from Connect; codes are single-use."),
    ("The sandbox host",
     "Sandboxes sign in at https://test.salesforce.com (or the sandbox's My Domain, "
     "…--sandbox.my.salesforce.com), never login.salesforce.com. An app created in production is "
     "copied to a sandbox only when the sandbox is refreshed after the app was created."),
)


def init_app(app: Flask, settings: Settings) -> None:
    """The trace of every exchange, the learning pages, the endpoints panel, the CLI."""
    from sfconnect.learn.cli import sf

    trace.init_app(app, settings)
    own_code.init_app(app)  # Copy as, the starter, /local-org
    # /compare's REST calls: one session for all users, like the other outbound sessions.
    ext.register(app, "rest_http", token_gate("rest", ext.tokens(app).trust,
                                              settings.http_timeouts))
    app.register_blueprint(bp)
    app.context_processor(_endpoints_context)
    app.cli.add_command(sf)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# ------------------------------------------------------------------------------------ trace

@bp.get("/flow")
def flow():  # noqa: ANN201
    """The current browser session's exchanges, in order, with the sequence diagram."""
    document = trace.current_trace()
    # Several orgs at once: ?org=<key> shows the exchanges made with that connection only.
    connections = trace.connections_in(document["entries"])
    shown_org = request.args.get("org") or None
    entries = trace.entries_of(document["entries"], shown_org)
    return render_template("flow.html", entries=entries, dropped=document.get("dropped", 0),
                           trace_connections=connections, shown_org=shown_org,
                           limit=trace_store.LIMIT, explain=trace.explanation,
                           params_of=trace.params_of, svg=Markup(diagram.render_svg(entries)))  # noqa: S704 - built from escaped parts


@bp.get("/flow.har")
def flow_har():  # noqa: ANN201
    """The trace as a HAR 1.2 download."""
    document = har.to_har(trace.current_trace()["entries"])
    response = Response(json.dumps(document, indent=2, ensure_ascii=False),
                        mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="sfconnect-flow.har"'
    return _no_store(response)


@bp.get("/flow.svg")
def flow_svg():  # noqa: ANN201
    """The sequence diagram alone."""
    svg = diagram.render_svg(trace.current_trace()["entries"])
    return _no_store(Response(svg, mimetype="image/svg+xml"))


# ------------------------------------------------------------------------------------ flows

@bp.get("/flows")
def flows():  # noqa: ANN201
    """The other OAuth flows, when to use each, and the command that tries it."""
    return render_template("flows.html", flows=FLOWS)


# ---------------------------------------------------------------------------------- compare

@bp.get("/compare")
@connected
def compare():  # noqa: ANN201
    """The same SOQL through the REST API and the SOAP partner API, side by side."""
    soql = (request.args.get("q") or "").strip()
    if not soql:
        return render_template("compare.html", soql=DEFAULT_COMPARE_SOQL, sides=None)
    if len(soql) > MAX_SOQL:
        raise SalesforceFault("MALFORMED_QUERY", f"SOQL allows at most {MAX_SOQL:,} characters.")
    partner = ext.partner()
    began = perf_counter()
    soap_batch = call_with_session(lambda endpoint, sid: partner.query(endpoint, sid, soql))
    soap_ms = (perf_counter() - began) * 1000
    soap_entry = _last_entry("SOAP request")
    began = perf_counter()
    rest_result = with_session_tokens(lambda connection, tokens: _rest_query(connection, tokens,
                                                                             soql))
    rest_ms = (perf_counter() - began) * 1000
    rest_entry = _last_entry("REST query")

    from sfconnect.salesforce.records import rest_record

    soap_records = [rest.plain_record(rest_record(element)) for element in soap_batch.records]
    rest_records = [rest.plain_record(record) for record in rest_result.records]
    sides = [
        {"name": "SOAP partner API", "key": "soap", "entry": soap_entry, "ms": soap_ms,
         "total": soap_batch.size, "records": soap_records},
        {"name": "REST API", "key": "rest", "entry": rest_entry, "ms": rest_ms,
         "total": rest_result.total_size, "records": rest_records},
    ]
    return render_template("compare.html", soql=soql, sides=sides,
                           same=soap_records == rest_records, record_id=_record_id)


def _record_id(record: object) -> str:
    if isinstance(record, dict):
        return str(record.get("Id") or json.dumps(record, ensure_ascii=False, default=str)[:80])
    return str(record)


def _rest_query(connection: Connection, tokens: TokenSet, soql: str) -> rest.RestQueryResult:
    """The REST query at the connection's urls.query (kept by sign-in from the identity)."""
    if "query" not in connection.urls:
        raise NotConnected("This sign-in predates the REST endpoint being kept with it: use "
                           "Refresh identity, or connect again.")
    url = ext.tokens().trust.check(rest.query_url(connection.urls["query"],
                                                  trace.api_version()))
    return rest.query(ext.rest_http(), url, tokens.access_token, soql)


def _last_entry(step: str) -> dict | None:
    return next((e for e in reversed(trace.pending()) if e["step"] == step), None)


# ------------------------------------------------------------------------------------ setup

@bp.get("/setup")
def setup():  # noqa: ANN201
    """What to register in Salesforce, where the key and secret go, and checks of this app."""
    settings = ext.settings()
    return render_template("setup.html", settings=settings, checks=_checks(settings),
                           errors=SETUP_ERRORS, openid_on=openid_on(settings))


def openid_on(settings: Settings) -> bool:
    """Whether sign-in uses OpenID Connect: `openid` among the configured scopes."""
    return "openid" in settings.scopes.split()


def _checks(settings: Settings) -> list[dict[str, object]]:
    login = urlsplit(settings.login_url)
    host = (login.hostname or "").lower()
    salesforce = any(host == d or host.endswith("." + d) for d in SALESFORCE_DOMAINS)
    local = login.scheme == "http" and is_loopback(host)
    redirect_host = urlsplit(settings.redirect_uri).netloc.lower()
    serving_host = request.host.lower()
    return [
        {"name": "Login URL is https and a Salesforce domain",
         "ok": login.scheme == "https" and salesforce,
         "detail": (f"{settings.login_url}: the local org, fine for learning; a real org needs "
                    "https://login.salesforce.com, https://test.salesforce.com or your My Domain."
                    if local else
                    f"{settings.login_url}" + ("" if login.scheme == "https" else
                                                ": not https") +
                    ("" if salesforce else ": not under a Salesforce domain"))},
        {"name": "Redirect URI host matches the host serving this page",
         "ok": redirect_host == serving_host,
         "detail": f"SF_REDIRECT_URI is on {redirect_host}; this page was served by "
                   f"{serving_host}." + ("" if redirect_host == serving_host else
                                          " The browser would come back to another host, where "
                                          "its session cookie is unknown: sign-in fails with "
                                          "invalid_state.")},
        {"name": "Client id (consumer key) present", "ok": bool(settings.client_id),
         "detail": (f"SF_CLIENT_ID starts with {settings.client_id[:8]}…" if settings.client_id
                    else "SF_CLIENT_ID is empty.")},
        {"name": "Client secret present", "ok": bool(settings.client_secret),
         "detail": "SF_CLIENT_SECRET is set (never shown)." if settings.client_secret
         else "SF_CLIENT_SECRET is empty."},
        {"name": "Scopes include api and refresh_token",
         "ok": {"api", "refresh_token"} <= set(settings.scopes.split()),
         "detail": f"SF_SCOPES = {settings.scopes}"},
    ]


# ------------------------------------------------------------------------- endpoints panel

def _endpoints_context() -> dict[str, object]:
    """`identity_endpoints` for templates/_endpoints.html: the identity's urls, {version} filled."""
    connection = current_connection() if request.endpoint == "views.index" else None
    urls = connection.urls if connection is not None else None
    if not urls:
        return {"identity_endpoints": None}
    version = trace.api_version()
    rows = [{"name": name, "template": url, "url": url.replace("{version}", version),
             "purpose": ENDPOINT_PURPOSES.get(name, "")} for name, url in urls.items()]
    return {"identity_endpoints": {
        "rows": rows, "version": version, "instance_url": connection.instance_url,
        "apex": f"{connection.instance_url}/services/Soap/class/<Namespace>/<Class>",
        "apex_example": f"{connection.instance_url}/services/Soap/class/acme/InvoiceService",
    }}
