"""The REST API's query resource, for /compare: GET urls.query?q= with Authorization: Bearer.

The URL is the identity service's `urls.query` with `{version}` filled, checked by the trust
policy before the token goes there; the request travels through the outbound "rest" session like
every other one. A 401 is INVALID_SESSION_ID (the caller refreshes once), a 400 a SOQL fault.
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from sfconnect.errors import InvalidSession, SalesforceFault, UpstreamError
from sfconnect.http import TokenGate

SERVICE = "rest"


@dataclass
class RestQueryResult:
    """The first batch of a REST query: its records (REST-shaped dicts) and the totals."""

    records: list[dict]
    total_size: int
    done: bool
    next_records_url: str | None


def query_url(urls_query: str, version: str) -> str:
    """urls.query of the identity service with `{version}` filled."""
    return urls_query.replace("{version}", version)


def query(http: TokenGate, url: str, access_token: str, soql: str) -> RestQueryResult:
    """Run `soql` at the REST query URL `url` through the gate; raise our errors."""
    try:
        response = http.get(url, params={"q": soql},
                            headers={"Authorization": f"Bearer {access_token}",
                                     "Accept": "application/json"})
    except requests.Timeout:
        raise UpstreamError(SERVICE, "the REST API did not answer in time") from None
    except requests.RequestException:
        raise UpstreamError(SERVICE, "the REST API could not be reached") from None
    try:
        body = response.json()
    except ValueError:
        raise UpstreamError(SERVICE, f"the REST API answered HTTP {response.status_code} "
                            "with something that is not JSON") from None
    if response.status_code in (400, 401, 403) and isinstance(body, list) and body:
        code = str(body[0].get("errorCode") or "UNKNOWN_EXCEPTION")
        message = str(body[0].get("message") or "")
        if response.status_code == 401 or code == "INVALID_SESSION_ID":
            raise InvalidSession(code, message)
        raise SalesforceFault(code, message)
    if response.status_code != 200 or not isinstance(body, dict):
        raise UpstreamError(SERVICE, f"the REST API answered HTTP {response.status_code}")
    return RestQueryResult(records=list(body.get("records") or []),
                           total_size=int(body.get("totalSize") or 0),
                           done=bool(body.get("done", True)),
                           next_records_url=body.get("nextRecordsUrl"))


def plain_record(record: object) -> object:
    """A REST-shaped record without its `attributes`, at every depth (to compare with SOAP's)."""
    if isinstance(record, dict):
        return {key: plain_record(value) for key, value in record.items() if key != "attributes"}
    if isinstance(record, list):
        return [plain_record(item) for item in record]
    if isinstance(record, bool) or record is None:
        return record
    if isinstance(record, int | float):
        return float(record)
    try:
        return float(record)  # the partner API may leave a number untyped
    except (TypeError, ValueError):
        return record
