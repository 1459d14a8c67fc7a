"""devorg's /__admin controls over real HTTP."""
from __future__ import annotations

import requests

import devorg
from devorg import OrgConfig, serve_in_thread
from tests.helpers.oauth import CALLBACK, identity, password_token, web_tokens
from tests.helpers.org import ADMIN


def post(org, path: str, body) -> requests.Response:
    return requests.post(f"{org.url}/__admin/{path}", json=body, timeout=10)


def test_counters_read_and_reset(fresh_org):
    client = fresh_org.register(CALLBACK)
    password_token(fresh_org.url, client)
    counts = requests.get(f"{fresh_org.url}/__admin/counters", timeout=10).json()
    assert counts == {"token.password": 1}
    assert post(fresh_org, "counters/reset", {}).ok
    assert requests.get(f"{fresh_org.url}/__admin/counters", timeout=10).json() == {}


def test_settings_change_the_access_token_lifetime(fresh_org):
    response = post(fresh_org, "settings", {"access_token_lifetime": 0})
    assert response.json()["access_token_lifetime"] == 0
    tokens = password_token(fresh_org.url, fresh_org.register(CALLBACK)).json()
    assert identity(fresh_org.url, tokens["access_token"], tokens["id"]).status_code == 403


def test_settings_turn_rotation_on(fresh_org):
    assert post(fresh_org, "settings", {"refresh_token_rotation": True}).json() == {
        "access_token_lifetime": 7200, "refresh_token_rotation": True,
        "authorization_code_lifetime": 900, "soap_login_enabled": True}
    assert fresh_org.state.rotation is True


def test_settings_reject_bad_input(fresh_org):
    for body in ({"access_token_lifetime": "soon"}, {"access_token_lifetime": -1},
                 {"access_token_lifetime": True}, {"refresh_token_rotation": "yes"},
                 {"nonsense": 1}, {"soap_login_enabled": "no"}, [1, 2]):
        response = post(fresh_org, "settings", body)
        assert response.status_code == 400, body
        assert "error" in response.json()
    response = requests.post(f"{fresh_org.url}/__admin/settings", data="{not json",
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400


def test_expire_sessions_kills_access_tokens_but_not_refresh_tokens(fresh_org):
    client = fresh_org.register(CALLBACK)
    tokens = web_tokens(fresh_org.url, client)
    assert post(fresh_org, "expire-sessions", {}).ok
    assert identity(fresh_org.url, tokens["access_token"], tokens["id"]).status_code == 403
    response = requests.post(f"{fresh_org.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": client.client_id, "client_secret": client.client_secret})
    assert response.status_code == 200
    fresh = response.json()
    assert identity(fresh_org.url, fresh["access_token"], fresh["id"]).status_code == 200


def test_faults_are_set_validated_and_reported(fresh_org):
    body = post(fresh_org, "faults", {"token_endpoint": "slow", "token_delay_s": 0.5,
                                      "soap_endpoint": "502"}).json()
    assert body == {"token_endpoint": "slow", "token_delay_s": 0.5, "soap_endpoint": "502",
                    "identity_endpoint": None, "soap_redirect_to": None,
                    "identity_partner_url": None, "id_token": None}
    assert fresh_org.state.faults.soap_endpoint == "502"
    for bad in ({"token_endpoint": "boom"}, {"token_delay_s": -1}, {"soap_endpoint": 502},
                {"identity_endpoint": "404"}, {"disk": "full"}, {"soap_redirect_to": 1},
                {"identity_partner_url": ["x"]}):
        assert post(fresh_org, "faults", bad).status_code == 400, bad
    assert fresh_org.state.faults.token_endpoint == "slow"


def test_register_a_client_by_json(fresh_org):
    response = post(fresh_org, "clients", {"redirect_uris": [CALLBACK], "name": "Other process",
                                           "require_pkce": False})
    assert response.status_code == 201, response.text
    client = response.json()
    assert client["client_id"].startswith("3MVG9") and client["client_secret"]
    assert client["redirect_uris"] == [CALLBACK]
    token = requests.post(f"{fresh_org.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "client_id": client["client_id"],
        "client_secret": client["client_secret"], "username": ADMIN[0], "password": ADMIN[1]})
    assert token.status_code == 200, token.text


def test_register_a_client_rejects_bad_input(fresh_org):
    for bad in ({}, {"redirect_uris": "http://x"}, {"redirect_uris": []},
                {"redirect_uris": [CALLBACK], "require_pkce": "no"},
                {"redirect_uris": [CALLBACK], "colour": "blue"}):
        assert post(fresh_org, "clients", bad).status_code == 400, bad


def test_admin_routes_exist_only_when_enabled():
    server = serve_in_thread(devorg.create_app(OrgConfig(admin_enabled=False)))
    try:
        assert requests.get(f"{server.url}/__admin/counters", timeout=10).status_code == 404
        assert requests.post(f"{server.url}/__admin/faults", json={"token_endpoint": "503"},
                             timeout=10).status_code == 404
    finally:
        server.shutdown()
