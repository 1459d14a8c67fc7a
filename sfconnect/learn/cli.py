"""`flask sf token --flow jwt|password|refresh|client-credentials`: the other OAuth flows.

Runs the named flow against the configured org (the local org when app.py's factory started one),
prints the token response with its secrets masked, then the identity the token belongs to, and
says when the flow is the right one. Every failure is one line and exit code 1, never a traceback.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping

import click
import requests
from flask import current_app
from flask.cli import AppGroup

from sfconnect import ext, redaction
from sfconnect.auth import identity
from sfconnect.auth.tokens import SignatureMismatch, TokenSet, verify_signature
from sfconnect.errors import GateRefused, SalesforceFault, UntrustedHost, UpstreamError
from sfconnect.http import TokenGate
from sfconnect.settings import Settings

sf = AppGroup("sf", help="Salesforce OAuth: run the other flows against the configured org.")

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
WHEN = {
    "jwt": "When to use it: server to server with a certificate. The app signs a short JWT with "
           "the private key whose certificate is uploaded to the External Client App; no secret "
           "or password travels, and the user must be pre-authorized by an admin.",
    "password": "When to use it: almost never. The username-password flow is discouraged: the "
                "app handles the user's password, and the org's admin can block the flow (new "
                "orgs block it by default). Prefer JWT bearer or client credentials.",
    "client-credentials": "When to use it: server to server with the consumer key and secret; "
                          "the token runs as the app's integration (\"Run As\") user.",
    "refresh": "When to use it: renewing a session. Trade the refresh token of an earlier "
               "sign-in for a new access token when the old one expired.",
}
# A hint for the errors each flow meets first.
HINTS = {
    ("password", "invalid_grant"): "wrong username or password (a real org wants the security "
                                   "token appended to the password), or the org's admin blocked "
                                   "the username-password flow",
    ("jwt", "invalid_grant"): "the key does not match the certificate uploaded to the app, the "
                              "user is not pre-authorized, or the clock is off",
    ("client-credentials", "invalid_grant"): "the app has no enabled \"Run As\" user",
    ("refresh", "invalid_grant"): "the refresh token is unknown, expired or revoked",
}


class FlowFailed(click.ClickException):
    """One line on stderr, exit code 1."""


@sf.command("token")
@click.option("--flow", "flow", required=True,
              type=click.Choice(["jwt", "password", "refresh", "client-credentials"]),
              help="The OAuth flow to run.")
@click.option("--username", help="jwt and password: the user (default: SF_USERNAME).")
@click.option("--password", help="password: the password (+ security token); asked when missing.")
@click.option("--refresh-token", envvar="SF_REFRESH_TOKEN",
              help="refresh: the refresh token (or SF_REFRESH_TOKEN); asked when missing.")
def token(flow: str, username: str | None, password: str | None,
          refresh_token: str | None) -> None:
    """Run one OAuth flow; print the masked token response, the identity, and when to use it."""
    settings = ext.settings()
    demo: Mapping[str, str] = current_app.config.get("SFCONNECT_LOCAL_ORG_DEMO") or {}
    http = ext.oauth().http  # the app's own "oauth" gate: the trust policy, the timeouts
    username = username or settings.username or demo.get("username")
    form: dict[str, str] = {"grant_type": {"jwt": JWT_GRANT, "password": "password",
                                           "refresh": "refresh_token",
                                           "client-credentials": "client_credentials"}[flow]}
    if flow == "jwt":
        form["assertion"] = _assertion(settings, username)
    else:
        form.update(client_id=settings.client_id, client_secret=settings.client_secret)
    if flow == "password":
        if not username:
            raise FlowFailed("password flow: no username (give --username or set SF_USERNAME)")
        password = password or demo.get("password") or click.prompt(
            f"Password (+ security token) of {username}", hide_input=True)
        form.update(username=username, password=password)
    elif flow == "refresh":
        form["refresh_token"] = refresh_token or demo.get("refresh_token") or click.prompt(
            "Refresh token", hide_input=True)

    token_url = f"{settings.login_url}/services/oauth2/token"
    click.echo(f"POST {token_url}  grant_type={form['grant_type']}")
    answer = _post(http, token_url, form, flow)
    if "signature" in answer and flow != "jwt":
        try:
            verify_signature(answer, settings.client_secret)
        except SignatureMismatch:
            raise FlowFailed(f"{flow}: the token response's signature does not match: "
                             "refused") from None
    click.echo("Token response (secrets masked):")
    click.echo(json.dumps(redaction.mask_json(answer), indent=2, ensure_ascii=False))
    _print_identity(answer, settings.login_url)
    click.echo(WHEN[flow])


def _assertion(settings: Settings, username: str | None) -> str:
    """A JWT signed with SF_JWT_KEY_FILE: iss = consumer key, sub = user, aud = login URL."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey

    if not settings.jwt_key_file:
        raise FlowFailed("jwt flow: SF_JWT_KEY_FILE is not set (the private key, PEM, whose "
                         "certificate is uploaded to the External Client App)")
    if not username:
        raise FlowFailed("jwt flow: no username (give --username or set SF_USERNAME)")
    try:
        with open(settings.jwt_key_file, "rb") as handle:
            pem = handle.read()
    except OSError as error:
        raise FlowFailed(f"jwt flow: cannot read SF_JWT_KEY_FILE {settings.jwt_key_file}: "
                         f"{error.strerror}") from None
    try:
        key = RSAKey.import_key(pem)
        if not key.is_private:
            raise ValueError("a public key")
        claims = {"iss": settings.client_id, "sub": username, "aud": settings.login_url,
                  "exp": int(time.time()) + 180}
        return jwt.encode({"alg": "RS256"}, claims, key)
    except (ValueError, TypeError, JoseError):
        raise FlowFailed(f"jwt flow: SF_JWT_KEY_FILE {settings.jwt_key_file} is not an RSA "
                         "private key in PEM") from None


def _post(http: TokenGate, url: str, form: dict[str, str], flow: str) -> dict:
    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"})
    except GateRefused as error:
        raise FlowFailed(f"{flow} flow: {error}") from None
    except requests.RequestException as error:
        raise FlowFailed(f"{flow} flow: {url} could not be reached "
                         f"({type(error).__name__})") from None
    try:
        answer = response.json()
    except ValueError:
        raise FlowFailed(f"{flow} flow: the token endpoint answered HTTP {response.status_code} "
                         "with something that is not JSON") from None
    if response.status_code != 200 or not isinstance(answer, dict) or "access_token" not in answer:
        error = str(answer.get("error", "")) if isinstance(answer, dict) else ""
        description = str(answer.get("error_description", "")) if isinstance(answer, dict) else ""
        hint = HINTS.get((flow, error))
        raise FlowFailed(f"{flow} flow refused: {error or 'HTTP ' + str(response.status_code)}"
                         f"{': ' + description if description else ''}"
                         f"{' (' + hint + ')' if hint else ''}")
    return answer


def _print_identity(answer: dict, login_url: str) -> None:
    """Who the token is for, through the app's one identity call (sfconnect.auth.identity)."""
    try:
        who = identity.fetch_identity(ext.identity_http(), TokenSet.from_response(answer,
                                                                                  login_url))
    except UntrustedHost as error:
        raise FlowFailed(f"identity: refusing to send the token to {error.url}") from None
    except GateRefused as error:
        raise FlowFailed(f"identity: {error}") from None
    except SalesforceFault as error:  # InvalidSession: the identity service refused the token
        raise FlowFailed(f"identity: {error.code}: {error.message}") from None
    except UpstreamError as error:
        raise FlowFailed(f"identity: {error.detail}") from None
    click.echo("Identity:")
    for name in ("username", "display_name", "user_id", "organization_id"):
        click.echo(f"  {name}: {getattr(who, name)}")
    click.echo(f"  urls.partner: {who.partner_url}")
