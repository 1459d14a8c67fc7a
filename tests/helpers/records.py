"""Partner API query replies as the app reads them: recorded ones, and small envelopes written by
hand for shapes Salesforce documents but no public capture holds (deep parents, aggregates, sparse
fields)."""
from __future__ import annotations

from lxml import etree

from sfconnect.salesforce.partner import _query_batch
from tests.helpers.paths import RESPONSES

SOAP_ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"

ENVELOPE = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:sf="urn:sobject.partner.soap.sforce.com">'
    '<soapenv:Body><queryResponse><result xsi:type="QueryResult"><done>true</done>'
    '<queryLocator xsi:nil="true"/>{records}<size>{size}</size></result></queryResponse>'
    "</soapenv:Body></soapenv:Envelope>")


def records_of(xml: bytes | str):  # noqa: ANN201 - the app's records
    """The records of a queryResponse envelope, read by the app's partner client."""
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    return _query_batch(doc.find(f"{SOAP_ENV}Body")[0]).records


def recorded(name: str):  # noqa: ANN201 - the app's records
    """The records of a recorded real reply (shared/fixtures/salesforce/responses/`name`)."""
    return records_of((RESPONSES / name).read_bytes())


def envelope(*records: str) -> list:
    """The records of a done queryResponse holding `records` (from `rec`)."""
    return records_of(ENVELOPE.format(records="".join(records), size=len(records)))


def rec(sobject: str, body: str, record_id: str | None = None) -> str:
    """A `records` element of type `sobject` (its Id twice, as Salesforce writes it, or nil)."""
    ids = (f"<sf:Id>{record_id}</sf:Id><sf:Id>{record_id}</sf:Id>" if record_id
           else '<sf:Id xsi:nil="true"/>')
    return f'<records xsi:type="sf:sObject"><sf:type>{sobject}</sf:type>{ids}{body}</records>'


def parent(name: str, sobject: str, body: str) -> str:
    """A parent relationship element `name` of type `sobject`."""
    return (f'<sf:{name} xsi:type="sf:sObject"><sf:type>{sobject}</sf:type>'
            f'<sf:Id xsi:nil="true"/>{body}</sf:{name}>')
