"""The pages: home (connect, or who you are and the SOQL form), query results, health; and one
error handler per kind of error, each rendering error.html (or the query page, for SOQL faults)."""
from __future__ import annotations

import logging
from time import perf_counter

from authlib.integrations.base_client import OAuthError
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from . import records
from .errors import InvalidSession, NotConnected, SalesforceFault, UntrustedHost, UpstreamError
from .oauth import MAX_SOQL
from .tokens import Connection, call_with_session

bp = Blueprint("views", __name__)
log = logging.getLogger(__name__)

# Records per page: the partner API's largest batch, so a page costs one API call.
PAGE_SIZE = 2000
EXAMPLE_QUERIES = (
    ("Contacts with their account", "SELECT Id, FirstName, LastName, Email, Account.Name "
     "FROM Contact ORDER BY LastName LIMIT 50"),
    ("Accounts with their contacts", "SELECT Name, Industry, (SELECT LastName, Email FROM "
     "Contacts) FROM Account ORDER BY Name LIMIT 20"),
    ("Opportunities by stage", "SELECT StageName, COUNT(Id) deals, SUM(Amount) total "
     "FROM Opportunity GROUP BY StageName"),
)


def _single(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        abort(400, description=f"The parameter {name!r} was given more than once.")
    return values[0] if values else None


def _connection() -> Connection | None:
    return Connection.from_session(session.get("sf"))


@bp.get("/")
def index():  # noqa: ANN201
    """Not connected: the Connect button. Connected: who you are and the SOQL form."""
    connection = _connection()
    soql = _single("q") or ""
    if connection is None:
        soql = soql if len(soql) <= MAX_SOQL else ""
        return render_template("index.html", soql=soql)
    return render_template("index.html", soql=soql or EXAMPLE_QUERIES[0][1],
                           examples=EXAMPLE_QUERIES)


@bp.get("/query")
def query():  # noqa: ANN201
    """Run SOQL through the partner API and show one batch, with a link to the next."""
    if _connection() is None:
        return redirect(url_for("views.index"))
    soql = (_single("q") or "").strip()
    if not soql:
        return redirect(url_for("views.index"))
    if len(soql) > MAX_SOQL:
        raise SalesforceFault("MALFORMED_QUERY", f"The query is {len(soql):,} characters long; "
                              f"SOQL allows at most {MAX_SOQL:,}.")
    locator = _single("locator")
    start = _int(_single("start"), 0)
    partner = current_app.extensions["sfconnect.partner"]
    began = perf_counter()
    if locator:
        batch = call_with_session(lambda endpoint, sid: partner.query_more(
            endpoint, sid, locator, batch_size=PAGE_SIZE))
    else:
        batch = call_with_session(lambda endpoint, sid: partner.query(
            endpoint, sid, soql, batch_size=PAGE_SIZE))
    elapsed_ms = (perf_counter() - began) * 1000
    table = records.table_for(soql, batch.records)
    shown = len(batch.records)
    return render_template(
        "query.html", soql=soql, table=table, size=batch.size, shown=shown, start=start,
        elapsed_ms=elapsed_ms, next_locator=None if batch.done else batch.query_locator,
        next_start=start + shown, exports=_has_exports(),
    )


@bp.get("/healthz")
def healthz():  # noqa: ANN201
    """200 when the app can serve: its session store answers."""
    try:
        current_app.extensions["sfconnect.store_check"]()
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


def _error_page(status: int, code: str, message: str, title: str = "Something went wrong"):  # noqa: ANN202
    return render_template("error.html", title=title, code=code, message=message,
                           status=status), status


def on_salesforce_fault(fault: SalesforceFault):  # noqa: ANN201
    """A SOQL fault: its code, message and row/column, the SOQL kept in the form; 400."""
    if request.endpoint == "views.query":
        soql = (request.args.get("q") or "")[:MAX_SOQL]
        return render_template("query.html", soql=soql, fault=fault, table=None), 400
    return _error_page(400, fault.code, fault.message, "Salesforce refused the request")


def on_invalid_session(error: InvalidSession):  # noqa: ANN201
    """INVALID_SESSION_ID even with a freshly refreshed token: an error, not a loop."""
    return _error_page(502, error.code, "Salesforce refused the session, even with a new "
                       "token: " + error.message, "Salesforce refused the session")


def on_upstream_error(error: UpstreamError):  # noqa: ANN201
    """Salesforce unreachable, too slow or unreadable: 502 naming the service."""
    log.warning("upstream error from %s: %s", error.service, error.detail)
    return _error_page(502, f"{error.service}_unavailable",
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
    return _error_page(502, "UNTRUSTED_HOST", f"Salesforce pointed this app at {error.url}, which "
                       "is not a Salesforce host, the login host or the instance, nor listed in "
                       "SF_TRUSTED_HOSTS (and must be https unless it is loopback). The access "
                       "token was not sent there.", "Untrusted host refused")


def on_oauth_error(error: OAuthError):  # noqa: ANN201
    """An OAuth protocol error (invalid_grant, invalid_signature ...): its code and description."""
    log.info("oauth error: %s", error.error)
    return _error_page(400, error.error or "oauth_error", error.description or "",
                       "Salesforce did not connect")


def on_csrf_error(error: CSRFError):  # noqa: ANN201
    """A state-changing form without a valid csrf_token."""
    return _error_page(400, "csrf_failed", f"{error.description} Reload the page and try again.",
                       "Form expired or forged")


def on_http_error(error: HTTPException):  # noqa: ANN201
    """404, 405, 400 ...: the same page, the status of the error."""
    return _error_page(error.code or 500, error.name.lower().replace(" ", "_"),
                       error.description or "", error.name)


def on_unexpected(error: Exception):  # noqa: ANN201
    """Anything else: logged (secrets masked by the log redaction), a plain page, no traceback."""
    log.exception("unhandled error: %s", type(error).__name__)
    return _error_page(500, "internal_error", "The app hit an unexpected error. It was logged.")


def init_app(app: Flask) -> None:
    """Register the pages and one error handler per kind of error."""
    app.register_blueprint(bp)
    app.register_error_handler(SalesforceFault, on_salesforce_fault)
    app.register_error_handler(InvalidSession, on_invalid_session)
    app.register_error_handler(UpstreamError, on_upstream_error)
    app.register_error_handler(NotConnected, on_not_connected)
    app.register_error_handler(UntrustedHost, on_untrusted_host)
    app.register_error_handler(OAuthError, on_oauth_error)
    app.register_error_handler(CSRFError, on_csrf_error)
    app.register_error_handler(HTTPException, on_http_error)
    app.register_error_handler(Exception, on_unexpected)
