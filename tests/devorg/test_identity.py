"""devorg's identity service over real HTTP: Salesforce's JSON shape, and 403 Bad_OAuth_Token."""
from __future__ import annotations

import json

import requests

from tests.helpers.oauth import CALLBACK, identity, password_token, web_tokens
from tests.helpers.org import ADMIN
from tests.helpers.paths import FIXTURES

REAL = json.loads((FIXTURES / "oauth" / "mobilesdk-android_identity_response.json").read_text())


def admin(org, path: str, body: dict) -> None:
    assert requests.post(f"{org.url}/__admin/{path}", json=body, timeout=10).ok


def tokens_of(org, username: str = ADMIN[0], password: str = ADMIN[1]) -> dict:
    client = org.register(CALLBACK)
    response = password_token(org.url, client, username, password)
    assert response.status_code == 200, response.text
    return response.json()


def assert_bad_token(response: requests.Response) -> None:
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "Bad_OAuth_Token"


def test_identity_has_the_keys_of_the_real_response_in_order(local_org):
    tokens = web_tokens(local_org.url, local_org.register(CALLBACK))
    response = identity(local_org.url, tokens["access_token"], tokens["id"])
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == list(REAL)
    for nested in ("photos", "status"):
        assert list(body[nested]) == list(REAL[nested])
    # urls: Salesforce's keys in its order, less those this org does not serve.
    assert list(body["urls"]) == [key for key in REAL["urls"] if key in body["urls"]]
    for key, value in REAL.items():
        assert type(body[key]) is type(value) or value is None, key


def test_identity_describes_the_tokens_user(local_org):
    tokens = tokens_of(local_org, "zoë.müller@devorg.local", "Welcome1!")
    body = identity(local_org.url, tokens["access_token"], tokens["id"]).json()
    record = local_org.state.data.user_by_username("zoë.müller@devorg.local")
    assert body["id"] == tokens["id"]
    assert body["user_id"] == record["Id"] and len(body["user_id"]) == 18
    assert body["organization_id"] == "00D5g000004ZbXyEAK"
    assert body["username"] == "zoë.müller@devorg.local"
    assert body["display_name"] == "Zoë Müller"
    assert (body["first_name"], body["last_name"]) == ("Zoë", "Müller")
    assert body["email"] == "zoe.mueller@devorg.local"
    assert body["timezone"] == "Europe/Berlin"
    assert body["utcOffset"] == 3600000
    assert body["asserted_user"] is True and body["active"] is True
    assert body["user_type"] == "STANDARD"


def test_identity_urls_point_at_the_org_and_keep_the_version_placeholder(local_org):
    tokens = tokens_of(local_org)
    urls = identity(local_org.url, tokens["access_token"], tokens["id"]).json()["urls"]
    base = local_org.url
    assert urls["partner"] == f"{base}/services/Soap/u/{{version}}/00D5g000004ZbXy"
    # Not served, so not advertised: the enterprise, metadata and tooling SOAP APIs.
    assert not {"enterprise", "metadata", "tooling_soap"} & set(urls)
    assert urls["rest"] == f"{base}/services/data/v{{version}}/"
    assert urls["query"] == f"{base}/services/data/v{{version}}/query/"
    assert urls["custom_domain"] == base
    for key, url in urls.items():
        assert ("{version}" in url) == ("{version}" in REAL["urls"][key]), key
        assert url.startswith(base), key


def test_identity_fills_the_version_when_asked(local_org):
    tokens = tokens_of(local_org)
    response = requests.get(tokens["id"], params={"version": "66.0"}, timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.json()["urls"]["partner"].endswith("/services/Soap/u/66.0/00D5g000004ZbXy")


def test_identity_accepts_15_character_ids(local_org):
    tokens = tokens_of(local_org)
    org_id, user_id = tokens["id"].split("/")[-2:]
    url = f"{local_org.url}/id/{org_id[:15]}/{user_id[:15]}"
    assert identity(local_org.url, tokens["access_token"], url).status_code == 200


def test_bad_missing_or_foreign_tokens_get_bad_oauth_token(local_org):
    mine, theirs = tokens_of(local_org), tokens_of(local_org, "integration@devorg.local",
                                                   "Integr8!on")
    assert_bad_token(identity(local_org.url, "00D5g000004ZbXy!bogus", mine["id"]))
    assert_bad_token(requests.get(mine["id"], timeout=10))
    assert_bad_token(identity(local_org.url, theirs["access_token"], mine["id"]))
    assert_bad_token(identity(local_org.url, mine["access_token"],
                              f"{local_org.url}/id/00D000000000001AAA/{mine['id'][-18:]}"))


def test_expired_and_revoked_tokens_get_bad_oauth_token(fresh_org):
    tokens, other = tokens_of(fresh_org), tokens_of(fresh_org)
    requests.post(f"{fresh_org.url}/services/oauth2/revoke",
                  data={"token": other["access_token"]}, timeout=10)
    assert_bad_token(identity(fresh_org.url, other["access_token"], other["id"]))
    assert identity(fresh_org.url, tokens["access_token"], tokens["id"]).status_code == 200
    admin(fresh_org, "expire-sessions", {})
    assert_bad_token(identity(fresh_org.url, tokens["access_token"], tokens["id"]))


def test_identity_faults_and_counter(fresh_org):
    tokens = tokens_of(fresh_org)
    admin(fresh_org, "faults", {"identity_endpoint": "403"})
    assert_bad_token(identity(fresh_org.url, tokens["access_token"], tokens["id"]))
    admin(fresh_org, "faults", {"identity_endpoint": "500"})
    response = identity(fresh_org.url, tokens["access_token"], tokens["id"])
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    admin(fresh_org, "faults", {"identity_endpoint": None})
    assert identity(fresh_org.url, tokens["access_token"], tokens["id"]).status_code == 200
    counts = requests.get(f"{fresh_org.url}/__admin/counters", timeout=10).json()
    assert counts["identity"] == 3
