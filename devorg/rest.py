"""The REST API of the local org: the versions list and the query resource.

    GET /services/data/                              the API versions, oldest first
    GET /services/data/vXX.X/query?q=SOQL            first batch (2,000 records by default)
    GET /services/data/vXX.X/queryAll?q=SOQL         the same, deleted rows included
    GET /services/data/vXX.X/query/<locator>         the next batch (nextRecordsUrl)

JSON in Salesforce's shape, with typed values (numbers, booleans, null). Query locators are the
cursors the SOAP endpoint uses too.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from .cursors import InvalidQueryLocator
from .soap import clamp_batch_size
from .soql import SoqlError, project, run_query
from .state import OrgState, RequestLimitExceeded

log = logging.getLogger(__name__)

REST_BATCH_SIZE = 2000
_SEASONS = ("Winter", "Spring", "Summer")
_BATCH_OPTION = re.compile(r"batchSize\s*=\s*(\d{1,6})", re.IGNORECASE)

bp = Blueprint("devorg_rest", __name__)


def release_name(version: str) -> str:
    """The release an API version shipped in: 20.0 is "Winter '11", 66.0 is "Spring '26"."""
    major = int(float(version))
    # Three releases a year since Winter '11 (API 20.0): Winter, Spring, Summer.
    index = major - 20
    return f"{_SEASONS[index % 3]} '{11 + index // 3:02d}"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    response = Response(body.encode("utf-8"), status=status,
                        content_type="application/json;charset=UTF-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> Response:
    return _json([{"message": message, "errorCode": code}], status, headers)


def _not_found() -> Response:
    return _error(404, "NOT_FOUND", "The requested resource does not exist")


def _org() -> OrgState:
    return current_app.extensions["devorg"]


@bp.get("/services/data/")
@bp.get("/services/data")
def versions() -> Response:
    """Every API version the org serves, oldest first, like Salesforce's list."""
    org = _org()
    org.counters.incr("rest.versions")
    return _json([{"label": release_name(version), "url": f"/services/data/v{version}",
                   "version": version} for version in org.config.api_versions])


# ---------------------------------------------------------------- records as JSON


def _converter(soap_type: str) -> Any:
    if soap_type == "xsd:boolean":
        return lambda text: text == "true"
    if soap_type in ("xsd:int", "xsd:long"):
        return int
    if soap_type == "xsd:double":
        return float
    return None


def _compile(shape: Any) -> list[tuple[str, str, Any]]:
    """Per selected item: its kind, JSON key, and a converter or the nested plan."""
    plan = []
    for item in shape.items:
        kind = type(item).__name__
        if kind == "ParentItem":
            plan.append(("parent", item.name, _compile(item.shape)))
        elif kind == "ChildItem":
            plan.append(("child", item.name, _compile(item.shape)))
        else:
            plan.append(("field", item.name, _converter(item.soap_type)))
    return plan


def rest_record(plan: list[tuple[str, str, Any]], record: Sequence, version: str) -> dict:
    """One ProjectedRecord as the REST API writes it."""
    entity, record_id, values = record
    attributes = {"type": entity}
    if record_id is not None:
        attributes["url"] = f"/services/data/v{version}/sobjects/{entity}/{record_id}"
    out: dict[str, Any] = {"attributes": attributes}
    if record_id is not None:
        out["Id"] = record_id
    for (kind, name, extra), value in zip(plan, values, strict=False):
        if value is None:
            out[name] = None
        elif kind == "field":
            out[name] = extra(value) if extra is not None else value
        elif kind == "parent":
            out[name] = rest_record(extra, value, version)
        else:
            out[name] = {"totalSize": len(value), "done": True,
                         "records": [rest_record(extra, row, version) for row in value]}
    return out


# ---------------------------------------------------------------- query


def _authorize(org: OrgState) -> tuple[str | None, Response | None]:
    """The user id behind the bearer token, or the 401 Salesforce gives."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    record = None
    if scheme.lower() in ("bearer", "oauth"):
        record = org.tokens.lookup_access(token.strip())
    if record is None:
        return None, _error(401, "INVALID_SESSION_ID", "Session expired or invalid",
                            {"WWW-Authenticate": "Token"})
    return record.user_id, None


def _batch_size() -> int:
    match = _BATCH_OPTION.search(request.headers.get("Sforce-Query-Options", ""))
    return clamp_batch_size(int(match.group(1)) if match else None, REST_BATCH_SIZE)


def _batch(version: str, run: Any, records: list, next_locator: str | None,
           resource: str, limit_info: str) -> Response:
    plan = _compile(run.shape)
    payload: dict[str, Any] = {"totalSize": run.total_size, "done": next_locator is None}
    if next_locator is not None:
        payload["nextRecordsUrl"] = f"/services/data/v{version}/{resource}/{next_locator}"
    payload["records"] = [rest_record(plan, record, version) for record in records]
    return _json(payload, headers={"Sforce-Limit-Info": limit_info})


def _begin(version: str) -> tuple[OrgState, str | None, str, Response | None]:
    """Checks shared by the query routes: version, token, API request limit."""
    org = _org()
    if version not in org.config.api_versions:
        return org, None, "", _not_found()
    org.counters.incr("rest.query")
    user_id, denied = _authorize(org)
    if denied is not None:
        return org, None, "", denied
    usage = org.api_usage
    try:
        current = usage.charge()
    except RequestLimitExceeded as exceeded:
        return org, None, "", _error(403, "REQUEST_LIMIT_EXCEEDED", str(exceeded))
    return org, user_id, f"api-usage={current}/{usage.limit}", None


@bp.get("/services/data/v<version>/query", defaults={"resource": "query"})
@bp.get("/services/data/v<version>/query/", defaults={"resource": "query"})
@bp.get("/services/data/v<version>/queryAll", defaults={"resource": "queryAll"})
@bp.get("/services/data/v<version>/queryAll/", defaults={"resource": "queryAll"})
def query(version: str, resource: str) -> Response:
    """Run `q` and return its first batch."""
    org, user_id, limit_info, denied = _begin(version)
    if denied is not None:
        return denied
    soql = request.args.get("q")
    if soql is None or not soql.strip():
        return _error(400, "MALFORMED_QUERY", "A query string must be provided as 'q'.")
    try:
        run = run_query(org.data, soql, include_deleted=resource == "queryAll")
    except SoqlError as exc:
        return _error(400, exc.code, exc.message)
    if run.count_only:
        return _json({"totalSize": run.total_size, "done": True, "records": []},
                     headers={"Sforce-Limit-Info": limit_info})
    stop = min(_batch_size(), run.total_size)
    locator = org.query_cursors.open(user_id, run, stop) if stop < run.total_size else None
    return _batch(version, run, project(run, 0, stop), locator, resource, limit_info)


@bp.get("/services/data/v<version>/query/<query_locator>", defaults={"resource": "query"})
@bp.get("/services/data/v<version>/queryAll/<query_locator>",
        defaults={"resource": "queryAll"})
def query_more(version: str, query_locator: str, resource: str) -> Response:
    """The next batch of an open query (its nextRecordsUrl)."""
    org, user_id, limit_info, denied = _begin(version)
    if denied is not None:
        return denied
    store = org.query_cursors
    try:
        cursor, offset = store.take(query_locator, user_id)
    except InvalidQueryLocator as exc:
        return _error(400, exc.code, exc.message)
    run = cursor.run
    stop = min(offset + _batch_size(), run.total_size)
    records = project(run, offset, stop)
    locator = store.advance(cursor, stop, run.total_size)
    return _batch(version, run, records, locator, resource, limit_info)


@bp.errorhandler(Exception)
def unexpected_error(error: Exception) -> Response:
    """Salesforce's JSON for an error of its own, never an HTML traceback."""
    if isinstance(error, HTTPException):
        return _error(error.code or 500, "NOT_FOUND" if error.code == 404 else "UNKNOWN_EXCEPTION",
                      error.description or error.name)
    log.exception("REST query failed")
    return _error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                  "ErrorId if you contact support: 1234567890-12345 (-1234567890)")


def init_app(app: Flask, org: OrgState) -> None:
    """Serve the REST versions list and query resource of `org` on `app`."""
    app.register_blueprint(bp)
