"""devorg as an OpenID Connect provider over real HTTP: discovery, JWKS, id_tokens of the code and
refresh grants, userinfo, key rotation, introspection; and PKCE with the long verifiers that
Salesforce's own clients send."""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time

import pytest
import requests
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.helpers.oauth import (
    CALLBACK,
    authorize_url,
    consent,
    exchange,
    get_code,
    login,
    pkce_pair,
    redirect_params,
)
from tests.helpers.org import ADMIN, user_id

OPENID_SCOPE = "api refresh_token openid"


def long_pkce_pair() -> tuple[str, str]:
    """A verifier as jsforce and the Salesforce CLI make it: base64url of 128 random bytes."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(128)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def openid_client(org):
    return org.register(CALLBACK, scopes=OPENID_SCOPE)


def openid_tokens(org, client, nonce: str | None = "n-0S6_WzA2Mj") -> dict:
    extra = {"scope": OPENID_SCOPE}
    if nonce:
        extra["nonce"] = nonce
    code, verifier = get_code(org.url, client, **extra)
    response = exchange(org.url, client, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()


def jwks_of(org) -> KeySet:
    response = requests.get(f"{org.url}/id/keys", timeout=10)
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


def validated_id_token(org, client, tokens: dict, nonce: str | None) -> CodeIDToken:
    """The id_token's claims, its signature checked against the org's JWKS and its claims by
    Authlib's CodeIDToken (iss, aud, exp, iat, nonce, at_hash)."""
    decoded = jwt.decode(tokens["id_token"], jwks_of(org), algorithms=["RS256"])
    params = {"access_token": tokens["access_token"]}
    if nonce:
        params["nonce"] = nonce
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"essential": True, "value": org.url},
                                  "aud": {"essential": True, "value": client.client_id}},
                         params=params)
    claims.validate()
    return claims


def kid_of(id_token: str) -> str:
    header = base64.urlsafe_b64decode(id_token.split(".")[0] + "==")
    return re.search(rb'"kid":\s*"([^"]+)"', header).group(1).decode()


# ------------------------------------------------------------------ PKCE as Salesforce takes it

def test_pkce_with_a_171_character_verifier_completes_the_code_flow(local_org):
    client = local_org.register(CALLBACK, require_pkce=True)
    verifier, challenge = long_pkce_pair()
    assert len(verifier) == 171
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    assert login(session, url).status_code == 303
    code = redirect_params(consent(session, url))["code"]
    response = exchange(local_org.url, client, code, verifier)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_pkce_with_a_wrong_long_verifier_is_invalid_grant(local_org):
    client = local_org.register(CALLBACK, require_pkce=True)
    _, challenge = long_pkce_pair()
    other_verifier, _ = long_pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    assert login(session, url).status_code == 303
    code = redirect_params(consent(session, url))["code"]
    response = exchange(local_org.url, client, code, other_verifier)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "invalid code verifier"}


# ------------------------------------------------------------------ discovery and keys

def test_discovery_document_names_the_org_endpoints(local_org):
    response = requests.get(f"{local_org.url}/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    document = response.json()
    base = local_org.url
    assert document["issuer"] == base
    assert document["authorization_endpoint"] == f"{base}/services/oauth2/authorize"
    assert document["token_endpoint"] == f"{base}/services/oauth2/token"
    assert document["revocation_endpoint"] == f"{base}/services/oauth2/revoke"
    assert document["userinfo_endpoint"] == f"{base}/services/oauth2/userinfo"
    assert document["introspection_endpoint"] == f"{base}/services/oauth2/introspect"
    assert document["jwks_uri"] == f"{base}/id/keys"
    assert {"openid", "api", "refresh_token"} <= set(document["scopes_supported"])
    assert "code" in document["response_types_supported"]
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"sub", "user_id", "organization_id", "preferred_username", "email"} <= set(
        document["claims_supported"])
    assert {"client_secret_post", "client_secret_basic"} <= set(
        document["token_endpoint_auth_methods_supported"])


def test_jwks_lists_public_rsa_signing_keys(local_org):
    keys = requests.get(f"{local_org.url}/id/keys", timeout=10).json()["keys"]
    assert keys
    for key in keys:
        assert set(key) == {"kty", "n", "e", "alg", "use", "kid"}  # nothing private
        assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")
        assert key["kid"]


# ------------------------------------------------------------------ id_tokens

def test_code_flow_with_openid_and_a_nonce_gives_a_valid_id_token(local_org):
    client = openid_client(local_org)
    before = int(time.time())
    tokens = openid_tokens(local_org, client, nonce="n-0S6_WzA2Mj")
    assert tokens["scope"] == OPENID_SCOPE
    claims = validated_id_token(local_org, client, tokens, nonce="n-0S6_WzA2Mj")
    assert claims.header["alg"] == "RS256"
    assert claims.header["kid"] in {key.kid for key in jwks_of(local_org).keys}
    assert claims["sub"] == tokens["id"]
    assert claims["sub"] == f"{local_org.url}/id/{local_org.state.org_id}/{user_id(local_org)}"
    assert claims["aud"] == client.client_id
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["at_hash"]
    assert claims["exp"] > claims["iat"] >= before - 1
    assert isinstance(claims["auth_time"], int) and claims["auth_time"] <= claims["iat"]
    assert claims["preferred_username"] == ADMIN[0]
    assert claims["name"] == "Ada Admin"
    assert claims["email"] == "ada.admin@devorg.local"


def test_id_token_without_a_nonce_has_none(local_org):
    client = openid_client(local_org)
    tokens = openid_tokens(local_org, client, nonce=None)
    claims = validated_id_token(local_org, client, tokens, nonce=None)
    assert "nonce" not in claims


def test_no_id_token_without_the_openid_scope(local_org):
    client = openid_client(local_org)
    code, verifier = get_code(local_org.url, client, scope="api refresh_token")
    tokens = exchange(local_org.url, client, code, verifier).json()
    assert "id_token" not in tokens


def test_openid_is_refused_to_a_client_not_allowed_it(local_org):
    client = local_org.register(CALLBACK)  # scopes "api refresh_token"
    session = requests.Session()
    url = authorize_url(local_org.url, client, scope=OPENID_SCOPE)
    page = session.get(url, allow_redirects=False)
    assert redirect_params(page)["error"] == "invalid_scope"


def test_refresh_of_an_openid_grant_gives_a_new_id_token_without_nonce(local_org):
    client = openid_client(local_org)
    tokens = openid_tokens(local_org, client, nonce="first-nonce")
    first = validated_id_token(local_org, client, tokens, nonce="first-nonce")
    response = requests.post(f"{local_org.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client.client_id, "client_secret": client.client_secret})
    assert response.status_code == 200, response.text
    refreshed = response.json()
    assert refreshed["id_token"] != tokens["id_token"]
    claims = validated_id_token(local_org, client, refreshed, nonce=None)
    assert "nonce" not in claims
    assert claims["sub"] == first["sub"]
    assert claims["auth_time"] == first["auth_time"]  # the sign-in, not the refresh


def test_refresh_of_a_grant_without_openid_has_no_id_token(local_org):
    client = openid_client(local_org)
    code, verifier = get_code(local_org.url, client, scope="api refresh_token")
    tokens = exchange(local_org.url, client, code, verifier).json()
    response = requests.post(f"{local_org.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client.client_id, "client_secret": client.client_secret})
    assert response.status_code == 200, response.text
    assert "id_token" not in response.json()


def test_rotating_the_signing_key_changes_the_kid_and_keeps_the_old_key_listed(fresh_org):
    client = openid_client(fresh_org)
    before = openid_tokens(fresh_org, client)
    old_kid = kid_of(before["id_token"])
    response = requests.post(f"{fresh_org.url}/__admin/rotate-signing-key", timeout=10)
    assert response.status_code == 200, response.text
    new_kid = response.json()["kid"]
    assert new_kid != old_kid
    after = openid_tokens(fresh_org, client)
    assert kid_of(after["id_token"]) == new_kid
    assert {old_kid, new_kid} <= {key.kid for key in jwks_of(fresh_org).keys}
    # Both verify against the published set: the old token's key was not withdrawn.
    validated_id_token(fresh_org, client, before, nonce="n-0S6_WzA2Mj")
    validated_id_token(fresh_org, client, after, nonce="n-0S6_WzA2Mj")


def test_no_key_rotation_control_without_admin():
    from tests.helpers.org import start_org

    org = start_org(admin_enabled=False)
    try:
        response = requests.post(f"{org.url}/__admin/rotate-signing-key", timeout=10)
        assert response.status_code == 404
    finally:
        org.server.shutdown()


# ------------------------------------------------------------------ userinfo

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_answers_the_id_tokens_subject(local_org, method):
    client = openid_client(local_org)
    tokens = openid_tokens(local_org, client)
    claims = validated_id_token(local_org, client, tokens, nonce="n-0S6_WzA2Mj")
    response = requests.request(method, f"{local_org.url}/services/oauth2/userinfo", timeout=10,
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["sub"] == claims["sub"] == tokens["id"]
    assert info["user_id"] == user_id(local_org)
    assert info["organization_id"] == local_org.state.org_id
    assert info["preferred_username"] == ADMIN[0]
    assert (info["given_name"], info["family_name"], info["name"]) == ("Ada", "Admin", "Ada Admin")
    assert info["email"] == "ada.admin@devorg.local" and info["email_verified"] is True
    assert info["zoneinfo"] == "America/Los_Angeles"
    assert info["locale"] and "updated_at" in info
    assert info["urls"]["rest"] == f"{local_org.url}/services/data/v{{version}}/"
    # Salesforce's order of the first keys.
    assert list(info)[:4] == ["sub", "user_id", "organization_id", "preferred_username"]


def test_userinfo_refuses_a_bad_or_missing_token_as_salesforce(local_org):
    url = f"{local_org.url}/services/oauth2/userinfo"
    bad = requests.get(url, headers={"Authorization": "Bearer 00Dnot!atoken"}, timeout=10)
    assert (bad.status_code, bad.text) == (403, "Bad_OAuth_Token")
    missing = requests.get(url, timeout=10)
    assert (missing.status_code, missing.text) == (403, "Missing_OAuth_Token")


# ------------------------------------------------------------------ introspection

def introspect(org, client, token: str, **extra) -> requests.Response:
    return requests.post(f"{org.url}/services/oauth2/introspect", timeout=10,
                         auth=(client.client_id, client.client_secret),
                         data={"token": token, **extra})


def test_introspect_describes_a_live_access_and_refresh_token(local_org):
    client = openid_client(local_org)
    tokens = openid_tokens(local_org, client)
    access = introspect(local_org, client, tokens["access_token"],
                        token_type_hint="access_token")
    assert access.status_code == 200, access.text
    body = access.json()
    assert body["active"] is True
    assert (body["client_id"], body["username"], body["sub"]) == (
        client.client_id, ADMIN[0], tokens["id"])
    assert body["scope"] == OPENID_SCOPE and body["token_type"] == "access_token"
    assert body["exp"] > body["iat"]
    refresh = introspect(local_org, client, tokens["refresh_token"]).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"


def test_introspect_answers_inactive_for_revoked_unknown_or_foreign_tokens(local_org):
    client = openid_client(local_org)
    other = openid_client(local_org)
    tokens = openid_tokens(local_org, client)
    assert introspect(local_org, other, tokens["access_token"]).json() == {"active": False}
    assert introspect(local_org, client, "00Dnot!atoken").json() == {"active": False}
    requests.post(f"{local_org.url}/services/oauth2/revoke", data={"token": tokens["access_token"]},
                  timeout=10)
    assert introspect(local_org, client, tokens["access_token"]).json() == {"active": False}


def test_introspect_needs_the_client_secret(local_org):
    client = openid_client(local_org)
    response = requests.post(f"{local_org.url}/services/oauth2/introspect", timeout=10,
                             auth=(client.client_id, "wrong"), data={"token": "x"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


# ------------------------------------------------------------------ prompt=none

def test_prompt_none_answers_login_required_without_a_session_and_a_code_with_one(local_org):
    client = openid_client(local_org)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, scope=OPENID_SCOPE, prompt="none",
                        challenge=challenge)
    anonymous = requests.get(url, allow_redirects=False, timeout=10)
    assert redirect_params(anonymous)["error"] == "login_required"

    session = requests.Session()
    first = authorize_url(local_org.url, client, scope=OPENID_SCOPE, challenge=challenge)
    assert login(session, first).status_code == 303
    assert "code" in redirect_params(consent(session, first))
    # Signed in, the app approved: no page at all, straight back with a code.
    assert "code" in redirect_params(session.get(url, allow_redirects=False, timeout=10))
