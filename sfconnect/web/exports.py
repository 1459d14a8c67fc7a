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

import contextlib
import csv
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Flask,
    Response,
    copy_current_request_context,
    current_app,
    redirect,
    request,
    session,
    stream_with_context,
)

from sfconnect import ext, hooks
from sfconnect.auth.connection import call_with_session
from sfconnect.errors import GateRefused, NotConnected, SalesforceFault, UpstreamError, json_error
from sfconnect.salesforce import records as records_module
from sfconnect.salesforce import soql as soql_module
from sfconnect.salesforce.partner import PartnerClient, QueryBatch
from sfconnect.web import workbench

bp = Blueprint("exports", __name__)
log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 2000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


def init_app(app: Flask) -> None:
    """Register the export routes."""
    app.register_blueprint(bp)


def _call_with_session(call: Callable[[str, str], QueryBatch]) -> QueryBatch:
    # As the browser's user; refreshes once on INVALID_SESSION_ID.
    return call_with_session(call)


def _client() -> PartnerClient:
    return ext.partner()


def _batch_size() -> int:
    try:
        size = int(request.args.get("batch", DEFAULT_BATCH_SIZE))
    except ValueError:
        size = DEFAULT_BATCH_SIZE
    return min(max(size, 200), 2000)


def _error(code: str, message: str, status: int, row: int | None = None,
           column: int | None = None) -> Response:
    # Exports answer JSON with the fault's position, the shape the progress script reads.
    return json_error(status, code, message, row=row, column=column)


def _download_name(soql: str, first: QueryBatch, extension: str) -> str:
    sobject = soql_module.sobject_of(soql)
    if not sobject and first.records:
        sobject = records_module.rest_record(first.records[0])["attributes"]["type"]
    sobject = _SAFE_NAME.sub("", sobject or "") or "export"
    return f"{sobject}-{datetime.now(UTC).strftime('%Y%m%d-%H%M')}.{extension}"


_END = object()  # the worker's last item: no more batches
_TRACE_EVERY = 20  # batches between two writes of the worker's trace entries to the store
# Records written out at once. Each write to the socket releases the GIL, and the worker thread
# needs it back after each of its system calls (a receive, the end of a parse): a longer hold
# would make it wait up to the interpreter's switch interval (5 ms) each time.
_SLICE = 50


class _Stopped(Exception):
    """The client went away while the worker was handing a batch over."""


class _Batches:
    """The first batch, then each queryMore batch as it arrives, to the end.

    A worker thread runs the queryMore loop from the moment this is made, so Salesforce's time
    and the transfer overlap the caller writing out rows; it is at most two batches ahead. It
    does not wait for a reply to be parsed to ask for the next: Salesforce writes `done` and
    `queryLocator` before the records, so a pull parse of the reply's head gives the next
    locator, and the caller parses the whole reply (lxml, without the GIL) and checks that it
    says the same. A reply whose head does not tell is parsed by the worker, before the next
    request. The order of the worker's steps matters under the GIL: it reads the user's token
    (a file or Redis read) while the caller is still busy with the last batch, then hands the
    reply over and sends the next request at once, so the caller's CPU work runs while
    Salesforce prepares the next batch, not while the worker needs the GIL back after each of
    its system calls. `close()` (the client went away) stops it: no
    further batch is asked for, and the one in flight, if any, is dropped when it arrives. Each
    batch after the first is traced as a summary, without its body.
    """

    def __init__(self, first: QueryBatch, batch_size: int) -> None:
        self._first = first
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        if first.done or not first.query_locator:
            return
        client = _client()
        app = current_app._get_current_object()

        @copy_current_request_context  # the worker runs as this request's user (its session)
        def produce(locator: str | None) -> None:
            received: list[object] = []  # the reply not handed over yet
            fetched = 0

            def hand_over_received(last: bool = False) -> None:
                if last or fetched % _TRACE_EVERY == 0:
                    # Observers keep what was recorded before the caller can finish.
                    hooks.checkpoint.send(app)
                if received and not self._hand_over(received.pop()):
                    raise _Stopped

            def more(endpoint: str, session_id: str) -> bytes:
                hand_over_received()  # the token is read: now the caller may have the GIL
                return client.query_more_unread(endpoint, session_id, locator,
                                                batch_size=batch_size)

            try:
                with hooks.bulk(_SUMMARY_NOTE):
                    while locator and not self._stop.is_set():
                        content = _call_with_session(more)
                        fetched += 1
                        following = client.next_of(content)
                        if following is None:  # the head does not tell: read it all here
                            batch = client.read_batch(content)
                            received.append(batch)
                            following = batch.done, batch.query_locator
                        else:  # the caller reads it while the next one is fetched
                            received.append((content, following))
                        done, locator = following
                        if done:
                            locator = None
                hand_over_received(last=True)
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who reports it
                hooks.checkpoint.send(app)
                if received and not self._hand_over(received.pop()):
                    return
                self._hand_over(exc)
                return
            self._hand_over(_END)

        threading.Thread(target=produce, args=(first.query_locator,), daemon=True,
                         name="sfconnect-export").start()

    def _hand_over(self, item: object) -> bool:
        # Waits while the caller has not taken the last batch; False once it has gone away.
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[QueryBatch]:
        first, self._first = self._first, None
        yield first
        if first.done or not first.query_locator:
            return
        del first  # its tree goes as soon as its rows are out
        while True:
            item = self._ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, tuple):  # a reply to read, and what its head said
                content, following = item
                item = _client().read_batch(content)
                del content
                if (item.done, item.query_locator) != following:
                    raise UpstreamError("partner", "the reply's head and its result disagree")
            yield item
            del item

    def close(self) -> None:
        """Stop asking for batches."""
        self._stop.set()


_SUMMARY_NOTE = ("A queryMore batch of an export: the request is shown, the reply only by its "
                 "status, size and time (the export's first exchange, query, is recorded in "
                 "full).")


def _start(kind: str) -> Response:
    soql = workbench.soql_from(request.args, session.get("long_queries"))
    if not soql:
        return _error("MISSING_QUERY", "Give the SOQL query in the q parameter.", 400)
    include_deleted = request.args.get("all", "").lower() in ("1", "true", "on", "yes")
    batch_size = _batch_size()
    client = _client()
    try:
        first = _call_with_session(lambda endpoint, session_id: client.query(
            endpoint, session_id, soql, batch_size=batch_size,
            include_deleted=include_deleted))
    except NotConnected:
        return redirect("/")
    except SalesforceFault as fault:
        return _error(fault.code, fault.message, 400, fault.row, fault.column)
    except UpstreamError as exc:
        return _error("UPSTREAM_ERROR", f"Salesforce could not be reached: {exc.detail}", 502)
    except GateRefused as exc:
        return _error(exc.code, str(exc), 502)
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
    with contextlib.closing(_Batches(first, batch_size)) as batches:
        total = first.size
        del first
        yield f'{{"totalSize": {total}, "records": ['
        separator = ""
        try:
            for batch in batches:
                records = batch.records
                for start in range(0, len(records), _SLICE):
                    chunk = ",".join(json.dumps(records_module.rest_record(record),
                                                ensure_ascii=False)
                                     for record in records[start:start + _SLICE])
                    yield separator + chunk
                    separator = ","
        except (SalesforceFault, UpstreamError, NotConnected, GateRefused) as exc:
            log.warning("export stopped: %s", type(exc).__name__)
            yield "], " + f'"error": {json.dumps(_describe(exc), ensure_ascii=False)}}}'
            return
        yield "]}"


class _Chunks(list):
    """A csv.writer target that collects what is written (cheaper than a StringIO per batch)."""

    write = list.append


def _csv_stream(soql: str, first: QueryBatch, batch_size: int) -> Iterator[str]:
    with contextlib.closing(_Batches(first, batch_size)) as batches:  # fetching batch 2 now
        chunks = _Chunks()
        writer = csv.writer(chunks, lineterminator="\r\n")
        columns = records_module.columns_for(soql, first.records)
        rows = records_module.CsvRows(columns)
        writer.writerow(records_module.csv_header(columns, soql))
        if columns == ["COUNT()"]:
            writer.writerow([str(first.size)])
        del first
        yield "".join(chunks)
        try:
            for batch in batches:
                records = batch.records
                for start in range(0, len(records), _SLICE):
                    chunks.clear()
                    writer.writerows(rows.rows(records[start:start + _SLICE]))
                    yield "".join(chunks)
        except (SalesforceFault, UpstreamError, NotConnected, GateRefused) as exc:
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
    if isinstance(exc, GateRefused):
        return {"error": exc.code, "message": str(exc)}
    return {"error": "NOT_CONNECTED", "message": "The Salesforce session ended."}


@bp.get("/export.json")
def export_json() -> Response:
    """Every record of ?q= as REST-shaped JSON, streamed."""
    return _start("json")


@bp.get("/export.csv")
def export_csv() -> Response:
    """Every record of ?q= as CSV with dotted column names, streamed."""
    return _start("csv")

