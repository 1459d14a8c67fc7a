"""devorg's `id_token` fault switch over real HTTP: each value spoils exactly one thing in every
id_token of the code and refresh grants (or in userinfo), as the OpenID Foundation's Basic RP
tests expect of an OP; off again, the tokens are clean."""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from authlib.oidc.core import CodeIDToken
from authlib.oidc.core.util import create_half_hash
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tests.helpers.oauth import CALLBACK, exchange, get_code

OPENID_SCOPE = "api refresh_token openid"
NONCE = "n-0S6_WzA2Mj"
# Claims that differ between two clean id_tokens, or that a spoiler may change; each has a check
# of its own below. The others must be the same as in a clean token.
CHECKED_CLAIMS = {"iss", "aud", "exp", "iat", "nonce", "sub", "at_hash", "auth_time"}

# The checks each id_token spoiler must fail, and no other.
ID_TOKEN_DEFECTS = {
    "bad-sig": {"signature"},
    "issuer-mismatch": {"iss"},
    "aud": {"aud"},
    "expired": {"exp"},
    "nonce": {"nonce"},
    # Unsecured: alg none, no signature, and so no key to name.
    "alg-none": {"alg", "signature", "kid"},
    "no-sub": {"sub"},
    "no-iat": {"iat"},
    "no-kid": {"kid"},
}


def openid_client(org):
    return org.register(CALLBACK, scopes=OPENID_SCOPE)


def openid_tokens(org, client) -> dict:
    code, verifier = get_code(org.url, client, scope=OPENID_SCOPE, nonce=NONCE)
    response = exchange(org.url, client, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()


def refreshed_tokens(org, client, tokens: dict) -> dict:
    response = requests.post(f"{org.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client.client_id, "client_secret": client.client_secret})
    assert response.status_code == 200, response.text
    return response.json()


def set_spoiler(org, value: str | None) -> None:
    response = requests.post(f"{org.url}/__admin/faults", json={"id_token": value}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["id_token"] == value


def jwks_of(org) -> KeySet:
    response = requests.get(f"{org.url}/id/keys", timeout=10)
    assert response.status_code == 200, response.text
    return KeySet.import_key_set(response.json())


def userinfo(org, tokens: dict) -> dict:
    response = requests.get(f"{org.url}/services/oauth2/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.text
    return response.json()


def b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def parts(id_token: str) -> tuple[dict, dict, str]:
    """(header, claims, signature segment), read without any check."""
    header, payload, signature = id_token.split(".")
    return b64url_json(header), b64url_json(payload), signature


def signature_verifies(org, id_token: str) -> bool:
    """Whether the RS256 signature verifies with the published key the header names (with no
    kid, the single published key)."""
    header, _, _ = parts(id_token)
    keys = jwks_of(org)
    if "kid" in header:
        key = keys.get_by_kid(header["kid"])
    else:
        assert len(keys.keys) == 1, "no kid is meaningful only while one key is published"
        key = keys.keys[0]
    try:
        jws.deserialize_compact(id_token, key, algorithms=["RS256"])
    except JoseError:
        return False
    return True


def failed_checks(org, client, tokens: dict, clean_claims: dict, from_code: bool) -> set[str]:
    """The names of the relying party's id_token checks that `tokens["id_token"]` fails, each
    check independent of the others; `clean_claims` are those of a clean id_token of the same
    user and client."""
    header, claims, _ = parts(tokens["id_token"])
    published = {key.kid for key in jwks_of(org).keys}
    now = int(time.time())
    at_hash = create_half_hash(tokens["access_token"], "RS256").decode()
    nonce_ok = claims.get("nonce") == NONCE if from_code else claims.get("nonce") in (None, NONCE)
    checks = {
        "alg": header.get("alg") == "RS256",
        "kid": header.get("kid") in published,
        "signature": signature_verifies(org, tokens["id_token"]),
        "iss": claims.get("iss") == org.url,
        "aud": claims.get("aud") == client.client_id,
        "exp": isinstance(claims.get("exp"), int) and claims["exp"] > now,
        "iat": isinstance(claims.get("iat"), int),
        "nonce": nonce_ok,
        "sub": claims.get("sub") == tokens["id"],
        "at_hash": claims.get("at_hash") == at_hash,
        "auth_time": isinstance(claims.get("auth_time"), int),
        "other claims": ({k: v for k, v in claims.items() if k not in CHECKED_CLAIMS}
                         == {k: v for k, v in clean_claims.items() if k not in CHECKED_CLAIMS}),
    }
    return {name for name, ok in checks.items() if not ok}


def clean_baseline(org, client) -> tuple[dict, dict]:
    """A clean id_token's claims (validated in full by Authlib) and userinfo of the admin user."""
    tokens = openid_tokens(org, client)
    decoded = jwt.decode(tokens["id_token"], jwks_of(org), algorithms=["RS256"])
    claims = CodeIDToken(decoded.claims, decoded.header,
                         options={"iss": {"essential": True, "value": org.url},
                                  "aud": {"essential": True, "value": client.client_id}},
                         params={"nonce": NONCE, "access_token": tokens["access_token"]})
    claims.validate()
    assert failed_checks(org, client, tokens, dict(claims), from_code=True) == set()
    return dict(claims), userinfo(org, tokens)


@pytest.mark.parametrize("spoiler", sorted(ID_TOKEN_DEFECTS))
def test_each_spoiler_breaks_exactly_its_check_in_code_and_refresh_id_tokens(fresh_org, spoiler):
    client = openid_client(fresh_org)
    clean_claims, clean_userinfo = clean_baseline(fresh_org, client)
    set_spoiler(fresh_org, spoiler)

    tokens = openid_tokens(fresh_org, client)
    assert failed_checks(fresh_org, client, tokens, clean_claims, from_code=True) == (
        ID_TOKEN_DEFECTS[spoiler])
    refreshed = refreshed_tokens(fresh_org, client, tokens)
    assert failed_checks(fresh_org, client, refreshed, clean_claims, from_code=False) == (
        ID_TOKEN_DEFECTS[spoiler])
    # An id_token spoiler leaves userinfo alone.
    assert userinfo(fresh_org, tokens) == clean_userinfo


def test_bad_sig_is_a_well_formed_rs256_token_whose_signature_fails(fresh_org):
    client = openid_client(fresh_org)
    set_spoiler(fresh_org, "bad-sig")
    id_token = openid_tokens(fresh_org, client)["id_token"]
    header, _, signature = parts(id_token)
    assert header["alg"] == "RS256" and header["kid"] in {k.kid for k in jwks_of(fresh_org).keys}
    assert len(base64.urlsafe_b64decode(signature + "==")) == 256  # an RSA-2048 signature's size
    with pytest.raises(JoseError):
        jwt.decode(id_token, jwks_of(fresh_org), algorithms=["RS256"])


def test_alg_none_is_an_unsecured_jws_with_an_empty_signature(fresh_org):
    client = openid_client(fresh_org)
    set_spoiler(fresh_org, "alg-none")
    id_token = openid_tokens(fresh_org, client)["id_token"]
    assert id_token.endswith(".") and id_token.count(".") == 2
    header, claims, signature = parts(id_token)
    assert header == {"typ": "JWT", "alg": "none"}
    assert signature == ""
    assert claims["nonce"] == NONCE and claims["aud"] == client.client_id


def test_expired_puts_iat_and_exp_an_hour_or_more_in_the_past(fresh_org):
    client = openid_client(fresh_org)
    set_spoiler(fresh_org, "expired")
    _, claims, _ = parts(openid_tokens(fresh_org, client)["id_token"])
    now = int(time.time())
    assert claims["iat"] <= now - 3600 and claims["exp"] <= now - 3600
    assert claims["iat"] < claims["exp"]


@pytest.mark.parametrize(("spoiler", "claim"), [("no-sub", "sub"), ("no-iat", "iat")])
def test_no_sub_and_no_iat_remove_the_claim(fresh_org, spoiler, claim):
    client = openid_client(fresh_org)
    set_spoiler(fresh_org, spoiler)
    id_token = openid_tokens(fresh_org, client)["id_token"]
    assert claim not in parts(id_token)[1]
    # Still a valid signature by a published key.
    assert jwt.decode(id_token, jwks_of(fresh_org), algorithms=["RS256"]).claims


def test_no_kid_verifies_with_the_single_published_key(fresh_org):
    client = openid_client(fresh_org)
    set_spoiler(fresh_org, "no-kid")
    id_token = openid_tokens(fresh_org, client)["id_token"]
    header, _, _ = parts(id_token)
    assert "kid" not in header and header["alg"] == "RS256"
    keys = jwks_of(fresh_org).keys
    assert len(keys) == 1
    decoded = jws.deserialize_compact(id_token, keys[0], algorithms=["RS256"])
    assert json.loads(decoded.payload)["nonce"] == NONCE


def test_userinfo_bad_sub_answers_another_sub_with_a_clean_id_token(fresh_org):
    client = openid_client(fresh_org)
    clean_claims, clean_userinfo = clean_baseline(fresh_org, client)
    set_spoiler(fresh_org, "userinfo-bad-sub")
    tokens = openid_tokens(fresh_org, client)
    assert failed_checks(fresh_org, client, tokens, clean_claims, from_code=True) == set()
    info = userinfo(fresh_org, tokens)
    assert info["sub"] != parts(tokens["id_token"])[1]["sub"]
    assert info["sub"] != clean_userinfo["sub"] and info["sub"].startswith(f"{fresh_org.url}/id/")
    assert {k: v for k, v in info.items() if k != "sub"} == (
        {k: v for k, v in clean_userinfo.items() if k != "sub"})
    refreshed = refreshed_tokens(fresh_org, client, tokens)
    assert failed_checks(fresh_org, client, refreshed, clean_claims, from_code=False) == set()


def test_switching_the_spoiler_off_gives_clean_tokens_again(fresh_org):
    client = openid_client(fresh_org)
    clean_claims, clean_userinfo = clean_baseline(fresh_org, client)
    for spoiler in ("alg-none", "userinfo-bad-sub"):
        set_spoiler(fresh_org, spoiler)
        openid_tokens(fresh_org, client)
    set_spoiler(fresh_org, None)
    assert fresh_org.state.faults.id_token is None
    tokens = openid_tokens(fresh_org, client)
    assert failed_checks(fresh_org, client, tokens, clean_claims, from_code=True) == set()
    refreshed = refreshed_tokens(fresh_org, client, tokens)
    assert failed_checks(fresh_org, client, refreshed, clean_claims, from_code=False) == set()
    assert userinfo(fresh_org, tokens) == clean_userinfo


def test_an_unknown_spoiler_is_refused_and_the_switch_kept(fresh_org):
    set_spoiler(fresh_org, "nonce")
    for bad in ("boom", "BAD-SIG", "", 1, True, ["aud"], {"aud": 1}):
        response = requests.post(f"{fresh_org.url}/__admin/faults", json={"id_token": bad},
                                 timeout=10)
        assert response.status_code == 400, bad
        assert "id_token" in response.json()["error"]
    faults = requests.get(f"{fresh_org.url}/__admin/faults", timeout=10).json()
    assert faults["id_token"] == "nonce"
