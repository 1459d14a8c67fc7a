"""The local org's SOAP partner API driven directly: raw envelopes, a strict zeep client on the
real v66.0 WSDL, and reading replies."""
from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

import requests
import zeep
from lxml import etree
from zeep.transports import Transport

from tests.helpers.paths import FIXTURES

WSDL = FIXTURES / "partner-v66.0.wsdl"
VERSION = "66.0"

NS = {
    "soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
    "p": "urn:partner.soap.sforce.com",
    "sf": "urn:sobject.partner.soap.sforce.com",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "f": "urn:fault.partner.soap.sforce.com",
}
XSI_NIL = f"{{{NS['xsi']}}}nil"
XSI_TYPE = f"{{{NS['xsi']}}}type"


def partner_url(org, version: str = VERSION, org_id: str | None = None) -> str:
    return f"{org.url}/services/Soap/u/{version}/{org_id or org.state.org_id}"


def envelope(operation: str, arguments: dict[str, str] | None = None,
             session_id: str | None = None, batch_size: int | None = None) -> bytes:
    """A partner API request envelope, written by hand the way a SOAP client sends it."""
    headers = ""
    if session_id is not None:
        headers += (f"<p:SessionHeader><p:sessionId>{escape(session_id)}</p:sessionId>"
                    "</p:SessionHeader>")
    if batch_size is not None:
        headers += f"<p:QueryOptions><p:batchSize>{batch_size}</p:batchSize></p:QueryOptions>"
    args = "".join(f"<p:{name}>{escape(value)}</p:{name}>"
                   for name, value in (arguments or {}).items())
    return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            f'xmlns:soapenv="{NS["soapenv"]}" xmlns:p="{NS["p"]}"><soapenv:Header>{headers}'
            f"</soapenv:Header><soapenv:Body><p:{operation}>{args}</p:{operation}>"
            "</soapenv:Body></soapenv:Envelope>").encode()


def soap_post(org, operation: str, arguments: dict[str, str] | None = None,
              session_id: str | None = None, batch_size: int | None = None,
              version: str = VERSION, org_id: str | None = None) -> requests.Response:
    """POST one partner call with plain requests."""
    return requests.post(partner_url(org, version, org_id),
                         data=envelope(operation, arguments, session_id, batch_size),
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                         timeout=30)


def body_of(response: requests.Response) -> etree._Element:
    """The first element inside soapenv:Body."""
    root = etree.fromstring(response.content)
    return root.find("soapenv:Body", NS)[0]


@dataclass
class Partner:
    """A strict zeep client bound to the org, and the headers to pass per call."""

    client: zeep.Client
    service: object
    session_header: object

    def headers(self, batch_size: int | None = None) -> list:
        headers = [self.session_header]
        if batch_size is not None:
            options = self.client.get_element("{urn:partner.soap.sforce.com}QueryOptions")
            headers.append(options(batchSize=batch_size))
        return headers


_CLIENT: list[zeep.Client] = []


def zeep_partner(org, session_id: str, version: str = VERSION) -> Partner:
    """zeep on the real v66.0 partner WSDL, strict, over a requests.Session."""
    if not _CLIENT:  # loading the WSDL once per run is enough
        _CLIENT.append(zeep.Client(str(WSDL), transport=Transport(session=requests.Session()),
                                   settings=zeep.Settings(strict=True)))
    client = _CLIENT[0]
    service = client.create_service("{urn:partner.soap.sforce.com}SoapBinding",
                                     partner_url(org, version))
    header = client.get_element("{urn:partner.soap.sforce.com}SessionHeader")
    return Partner(client, service, header(sessionId=session_id))


def record_fields(record) -> list[tuple[str, str | None]]:
    """(local name, text or None when nil) of each child of an sObject element."""
    out = []
    for child in record:
        nil = child.get(XSI_NIL) == "true"
        out.append((etree.QName(child).localname, None if nil else child.text))
    return out
