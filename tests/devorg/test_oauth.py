"""devorg's OAuth server over real HTTP: login, consent, every grant, errors, revoke, faults."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import requests

from tests.helpers.oauth import (
    CALLBACK,
    JWT_GRANT,
    authorize_url,
    consent,
    csrf_of,
    exchange,
    get_code,
    identity,
    jwt_assertion,
    login,
    password_token,
    pkce_pair,
    redirect_params,
    rsa_key_and_certificate,
    web_tokens,
)
from tests.helpers.org import ADMIN

TOKEN_KEYS = ["access_token", "refresh_token", "signature", "scope", "instance_url", "id",
              "token_type", "issued_at"]


def token_post(org, **data) -> requests.Response:
    return requests.post(f"{org.url}/services/oauth2/token", data=data, timeout=10)


def assert_sf_error(response: requests.Response, error: str, description: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": error, "error_description": description}


def admin(org, path: str, body: dict | None = None) -> dict:
    response = requests.post(f"{org.url}/__admin/{path}", json=body or {}, timeout=10)
    assert response.ok, response.text
    return response.json()


# ------------------------------------------------------------------ authorization code + PKCE

def test_authorization_code_flow_with_pkce_issues_salesforce_shaped_tokens(local_org):
    client = local_org.register(CALLBACK, require_pkce=True)
    verifier, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge, state="a b&c")
    session = requests.Session()
    assert login(session, url).status_code == 303
    params = redirect_params(consent(session, url))
    assert params["state"] == "a b&c"
    code = params["code"]

    before_ms = int(time.time() * 1000)
    response = exchange(local_org.url, client, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    token = response.json()
    assert list(token) == TOKEN_KEYS
    assert response.text.startswith('{"access_token":"')  # compact, as Salesforce writes it
    assert "expires_in" not in token
    assert re.fullmatch(r"00D5g000004ZbXy![A-Za-z0-9_\-]+", token["access_token"])
    assert 100 <= len(token["access_token"]) <= 120
    assert re.fullmatch(r"\d{13}", token["issued_at"])
    assert before_ms - 5 <= int(token["issued_at"]) <= int(time.time() * 1000) + 5
    assert token["instance_url"] == local_org.url
    admin_id = local_org.state.data.user_by_username(ADMIN[0])["Id"]
    assert token["id"] == f"{local_org.url}/id/00D5g000004ZbXyEAK/{admin_id}"
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "api refresh_token"
    expected = base64.b64encode(hmac.new(client.client_secret.encode(),
                                         (token["id"] + token["issued_at"]).encode(),
                                         hashlib.sha256).digest()).decode()
    assert token["signature"] == expected


def test_authorize_location_targets_the_registered_redirect_uri_exactly(local_org):
    client = local_org.register(CALLBACK)
    verifier, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    login(session, url)
    response = consent(session, url)
    assert response.headers["Location"].startswith(CALLBACK + "?code=")


def test_wrong_password_shows_the_login_page_again(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    response = login(requests.Session(), url, password="nope")
    assert response.status_code == 401
    assert "Please check your username and password" in response.text
    assert "Location" not in response.headers


def test_login_without_csrf_token_is_refused(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    session.get(url)
    response = session.post(url, data={"action": "login", "username": ADMIN[0],
                                       "password": ADMIN[1]}, allow_redirects=False)
    assert response.status_code == 403


def test_consent_page_names_the_app_and_scopes_escaped(local_org):
    client = local_org.register(CALLBACK, name="O'Brien & <Sons>", scopes="api refresh_token id")
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    login(session, url)
    page = session.get(url)
    assert "O&#39;Brien &amp; &lt;Sons&gt;" in page.text
    assert "<Sons>" not in page.text
    for scope in ("api", "refresh_token", "id"):
        assert f"<code>{scope}</code>" in page.text
    assert 'value="allow"' in page.text and 'value="deny"' in page.text


def test_deny_redirects_with_access_denied_and_state(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge, state="s1")
    session = requests.Session()
    login(session, url)
    response = consent(session, url, action="deny")
    assert response.status_code == 302
    assert response.headers["Location"] == (
        f"{CALLBACK}?error=access_denied&error_description=end-user+denied+authorization&state=s1")


def test_consent_without_csrf_token_is_refused(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    login(session, url)
    response = session.post(url, data={"action": "allow"}, allow_redirects=False)
    assert response.status_code == 403
    assert "Location" not in response.headers


def test_an_approved_app_skips_consent_unless_prompted(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    url = authorize_url(local_org.url, client, challenge=challenge)
    session = requests.Session()
    login(session, url)
    redirect_params(consent(session, url))
    again = session.get(url, allow_redirects=False)
    assert "code" in redirect_params(again)
    prompted = session.get(url + "&prompt=consent", allow_redirects=False)
    assert prompted.status_code == 200 and "Allow Access?" in prompted.text


def test_unknown_client_gets_an_error_page_and_no_redirect(local_org):
    client = local_org.register(CALLBACK)
    client_id = client.client_id
    client.client_id = "3MVG9unknown"
    response = requests.get(authorize_url(local_org.url, client), allow_redirects=False,
                            timeout=10)
    client.client_id = client_id
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "error=invalid_client_id&amp;error_description=client identifier invalid" \
        in response.text


def test_redirect_uri_mismatch_gets_an_error_page_and_no_redirect(local_org):
    client = local_org.register(CALLBACK)
    for wrong in (CALLBACK + "/extra", CALLBACK.upper(), "http://evil.example/cb"):
        response = requests.get(authorize_url(local_org.url, client, redirect_uri=wrong),
                                allow_redirects=False, timeout=10)
        assert response.status_code == 400
        assert "Location" not in response.headers
        assert "error=redirect_uri_mismatch" in response.text


def test_scope_the_app_lacks_redirects_with_invalid_scope(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    response = requests.get(authorize_url(local_org.url, client, challenge=challenge,
                                          scope="api full_admin"),
                            allow_redirects=False, timeout=10)
    assert redirect_params(response)["error"] == "invalid_scope"


def test_pkce_required_without_challenge_redirects_with_invalid_request(local_org):
    client = local_org.register(CALLBACK, require_pkce=True)
    response = requests.get(authorize_url(local_org.url, client, state="s2"),
                            allow_redirects=False, timeout=10)
    assert redirect_params(response) == {"error": "invalid_request",
                                         "error_description": "missing required code challenge",
                                         "state": "s2"}


def test_missing_code_verifier_is_invalid_request(local_org):
    client = local_org.register(CALLBACK)
    code, _ = get_code(local_org.url, client)
    assert_sf_error(exchange(local_org.url, client, code, None),
                    "invalid_request", "missing required code verifier")


def test_wrong_code_verifier_is_invalid_grant(local_org):
    client = local_org.register(CALLBACK)
    code, _ = get_code(local_org.url, client)
    other, _ = pkce_pair()
    assert_sf_error(exchange(local_org.url, client, code, other),
                    "invalid_grant", "invalid code verifier")


def test_optional_pkce_client_works_without_challenge_but_rejects_a_stray_verifier(local_org):
    client = local_org.register(CALLBACK, require_pkce=False)
    code, _ = get_code(local_org.url, client, pkce=False)
    assert exchange(local_org.url, client, code, None).status_code == 200
    code, _ = get_code(local_org.url, client, pkce=False)
    stray, _ = pkce_pair()
    assert_sf_error(exchange(local_org.url, client, code, stray),
                    "invalid_grant", "unexpected code verifier")


def test_codes_are_single_use(local_org):
    client = local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    assert exchange(local_org.url, client, code, verifier).status_code == 200
    assert_sf_error(exchange(local_org.url, client, code, verifier),
                    "invalid_grant", "expired authorization code")


def test_unknown_code_is_invalid_authorization_code(local_org):
    client = local_org.register(CALLBACK)
    _, verifier = pkce_pair()
    assert_sf_error(exchange(local_org.url, client, "aPrxNotACode", verifier),
                    "invalid_grant", "invalid authorization code")


def test_codes_expire(fresh_org):
    admin(fresh_org, "settings", {"authorization_code_lifetime": 0})
    client = fresh_org.register(CALLBACK)
    code, verifier = get_code(fresh_org.url, client)
    assert_sf_error(exchange(fresh_org.url, client, code, verifier),
                    "invalid_grant", "expired authorization code")


def test_code_of_another_client_is_invalid(local_org):
    client, other = local_org.register(CALLBACK), local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    assert_sf_error(exchange(local_org.url, other, code, verifier),
                    "invalid_grant", "invalid authorization code")


def test_client_secret_in_basic_auth(local_org):
    client = local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    response = exchange(local_org.url, client, code, verifier, basic=True)
    assert response.status_code == 200, response.text
    assert list(response.json()) == TOKEN_KEYS


def test_wrong_client_secret_is_invalid_client(local_org):
    client = local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    assert_sf_error(exchange(local_org.url, client, code, verifier, client_secret="wrong"),
                    "invalid_client", "invalid client credentials")
    response = requests.post(f"{local_org.url}/services/oauth2/token", timeout=10,
                             auth=(client.client_id, "wrong"),
                             data={"grant_type": "authorization_code", "code": code})
    assert_sf_error(response, "invalid_client", "invalid client credentials")
    assert "WWW-Authenticate" not in response.headers


def test_unknown_client_id_at_the_token_endpoint(local_org):
    client = local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    assert_sf_error(exchange(local_org.url, client, code, verifier, client_id="3MVG9nobody"),
                    "invalid_client_id", "client identifier invalid")


def test_redirect_uri_must_match_at_the_token_endpoint(local_org):
    client = local_org.register(CALLBACK)
    code, verifier = get_code(local_org.url, client)
    assert_sf_error(exchange(local_org.url, client, code, verifier,
                             redirect_uri=CALLBACK + "x"),
                    "redirect_uri_mismatch", "redirect_uri must match configuration")


def test_unsupported_grant_type(local_org):
    client = local_org.register(CALLBACK)
    for grant_type in ("implicit", ""):
        assert_sf_error(token_post(local_org, grant_type=grant_type, client_id=client.client_id,
                                   client_secret=client.client_secret),
                        "unsupported_grant_type", "grant type not supported")


# ------------------------------------------------------------------ refresh tokens and rotation

def refresh(org, client, refresh_token: str) -> requests.Response:
    return token_post(org, grant_type="refresh_token", refresh_token=refresh_token,
                      client_id=client.client_id, client_secret=client.client_secret)


def test_refresh_without_rotation_keeps_the_refresh_token(local_org):
    client = local_org.register(CALLBACK)
    tokens = web_tokens(local_org.url, client)
    response = refresh(local_org, client, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [k for k in TOKEN_KEYS if k != "refresh_token"]
    assert body["access_token"] != tokens["access_token"]
    assert refresh(local_org, client, tokens["refresh_token"]).status_code == 200
    assert identity(local_org.url, body["access_token"], body["id"]).status_code == 200


def test_refresh_with_an_unknown_token_or_another_client(local_org):
    client, other = local_org.register(CALLBACK), local_org.register(CALLBACK)
    tokens = web_tokens(local_org.url, client)
    assert_sf_error(refresh(local_org, client, "5Aep861bogus"),
                    "invalid_grant", "expired access/refresh token")
    assert_sf_error(refresh(local_org, other, tokens["refresh_token"]),
                    "invalid_grant", "expired access/refresh token")


def test_rotation_kills_the_old_refresh_token_and_reuse_revokes_the_family(fresh_org):
    admin(fresh_org, "settings", {"refresh_token_rotation": True})
    client = fresh_org.register(CALLBACK)
    first = web_tokens(fresh_org.url, client)
    response = refresh(fresh_org, client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert list(second) == TOKEN_KEYS
    assert second["refresh_token"] != first["refresh_token"]
    # The old refresh token is dead; presenting it again revokes everything descended from it.
    assert_sf_error(refresh(fresh_org, client, first["refresh_token"]),
                    "invalid_grant", "expired access/refresh token")
    assert_sf_error(refresh(fresh_org, client, second["refresh_token"]),
                    "invalid_grant", "expired access/refresh token")
    assert identity(fresh_org.url, second["access_token"], second["id"]).status_code == 403
    assert identity(fresh_org.url, first["access_token"], first["id"]).status_code == 403


# ------------------------------------------------------------------ password, client credentials

def test_password_grant(local_org):
    client = local_org.register(CALLBACK)
    response = password_token(local_org.url, client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [k for k in TOKEN_KEYS if k != "refresh_token"]
    assert "expires_in" not in body


def test_password_grant_with_a_bad_password_or_user(local_org):
    client = local_org.register(CALLBACK)
    for username, password in ((ADMIN[0], "wrong"), ("nobody@devorg.local", "x")):
        assert_sf_error(password_token(local_org.url, client, username, password),
                        "invalid_grant", "authentication failure")


def test_password_grant_blocked_by_the_admin(local_org):
    client = local_org.register(CALLBACK, password_flow_enabled=False)
    assert_sf_error(password_token(local_org.url, client),
                    "invalid_grant", "authentication failure")


def test_client_credentials_runs_as_the_integration_user(local_org):
    client = local_org.register(CALLBACK, integration_username="integration@devorg.local")
    response = token_post(local_org, grant_type="client_credentials",
                          client_id=client.client_id, client_secret=client.client_secret)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body and "expires_in" not in body
    integration = local_org.state.data.user_by_username("integration@devorg.local")
    assert body["id"].endswith(f"/{integration['Id']}")
    who = identity(local_org.url, body["access_token"], body["id"]).json()
    assert who["username"] == "integration@devorg.local"


def test_client_credentials_without_a_run_as_user(local_org):
    client = local_org.register(CALLBACK, integration_username=None)
    assert_sf_error(token_post(local_org, grant_type="client_credentials",
                               client_id=client.client_id, client_secret=client.client_secret),
                    "invalid_grant", "no client credentials user enabled")


# ------------------------------------------------------------------ JWT bearer

def jwt_token(org, assertion: str) -> requests.Response:
    return token_post(org, grant_type=JWT_GRANT, assertion=assertion)


def test_jwt_bearer_grant_without_a_client_secret(local_org):
    key, certificate = rsa_key_and_certificate()
    client = local_org.register(CALLBACK, certificate_pem=certificate)
    for audience in (local_org.url, "https://login.salesforce.com", "https://test.salesforce.com"):
        assertion = jwt_assertion(key, iss=client.client_id, sub=ADMIN[0], aud=audience,
                                  exp=int(time.time()) + 180)
        response = jwt_token(local_org, assertion)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "refresh_token" not in body and "expires_in" not in body
        assert body["instance_url"] == local_org.url


def test_jwt_bearer_rejections(local_org):
    key, certificate = rsa_key_and_certificate()
    other_key, _ = rsa_key_and_certificate()
    client = local_org.register(CALLBACK, certificate_pem=certificate)
    claims = {"iss": client.client_id, "sub": ADMIN[0], "aud": local_org.url,
              "exp": int(time.time()) + 180}
    assert_sf_error(jwt_token(local_org, jwt_assertion(key, **{**claims, "aud": "https://x.y"})),
                    "invalid_grant", "audience is invalid")
    assert_sf_error(jwt_token(local_org, jwt_assertion(other_key, **claims)),
                    "invalid_grant", "invalid assertion")
    assert_sf_error(jwt_token(local_org, jwt_assertion(key, **{**claims, "exp": 1_000_000})),
                    "invalid_grant", "expired authorization code")
    assert_sf_error(jwt_token(local_org, jwt_assertion(key, **{**claims, "sub": "no@body"})),
                    "invalid_grant", "invalid assertion")
    assert_sf_error(jwt_token(local_org, jwt_assertion(key, **{**claims, "iss": "3MVG9none"})),
                    "invalid_client_id", "client identifier invalid")
    assert_sf_error(jwt_token(local_org, "not.a.jwt"), "invalid_grant", "invalid assertion")
    no_cert = local_org.register(CALLBACK)
    assert_sf_error(jwt_token(local_org, jwt_assertion(key, **{**claims,
                                                               "iss": no_cert.client_id})),
                    "invalid_grant", "invalid assertion")


# ------------------------------------------------------------------ revoke

def revoke(org, token: str) -> requests.Response:
    return requests.post(f"{org.url}/services/oauth2/revoke", data={"token": token}, timeout=10)


def test_revoking_a_refresh_token_revokes_its_access_tokens(local_org):
    client = local_org.register(CALLBACK)
    tokens = web_tokens(local_org.url, client)
    refreshed = refresh(local_org, client, tokens["refresh_token"]).json()
    response = revoke(local_org, tokens["refresh_token"])
    assert response.status_code == 200 and response.content == b""
    for access in (tokens["access_token"], refreshed["access_token"]):
        assert identity(local_org.url, access, tokens["id"]).status_code == 403
    assert_sf_error(refresh(local_org, client, tokens["refresh_token"]),
                    "invalid_grant", "expired access/refresh token")


def test_revoking_an_access_token_leaves_the_refresh_token(local_org):
    client = local_org.register(CALLBACK)
    tokens = web_tokens(local_org.url, client)
    assert revoke(local_org, tokens["access_token"]).status_code == 200
    assert identity(local_org.url, tokens["access_token"], tokens["id"]).status_code == 403
    assert refresh(local_org, client, tokens["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token(local_org):
    assert_sf_error(revoke(local_org, "00Dnothing!xyz"),
                    "unsupported_token_type", "this token type is not supported")


# ------------------------------------------------------------------ counters and faults

def test_counters_of_authorize_token_and_revoke(fresh_org):
    client = fresh_org.register(CALLBACK)
    tokens = web_tokens(fresh_org.url, client)
    refresh(fresh_org, client, tokens["refresh_token"])
    password_token(fresh_org.url, client)
    revoke(fresh_org, tokens["refresh_token"])
    counts = requests.get(f"{fresh_org.url}/__admin/counters", timeout=10).json()
    assert counts["authorize"] == 2  # the login page, then the consent page after signing in
    assert counts["token.authorization_code"] == 1
    assert counts["token.refresh_token"] == 1
    assert counts["token.password"] == 1
    assert counts["revoke"] == 1


def test_token_endpoint_fault_503(fresh_org):
    client = fresh_org.register(CALLBACK)
    admin(fresh_org, "faults", {"token_endpoint": "503"})
    response = password_token(fresh_org.url, client)
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")


def test_token_endpoint_fault_nonjson(fresh_org):
    client = fresh_org.register(CALLBACK)
    admin(fresh_org, "faults", {"token_endpoint": "nonjson"})
    response = password_token(fresh_org.url, client)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().startswith("<html")


def test_token_endpoint_fault_slow(fresh_org):
    client = fresh_org.register(CALLBACK)
    admin(fresh_org, "faults", {"token_endpoint": "slow", "token_delay_s": 0.4})
    started = time.monotonic()
    response = password_token(fresh_org.url, client)
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 200 and "access_token" in response.json()
    admin(fresh_org, "faults", {"token_endpoint": None})
    started = time.monotonic()
    assert password_token(fresh_org.url, client).status_code == 200
    assert time.monotonic() - started < 0.4


def test_csrf_token_helper_reads_the_login_form(local_org):
    client = local_org.register(CALLBACK)
    _, challenge = pkce_pair()
    page = requests.get(authorize_url(local_org.url, client, challenge=challenge), timeout=10)
    assert page.status_code == 200
    assert len(csrf_of(page.text)) > 20
    assert 'name="password"' in page.text
