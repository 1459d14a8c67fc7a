"""The Fetch Metadata guard: another site cannot make this app call Salesforce for its user.

A browser says where a request comes from in `Sec-Fetch-Site`. A link, form or image on another
site that GETs /query, an export, /compare or /login would otherwise run a query (or start a
sign-in) with the signed-in user's token, since the session cookie is Lax. So a request marked
`cross-site`, or `same-site` (a sibling subdomain is another site's app), to an endpoint that calls
Salesforce calls nothing: pages get a page saying in plain words what would run, with a same-origin
button that runs it (POST /cross-site/continue, CSRF-checked, then a 303 back to the same URL);
the JSON describe endpoints get a 403. Requests without the header (curl, older browsers), from
this origin (`same-origin`) or typed by the user (`none`) pass untouched.
"""
from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
)
from werkzeug.exceptions import HTTPException

from sfconnect import ext
from sfconnect.errors import json_error
from sfconnect.web import workbench

bp = Blueprint("crosssite", __name__)

# The GET endpoints that call Salesforce with the user's token, or start a sign-in there.
PAGES = frozenset({"views.query", "exports.export_csv", "exports.export_json", "learn.compare",
                   "oauth.login", "steps.authorize"})
# Called by the app's own script (same-origin fetch): a JSON error is all they need.
JSON_ENDPOINTS = frozenset({"views.describe_global", "views.describe_sobject"})
# `same-site` counts as foreign: a sibling subdomain is another site's app.
FOREIGN = frozenset({"cross-site", "same-site"})
GUARDED = PAGES | JSON_ENDPOINTS
# What may stay as it is in the query string of a target: RFC 3986's query characters, and `%`
# so that escapes stay escapes. Anything else is percent-encoded.
_QUERY_SAFE = "!$&'()*+,;=:@/?%"


def from_another_site() -> bool:
    """Whether the browser says this request comes from another site (or a sibling subdomain)."""
    return request.headers.get("Sec-Fetch-Site", "").strip().lower() in FOREIGN


def guard() -> Response | None:
    """Before any view: a foreign request to an endpoint that calls Salesforce calls nothing."""
    if request.endpoint not in GUARDED or not from_another_site():
        return None
    if request.endpoint in JSON_ENDPOINTS:
        return json_error(403, "CROSS_SITE_REQUEST", "Another site asked for this; Salesforce "
                          "was not called. This endpoint answers only the app's own pages.")
    target = _target_of_request()
    # 200, not 403: nothing went wrong, the page is the answer (a question to the user, like a
    # sign-in page), and it offers the way on. no-store: never kept in place of the real answer.
    response = make_response(render_template(
        "cross_site.html", target=target, **describe(request.endpoint, request.args)))
    response.headers["Cache-Control"] = "no-store"
    return response


def describe(endpoint: str, args: Mapping[str, str]) -> dict[str, object]:
    """In plain words, what the GET `endpoint` would run with these query `args`: `action` (a
    sentence), `button` (its label), `soql` and `soql_label` (the query in the URL, if any) and
    `details` ((term, description) pairs)."""
    soql = args.get("q") or ""
    details: list[tuple[str, str]] = []
    soql_label = "SOQL query"
    if args.get("qid"):
        details.append(("Long query", f"a query kept in your session under the id "
                        f"{args.get('qid')} (the address names it, it does not carry it)"))
    if endpoint == "views.query":
        locator = args.get("locator")
        deleted = workbench.flag(args.get("all"))
        if locator:
            action = ("Fetch the next batch of a query's records from Salesforce (queryMore), "
                      "signed in as you.")
            details.append(("Query locator", locator))
        elif deleted:
            action = ("Run a SOQL query in Salesforce, including deleted and archived records "
                      "(queryAll), signed in as you.")
        else:
            action = "Run a SOQL query in Salesforce (query), signed in as you."
        if args.get("batch"):
            details.append(("Records per page", str(workbench.batch_size(args.get("batch")))))
        button = "Run the query"
    elif endpoint in ("exports.export_csv", "exports.export_json"):
        kind = "CSV" if endpoint == "exports.export_csv" else "JSON"
        action = (f"Export every record of a SOQL query from Salesforce as a {kind} file, "
                  "signed in as you.")
        if workbench.flag(args.get("all")):
            details.append(("Deleted and archived records", "included (queryAll)"))
        button = f"Download the {kind} export"
    elif endpoint == "learn.compare":
        action = ("Run a SOQL query in Salesforce through both the REST API and the SOAP partner "
                  "API, signed in as you, and compare the answers." if soql else
                  "Open the compare page (no query is named, so nothing is sent to Salesforce).")
        button = "Compare" if soql else "Open the compare page"
    elif endpoint == "steps.authorize":
        action = ("Continue a sign-in paused in step-by-step mode: go on to Salesforce's sign-in "
                  "page.")
        button = "Continue to Salesforce"
    else:  # oauth.login
        action, button = _login(args)
        soql_label = "SOQL to put back in the form once you are signed in (it does not run)"
    return {"action": action, "button": button, "soql": soql, "soql_label": soql_label,
            "details": details}


def _login(args: Mapping[str, str]) -> tuple[str, str]:
    """What /login would do: the login host it would send the browser to."""
    choice = args.get("login")
    host = ext.settings().login_host(choice)
    if host is None:
        return (f"Start signing in at a login host this app is not configured for ({choice}); "
                "the app will refuse it.", "Continue")
    return (f"Start signing in to Salesforce at {host.label} ({host.url}): your browser goes to "
            "its sign-in page.", "Continue to Salesforce")


def _target_of_request() -> str:
    """This request's path and query string, relative to the app, as a URL to come back to."""
    query = quote(request.query_string, safe=_QUERY_SAFE)
    return quote(request.path) + (f"?{query}" if query else "")


def checked_target(target: object) -> str:
    """`target` when it is a relative URL of a guarded page of this app; else 400.

    Strict, so that Continue is no open redirect: one leading "/", printable ASCII only (browsers
    drop tabs and newlines and read "\\" as "/", so "/\\t/evil" would be "//evil"), no scheme, host
    or fragment, and a path that routes to one of PAGES.
    """
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or not all("!" <= char <= "~" for char in target):
        abort(400, description="That is not an address of this app's pages.")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.fragment:
        abort(400, description="That is not an address of this app's pages.")
    try:
        endpoint, _ = current_app.create_url_adapter(request).match(unquote(parts.path),
                                                                    method="GET")
    except HTTPException:
        endpoint = None
    if endpoint not in PAGES:
        abort(400, description="Continue leads only to the pages that call Salesforce.")
    return target


@bp.post("/cross-site/continue")
def proceed():  # noqa: ANN201
    """The interstitial's button (CSRF-checked): back to the page asked for, now same-origin."""
    if from_another_site():
        abort(403, description="Continue works only from this app's own page.")
    target = checked_target(request.form.get("target"))
    return redirect(request.script_root + target, code=303)


def init_app(app: Flask) -> None:
    """Register the guard (a before_request hook, so it runs before any view) and Continue."""
    app.before_request(guard)
    app.register_blueprint(bp)
