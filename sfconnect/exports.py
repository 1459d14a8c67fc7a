"""Exports: every record of a query as JSON or CSV, streamed batch by batch as queryMore returns.

GET /export.json?q=SOQL  -> {"totalSize": n, "records": [...]}, records shaped like the REST API's.
GET /export.csv?q=SOQL   -> a header of dotted column names, then one row per record.
Optional: `all=1` runs queryAll (deleted and archived records too), `batch=200..2000` sets
the batch size.

Each batch is written out as soon as it arrives and then dropped, so memory stays flat however many
records there are, and a browser that goes away stops the queryMore loop at the next batch.

CSV columns: a streamed file cannot go back to widen its header, so the columns are the SELECT
list's plus the fields the first batch carries; a field that only later batches carry is left out.
A child subquery is one CSV column, headed "<relationship> (JSON)", holding the JSON text of its
REST-shaped records (an array; empty when the record has none).
A fault before the first byte is a 400 JSON error; a fault after it (e.g. an expired query
locator) cannot change the status any more: JSON then ends with an "error" member, CSV with a last
line starting "#error".
"""
from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Flask,
    Response,
    copy_current_request_context,
    current_app,
    jsonify,
    redirect,
    request,
    session,
    stream_with_context,
)

from . import records as records_module
from . import workbench
from .errors import NotConnected, SalesforceFault, UpstreamError
from .partner import PartnerClient, QueryBatch

bp = Blueprint("exports", __name__)
log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 2000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


def init_app(app: Flask) -> None:
    """Register the export routes."""
    app.register_blueprint(bp)


def _call_with_session(call: Callable[[str, str], QueryBatch]) -> QueryBatch:
    from .tokens import call_with_session  # the browser's user; refreshes once on INVALID_SESSION

    return call_with_session(call)


def _client() -> PartnerClient:
    return current_app.extensions["sfconnect.partner"]


def _batch_size() -> int:
    try:
        size = int(request.args.get("batch", DEFAULT_BATCH_SIZE))
    except ValueError:
        size = DEFAULT_BATCH_SIZE
    return min(max(size, 200), 2000)


def _error(code: str, message: str, status: int, row: int | None = None,
           column: int | None = None) -> Response:
    response = jsonify({"error": code, "message": message, "row": row, "column": column})
    response.status_code = status
    return response


def _download_name(soql: str, first: QueryBatch, extension: str) -> str:
    sobject = records_module.sobject_of(soql)
    if not sobject and first.records:
        sobject = records_module.rest_record(first.records[0])["attributes"]["type"]
    sobject = _SAFE_NAME.sub("", sobject or "") or "export"
    return f"{sobject}-{datetime.now(UTC).strftime('%Y%m%d-%H%M')}.{extension}"


def _batches(first: QueryBatch, batch_size: int) -> Iterator[QueryBatch]:
    """The first batch, then each queryMore batch as it arrives, to the end.

    The next batch is fetched while the caller writes out the current one (one worker thread,
    at most one batch ahead), so Salesforce's time and ours overlap instead of adding up. When
    the client goes away the generator is closed: no further batch is asked for (the one in
    flight, if any, is dropped when it arrives).
    """
    client = _client()

    def more(locator: str) -> QueryBatch:
        return _call_with_session(lambda endpoint, session_id: client.query_more(
            client.endpoint(endpoint), session_id, locator, batch_size=batch_size))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sfconnect-export")
    try:
        batch = first
        while True:
            upcoming = None
            if not batch.done and batch.query_locator:
                # The worker runs in a copy of this request's context (the user's session).
                upcoming = pool.submit(copy_current_request_context(more), batch.query_locator)
            yield batch
            if upcoming is None:
                return
            batch = upcoming.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _start(kind: str) -> Response:
    soql = workbench.soql_from(request.args, session.get("long_queries"))
    if not soql:
        return _error("MISSING_QUERY", "Give the SOQL query in the q parameter.", 400)
    include_deleted = request.args.get("all", "").lower() in ("1", "true", "on", "yes")
    batch_size = _batch_size()
    client = _client()
    try:
        first = _call_with_session(lambda endpoint, session_id: client.query(
            client.endpoint(endpoint), session_id, soql, batch_size=batch_size,
            include_deleted=include_deleted))
    except NotConnected:
        return redirect("/")
    except SalesforceFault as fault:
        return _error(fault.code, fault.message, 400, fault.row, fault.column)
    except UpstreamError as exc:
        return _error("UPSTREAM_ERROR", f"Salesforce could not be reached: {exc.detail}", 502)
    body = _json_stream if kind == "json" else _csv_stream
    mimetype = "application/json" if kind == "json" else "text/csv"
    response = Response(stream_with_context(body(soql, first, batch_size)),
                        mimetype=mimetype)
    if kind == "csv":
        response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{_download_name(soql, first, kind)}"')
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Total-Size"] = str(first.size)  # for a progress bar: records to expect
    return response


def _json_stream(soql: str, first: QueryBatch, batch_size: int) -> Iterator[str]:
    yield f'{{"totalSize": {first.size}, "records": ['
    separator = ""
    try:
        for batch in _batches(first, batch_size):
            if batch.records:
                chunk = ",".join(json.dumps(records_module.rest_record(record),
                                            ensure_ascii=False) for record in batch.records)
                yield separator + chunk
                separator = ","
    except (SalesforceFault, UpstreamError, NotConnected) as exc:
        log.warning("export stopped: %s", type(exc).__name__)
        yield "], " + f'"error": {json.dumps(_describe(exc), ensure_ascii=False)}}}'
        return
    yield "]}"


class _Chunks(list):
    """A csv.writer target that collects what is written (cheaper than a StringIO per batch)."""

    write = list.append


def _csv_stream(soql: str, first: QueryBatch, batch_size: int) -> Iterator[str]:
    chunks = _Chunks()
    writer = csv.writer(chunks, lineterminator="\r\n")
    columns = records_module.columns_for(soql, first.records)
    writer.writerow(records_module.csv_header(columns, soql))
    if columns == ["COUNT()"]:
        writer.writerow([str(first.size)])
    yield "".join(chunks)
    try:
        for batch in _batches(first, batch_size):
            chunks.clear()
            writer.writerows(records_module.csv_rows(columns, batch.records))
            yield "".join(chunks)
    except (SalesforceFault, UpstreamError, NotConnected) as exc:
        log.warning("export stopped: %s", type(exc).__name__)
        described = _describe(exc)
        chunks.clear()
        writer.writerow([f"#error {described['error']}", described["message"]])
        yield "".join(chunks)


def _describe(exc: Exception) -> dict:
    if isinstance(exc, SalesforceFault):
        return {"error": exc.code, "message": exc.message}
    if isinstance(exc, UpstreamError):
        return {"error": "UPSTREAM_ERROR", "message": exc.detail}
    return {"error": "NOT_CONNECTED", "message": "The Salesforce session ended."}


@bp.get("/export.json")
def export_json() -> Response:
    """Every record of ?q= as REST-shaped JSON, streamed."""
    return _start("json")


@bp.get("/export.csv")
def export_csv() -> Response:
    """Every record of ?q= as CSV with dotted column names, streamed."""
    return _start("csv")
