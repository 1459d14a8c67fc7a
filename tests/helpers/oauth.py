"""The local org's OAuth endpoints driven directly: login, consent and token requests with
`requests`, PKCE pairs, JWT assertions."""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from devorg.keys import key_and_certificate
from tests.helpers.org import ADMIN

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CALLBACK = "http://127.0.0.1:9/oauth/callback"  # never fetched: redirects are read, not followed


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def authorize_url(org_url: str, client, *, redirect_uri: str | None = None, state: str = "st8",
                  challenge: str | None = None, **extra) -> str:
    params = {"response_type": "code", "client_id": client.client_id,
              "redirect_uri": redirect_uri or client.redirect_uris[0], "state": state}
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return f"{org_url}/services/oauth2/authorize?{urlencode(params)}"


def login(session: requests.Session, url: str, username: str = ADMIN[0],
          password: str = ADMIN[1]) -> requests.Response:
    """Submit the login form shown at `url`; the response to the login POST."""
    page = session.get(url, allow_redirects=False)
    assert page.status_code == 200, page.text
    return session.post(url, data={"_csrf": csrf_of(page.text), "action": "login",
                                   "username": username, "password": password},
                        allow_redirects=False)


def consent(session: requests.Session, url: str, action: str = "allow") -> requests.Response:
    """Answer the consent page shown at `url` with Allow or Deny."""
    page = session.get(url, allow_redirects=False)
    assert page.status_code == 200, page.text
    assert "Allow Access?" in page.text
    return session.post(url, data={"_csrf": csrf_of(page.text), "action": action},
                        allow_redirects=False)


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = urlsplit(response.headers["Location"]).query
    return {k: v[0] for k, v in parse_qs(query).items()}


def get_code(org_url: str, client, *, pkce: bool = True, username: str = ADMIN[0],
             password: str = ADMIN[1], **extra) -> tuple[str, str | None]:
    """Run login and consent; (the authorization code, the PKCE verifier or None)."""
    verifier, challenge = pkce_pair() if pkce else (None, None)
    url = authorize_url(org_url, client, challenge=challenge, **extra)
    session = requests.Session()
    assert login(session, url, username, password).status_code == 303
    page = session.get(url, allow_redirects=False)
    if page.status_code == 302:  # this user approved this app before: no consent page
        return redirect_params(page)["code"], verifier
    answer = session.post(url, data={"_csrf": csrf_of(page.text), "action": "allow"},
                          allow_redirects=False)
    return redirect_params(answer)["code"], verifier


def exchange(org_url: str, client, code: str, verifier: str | None, *, basic: bool = False,
             **overrides) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": client.redirect_uris[0]}
    if verifier:
        data["code_verifier"] = verifier
    auth = None
    if basic:
        auth = (client.client_id, client.client_secret)
    else:
        data.update(client_id=client.client_id, client_secret=client.client_secret)
    data.update(overrides)
    return requests.post(f"{org_url}/services/oauth2/token", data=data, auth=auth, timeout=10)


def password_token(org_url: str, client, username: str = ADMIN[0],
                   password: str = ADMIN[1]) -> requests.Response:
    return requests.post(f"{org_url}/services/oauth2/token", timeout=10, data={
        "grant_type": "password", "client_id": client.client_id,
        "client_secret": client.client_secret, "username": username, "password": password})


def web_tokens(org_url: str, client) -> dict:
    """Tokens of the whole web server flow (with a refresh token)."""
    code, verifier = get_code(org_url, client)
    response = exchange(org_url, client, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()


def rsa_key_and_certificate() -> tuple[rsa.RSAPrivateKey, str]:
    """A fresh RSA key and a self-signed PEM certificate for it."""
    private_pem, certificate = key_and_certificate("sfconnect tests")
    return serialization.load_pem_private_key(private_pem, password=None), certificate


def jwt_assertion(key: rsa.RSAPrivateKey, **claims) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode({"alg": "RS256"}, claims, RSAKey.import_key(pem))


def identity(org_url: str, access_token: str, id_url: str | None = None) -> requests.Response:
    return requests.get(id_url or f"{org_url}/id/x/y", timeout=10,
                        headers={"Authorization": f"Bearer {access_token}"})
