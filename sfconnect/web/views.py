"""The pages: home (connect, or who you are and the SOQL form), query results, health; and one
error handler per kind of error, each rendering error.html (or the query page, for SOQL faults)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from time import perf_counter

from authlib.integrations.base_client import OAuthError
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from sfconnect import ext, hooks
from sfconnect.auth.connection import (
    ORG_PARAM,
    Connection,
    active_connection,
    call_with_session,
    connected,
    connection_named,
    current_connection,
)
from sfconnect.auth.oauth import MAX_SOQL
from sfconnect.errors import (
    GateRefused,
    InvalidSession,
    NotConnected,
    RedirectRefused,
    SalesforceFault,
    UntrustedHost,
    UpstreamError,
    error_page,
    json_error,
)
from sfconnect.salesforce import records
from sfconnect.web import workbench

bp = Blueprint("views", __name__)
log = logging.getLogger(__name__)

_DESCRIBE = "describe"  # the session's describe cache: {"owner", "global", "objects"}
_HISTORY = "history"  # the session's recent queries, newest first
_LONG_QUERIES = "long_queries"  # SOQL too long for a URL, by id (see workbench.url_args)


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        abort(400, description=f"The parameter {name!r} was given more than once.")
    return values[0] if values else None


def _options() -> workbench.RecentQuery:
    """The SOQL form as submitted: the query, "include deleted" and the batch size."""
    for name in ("q", "qid"):
        _single(name)  # refuse a duplicated parameter
    soql = workbench.soql_from(request.args, session.get(_LONG_QUERIES))
    return workbench.RecentQuery(soql, workbench.flag(_single("all")),
                                 workbench.batch_size(_single("batch")))


def _url_args(soql: str) -> dict[str, object]:
    """How URLs name `soql`; a long one is kept in the session first (see workbench.url_args)."""
    args = workbench.url_args(soql)
    if "qid" in args:
        session[_LONG_QUERIES] = workbench.keep_long_query(session.get(_LONG_QUERIES), soql)
    return dict(args)


def _query_url(options: workbench.RecentQuery, **extra: object) -> str:
    """The URL of the results page for `options` (plus a locator and start, when paging), naming
    the connection it is for (`org`): a link made for one org stays on it after a switch."""
    args = _url_args(options.soql)
    if options.include_deleted:
        args["all"] = "1"
    if options.batch_size != workbench.DEFAULT_BATCH_SIZE:
        args["batch"] = options.batch_size
    if options.org:
        args[ORG_PARAM] = options.org
    return url_for("views.query", **args, **extra)


def _history_url(entry: workbench.RecentQuery) -> str:
    """A recent query runs again on the connection it ran on while this browser still has it,
    else on the active one."""
    if entry.org and connection_named(entry.org) is None:
        entry = replace(entry, org=None)
    return _query_url(entry)


def _form_context(options: workbench.RecentQuery) -> dict[str, object]:
    """What the SOQL form shows: the options, examples and the session's recent queries."""
    recent = workbench.history(session.get(_HISTORY))
    return {"soql": options.soql, "include_deleted": options.include_deleted,
            "batch_size": options.batch_size, "batch_choices": workbench.BATCH_SIZE_CHOICES,
            "examples": workbench.EXAMPLE_QUERIES,
            "history": [(entry, _history_url(entry)) for entry in recent]}


def _for_connection(options: workbench.RecentQuery) -> workbench.RecentQuery:
    """`options` with the connection this request is for (see _query_url)."""
    connection = current_connection()
    if connection is None:
        return options
    return replace(options, org=connection.key, org_label=connection.label)


@bp.get("/")
def index():  # noqa: ANN201
    """Not connected: the Connect button. Connected: who you are and the SOQL form."""
    connection = active_connection()
    soql = _single("q") or ""
    if connection is None:
        soql = soql if len(soql) <= MAX_SOQL else ""
        return render_template("index.html", soql=soql)
    options = _options()
    context = _form_context(options)
    context["soql"] = soql or workbench.EXAMPLE_QUERIES[0][1]
    return render_template("index.html", **context)


@bp.post("/query")
@connected
def submit_query():  # noqa: ANN201
    """The SOQL form (CSRF-checked): redirect to the results page, so that reloading it or going
    back never re-posts, and SOQL of any length works (a long query is named by an id)."""
    soql = (request.form.get("q") or "").strip()
    if not soql:
        return redirect(url_for("views.index"))
    options = _for_connection(workbench.RecentQuery(
        soql, workbench.flag(request.form.get("all")),
        workbench.batch_size(request.form.get("batch"))))
    if len(soql) > MAX_SOQL:
        # Refused here, and the whole query stays in the form for the user to shorten.
        fault = SalesforceFault("MALFORMED_QUERY", f"The query is {len(soql):,} characters long;"
                                f" SOQL allows at most {MAX_SOQL:,}.")
        return render_template("query.html", **_form_context(options), fault=fault,
                               table=None), 400
    return redirect(_query_url(options), code=303)


@bp.get("/query")
@connected
def query():  # noqa: ANN201
    """Run SOQL (or queryAll) through the partner API and show one batch, with a link to the next.

    Paging: the query locator travels in the Next link (a locator is not a secret; the token never
    leaves the server). A locator that expired or was used up answers with a page that offers to
    run the query again.
    """
    options = _for_connection(_options())
    soql = options.soql
    if not soql:
        return redirect(url_for("views.index"))
    if len(soql) > MAX_SOQL:
        raise SalesforceFault("MALFORMED_QUERY", f"The query is {len(soql):,} characters long; "
                              f"SOQL allows at most {MAX_SOQL:,}.")
    locator = _single("locator")
    start = _int(_single("start"), 0)
    operation = "queryMore" if locator else "queryAll" if options.include_deleted else "query"
    paused = hooks.pause_at("soap", {"target": request.full_path, "operation": operation,
                                     "argument": locator or soql,
                                     "batch_size": options.batch_size})
    if paused is not None:  # step-by-step mode shows the envelope first
        return paused
    partner = ext.partner()
    began = perf_counter()
    try:
        if locator:
            batch = call_with_session(lambda endpoint, sid: partner.query_more(
                endpoint, sid, locator, batch_size=options.batch_size))
        else:
            batch = call_with_session(lambda endpoint, sid: partner.query(
                endpoint, sid, soql, batch_size=options.batch_size,
                include_deleted=options.include_deleted))
    except SalesforceFault as fault:
        if locator and fault.code == "INVALID_QUERY_LOCATOR":
            # Not a dead end: the query can always run again from its first record.
            return render_template("query.html", **_form_context(options), table=None,
                                   expired=fault, start=start, rerun_url=_query_url(options)), 410
        raise
    elapsed_ms = (perf_counter() - began) * 1000
    if not locator:
        session[_HISTORY] = workbench.remember(session.get(_HISTORY), options)
    table = records.table_for(soql, batch.records, size=batch.size)
    shown = len(batch.records)
    next_url = None
    if not batch.done and batch.query_locator:
        next_url = _query_url(options, locator=batch.query_locator, start=start + shown)
    export_args = {**_url_args(soql), ORG_PARAM: options.org}
    if options.include_deleted:
        export_args["all"] = "1"
    if options.batch_size != workbench.DEFAULT_BATCH_SIZE:
        export_args["batch"] = options.batch_size
    response = make_response(render_template(
        "query.html", **_form_context(options), table=table, size=batch.size, shown=shown,
        start=start, elapsed_ms=elapsed_ms, next_url=next_url,
        next_count=min(batch.size - start - shown, options.batch_size),
        rerun_url=_query_url(options) if locator else None,
        exports=export_args if _has_exports() else None, results_org=options.org_label,
    ))
    # A parsed 2,000-record reply is tens of thousands of libxml2 nodes: freeing them costs
    # milliseconds. Held until the page has been sent, the reply is freed while nobody waits.
    response.call_on_close(batch.records.clear)
    return response


def _describe_cache(connection: Connection) -> dict:
    # Keyed by who is connected, so a cache never outlives a change of user or org.
    owner = f"{connection.organization_id}/{connection.user_id}"
    cache = session.get(_DESCRIBE)
    if not isinstance(cache, dict) or cache.get("owner") != owner:
        cache = {"owner": owner, "global": None, "objects": {}}
    return cache


def _describe(connection: Connection | None, fetch: Callable[[str, str], object]):  # noqa: ANN202
    """Run a describe call for a JSON endpoint: errors become JSON, never a page."""
    if connection is None:
        return None, json_error(401, "NOT_CONNECTED", "Connect to Salesforce first.")
    try:
        return call_with_session(fetch), None
    except NotConnected:
        return None, json_error(401, "NOT_CONNECTED", "Your Salesforce session has ended.")
    except InvalidSession as error:
        return None, json_error(502, error.code, error.message)
    except SalesforceFault as fault:
        status = 404 if fault.code == "INVALID_TYPE" else 400
        return None, json_error(status, fault.code, fault.message)
    except UpstreamError as error:
        return None, json_error(502, f"{error.service}_unavailable", error.detail)
    except GateRefused as error:
        return None, json_error(502, error.code, str(error))


@bp.get("/describe")
def describe_global():  # noqa: ANN201
    """The queryable objects (describeGlobal), for SOQL suggestions; cached in the session."""
    connection = current_connection()
    cache = _describe_cache(connection) if connection else None
    if cache and cache.get("global") is not None:
        return _describe_json({"sobjects": cache["global"]})
    partner = ext.partner()
    reply, error = _describe(connection, lambda endpoint, sid: partner.describe_global(
        endpoint, sid))
    if error is not None:
        return error
    cache["global"] = workbench.global_objects(reply)
    session[_DESCRIBE] = cache
    return _describe_json({"sobjects": cache["global"]})


@bp.get("/describe/<sobject>")
def describe_sobject(sobject: str):  # noqa: ANN201
    """The fields and child relationships of one object (describeSObject); cached per session."""
    if not workbench.is_sobject_name(sobject):
        return json_error(404, "INVALID_TYPE", f"'{sobject}' is not an sObject name.")
    connection = current_connection()
    cache = _describe_cache(connection) if connection else None
    if cache and sobject.lower() in cache["objects"]:
        return _describe_json(cache["objects"][sobject.lower()])
    partner = ext.partner()
    reply, error = _describe(connection, lambda endpoint, sid: partner.describe_sobject(
        endpoint, sid, sobject))
    if error is not None:
        return error
    described = workbench.object_fields(reply)
    cache["objects"] = workbench.cache_described(cache["objects"], sobject, described)
    session[_DESCRIBE] = cache
    return _describe_json(described)


def _describe_json(body: dict):  # noqa: ANN202
    response = jsonify(body)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/healthz")
def healthz():  # noqa: ANN201
    """200 when the app can serve: its session store answers."""
    try:
        ext.store_check()()
    except Exception as error:  # noqa: BLE001 - any store failure means "cannot serve"
        log.warning("health check failed: %s", type(error).__name__)
        return {"status": "unavailable", "detail": "the session store is not reachable"}, 503
    return {"status": "ok"}


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _has_exports() -> bool:
    return any(rule.rule == "/export.csv" for rule in current_app.url_map.iter_rules())


def on_salesforce_fault(fault: SalesforceFault):  # noqa: ANN201
    """A SOQL fault: its code, message and row/column, the SOQL kept in the form; 400."""
    if request.endpoint == "views.query":
        soql = workbench.soql_from(request.args, session.get(_LONG_QUERIES))
        options = workbench.RecentQuery(soql[:MAX_SOQL],
                                        workbench.flag(request.args.get("all")),
                                        workbench.batch_size(request.args.get("batch")))
        return render_template("query.html", **_form_context(options), fault=fault,
                               table=None), 400
    return error_page(400, fault.code, fault.message, "Salesforce refused the request")


def on_invalid_session(error: InvalidSession):  # noqa: ANN201
    """INVALID_SESSION_ID even with a freshly refreshed token: an error, not a loop."""
    log.warning("session refused again after a refresh (%s)", error.code)
    return error_page(502, error.code, "Salesforce refused the session, even with a new "
                       "token: " + error.message, "Salesforce refused the session")


def on_upstream_error(error: UpstreamError):  # noqa: ANN201
    """Salesforce unreachable, too slow or unreadable: 502 naming the service."""
    log.warning("upstream error from %s: %s", error.service, error.detail)
    return error_page(502, f"{error.service}_unavailable",
                       f"Salesforce ({error.service}) could not be used: {error.detail}. "
                       "Try again in a moment.", "Salesforce is not answering")


def on_not_connected(error: NotConnected):  # noqa: ANN201
    """Back to the home page (with the SOQL kept), telling why when there is a reason."""
    if str(error):
        flash(str(error), "warning")
    soql = request.args.get("q")
    if soql and len(soql) <= MAX_SOQL:
        return redirect(url_for("views.index", q=soql))
    return redirect(url_for("views.index"))


def on_untrusted_host(error: UntrustedHost):  # noqa: ANN201
    """A URL that would carry the token somewhere untrusted: refused before any request."""
    log.warning("refused to send the token to an untrusted URL: %s", error.url)
    return error_page(502, "UNTRUSTED_HOST", f"Salesforce pointed this app at {error.url}, which "
                       "is not a Salesforce host, the login host or the instance, nor listed in "
                       "SF_TRUSTED_HOSTS (and must be https unless it is loopback). The access "
                       "token was not sent there.", "Untrusted host refused")


def on_redirect_refused(error: RedirectRefused):  # noqa: ANN201
    """Salesforce answered a token-bearing request with a redirect: not followed, explained."""
    log.warning("refused to follow HTTP %s from %s to %s", error.status, error.url,
                error.location_host)
    target = error.location_host or "no host at all"
    return error_page(502, "REDIRECT_REFUSED", f"Salesforce answered HTTP {error.status}, "
                       f"redirecting the request to {target}. A request that carries your "
                       "access token is never sent on to a redirect's target (it would take the "
                       "token there, RFC 9700 §4.12), so nothing was sent to "
                       f"{target}. Check the endpoint the identity service names, or try again "
                       "later.", "Redirect refused")


def on_oauth_error(error: OAuthError):  # noqa: ANN201
    """An OAuth protocol error (invalid_grant, invalid_signature ...): its code and description."""
    log.info("oauth error: %s", error.error)
    return error_page(400, error.error or "oauth_error", error.description or "",
                       "Salesforce did not connect")


def on_csrf_error(error: CSRFError):  # noqa: ANN201
    """A state-changing form without a valid csrf_token."""
    return error_page(400, "csrf_failed", f"{error.description} Reload the page and try again.",
                       "Form expired or forged")


def on_http_error(error: HTTPException):  # noqa: ANN201
    """404, 405, 400 ...: the same page, the status of the error."""
    return error_page(error.code or 500, error.name.lower().replace(" ", "_"),
                       error.description or "", error.name)


def on_unexpected(error: Exception):  # noqa: ANN201
    """Anything else: logged (secrets masked by the log redaction), a plain page, no traceback."""
    log.exception("unhandled error: %s", type(error).__name__)
    return error_page(500, "internal_error", "The app hit an unexpected error. It was logged.")


def init_app(app: Flask) -> None:
    """Register the pages and one error handler per kind of error."""
    app.register_blueprint(bp)
    app.register_error_handler(SalesforceFault, on_salesforce_fault)
    app.register_error_handler(InvalidSession, on_invalid_session)
    app.register_error_handler(UpstreamError, on_upstream_error)
    app.register_error_handler(NotConnected, on_not_connected)
    app.register_error_handler(UntrustedHost, on_untrusted_host)
    app.register_error_handler(RedirectRefused, on_redirect_refused)
    app.register_error_handler(OAuthError, on_oauth_error)
    app.register_error_handler(CSRFError, on_csrf_error)
    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(Exception, on_unexpected)
