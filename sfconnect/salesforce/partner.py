"""The SOAP partner API client: one zeep client per process, records read straight from the XML.

zeep owns the contract: it builds every envelope from the WSDL (ours, or Salesforce's full partner
WSDL), adds the SessionHeader of the caller to that one call, and turns SOAP faults into
`zeep.exceptions.Fault` through the binding's own fault processing. The replies are not run through
zeep's object layer: records are `xsd:any`, and zeep spends about 8x longer turning a 2,000-record
batch into objects than lxml spends parsing it. So each call is made with `raw_response=True`
(a thread-local zeep setting) and the body is read with lxml; a `QueryBatch` hands the `records`
elements to `sfconnect.salesforce.records`, which turns them into rows.

Thread safety: the zeep Client, its Transport and requests.Session are shared by all threads and
hold no per-user state; the session id travels only in the `_soapheaders` of each call.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.transports import Transport

from sfconnect.errors import InvalidSession, SalesforceFault, UpstreamError
from sfconnect.http import TokenGate

TNS = "urn:partner.soap.sforce.com"
ENS = "urn:sobject.partner.soap.sforce.com"
FNS = "urn:fault.partner.soap.sforce.com"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

_BODY = f"{{{SOAP_ENV}}}Body"
_FAULT = f"{{{SOAP_ENV}}}Fault"
_RESULT = f"{{{TNS}}}result"
_DONE = f"{{{TNS}}}done"
_LOCATOR = f"{{{TNS}}}queryLocator"
_RECORDS = f"{{{TNS}}}records"
_SIZE = f"{{{TNS}}}size"

_PARSERS = threading.local()  # lxml parsers must not be shared between threads
_VERSION_IN_ADDRESS = re.compile(r"/Soap/[uc]/(\d+\.\d+)")
_SESSION_ID_TEXT = re.compile(r"(<(?:[\w.-]+:)?sessionId>)[^<]*(</)")
_SERVICE = "partner"
# Characters XML 1.0 cannot carry: no SOAP request can hold them, so no call is sent at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_FAULTS = {"query": "MALFORMED_QUERY", "queryAll": "MALFORMED_QUERY",
                   "queryMore": "INVALID_QUERY_LOCATOR", "describeSObject": "INVALID_TYPE"}


@dataclass
class QueryBatch:
    """One batch of a query: the `records` elements, the query's total `size`, and where next."""

    records: list
    size: int
    done: bool
    query_locator: str | None


class _MaskSessionId(logging.Filter):
    """Masks `<sessionId>` in zeep's DEBUG dumps of envelopes (the SessionHeader would leak)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sessionId>" in message:
            record.msg = _SESSION_ID_TEXT.sub(r"\1***\2", message)
            record.args = ()
        return True


def install_log_mask() -> None:
    """Put the session-id mask on zeep's transport logger, once per process."""
    logger = logging.getLogger("zeep.transports")
    if not any(isinstance(f, _MaskSessionId) for f in logger.filters):
        logger.addFilter(_MaskSessionId())


def _parser() -> etree.XMLParser:
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        # Entities and network access off: the reply is data, never instructions to our parser.
        parser = _PARSERS.parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return parser


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.get(XSI_NIL) in ("true", "1"):
        return None
    return element.text or ""


# Properties of describe and getUserInfo replies that are lists even when they hold one item.
_LIST_PROPERTIES = frozenset({
    "sobjects", "fields", "childRelationships", "picklistValues", "referenceTo",
    "recordTypeInfos", "supportedScopes", "namedLayoutInfos", "actionOverrides",
    "junctionIdListNames", "junctionReferenceTo", "urls", "limitInfo",
})


def plain(element: etree._Element) -> object:
    """A describe/getUserInfo reply as plain Python: dicts, lists and strings (nil is None)."""
    if len(element) == 0:
        return _text(element)
    out: dict[str, object] = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments
        name = _local(child.tag)
        value = plain(child)
        if name in _LIST_PROPERTIES:
            out.setdefault(name, []).append(value)  # type: ignore[union-attr]
        elif name in out:
            existing = out[name]
            out[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[name] = value
    return out


class PartnerClient:
    """The partner API for all users of this process: built once from a WSDL, thread-safe."""

    def __init__(self, wsdl: str, session: TokenGate, timeout: float = 30,
                 api_version: str | None = None) -> None:
        """Load `wsdl` (a path or URL) with zeep; every call goes out through `session`, the
        gate that checks each endpoint and follows no redirect (zeep's own posts would).

        Calls go to `api_version` (SF_API_VERSION) when given, else to the WSDL's own version.
        """
        if not isinstance(session, TokenGate):
            raise TypeError("the partner client sends the session id only through a TokenGate")
        transport = Transport(session=session, timeout=timeout, operation_timeout=timeout)
        self._client = zeep.Client(wsdl, transport=transport)
        port = next(port for service in self._client.wsdl.services.values()
                    for port in service.ports.values())
        self._binding_name = port.binding.name
        address = port.binding_options.get("address") or ""
        match = _VERSION_IN_ADDRESS.search(address)
        if match is None:
            raise ValueError(f"the partner WSDL's soap:address names no API version: {address!r}")
        self.api_version: str = api_version or match.group(1)
        self._session_header = self._client.get_element(f"{{{TNS}}}SessionHeader")
        self._query_options = self._client.get_element(f"{{{TNS}}}QueryOptions")
        self._services: dict[str, object] = {}
        self._services_lock = threading.Lock()
        install_log_mask()

    def endpoint(self, partner_url_template: str) -> str:
        """The identity service's partner URL with `{version}` set to the API version in use."""
        return partner_url_template.replace("{version}", self.api_version)

    # -- operations ---------------------------------------------------------------------------

    def query(self, endpoint: str, session_id: str, soql: str, *, batch_size: int | None = None,
              include_deleted: bool = False) -> QueryBatch:
        """The first batch of `soql` (queryAll when `include_deleted`)."""
        operation = "queryAll" if include_deleted else "query"
        body = self._call(endpoint, session_id, operation, soql, batch_size=batch_size)
        return _query_batch(body)

    def query_more(self, endpoint: str, session_id: str, query_locator: str, *,
                   batch_size: int | None = None) -> QueryBatch:
        """The batch after `query_locator`."""
        return self.read_batch(self.query_more_unread(endpoint, session_id, query_locator,
                                                      batch_size=batch_size))

    def query_more_unread(self, endpoint: str, session_id: str, query_locator: str, *,
                          batch_size: int | None = None) -> bytes:
        """The reply to queryMore as bytes, for `next_of` and `read_batch` (an export fetches
        the next batch while the last one is still being read). A fault (HTTP 500) is raised
        here, as `query_more` raises it."""
        response = self._send(endpoint, session_id, "queryMore", query_locator,
                              batch_size=batch_size)
        if response.status_code != 200:
            self._body(response.status_code, response.content, "queryMore")  # raises
        return response.content

    @staticmethod
    def next_of(content: bytes) -> tuple[bool, str | None] | None:
        """(done, queryLocator) of a query reply, read from its head, before its records; None
        when the head does not tell (then read the whole reply). Salesforce writes both first."""
        return _peek_next(content)

    def read_batch(self, content: bytes, operation: str = "queryMore") -> QueryBatch:
        """A query reply's bytes (from `query_more_unread`) as a QueryBatch."""
        return _query_batch(self._body(200, content, operation))

    def get_user_info(self, endpoint: str, session_id: str) -> dict:
        """getUserInfo as a dict (userId, userName, organizationId, ...)."""
        return plain(self._result(self._call(endpoint, session_id, "getUserInfo")))  # type: ignore[return-value]

    def describe_global(self, endpoint: str, session_id: str) -> dict:
        """describeGlobal as a dict; `sobjects` is a list of dicts (name, label, queryable ...)."""
        return plain(self._result(self._call(endpoint, session_id, "describeGlobal")))  # type: ignore[return-value]

    def describe_sobject(self, endpoint: str, session_id: str, sobject_type: str) -> dict:
        """describeSObject as a dict; `fields` and `childRelationships` are lists of dicts."""
        result = self._result(self._call(endpoint, session_id, "describeSObject", sobject_type))
        return plain(result)  # type: ignore[return-value]

    def server_timestamp(self, endpoint: str, session_id: str) -> str:
        """getServerTimestamp: the server's clock as an ISO 8601 string."""
        result = self._result(self._call(endpoint, session_id, "getServerTimestamp"))
        return _text(result.find(f"{{{TNS}}}timestamp")) or ""

    # -- the call path ------------------------------------------------------------------------

    def _service(self, endpoint: str):  # noqa: ANN202 - a zeep ServiceProxy
        # A ServiceProxy per endpoint (a handful per process: one per instance URL and version).
        service = self._services.get(endpoint)
        if service is None:
            with self._services_lock:
                service = self._services.get(endpoint)
                if service is None:
                    service = self._client.create_service(self._binding_name, endpoint)
                    if len(self._services) > 256:
                        self._services.clear()
                    self._services[endpoint] = service
        return service

    def _headers(self, session_id: str, batch_size: int | None) -> list:
        """This caller's SOAP headers: its own SessionHeader, and QueryOptions when asked."""
        headers = [self._session_header(sessionId=session_id)]
        if batch_size:
            headers.append(self._query_options(batchSize=int(batch_size)))
        return headers

    def envelope(self, endpoint: str, session_id: str, operation: str, *args: object,
                 batch_size: int | None = None) -> etree._Element:
        """The envelope `operation(*args)` would send, built by zeep, without sending it."""
        return self._client.create_message(self._service(endpoint), operation, *args,
                                           _soapheaders=self._headers(session_id, batch_size))

    def _call(self, endpoint: str, session_id: str, operation: str, *args: object,
              batch_size: int | None = None) -> etree._Element:
        """Send one operation with this caller's headers; return the reply's body element."""
        response = self._send(endpoint, session_id, operation, *args, batch_size=batch_size)
        return self._body(response.status_code, response.content, operation)

    def _send(self, endpoint: str, session_id: str, operation: str, *args: object,
              batch_size: int | None = None) -> requests.Response:
        """Send one operation with this caller's headers; return the HTTP reply, unread."""
        for arg in args:
            bad = _NOT_XML.search(arg) if isinstance(arg, str) else None
            if bad:
                row = arg.count("\n", 0, bad.start()) + 1
                column = bad.start() - (arg.rfind("\n", 0, bad.start()) + 1) + 1
                raise SalesforceFault(_NOT_XML_FAULTS.get(operation, "INVALID_INPUT"),
                                      f"The input holds a character XML cannot carry "
                                      f"(U+{ord(bad.group()):04X}); nothing was sent to "
                                      "Salesforce.", row, column)
        headers = self._headers(session_id, batch_size)
        service = self._service(endpoint)
        try:
            # raw_response lives in zeep's thread-local settings: other threads are unaffected.
            with self._client.settings(raw_response=True):
                return service[operation](*args, _soapheaders=headers)
        except requests.Timeout as exc:
            raise UpstreamError(_SERVICE, f"no reply within the timeout ({type(exc).__name__})") \
                from exc
        except requests.RequestException as exc:
            raise UpstreamError(_SERVICE, f"could not reach the partner API: "
                                          f"{type(exc).__name__}") from exc

    def _body(self, status: int, content: bytes, operation: str) -> etree._Element:
        if not content or not content.strip():
            raise UpstreamError(_SERVICE, f"empty reply (HTTP {status})")
        try:
            doc = etree.fromstring(content, _parser())
        except etree.XMLSyntaxError as exc:
            raise UpstreamError(_SERVICE, f"reply is not XML (HTTP {status})") from exc
        body = doc.find(_BODY) if doc.tag == f"{{{SOAP_ENV}}}Envelope" else None
        if body is None:
            raise UpstreamError(_SERVICE, f"reply is not a SOAP envelope (HTTP {status})")
        if status != 200 or body.find(_FAULT) is not None:
            if body.find(_FAULT) is None:
                raise UpstreamError(_SERVICE, f"HTTP {status} without a SOAP fault")
            raise self._fault(doc, operation)
        if len(body) == 0:
            raise UpstreamError(_SERVICE, "SOAP reply with an empty body")
        return body[0]

    def _fault(self, doc: etree._Element, operation: str) -> SalesforceFault:
        """The fault of `doc` as our exception, read through zeep's fault processing."""
        binding = self._client.wsdl.bindings[self._binding_name]
        try:
            binding.process_error(doc, binding.get(operation))
        except Fault as fault:
            return fault_to_error(fault)
        return SalesforceFault("UNKNOWN_EXCEPTION", "unreadable SOAP fault")  # pragma: no cover

    @staticmethod
    def _result(body: etree._Element) -> etree._Element:
        result = body.find(_RESULT)
        if result is None:
            raise UpstreamError(_SERVICE, f"no result in {_local(body.tag)}")
        return result


def fault_to_error(fault: Fault) -> SalesforceFault:
    """A zeep Fault from the partner API as SalesforceFault (or InvalidSession), row/column kept."""
    code = (fault.code or "").rpartition(":")[2] or "UNKNOWN_EXCEPTION"
    message = fault.message or ""
    row = column = None
    detail = fault.detail
    if detail is not None and len(detail):
        typed = detail[0]
        for child in typed:
            if not isinstance(child.tag, str):
                continue
            name = _local(child.tag)
            if name == "exceptionCode" and child.text:
                code = child.text.strip()
            elif name == "exceptionMessage" and child.text is not None:
                message = child.text
            elif name in ("row", "column"):
                number = _int_or_none(child.text)
                if name == "row":
                    row = number
                else:
                    column = number
    if code == "INVALID_SESSION_ID":
        return InvalidSession(code, message, row, column)
    return SalesforceFault(code, message, row, column)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def _query_batch(body: etree._Element) -> QueryBatch:
    result = body.find(_RESULT)
    if result is None:
        raise UpstreamError(_SERVICE, f"no result in {_local(body.tag)}")
    # findall and find search in C: a Python loop over the result's 2,000 children, comparing
    # each one's tag, costs more than the rest of this function.
    done = result.find(_DONE)
    size = result.find(_SIZE)
    locator = result.find(_LOCATOR)
    return QueryBatch(records=result.findall(_RECORDS),
                      size=int((size.text or "0").strip() or 0) if size is not None else 0,
                      done=(done.text or "").strip() == "true" if done is not None else True,
                      query_locator=(_text(locator) or None) if locator is not None else None)


_PEEK_CHUNK = 4096
_PEEK_LIMIT = 64 * 1024  # bytes of a reply's head that may hold done and queryLocator
_MISSING = object()


def _peek_next(content: bytes) -> tuple[bool, str | None] | None:
    # The same readings as _query_batch's, on the elements as they end in a pull parse.
    parser = etree.XMLPullParser(events=("start", "end"), resolve_entities=False,
                                 no_network=True)
    done = locator = _MISSING
    try:
        for start in range(0, min(len(content), _PEEK_LIMIT), _PEEK_CHUNK):
            parser.feed(content[start:start + _PEEK_CHUNK])
            for event, element in parser.read_events():
                if event == "start":
                    if element.tag in (_RECORDS, _SIZE, _FAULT):
                        return None  # past the head, or no result at all
                    continue
                parent = element.getparent()
                if parent is None or parent.tag != _RESULT:
                    continue
                if element.tag == _DONE:
                    done = (element.text or "").strip() == "true"
                elif element.tag == _LOCATOR:
                    locator = _text(element) or None
                if done is not _MISSING and locator is not _MISSING:
                    return done, locator
    except etree.XMLSyntaxError:
        return None  # read_batch will say what is wrong with it
    return None
