"""simple-salesforce, an off-the-shelf client, against the local org over https.

The client is used as its README shows: `Salesforce(instance_url=..., session_id=...)`, its OAuth
username-password login (consumer_key/consumer_secret) and its SOAP login (username, password,
security token). It trusts the org's self-signed certificate through the `requests.Session` it is
given, as a user would after `python -m devorg --tls` prints the certificate's path.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import (
    Salesforce,
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
)

import devorg
from devorg import OrgConfig, serve_in_thread
from devorg.config import DEFAULT_USERS, SeedUser
from devorg.data import DELETED_EXTRA
from tests.helpers.oauth import CALLBACK
from tests.helpers.org import ADMIN, LocalOrg, counters, mint_token

CONTACTS = 250
SECURITY_TOKEN = "Tok3nForSoapLogin"
# simple-salesforce builds its login URLs as https://{domain}.salesforce.com; this name stands
# for the local org, and `LoginHostAdapter` sends requests for it there.
LOGIN_DOMAIN = "devorg"
LOGIN_HOST = f"https://{LOGIN_DOMAIN}.salesforce.com/"


@dataclass
class TokenedUser(SeedUser):
    """A seeded user with a security token (the org honours `security_token` when a seed has
    one)."""

    security_token: str = ""


class LoginHostAdapter(HTTPAdapter):
    """Sends requests for https://devorg.salesforce.com/... to the local org instead: the one
    step a hosts-file entry would do. The request still goes over the network, over TLS checked
    against the org's certificate, to the org's real endpoints."""

    def __init__(self, org_url: str) -> None:
        super().__init__()
        self.org_url = org_url

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        request.url = self.org_url + "/" + request.url.removeprefix(LOGIN_HOST)
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def org() -> Iterator[LocalOrg]:
    admin = DEFAULT_USERS[0]
    users = [TokenedUser(admin.username, admin.password, admin.first_name, admin.last_name,
                         admin.email, admin.timezone, security_token=SECURITY_TOKEN),
             *DEFAULT_USERS[1:]]
    app = devorg.create_app(OrgConfig(users=users, contact_count=CONTACTS, admin_enabled=True))
    server = serve_in_thread(app, tls=True)
    yield LocalOrg(server.url, devorg.org_of(app), server)
    server.shutdown()


def trusting_session(org: LocalOrg) -> requests.Session:
    """A requests session that trusts the org's certificate (and nothing else self-signed)."""
    session = requests.Session()
    session.verify = str(org.server.certificate)
    # Else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment win over session.verify
    # (requests merges the environment over the session: psf/requests#3829).
    session.trust_env = False
    return session


@pytest.fixture
def sf(org) -> Salesforce:
    """A client on a fresh session id, pointed at the org by instance_url."""
    return Salesforce(instance_url=org.url, session_id=mint_token(org),
                      session=trusting_session(org))


def test_instance_url_is_https(org, sf):
    assert org.url.startswith("https://127.0.0.1:")
    assert sf.base_url == f"{org.url}/services/data/v{sf.sf_version}/"


def test_query(sf):
    result = sf.query("SELECT Id, Name FROM Account ORDER BY Name LIMIT 5")
    assert result["done"] is True
    assert result["totalSize"] == 5
    assert [record["attributes"]["type"] for record in result["records"]] == ["Account"] * 5
    names = [record["Name"] for record in result["records"]]
    assert names == sorted(names)


def test_query_all_follows_next_records_url_over_two_batches(org, sf):
    before = counters(org).get("rest.query", 0)
    result = sf.query_all("SELECT Id, LastName FROM Contact",
                          headers={"Sforce-Query-Options": "batchSize=200"})
    assert counters(org)["rest.query"] - before == 2  # the first batch, then its nextRecordsUrl
    assert result["totalSize"] == CONTACTS
    assert len(result["records"]) == CONTACTS
    assert len({record["Id"] for record in result["records"]}) == CONTACTS


def test_query_all_iter(sf):
    records = list(sf.query_all_iter("SELECT Id FROM Contact",
                                     headers={"Sforce-Query-Options": "batchSize=200"}))
    assert len(records) == CONTACTS
    assert all(record["Id"].startswith("003") for record in records)


def test_include_deleted_uses_query_all_and_sees_deleted_rows(sf):
    live = sf.query("SELECT Id FROM Contact")
    every = sf.query("SELECT Id, IsDeleted FROM Contact", include_deleted=True)
    assert every["totalSize"] - live["totalSize"] == DELETED_EXTRA["Contact"]
    every_all = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)
    assert sum(record["IsDeleted"] for record in every_all["records"]) == DELETED_EXTRA["Contact"]


def test_describe_global(sf):
    described = sf.describe()
    names = {sobject["name"] for sobject in described["sobjects"]}
    assert {"Account", "Contact"} <= names
    assert described["encoding"] == "UTF-8"


def test_contact_describe(sf):
    described = sf.Contact.describe()
    assert described["name"] == "Contact"
    fields = {field["name"]: field for field in described["fields"]}
    assert {"Id", "LastName", "AccountId"} <= set(fields)
    assert fields["AccountId"]["referenceTo"] == ["Account"]


def test_restful_empty_path_is_the_version_resource_map(sf):
    resources = sf.restful("")
    assert resources["sobjects"] == f"/services/data/v{sf.sf_version}/sobjects"
    assert resources["query"] == f"/services/data/v{sf.sf_version}/query"
    assert resources["limits"] == f"/services/data/v{sf.sf_version}/limits"


def test_account_get_by_id(sf):
    account = sf.query("SELECT Id, Name FROM Account LIMIT 1")["records"][0]
    record = sf.Account.get(account["Id"])
    assert record["Id"] == account["Id"]
    assert record["Name"] == account["Name"]
    assert record["attributes"]["type"] == "Account"


def test_restful_limits(sf):
    limits = sf.restful("limits")
    daily = limits["DailyApiRequests"]
    assert 0 <= daily["Remaining"] <= daily["Max"]


def test_oauth_username_password_login(org):
    client = org.register(CALLBACK, client_secret=secrets.token_hex(32),
                          password_flow_enabled=True)
    session = trusting_session(org)
    session.mount(LOGIN_HOST, LoginHostAdapter(org.url))
    sf = Salesforce(username=ADMIN[0], password=ADMIN[1], consumer_key=client.client_id,
                    consumer_secret=client.client_secret, domain=LOGIN_DOMAIN, session=session)
    # The token response's instance_url is where the client goes next.
    assert sf.sf_instance == org.url.removeprefix("https://")
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_oauth_login_with_a_wrong_secret_fails(org):
    client = org.register(CALLBACK, password_flow_enabled=True)
    session = trusting_session(org)
    session.mount(LOGIN_HOST, LoginHostAdapter(org.url))
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        Salesforce(username=ADMIN[0], password=ADMIN[1], consumer_key=client.client_id,
                   consumer_secret="wrong", domain=LOGIN_DOMAIN, session=session)
    assert failed.value.code == "invalid_client"


def test_soap_login_with_security_token(org):
    session = trusting_session(org)
    session.mount(LOGIN_HOST, LoginHostAdapter(org.url))
    before = counters(org).get("soap.login", 0)
    sf = Salesforce(username=ADMIN[0], password=ADMIN[1], security_token=SECURITY_TOKEN,
                    domain=LOGIN_DOMAIN, session=session)
    assert counters(org)["soap.login"] - before == 1
    # serverUrl of the login result names the instance.
    assert sf.sf_instance == org.url.removeprefix("https://")
    assert sf.query("SELECT Id FROM Contact LIMIT 3")["totalSize"] == 3


def test_soap_login_with_a_wrong_security_token_fails(org):
    # simple-salesforce sends password + token in one element; a wrong token makes it wrong.
    session = trusting_session(org)
    session.mount(LOGIN_HOST, LoginHostAdapter(org.url))
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        Salesforce(username=ADMIN[0], password=ADMIN[1], security_token="NotTheToken",
                   domain=LOGIN_DOMAIN, session=session)
    assert failed.value.code == "INVALID_LOGIN"


def test_bad_field_raises_malformed_request(sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id, NoSuchField__c FROM Contact")
    assert raised.value.status == 400
    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_expired_session_raises_expired_session(org):
    sf = Salesforce(instance_url=org.url, session_id=mint_token(org),
                    session=trusting_session(org))
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1
    expired = requests.post(f"{org.url}/__admin/expire-sessions",
                            verify=str(org.server.certificate), timeout=10)
    assert expired.status_code == 200, expired.text
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert raised.value.status == 401
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
