"""The REST API of the local org: the versions list, the version's resources, describe, record
retrieve, limits and query.

    GET /services/data/                              the API versions (31.0 and newer), oldest first
    GET /services/data/vXX.X/                        the resources this org serves for that version
    GET /services/data/vXX.X/sobjects/               describeGlobal
    GET /services/data/vXX.X/sobjects/<name>/        the sObject's basic information
    GET /services/data/vXX.X/sobjects/<name>/describe/         describeSObject
    GET /services/data/vXX.X/sobjects/<name>/<id>?fields=A,B   one record
    GET /services/data/vXX.X/limits/                 the org's limits
    GET /services/data/vXX.X/query?q=SOQL            first batch (2,000 records by default)
    GET /services/data/vXX.X/queryAll?q=SOQL         the same, deleted rows included
    GET /services/data/vXX.X/query/<locator>         the next batch (nextRecordsUrl)

Every path answers with and without a trailing slash. JSON in Salesforce's shape, with typed values
(numbers, booleans, null); anything else under /services/data/ is Salesforce's NOT_FOUND JSON, and
a retired version (below 31.0) is 410 GONE. Query locators are the cursors the SOAP endpoint uses
too.
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
from .data import FieldSchema, SObjectSchema, is_valid_id, to_id18
from .soap import clamp_batch_size
from .soql import SoqlError, project, run_query
from .state import OrgState, RequestLimitExceeded

log = logging.getLogger(__name__)

REST_BATCH_SIZE = 2000
# Salesforce retired API versions 7.0 to 30.0 (the last of them in Summer '25).
OLDEST_VERSION = 31.0
_VERSION = re.compile(r"\d{1,3}\.\d")
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


def _gone() -> Response:
    return _error(410, "GONE", "The requested resource is no longer available.")


def served_versions(versions: Sequence[str]) -> list[str]:
    """The configured versions the REST API serves: the retired ones (below 31.0) left out."""
    return [version for version in versions if float(version) >= OLDEST_VERSION]


def _retired(version: str) -> bool:
    return bool(_VERSION.fullmatch(version)) and float(version) < OLDEST_VERSION


def _org() -> OrgState:
    return current_app.extensions["devorg"]


@bp.get("/services/data/")
@bp.get("/services/data")
def versions() -> Response:
    """Every API version the org serves, oldest first, like Salesforce's list."""
    org = _org()
    org.counters.incr("rest.versions")
    return _json([{"label": release_name(version), "url": f"/services/data/v{version}",
                   "version": version} for version in served_versions(org.config.api_versions)])


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


def _begin(version: str, counter: str = "rest.query"
           ) -> tuple[OrgState, str | None, str, Response | None]:
    """Checks shared by the versioned routes: version, token, API request limit."""
    org = _org()
    if _retired(version):
        return org, None, "", _gone()
    if version not in served_versions(org.config.api_versions):
        return org, None, "", _not_found()
    org.counters.incr(counter)
    user_id, denied = _authorize(org)
    if denied is not None:
        return org, None, "", denied
    usage = org.api_usage
    try:
        current = usage.charge()
    except RequestLimitExceeded as exceeded:
        return org, None, "", _error(403, "REQUEST_LIMIT_EXCEEDED", str(exceeded))
    return org, user_id, f"api-usage={current}/{usage.limit}", None


# strict_slashes=False: "query" and "query/" both answer (no redirect a client would not follow).
@bp.get("/services/data/v<version>/query/", defaults={"resource": "query"},
        strict_slashes=False)
@bp.get("/services/data/v<version>/queryAll/", defaults={"resource": "queryAll"},
        strict_slashes=False)
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


@bp.get("/services/data/v<version>/query/<query_locator>/", defaults={"resource": "query"},
        strict_slashes=False)
@bp.get("/services/data/v<version>/queryAll/<query_locator>/",
        defaults={"resource": "queryAll"}, strict_slashes=False)
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


# ---------------------------------------------------------------- version resources and describe


@bp.get("/services/data/v<version>/", strict_slashes=False)
def version_resources(version: str) -> Response:
    """The resources this org serves for `version`, and only those (each one answers)."""
    org, user_id, limit_info, denied = _begin(version, "rest.resources")
    if denied is not None:
        return denied
    base = f"/services/data/v{version}"
    host = request.host_url.rstrip("/")
    return _json({
        "identity": f"{host}/id/{org.org_id}/{user_id}",
        "limits": f"{base}/limits",
        "query": f"{base}/query",
        "queryAll": f"{base}/queryAll",
        "sobjects": f"{base}/sobjects",
    }, headers={"Sforce-Limit-Info": limit_info})


def _sobject_urls(sobject: SObjectSchema, version: str) -> dict[str, str]:
    # Only URLs this org answers: no layouts, list views, quick actions or UI pages.
    base = f"/services/data/v{version}/sobjects/{sobject.name}"
    return {"rowTemplate": f"{base}/{{ID}}", "describe": f"{base}/describe", "sobject": base}


def _sobject_flags(sobject: SObjectSchema) -> dict[str, Any]:
    # The same flags the partner API's describeGlobal and describeSObject give.
    user = sobject.name == "User"
    return {
        "activateable": False, "associateEntityType": None, "associateParentEntity": None,
        "createable": True, "custom": False, "customSetting": False, "deepCloneable": False,
        "deletable": not user, "deprecatedAndHidden": False, "feedEnabled": True,
        "hasSubtypes": False, "idEnabled": True, "isInterface": False, "isSubtype": False,
        "keyPrefix": sobject.key_prefix, "label": sobject.label,
        "labelPlural": sobject.label_plural, "layoutable": True,
        "mergeable": sobject.name in ("Account", "Contact", "Lead"), "mruEnabled": True,
        "name": sobject.name, "queryable": True, "replicateable": True, "retrieveable": True,
        "searchable": True, "triggerable": True, "undeletable": not user, "updateable": True,
    }


def describe_global_entry(sobject: SObjectSchema, version: str) -> dict[str, Any]:
    """One element of describeGlobal's "sobjects" (also the basic info's objectDescribe)."""
    return {**_sobject_flags(sobject), "urls": _sobject_urls(sobject, version)}


_SYSTEM_FIELDS = {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
                  "LastModifiedById", "SystemModstamp", "LastLoginDate", "UserType"}
_NUMERIC_TYPES = {"double", "currency", "percent"}
_NAME_PARTS = {"FirstName", "LastName", "Salutation"}


def field_describe(sobject: SObjectSchema, field: FieldSchema) -> dict[str, Any]:
    """One field of describeSObject in REST's words and key order (the partner API's values)."""
    # A compound Name (FirstName + LastName) is computed, so it cannot be written.
    compound = sobject.field("FirstName") is not None
    computed = field.name == "Name" and compound
    writable = field.name not in _SYSTEM_FIELDS and not computed
    is_text = field.soap_type == "xsd:string"
    is_id = field.type in ("id", "reference")
    if is_id:
        length = 18
    elif is_text:
        length = field.length
    else:
        length = 0
    return {
        "aggregatable": field.type != "textarea",
        "aiPredictionField": False,
        "autoNumber": False,
        "byteLength": field.length * 3 if is_text and not is_id else length,
        "calculated": computed,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": False,
        "compoundFieldName": "Name" if compound and field.name in _NAME_PARTS else None,
        "controllerName": None,
        "createable": writable,
        "custom": False,
        "defaultValue": False if field.type == "boolean" else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": (field.name in _SYSTEM_FIELDS or field.type == "boolean"
                              or field.name == "OwnerId"),
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": 9 if field.type == "int" else 0,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": False,
        "extraTypeInfo": "plaintextarea" if field.type == "textarea" else None,
        "filterable": field.type != "textarea",
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": field.type not in _NUMERIC_TYPES and field.type not in ("textarea",
                                                                             "datetime"),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": field.name in ("Id", "Email", "Username") or (field.name == "Name"
                                                                  and not computed),
        "inlineHelpText": None,
        "label": field.label,
        "length": length,
        "mask": None,
        "maskType": None,
        "name": field.name,
        "nameField": field.name == "Name",
        "namePointing": False,
        "nillable": field.nillable,
        "permissionable": field.nillable and writable,
        "picklistValues": [{"active": True, "defaultValue": False, "label": value,
                            "validFor": None, "value": value}
                           for value in field.picklist_values],
        "polymorphicForeignKey": False,
        "precision": 18 if field.type in _NUMERIC_TYPES else 0,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(field.reference_to),
        "relationshipName": field.relationship_name,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": False,
        "scale": 2 if field.type in _NUMERIC_TYPES else 0,
        "searchPrefilterable": field.type == "reference",
        "soapType": field.soap_type,
        "sortable": field.type != "textarea",
        "type": field.type,
        "unique": False,
        "updateable": writable,
        "writeRequiresMasterRead": False,
    }


def describe_sobject(sobject: SObjectSchema, version: str) -> dict[str, Any]:
    """describeSObject of one sObject as the REST API writes it (keys in Salesforce's order)."""
    owned = sobject.field("OwnerId") is not None
    plural = sobject.label_plural.lower()
    described = {
        **_sobject_flags(sobject),
        "actionOverrides": [],
        "childRelationships": [{
            "cascadeDelete": child.child_sobject == "Contact",
            "childSObject": child.child_sobject, "deprecatedAndHidden": False,
            "field": child.field, "junctionIdListNames": [], "junctionReferenceTo": [],
            "relationshipName": child.relationship_name, "restrictedDelete": False,
        } for child in sobject.child_relationships],
        "compactLayoutable": True,
        "defaultImplementation": None,
        "extendedBy": None,
        "extendsInterfaces": None,
        "fields": [field_describe(sobject, field) for field in sobject.fields],
        "implementedBy": None,
        "implementsInterfaces": None,
        "listviewable": None,
        "lookupLayoutable": None,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        # The master record type; its layout URL is left out because this org serves no layouts.
        "recordTypeInfos": [{"active": True, "available": True,
                             "defaultRecordTypeMapping": True, "developerName": "Master",
                             "master": True, "name": "Master",
                             "recordTypeId": "012000000000000AAA"}],
        "searchLayoutable": True,
        "sobjectDescribeOption": "FULL",
        "supportedScopes": ([{"label": f"All {plural}", "name": "everything"},
                             {"label": f"My {plural}", "name": "mine"}] if owned else
                            [{"label": f"All {plural}", "name": "everything"}]),
    }
    ordered = dict(sorted(described.items()))
    ordered["urls"] = _sobject_urls(sobject, version)
    return ordered


def _described(version: str, name: str, counter: str
               ) -> tuple[OrgState, SObjectSchema | None, str, Response | None]:
    org, _, limit_info, denied = _begin(version, counter)
    if denied is not None:
        return org, None, limit_info, denied
    sobject = org.data.sobject(name)
    if sobject is None:
        return org, None, limit_info, _not_found()
    return org, sobject, limit_info, None


@bp.get("/services/data/v<version>/sobjects/", strict_slashes=False)
def describe_global(version: str) -> Response:
    """describeGlobal: every sObject of the org with its flags and URLs."""
    org, _, limit_info, denied = _begin(version, "rest.describe")
    if denied is not None:
        return denied
    return _json({"encoding": "UTF-8", "maxBatchSize": 200,
                  "sobjects": [describe_global_entry(sobject, version)
                               for sobject in org.data.schema.values()]},
                 headers={"Sforce-Limit-Info": limit_info})


@bp.get("/services/data/v<version>/sobjects/<name>/", strict_slashes=False)
def sobject_basic_info(version: str, name: str) -> Response:
    """An sObject's basic information: its describeGlobal entry and recently viewed records."""
    _, sobject, limit_info, denied = _described(version, name, "rest.describe")
    if denied is not None:
        return denied
    return _json({"objectDescribe": describe_global_entry(sobject, version), "recentItems": []},
                 headers={"Sforce-Limit-Info": limit_info})


@bp.get("/services/data/v<version>/sobjects/<name>/describe/", strict_slashes=False)
def sobject_describe(version: str, name: str) -> Response:
    """describeSObject: fields, child relationships, record types and URLs."""
    _, sobject, limit_info, denied = _described(version, name, "rest.describe")
    if denied is not None:
        return denied
    return _json(describe_sobject(sobject, version), headers={"Sforce-Limit-Info": limit_info})


def _invalid_field(name: str, sobject: SObjectSchema) -> Response:
    return _error(400, "INVALID_FIELD", (
        f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to use a "
        "custom field, be sure to append the '__c' after the custom field name. Please reference "
        "your WSDL or the describe call for the appropriate names."))


@bp.get("/services/data/v<version>/sobjects/<name>/<record_id>/", strict_slashes=False)
def sobject_row(version: str, name: str, record_id: str) -> Response:
    """One record by Id, every field or those named in `?fields=A,B`."""
    org, sobject, limit_info, denied = _described(version, name, "rest.record")
    if denied is not None:
        return denied
    if not is_valid_id(record_id) or not record_id.startswith(sobject.key_prefix):
        # Salesforce reads a value that is not an Id of this sObject as an external id.
        return _error(404, "NOT_FOUND", "Provided external ID field does not exist or is not "
                      f"accessible: {record_id}")
    row = org.data.index(sobject.name).get(to_id18(record_id))
    if row is None:
        return _not_found()
    if row.get("IsDeleted"):
        return _error(404, "ENTITY_IS_DELETED", "entity is deleted")
    requested = request.args.get("fields")
    if requested is None:
        names = [field.name for field in sobject.fields]
    else:
        names = []
        for given in (part.strip() for part in requested.split(",")):
            field = sobject.field(given) if given else None
            if field is None:
                return _invalid_field(given, sobject)
            names.append(field.name)
    # Id first, always: the record's attributes carry its URL.
    selected = ["Id", *(name for name in dict.fromkeys(names) if name != "Id")]
    # Safe to splice: the names come from the schema and the Id from the record itself.
    soql = f"SELECT {', '.join(selected)} FROM {sobject.name} WHERE Id = '{row['Id']}'"  # noqa: S608
    run = run_query(org.data, soql)
    [record] = project(run, 0, 1)
    return _json(rest_record(_compile(run.shape), record, version),
                 headers={"Sforce-Limit-Info": limit_info})


# ---------------------------------------------------------------- limits


_DATA_STORAGE_MB = 5  # a Developer Edition org's allowance
_RECORD_KB = 2  # Salesforce counts most records as 2 KB of data storage


@bp.get("/services/data/v<version>/limits/", strict_slashes=False)
def limits(version: str) -> Response:
    """The org's limits: maximum and remaining, API requests counted live."""
    org, _, limit_info, denied = _begin(version, "rest.limits")
    if denied is not None:
        return denied
    usage = org.api_usage
    records = sum(len(org.data.records(name)) for name in org.data.schema)
    used_mb = -(-records * _RECORD_KB // 1024)
    return _json({
        "DailyApiRequests": {"Max": usage.limit, "Remaining": max(0, usage.limit - usage.current)},
        "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000},
        "DataStorageMB": {"Max": _DATA_STORAGE_MB,
                          "Remaining": max(0, _DATA_STORAGE_MB - used_mb)},
        "FileStorageMB": {"Max": 20, "Remaining": 20},
        "SingleEmail": {"Max": 15, "Remaining": 15},
    }, headers={"Sforce-Limit-Info": limit_info})


# ---------------------------------------------------------------- anything else


@bp.route("/services/data/<path:unknown>",
          methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def unknown_resource(unknown: str) -> Response:
    """Salesforce's JSON for a resource it does not have; 410 under a retired version."""
    first = unknown.split("/", 1)[0]
    if first.startswith("v") and _retired(first[1:]):
        return _gone()
    return _not_found()


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
    """Serve the REST API of `org` on `app`."""
    app.register_blueprint(bp)
