"""A minimal Salesforce client: the OAuth 2.0 web server flow, then SOQL through the partner API.

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    export SF_CLIENT_SECRET=...     # the consumer secret: never written in a file
    .venv/bin/python app.py         # serves on the redirect URI's host and port

sfconnect wrote your configuration below; an environment variable of the same name overrides each.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from urllib.parse import urlsplit

import requests
import zeep
from authlib.integrations.flask_client import OAuth
from flask import Flask, abort, redirect, request, session

# Your configuration.
LOGIN_URL = os.environ.get("SF_LOGIN_URL", "https://login.salesforce.com")
CLIENT_ID = os.environ.get("SF_CLIENT_ID", "")
REDIRECT_URI = os.environ.get("SF_REDIRECT_URI", "http://localhost:5000/oauth/callback")
SCOPES = os.environ.get("SF_SCOPES", "api refresh_token")
API_VERSION = os.environ.get("SF_API_VERSION", "66.0")
CLIENT_SECRET = os.environ["SF_CLIENT_SECRET"]
WSDL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "partner.wsdl")

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)


class ServerSide:
    """Authlib keeps each sign-in's PKCE verifier (and nonce) here, on the server: Flask's own
    session is a signed cookie the browser can read, so it holds only their key."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str, timeout: int | None = None) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


oauth = OAuth(app, cache=ServerSide())
oauth.register(  # Authlib sends a one-time state and a PKCE S256 challenge, and checks the state
    "salesforce", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
    authorize_url=f"{LOGIN_URL}/services/oauth2/authorize",
    access_token_url=f"{LOGIN_URL}/services/oauth2/token",
    server_metadata_url=(f"{LOGIN_URL}/.well-known/openid-configuration"
                         if "openid" in SCOPES.split() else None),  # to check the id_token
    client_kwargs={"scope": SCOPES, "code_challenge_method": "S256",
                   "token_endpoint_auth_method": "client_secret_post"})
TOKENS: dict[str, dict] = {}  # on the server, by a random id in the session: never in the cookie
partner = zeep.Client(WSDL)


def verify_signature(token: dict) -> None:
    """Salesforce signs id + issued_at with the client secret (HMAC-SHA256): refuse a mismatch."""
    digest = hmac.new(CLIENT_SECRET.encode(), f"{token['id']}{token['issued_at']}".encode(),
                      hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), token.get("signature", "")):
        abort(400, "The token response's signature does not match: refused.")


@app.get("/")
def index() -> str:
    if session.get("sid") not in TOKENS:
        return '<a href="/login">Connect to Salesforce</a>'
    return ('<form action="/query"><input name="q" aria-label="SOQL" size="60" '
            'value="SELECT Id, Name FROM Account LIMIT 10"> <button>Query</button></form>')


@app.get("/login")
def login():  # noqa: ANN201
    return oauth.salesforce.authorize_redirect(REDIRECT_URI)


@app.get(urlsplit(REDIRECT_URI).path)
def callback():  # noqa: ANN201
    token = oauth.salesforce.authorize_access_token()  # state checked, code_verifier sent
    verify_signature(token)
    identity = requests.get(token["id"], timeout=30,  # who signed in, where the APIs are
                            headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    token["partner_url"] = identity["urls"]["partner"].replace("{version}", API_VERSION)
    session["sid"] = secrets.token_urlsafe(32)
    TOKENS[session["sid"]] = dict(token)
    return redirect("/")


def refresh(token: dict) -> None:
    """Trade the refresh token for a new access token (RFC 6749 §6), signature checked."""
    answer = requests.post(f"{LOGIN_URL}/services/oauth2/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"],
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    answer.raise_for_status()
    fresh = answer.json()
    verify_signature(fresh)
    token.update(access_token=fresh["access_token"],  # with rotation, a new refresh token too
                 refresh_token=fresh.get("refresh_token", token["refresh_token"]))


def soql(token: dict, query: str):  # noqa: ANN201
    service = partner.create_service("{urn:partner.soap.sforce.com}SoapBinding",
                                     token["partner_url"])
    response = service.query(queryString=query,
                             _soapheaders={"SessionHeader": {"sessionId": token["access_token"]}})
    return response.body.result  # the reply has SOAP headers too (LimitInfoHeader)


@app.get("/query")
def query() -> dict:
    token = TOKENS.get(session.get("sid", ""))
    if token is None:
        abort(401, "Not connected: open / and connect first.")
    try:
        result = soql(token, request.args["q"])
    except zeep.exceptions.Fault as fault:
        # An expired session is HTTP 500 with the fault INVALID_SESSION_ID (not a 401).
        if "INVALID_SESSION_ID" not in f"{fault.code} {fault.message}":
            raise
        refresh(token)
        result = soql(token, request.args["q"])
    records = [{"Id": record.Id, **{field.tag.split("}")[-1]: field.text
                                    for field in record._value_1 or []}}
               for record in result.records or []]
    return {"size": result.size, "done": result.done, "records": records}


if __name__ == "__main__":
    where = urlsplit(REDIRECT_URI)
    app.run(host=where.hostname, port=where.port or 5000)
