"""The SOAP partner API of the local org: `POST /services/Soap/u/<version>/<orgId>`, and login
at `POST /services/Soap/u/<version>`.

Operations: login (API 31.0 to 64.0), logout, query, queryAll, queryMore, retrieve,
getUserInfo, describeGlobal, describeSObject, describeSObjects and getServerTimestamp. Every other
operation of the partner WSDL answers an INVALID_OPERATION fault; retired API versions (below
31.0) answer UNSUPPORTED_API_VERSION. Requests are parsed with lxml; responses are written from
string templates, byte for byte in the partner API's shape (namespaces, `xsi:type`, nil rules,
the doubled `Id`), because a 2,000-record batch must be served in a few milliseconds.

Long because each operation's reply is a template of its own, written out in full so that it
reads like the XML it produces.
"""
from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from lxml import etree

from .cursors import InvalidQueryLocator, case_safe_id
from .data import is_valid_id, to_id18
from .soql import SoqlError, project, run_query
from .state import ApiUsage, OrgState, RequestLimitExceeded

log = logging.getLogger(__name__)

SOAPENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER_NS = "urn:partner.soap.sforce.com"
_ENVELOPE = f"{{{SOAPENV_NS}}}Envelope"
_HEADER = f"{{{SOAPENV_NS}}}Header"
_BODY = f"{{{SOAPENV_NS}}}Body"

DEFAULT_BATCH_SIZE = 500
MIN_BATCH_SIZE = 200
MAX_BATCH_SIZE = 2000

_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'
_ENV_OPEN = (_XML_DECL + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
             ' xmlns="urn:partner.soap.sforce.com"'
             ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')
_SF_NS = ' xmlns:sf="urn:sobject.partner.soap.sforce.com"'
# Typed AggregateResult values name xsd: types, so that prefix must be bound as well.
_SF_XSD_NS = _SF_NS + ' xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
_ENV_CLOSE = "</soapenv:Body></soapenv:Envelope>"
_FAULT_OPEN = (_XML_DECL + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
               ' xmlns:sf="urn:fault.partner.soap.sforce.com"'
               ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
               "<soapenv:Body><soapenv:Fault>")
_XML_CONTENT_TYPE = "text/xml;charset=UTF-8"
INVALID_SESSION_MESSAGE = "Invalid Session ID found in SessionHeader: Illegal Session"
# The recorded INVALID_LOGIN fault (www-salesforce-nb_fault_INVALID_LOGIN.xml).
INVALID_LOGIN_MESSAGE = "Invalid username, password, security token; or user locked out."
# Salesforce retired API versions 21.0 to 30.0 in Summer '25; the lowest one served is 31.0.
MIN_SUPPORTED_VERSION = 31.0
# SOAP login() was removed from API 65.0 on.
LAST_SOAP_LOGIN_VERSION = 64.0
LOGIN_RETIRED_MESSAGE = ("SOAP API login() is not available in API version 65.0 and later. "
                         "Authenticate with OAuth through an External Client App instead.")
# New Salesforce orgs ship with SOAP login() off (OrgState.soap_login_enabled).
LOGIN_DISABLED_MESSAGE = ("SOAP API login() is disabled in this org. An admin must enable SOAP "
                          "API login() before it can be used; or authenticate with OAuth.")
# The client_id of tokens that SOAP login() issues (no Connected App is involved).
SOAP_LOGIN_CLIENT = "SOAP API login()"

# Every operation of the v66.0 partner WSDL's portType; those this org does not serve answer
# INVALID_OPERATION, the ones outside it a soapenv:Client fault.
WSDL_OPERATIONS = frozenset("""
    login describeSObject describeSObjects describeGlobal describeDataCategoryGroups
    describeDataCategoryGroupStructures describeDataCategoryMappings describeKnowledgeSettings
    describeAppMenu describeGlobalTheme describeTheme describeLayout describeSoftphoneLayout
    describeSearchLayouts describeSearchableEntities describeSearchScopeOrder
    describeCompactLayouts describePathAssistants describeApprovalLayout describeSoqlListViews
    executeListView describeSObjectListViews describeTabs describeAllTabs
    describePrimaryCompactLayouts create update upsert merge delete undelete emptyRecycleBin
    retrieve process convertLead logout invalidateSessions getDeleted getUpdated query queryAll
    queryMore search getServerTimestamp setPassword changeOwnPassword resetPassword getUserInfo
    deleteByExample sendEmailMessage sendEmail renderEmailTemplate renderStoredEmailTemplate
    performQuickActions describeQuickActions describeQuickActionsForRecordType
    describeAvailableQuickActions retrieveQuickActionTemplates retrieveMassQuickActionTemplates
    describeVisualForce findDuplicates findDuplicatesByIds describeNouns
""".split())

# Which typed fault element carries each exception code (see SoapFault for the others).
_FAULT_TYPES = {
    "INVALID_FIELD": "InvalidFieldFault",
    "MALFORMED_QUERY": "MalformedQueryFault",
    "INVALID_QUERY_FILTER_OPERATOR": "MalformedQueryFault",
    "INVALID_TYPE": "InvalidSObjectFault",
    "INVALID_QUERY_LOCATOR": "InvalidQueryLocatorFault",
    "INVALID_LOGIN": "LoginFault",
}
_QUERY_FAULTS = {"InvalidFieldFault", "MalformedQueryFault", "InvalidSObjectFault"}


def xml_escape(text: str) -> str:
    """Escape text for element content the way Salesforce's writer does (& < > ' " and CR)."""
    # Chained str.replace is several times faster than str.translate for short values.
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;").replace("\r", "&#13;"))


class SoapFault(Exception):
    """A partner API fault: `sf:<code>`, HTTP 500, with a typed detail."""

    def __init__(self, code: str, message: str, row: int | None = None,
                 column: int | None = None, fault_type: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.row = row
        self.column = column
        # A query fault with a position is at least an ApiQueryFault, whatever its code.
        self.fault_type = fault_type or _FAULT_TYPES.get(code) or (
            "MalformedQueryFault" if row is not None else "UnexpectedErrorFault")


class ClientFault(Exception):
    """A `soapenv:Client` fault: the request is not a SOAP call Salesforce could read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message




# ---------------------------------------------------------------- responses


def _xml_response(body: str, status: int = 200) -> Response:
    return Response(body.encode("utf-8"), status=status, content_type=_XML_CONTENT_TYPE)


def _limit_header(usage: ApiUsage, current: int) -> str:
    return ("<soapenv:Header><LimitInfoHeader><limitInfo>"
            f"<current>{current}</current><limit>{usage.limit}</limit><type>API REQUESTS</type>"
            "</limitInfo></LimitInfoHeader></soapenv:Header>")


def _envelope(operation: str, result: str, header: str, namespaces: str = "") -> str:
    return "".join((_ENV_OPEN, namespaces, ">", header,
                    "<soapenv:Body><", operation, "Response>", result, "</", operation,
                    "Response>", _ENV_CLOSE))


def fault_xml(fault: SoapFault) -> str:
    """The fault envelope of a partner API fault, shaped like Salesforce's."""
    fault_type = fault.fault_type
    message = xml_escape(fault.message)
    position = ""
    if fault_type in _QUERY_FAULTS:
        row = -1 if fault.row is None else fault.row
        column = -1 if fault.column is None else fault.column
        position = f"<sf:row>{row}</sf:row><sf:column>{column}</sf:column>"
    return "".join((
        _FAULT_OPEN, "<faultcode>sf:", fault.code, "</faultcode><faultstring>", fault.code, ": ",
        message, "</faultstring><detail><sf:", fault_type, ' xsi:type="sf:', fault_type, '">',
        "<sf:exceptionCode>", fault.code, "</sf:exceptionCode><sf:exceptionMessage>", message,
        "</sf:exceptionMessage>", position, "</sf:", fault_type, "></detail></soapenv:Fault>",
        _ENV_CLOSE))


def client_fault_xml(message: str) -> str:
    """A `soapenv:Client` fault envelope, as Salesforce sends for unreadable requests."""
    return (_XML_DECL + '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            "<soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>"
            + xml_escape(message) + "</faultstring></soapenv:Fault>" + _ENV_CLOSE)


# ---------------------------------------------------------------- records

_XSI_TYPES = {"tns:ID": "xsd:string"}  # an aggregate of an id is typed as a plain string
_QUERY_RESULT_HEAD = '<done>true</done><queryLocator xsi:nil="true"/>'
_RECORD_OPEN = '<records xsi:type="sf:sObject">'
_SPECIAL = ("&", "<", ">", "'", '"', "\r")  # the characters xml_escape rewrites


def shape_key(shape: Any) -> tuple:
    """A hashable outline of a Shape: what the record writer for it depends on."""
    typed = shape.entity == "AggregateResult"
    items = []
    for item in shape.items:
        kind = type(item).__name__
        if kind == "ParentItem":
            items.append(("parent", item.name, shape_key(item.shape)))
        elif kind == "ChildItem":
            items.append(("child", item.name, shape_key(item.shape)))
        elif typed or kind == "AggregateItem":
            # AggregateResult has no static schema, so each value says its type.
            items.append(("field", item.name, _XSI_TYPES.get(item.soap_type, item.soap_type)))
        else:
            items.append(("field", item.name, None))
    return tuple(items)


@lru_cache(maxsize=256)
def records_writer(key: tuple) -> Callable[[Sequence], str]:
    """Compile a function writing ProjectedRecords of one shape as partner API `<records>`.

    The function is generated Python (one f-string per record level) because a generic loop over
    the items is three times slower, and 2,000 records must be written in a few milliseconds.
    Every name enters the source through repr(), so no input can change the code.
    """
    functions: list[str] = []

    def level(items: tuple) -> str:
        name = f"_record{len(functions)}"
        functions.append("")  # reserve this level's slot before nested levels take theirs
        slot = len(functions) - 1
        parts = []
        for index, (kind, field, extra) in enumerate(items):
            value = f"v{index}"
            nil = repr(f'<sf:{field} xsi:nil="true"/>')
            close = repr(f"</sf:{field}>")
            if kind == "field":
                opening = repr(f'<sf:{field} xsi:type="{extra}">' if extra else f"<sf:{field}>")
                # Most values need no escaping: six `in` tests are cheaper than six replaces.
                test = " or ".join(f"{char!r} in {value}" for char in _SPECIAL)
                parts.append(f"{nil} if {value} is None else {opening} + ({value} if not "
                             f"({test}) else esc({value})) + {close}")
            elif kind == "parent":
                nested = level(extra)
                opening = repr(f'<sf:{field} xsi:type="sf:sObject">')
                parts.append(f"{nil} if {value} is None else {opening} + {nested}(*{value})"
                             f" + {close}")
            else:
                nested = level(extra)
                opening = repr(f'<sf:{field} xsi:type="QueryResult">{_QUERY_RESULT_HEAD}')
                parts.append(
                    f"{nil} if {value} is None else {opening} + ''.join([{_RECORD_OPEN!r} + "
                    f"{nested}(*row) + '</records>' for row in {value}]) + '<size>' + "
                    f"str(len({value})) + '</size>' + {close}")
        source = [f"def {name}(entity, record_id, values):"]
        if items:
            source.append(f"    {', '.join(f'v{i}' for i in range(len(items)))}, = values")
        source.append("    return ''.join((")
        source.append("        f'<sf:type>{entity}</sf:type><sf:Id>{record_id}</sf:Id>"
                      "<sf:Id>{record_id}</sf:Id>' if record_id is not None else "
                      "f'<sf:type>{entity}</sf:type><sf:Id xsi:nil=\"true\"/>',")
        source.extend(f"        {part}," for part in parts)
        source.append("    ))")
        functions[slot] = "\n".join(source)
        return name

    top = level(key)
    source = "\n\n".join(functions) + (
        f"\n\ndef write(records):\n    return ''.join([{_RECORD_OPEN!r} + {top}(*row) + "
        "'</records>' for row in records])\n")
    namespace: dict[str, Any] = {"esc": xml_escape}
    exec(compile(source, f"<records writer {key!r:.60}>", "exec"), namespace)  # noqa: S102
    return namespace["write"]


def _query_namespaces(shape: Any) -> str:
    return _SF_XSD_NS if shape.entity == "AggregateResult" else _SF_NS


def query_result_xml(shape: Any, records: Sequence, size: int, query_locator: str | None) -> str:
    """The `<result xsi:type="QueryResult">` of one batch of ProjectedRecords."""
    if query_locator is None:
        head = '<result xsi:type="QueryResult">' + _QUERY_RESULT_HEAD
    else:
        head = ('<result xsi:type="QueryResult"><done>false</done>'
                f"<queryLocator>{query_locator}</queryLocator>")
    body = records_writer(shape_key(shape))(records) if records else ""
    return f"{head}{body}<size>{size}</size></result>"


# ---------------------------------------------------------------- describe and user info


def _value_xml(name: str, value: Any) -> str:
    if value is None:
        return f'<{name} xsi:nil="true"/>'
    if value is True or value is False:
        return f"<{name}>{'true' if value else 'false'}</{name}>"
    return f"<{name}>{xml_escape(str(value))}</{name}>"


def _elements(pairs: list[tuple[str, Any]]) -> str:
    return "".join(_value_xml(name, value) for name, value in pairs)


def _profile_id(org: OrgState) -> str:
    return case_safe_id("00e" + org.org_id[3:5] + "000000" + "AbCd")


def user_info_xml(org: OrgState, user: dict, session_seconds: int,
                  element: str = "result") -> str:
    """GetUserInfoResult, every element the v66.0 WSDL requires, in its order, as `<element>`
    (`result` for getUserInfo, `userInfo` inside a LoginResult)."""
    return f"<{element}>" + _elements([
        ("accessibilityMode", False),
        ("chatterExternal", False),
        ("currencySymbol", "$"),
        ("orgAttachmentFileSizeLimit", 5242880),
        ("orgDefaultCurrencyIsoCode", "USD"),
        ("orgDefaultCurrencyLocale", "en_US"),
        ("orgDisallowHtmlAttachments", False),
        ("orgHasPersonAccounts", False),
        ("organizationId", org.org_id),
        ("organizationMultiCurrency", False),
        ("organizationName", org.config.org_name),
        ("profileId", _profile_id(org)),
        ("roleId", None),
        ("sessionSecondsValid", session_seconds),
        ("userDefaultCurrencyIsoCode", None),
        ("userEmail", user.get("Email") or ""),
        ("userFullName", user.get("Name") or ""),
        ("userId", user["Id"]),
        ("userLanguage", user.get("LanguageLocaleKey") or "en_US"),
        ("userLocale", user.get("LocaleSidKey") or "en_US"),
        ("userName", user.get("Username") or ""),
        ("userTimeZone", user.get("TimeZoneSidKey") or "America/Los_Angeles"),
        ("userType", user.get("UserType") or "Standard"),
        ("userUiSkin", "Theme3"),
    ]) + f"</{element}>"


def describe_global_xml(org: OrgState) -> str:
    """DescribeGlobalResult listing every sObject of the org."""
    out = ["<result><encoding>UTF-8</encoding><maxBatchSize>200</maxBatchSize>"]
    for sobject in org.data.schema.values():
        user = sobject.name == "User"
        out.append("<sobjects>" + _elements([
            ("activateable", False), ("associateEntityType", None),
            ("associateParentEntity", None), ("createable", True), ("custom", False),
            ("customSetting", False), ("deepCloneable", False), ("deletable", not user),
            ("deprecatedAndHidden", False), ("feedEnabled", True), ("hasSubtypes", False),
            ("idEnabled", True), ("isInterface", False), ("isSubtype", False),
            ("keyPrefix", sobject.key_prefix), ("label", sobject.label),
            ("labelPlural", sobject.label_plural), ("layoutable", True),
            ("mergeable", sobject.name in ("Account", "Contact", "Lead")), ("mruEnabled", True),
            ("name", sobject.name), ("queryable", True), ("replicateable", True),
            ("retrieveable", True), ("searchable", True), ("triggerable", True),
            ("undeletable", not user), ("updateable", True),
        ]) + "</sobjects>")
    out.append("</result>")
    return "".join(out)


_SYSTEM_FIELDS = {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
                  "LastModifiedById", "SystemModstamp", "LastLoginDate", "UserType"}
_NUMERIC_TYPES = {"double", "currency", "percent"}


def _field_xml(sobject: Any, field: Any) -> str:
    # A compound Name (FirstName + LastName) is computed, so it cannot be written.
    computed = field.name == "Name" and sobject.field("FirstName") is not None
    writable = field.name not in _SYSTEM_FIELDS and not computed
    is_text = field.soap_type == "xsd:string"
    reference = field.type == "reference"
    pairs: list[tuple[str, Any]] = [
        ("aggregatable", field.type != "textarea"),
        ("aiPredictionField", False),
        ("autoNumber", False),
        ("byteLength", field.length * 3 if is_text else (18 if field.type in ("id", "reference")
                                                         else 0)),
        ("calculated", computed),
        ("cascadeDelete", False),
        ("caseSensitive", False),
        ("createable", writable),
        ("custom", False),
        ("defaultedOnCreate", field.name in _SYSTEM_FIELDS or field.type == "boolean"
         or field.name == "OwnerId"),
        ("dependentPicklist", False),
        ("deprecatedAndHidden", False),
        ("digits", 9 if field.type == "int" else 0),
        ("externalId", False),
        ("filterable", field.type != "textarea"),
        ("groupable", field.type not in _NUMERIC_TYPES and field.type not in
         ("textarea", "datetime")),
        ("htmlFormatted", False),
        ("idLookup", field.name in ("Id", "Email", "Username") or
         (field.name == "Name" and not computed)),
        ("label", field.label),
        ("length", field.length if (is_text and not reference and field.type != "id")
         else (18 if field.type in ("id", "reference") else 0)),
        ("name", field.name),
        ("nameField", field.name == "Name"),
        ("namePointing", False),
        ("nillable", field.nillable),
        ("permissionable", field.nillable and writable),
    ]
    out = [_elements(pairs)]
    for value in field.picklist_values:
        out.append("<picklistValues>" + _elements([
            ("active", True), ("defaultValue", False), ("label", value), ("value", value),
        ]) + "</picklistValues>")
    pairs = [
        ("polymorphicForeignKey", False),
        ("precision", 18 if field.type in _NUMERIC_TYPES else 0),
        ("queryByDistance", False),
    ]
    out.append(_elements(pairs))
    for target in field.reference_to:
        out.append(_value_xml("referenceTo", target))
    pairs = []
    if field.relationship_name:
        pairs += [("relationshipName", field.relationship_name), ("restrictedDelete", False)]
    pairs += [
        ("restrictedPicklist", False),
        ("scale", 2 if field.type in _NUMERIC_TYPES else 0),
        ("searchPrefilterable", reference),
        ("soapType", field.soap_type),
        ("sortable", field.type != "textarea"),
        ("type", field.type),
        ("unique", False),
        ("updateable", writable),
    ]
    out.append(_elements(pairs))
    return "<fields>" + "".join(out) + "</fields>"


def describe_sobject_xml(org: OrgState, sobject: Any, base_url: str) -> str:
    """DescribeSObjectResult of one sObject, every element the v66.0 WSDL requires, in order."""
    user = sobject.name == "User"
    out = ["<result>", _elements([
        ("activateable", False), ("associateEntityType", None), ("associateParentEntity", None),
    ])]
    for child in sobject.child_relationships:
        out.append("<childRelationships>" + _elements([
            ("cascadeDelete", child.child_sobject == "Contact"), ("childSObject",
                                                                   child.child_sobject),
            ("deprecatedAndHidden", False), ("field", child.field),
            ("relationshipName", child.relationship_name), ("restrictedDelete", False),
        ]) + "</childRelationships>")
    out.append(_elements([
        ("compactLayoutable", True), ("createable", True), ("custom", False),
        ("customSetting", False), ("deepCloneable", False), ("defaultImplementation", None),
        ("deletable", not user), ("deprecatedAndHidden", False), ("feedEnabled", True),
    ]))
    out.extend(_field_xml(sobject, field) for field in sobject.fields)
    out.append(_elements([
        ("hasSubtypes", False), ("idEnabled", True), ("implementedBy", None),
        ("implementsInterfaces", None), ("isInterface", False), ("isSubtype", False),
        ("keyPrefix", sobject.key_prefix), ("label", sobject.label),
        ("labelPlural", sobject.label_plural), ("layoutable", True),
        ("mergeable", sobject.name in ("Account", "Contact", "Lead")), ("mruEnabled", True),
        ("name", sobject.name), ("networkScopeFieldName", None), ("queryable", True),
    ]))
    out.append("<recordTypeInfos>" + _elements([
        ("active", True), ("available", True), ("defaultRecordTypeMapping", True),
        ("developerName", "Master"), ("master", True), ("name", "Master"),
        ("recordTypeId", "012000000000000AAA"),
    ]) + "</recordTypeInfos>")
    out.append(_elements([
        ("replicateable", True), ("retrieveable", True), ("searchLayoutable", True),
        ("searchable", True), ("triggerable", True), ("undeletable", not user),
        ("updateable", True), ("urlDetail", f"{base_url}/{{ID}}"),
        ("urlEdit", f"{base_url}/{{ID}}/e"), ("urlNew", f"{base_url}/{sobject.key_prefix}/e"),
    ]))
    out.append("</result>")
    return "".join(out)


# ---------------------------------------------------------------- the endpoint


class _Call:
    """One parsed SOAP call: the operation element and its headers."""

    def __init__(self, operation: etree._Element, session_id: str | None,
                 batch_size: int | None) -> None:
        self.operation = operation
        self.name = etree.QName(operation).localname
        self.session_id = session_id
        self.batch_size = batch_size

    def argument(self, name: str) -> str:
        for child in self.operation:
            if isinstance(child.tag, str) and etree.QName(child).localname == name:
                return child.text or ""
        return ""

    def arguments(self, name: str) -> list[str]:
        """Every value of a repeated argument (retrieve's ids, describeSObjects' types)."""
        return [child.text or "" for child in self.operation
                if isinstance(child.tag, str) and etree.QName(child).localname == name]


_LXML_POSITION = re.compile(r", line \d+, column \d+$")
_FIELD_NAME = re.compile(r"[A-Za-z]\w*(?:\.[A-Za-z]\w*)*")


def _parse_call(body: bytes) -> _Call:
    """Read the envelope, or raise ClientFault with the message Salesforce gives."""
    if not body.strip():
        raise ClientFault("Premature end of file.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (1, 1)
        message = _LXML_POSITION.sub("", exc.msg or "Unexpected end of input")
        raise ClientFault(f"{message}\n at [row,col {{unknown-source}}]: [{line},{column}]") \
            from None
    if root.tag != _ENVELOPE:
        raise ClientFault("Unable to find envelope: expected {http://schemas.xmlsoap.org/soap/"
                          f"envelope/}}Envelope, found {root.tag}")
    header = root.find(_HEADER)
    body_el = root.find(_BODY)
    operation = None
    if body_el is not None:
        operation = next((el for el in body_el if isinstance(el.tag, str)), None)
    if operation is None:
        raise ClientFault("No operation found in the SOAP Body")
    session_id = None
    batch_size = None
    if header is not None:
        session_id = header.findtext(f"{{{PARTNER_NS}}}SessionHeader/{{{PARTNER_NS}}}sessionId")
        batch_text = header.findtext(f"{{{PARTNER_NS}}}QueryOptions/{{{PARTNER_NS}}}batchSize")
        if batch_text and batch_text.strip().lstrip("-").isdigit():
            batch_size = int(batch_text.strip())
    if session_id is not None:
        session_id = session_id.strip()
    return _Call(operation, session_id, batch_size)


def clamp_batch_size(batch_size: int | None, default: int = DEFAULT_BATCH_SIZE) -> int:
    """QueryOptions.batchSize as Salesforce applies it: default, then clamped to 200..2000."""
    if batch_size is None:
        return default
    return max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, batch_size))


class PartnerEndpoint:
    """The operations of the partner API over one org."""

    def __init__(self, org: OrgState) -> None:
        self.org = org
        self.operations: dict[str, Callable[[_Call, str, str], tuple[str, str]]] = {
            "query": self.query, "queryAll": self.query_all, "queryMore": self.query_more,
            "getUserInfo": self.get_user_info, "describeGlobal": self.describe_global,
            "describeSObject": self.describe_sobject,
            "getServerTimestamp": self.get_server_timestamp, "logout": self.logout,
            "retrieve": self.retrieve, "describeSObjects": self.describe_sobjects,
        }

    def handle(self, version: str, org_id: str | None, content_type: str, body: bytes,
               base_url: str) -> Response:
        """Serve one POST to the partner endpoint (`org_id` None: the login URL)."""
        org = self.org
        if org.faults.soap_endpoint == "502":
            return Response(_BAD_GATEWAY_PAGE, status=502, content_type="text/html")
        if org.faults.soap_endpoint == "empty":
            return Response(b"", status=200, content_type=_XML_CONTENT_TYPE)
        if float(version) < MIN_SUPPORTED_VERSION:
            return _xml_response(fault_xml(SoapFault(
                "UNSUPPORTED_API_VERSION", f"The API version that was specified ({version}) is "
                f"below the minimum supported ({MIN_SUPPORTED_VERSION}). Change the version "
                "number and run the request again.")), 500)
        if content_type != "text/xml":
            return _xml_response(client_fault_xml("content-type of the request should be "
                                                  "text/xml"), 500)
        try:
            call = _parse_call(body)
        except ClientFault as fault:
            return _xml_response(client_fault_xml(fault.message), 500)
        if (call.name not in WSDL_OPERATIONS
                or etree.QName(call.operation).namespace != PARTNER_NS):
            return _xml_response(client_fault_xml(
                f"No operation available for request {call.operation.tag}, please check the "
                "WSDL for the service."), 500)
        org.counters.incr(f"soap.{call.name}")
        org.counters.incr(f"soap.version.{version}")
        try:
            if call.name == "login":
                # No session yet, and Salesforce does not count login as an API request.
                return _xml_response(_envelope("login", self.login(call, version, base_url), ""))
            token = org.tokens.lookup_access(call.session_id)
            # A session of another org, or a URL naming another org, is no session. A URL naming
            # none (/services/Soap/u/<version>, where jsforce's SOAP calls go) serves the org
            # the session belongs to, as Salesforce does.
            if token is None or org_id not in (None, org.org_id, org.org_id[:15]):
                raise SoapFault("INVALID_SESSION_ID", INVALID_SESSION_MESSAGE)
            current = org.api_usage.charge()
            operation = self.operations.get(call.name)
            if operation is None:
                raise SoapFault("INVALID_OPERATION", f"The local org does not implement the "
                                f"partner API operation {call.name}().")
            result, namespaces = operation(call, token.user_id, base_url)
        except RequestLimitExceeded as exceeded:
            return _xml_response(fault_xml(SoapFault("REQUEST_LIMIT_EXCEEDED", str(exceeded))), 500)
        except SoapFault as fault:
            return _xml_response(fault_xml(fault), 500)
        except Exception:  # never a traceback on the wire; Salesforce's own catch-all
            log.exception("partner API %s failed", call.name)
            return _xml_response(fault_xml(SoapFault(
                "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId "
                "if you contact support: 1234567890-12345 (-1234567890)")), 500)
        return _xml_response(_envelope(call.name, result, _limit_header(org.api_usage, current),
                                       namespaces))

    def login(self, call: _Call, version: str, base_url: str) -> str:
        """LoginResult for a username and password (the org is a trusted IP range, so the
        security token is optional), in the element order of the recorded v42 reply. Only the
        <result>: a login has no session yet, so its reply carries no LimitInfoHeader."""
        org = self.org
        if float(version) > LAST_SOAP_LOGIN_VERSION:
            raise SoapFault("INVALID_OPERATION", LOGIN_RETIRED_MESSAGE)
        if not org.soap_login_enabled:
            raise SoapFault("INVALID_OPERATION", LOGIN_DISABLED_MESSAGE)
        user = self._authenticate(call.argument("username"), call.argument("password"))
        if user is None:
            raise SoapFault("INVALID_LOGIN", INVALID_LOGIN_MESSAGE)
        # A real access token of the org's store: query accepts it, logout and revoke kill it.
        token = org.tokens.issue(client_id=SOAP_LOGIN_CLIENT, user_id=user["Id"], scope="api",
                                 with_refresh=False)
        org15 = org.org_id[:15]
        return "<result>" + _elements([
            ("metadataServerUrl", f"{base_url}/services/Soap/m/{version}/{org15}"),
            ("passwordExpired", False),
            ("sandbox", False),
            ("serverUrl", f"{base_url}/services/Soap/u/{version}/{org15}"),
            ("sessionId", token.access_token),
            ("userId", user["Id"]),
        ]) + user_info_xml(org, user, org.tokens.lifetime_s, "userInfo") + "</result>"

    def _authenticate(self, username: str, password: str) -> dict | None:
        """The active User whose password is `password`, alone or followed by the user's
        security token when the config gives one; else None."""
        user = self.org.data.user_by_username(username.strip())
        if user is None or user.get("IsActive") is False:
            return None
        for seed in self.org.config.users:
            if seed.username.lower() != user["Username"].lower():
                continue
            accepted = [seed.password]
            # SeedUser has no security token today; one added to the config is honoured.
            security_token = getattr(seed, "security_token", None)
            if security_token:
                accepted.append(seed.password + security_token)
            given = password.encode()
            if any(hmac.compare_digest(candidate.encode(), given) for candidate in accepted):
                return user
        return None

    # Each operation returns (the <result> XML, the namespace declarations it needs).

    def _run(self, call: _Call, user_id: str, include_deleted: bool) -> tuple[str, str]:
        soql = call.argument("queryString")
        try:
            run = run_query(self.org.data, soql, include_deleted=include_deleted)
        except SoqlError as exc:
            raise SoapFault(exc.code, exc.message, exc.row, exc.column) from None
        if run.count_only:
            return query_result_xml(run.shape, [], run.total_size, None), _SF_NS
        batch = clamp_batch_size(call.batch_size)
        stop = min(batch, run.total_size)
        locator = None
        if stop < run.total_size:
            locator = self.org.query_cursors.open(user_id, run, stop)
        records = project(run, 0, stop)
        return (query_result_xml(run.shape, records, run.total_size, locator),
                _query_namespaces(run.shape))

    def query(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        return self._run(call, user_id, include_deleted=False)

    def query_all(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        return self._run(call, user_id, include_deleted=True)

    def query_more(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        store = self.org.query_cursors
        try:
            cursor, offset = store.take(call.argument("queryLocator"), user_id)
        except InvalidQueryLocator as exc:
            raise SoapFault(exc.code, exc.message) from None
        run = cursor.run
        stop = min(offset + clamp_batch_size(call.batch_size), run.total_size)
        records = project(run, offset, stop)
        locator = store.advance(cursor, stop, run.total_size)
        return (query_result_xml(run.shape, records, run.total_size, locator),
                _query_namespaces(run.shape))

    def get_user_info(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        user = self.org.data.user_by_id(user_id)
        if user is None:  # the token outlived its user
            raise SoapFault("INVALID_SESSION_ID", INVALID_SESSION_MESSAGE)
        return user_info_xml(self.org, user, self.org.tokens.lifetime_s), ""

    def describe_global(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        return describe_global_xml(self.org), ""

    def describe_sobject(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        name = call.argument("sObjectType").strip()
        sobject = self.org.data.sobject(name) if name else None
        if sobject is None:
            raise SoapFault("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        return describe_sobject_xml(self.org, sobject, base_url), ""

    def describe_sobjects(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        """One DescribeSObjectResult per sObjectType, in the order asked."""
        results = []
        for name in call.arguments("sObjectType"):
            sobject = self.org.data.sobject(name.strip()) if name.strip() else None
            if sobject is None:
                raise SoapFault("INVALID_TYPE", f"sObject type '{name.strip()}' is not supported.")
            results.append(describe_sobject_xml(self.org, sobject, base_url))
        return "".join(results), ""

    def logout(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        # Ends the session: the access token is revoked in the org's token store.
        self.org.tokens.revoke(call.session_id or "")
        return "", ""

    def retrieve(self, call: _Call, user_id: str, base_url: str) -> tuple[str, str]:
        """The records of `ids` in the order asked, each as query writes it (the Id once, as in
        the recorded reply); an id that names no record is a nil entry."""
        name = call.argument("sObjectType").strip()
        sobject = self.org.data.sobject(name) if name else None
        if sobject is None:
            raise SoapFault("INVALID_TYPE", f"sObject type '{name}' is not supported.")
        fields = [f.strip() for f in call.argument("fieldList").split(",") if f.strip()]
        for field in fields:
            # Only names reach the SOQL below, so a fieldList cannot change the query.
            if not _FIELD_NAME.fullmatch(field):
                raise SoapFault("INVALID_FIELD", f"No such column '{field}' on entity "
                                f"'{sobject.name}'.")
        # Id leads so that every row carries its id; asked for or not, the reply names it once.
        select = ["Id", *(f for f in fields if f.lower() != "id")]
        wanted = [to_id18(i.strip()) if is_valid_id(i.strip()) else None
                  for i in call.arguments("ids")]
        known = sorted({i for i in wanted if i is not None})
        where = f"Id IN ({', '.join(repr(i) for i in known)})" if known else "Id = null"
        soql = f"SELECT {', '.join(select)} FROM {sobject.name} WHERE {where}"  # noqa: S608
        try:
            run = run_query(self.org.data, soql)
        except SoqlError as exc:
            raise SoapFault(exc.code, exc.message, exc.row, exc.column) from None
        rows = {row[1]: row for row in project(run, 0, run.total_size)}
        write = records_writer(shape_key(run.shape))
        out = []
        for record_id in wanted:
            row = rows.get(record_id)
            if row is None:
                out.append('<result xsi:nil="true"/>')
                continue
            record = write([row])[len(_RECORD_OPEN):-len("</records>")]
            doubled = f"<sf:Id>{record_id}</sf:Id>"
            record = record.replace(doubled + doubled, doubled, 1)
            out.append(f'<result xsi:type="sf:sObject">{record}</result>')
        return "".join(out), _SF_NS

    def get_server_timestamp(self, call: _Call, user_id: str,
                             base_url: str) -> tuple[str, str]:
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        return f"<result><timestamp>{stamp}</timestamp></result>", ""


# What a proxy in front of an instance sends when the instance is down: HTML, not SOAP.
_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n")

_NOT_FOUND_PAGE = ("<h1>Not Found</h1>\n<p>The requested URL was not found on this "
                   "server.</p>\n")

bp = Blueprint("devorg_soap", __name__)


@bp.post("/services/Soap/u/<version>/<org_id>")
def partner_endpoint(version: str, org_id: str) -> Response:
    """The partner API; an API version this org does not serve is a 404."""
    org: OrgState = current_app.extensions["devorg"]
    if version not in org.config.api_versions:
        return Response(_NOT_FOUND_PAGE, status=404, content_type="text/html")
    if org.faults.soap_redirect_to:
        # A misbehaving (or hostile) endpoint: a client that follows 307 re-posts the envelope,
        # session id included, to wherever this points.
        return Response(status=307, headers={
            "Location": org.faults.soap_redirect_to.rstrip("/") + request.path})
    endpoint: PartnerEndpoint = current_app.extensions["devorg.soap"]
    return endpoint.handle(version, org_id, request.mimetype, request.get_data(cache=False),
                           request.host_url.rstrip("/"))


@bp.post("/services/Soap/u/<version>")
def login_endpoint(version: str) -> Response:
    """Where SOAP clients log in (login.salesforce.com's URL); an unknown version is a 404."""
    org: OrgState = current_app.extensions["devorg"]
    if version not in org.config.api_versions:
        return Response(_NOT_FOUND_PAGE, status=404, content_type="text/html")
    endpoint: PartnerEndpoint = current_app.extensions["devorg.soap"]
    return endpoint.handle(version, None, request.mimetype, request.get_data(cache=False),
                           request.host_url.rstrip("/"))


def init_app(app: Flask, org: OrgState) -> None:
    """Serve the partner API of `org` on `app`."""
    app.extensions["devorg.soap"] = PartnerEndpoint(org)
    app.register_blueprint(bp)
