"""/__admin: test and demo controls of the local org (JSON), registered only when enabled.

    GET  /__admin/counters           every call counter
    POST /__admin/counters/reset
    GET|POST /__admin/settings       {"access_token_lifetime": int, "refresh_token_rotation": bool,
                                      "authorization_code_lifetime": int,
                                      "soap_login_enabled": bool}
    POST /__admin/expire-sessions    every access token dies now; refresh tokens live on
    GET|POST /__admin/faults         {"token_endpoint", "token_delay_s", "soap_endpoint",
                                      "identity_endpoint", "soap_redirect_to",
                                      "identity_partner_url", "id_token"}
    POST /__admin/clients            register a client app from JSON (ClientApp's fields)
"""
from __future__ import annotations

import secrets
from dataclasses import asdict, fields
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from .config import ClientApp
from .oidc import ID_TOKEN_SPOILERS
from .state import OrgState

bp = Blueprint("devorg_admin", __name__, url_prefix="/__admin")

FAULT_CHOICES = {
    "token_endpoint": (None, "503", "slow", "nonjson"),
    "soap_endpoint": (None, "502", "empty"),
    "identity_endpoint": (None, "403", "500"),
    "id_token": (None, *ID_TOKEN_SPOILERS),
}
URL_FAULTS = ("soap_redirect_to", "identity_partner_url")  # a URL, or None to switch off


class AdminInputError(Exception):
    """A control request the admin routes cannot apply; answered with HTTP 400."""


def _org() -> OrgState:
    return current_app.extensions["devorg"]


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise AdminInputError("the body must be a JSON object")
    return body


def _number(value: Any, name: str, minimum: float = 0) -> float:
    # bool is an int in Python; a JSON true is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise AdminInputError(f"{name} must be a number >= {minimum}")
    return value


def settings_of(org: OrgState) -> dict[str, Any]:
    """The org's adjustable settings."""
    return {"access_token_lifetime": org.tokens.lifetime_s,
            "refresh_token_rotation": org.rotation,
            "authorization_code_lifetime": org.code_lifetime_s,
            "soap_login_enabled": org.soap_login_enabled}


def faults_of(org: OrgState) -> dict[str, Any]:
    """The org's fault switches."""
    return asdict(org.faults)


@bp.errorhandler(AdminInputError)
def _bad_input(error: AdminInputError) -> Any:
    return jsonify({"error": str(error)}), 400


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    return jsonify({"error": error.description}), error.code


@bp.get("/counters")
def counters() -> Any:
    """Every call counter."""
    return jsonify(_org().counters.snapshot())


@bp.post("/counters/reset")
def reset_counters() -> Any:
    """Zero every counter."""
    _org().counters.reset()
    return jsonify({})


@bp.route("/settings", methods=["GET", "POST"])
def settings() -> Any:
    """Read or change the token lifetimes, refresh-token rotation and SOAP login()."""
    org = _org()
    if request.method == "POST":
        body = _json_object()
        unknown = set(body) - set(settings_of(org))
        if unknown:
            raise AdminInputError(f"unknown settings: {', '.join(sorted(unknown))}")
        for name in ("refresh_token_rotation", "soap_login_enabled"):
            if name in body and not isinstance(body[name], bool):
                raise AdminInputError(f"{name} must be true or false")
        lifetimes = {name: int(_number(body[name], name))
                     for name in ("access_token_lifetime", "authorization_code_lifetime")
                     if name in body}
        if "access_token_lifetime" in lifetimes:
            org.tokens.lifetime_s = lifetimes["access_token_lifetime"]
        if "authorization_code_lifetime" in lifetimes:
            org.code_lifetime_s = lifetimes["authorization_code_lifetime"]
        if "refresh_token_rotation" in body:
            org.rotation = body["refresh_token_rotation"]
        if "soap_login_enabled" in body:
            org.soap_login_enabled = body["soap_login_enabled"]
    return jsonify(settings_of(org))


@bp.post("/expire-sessions")
def expire_sessions() -> Any:
    """Every access token dies now (a session timeout); refresh tokens stay valid."""
    _org().tokens.expire_all()
    return jsonify({"expired": True})


@bp.route("/faults", methods=["GET", "POST"])
def faults() -> Any:
    """Read or set the fault switches; keys not given keep their value."""
    org = _org()
    if request.method == "POST":
        body = _json_object()
        unknown = set(body) - set(faults_of(org))
        if unknown:
            raise AdminInputError(f"unknown faults: {', '.join(sorted(unknown))}")
        for name, choices in FAULT_CHOICES.items():
            if name in body and body[name] not in choices:
                raise AdminInputError(f"{name} must be one of {list(choices)}")
        for name in URL_FAULTS:
            if body.get(name) is not None and not isinstance(body[name], str):
                raise AdminInputError(f"{name} must be a URL or null")
        delay = _number(body["token_delay_s"], "token_delay_s") if "token_delay_s" in body \
            else None
        for name in (*FAULT_CHOICES, *URL_FAULTS):
            if name in body:
                setattr(org.faults, name, body[name])
        if delay is not None:
            org.faults.token_delay_s = float(delay)
    return jsonify(faults_of(org))


@bp.post("/clients")
def register_client() -> Any:
    """Register a client app; id and secret are generated unless given. Answers its fields."""
    body = _json_object()
    known = {f.name for f in fields(ClientApp)}
    unknown = set(body) - known
    if unknown:
        raise AdminInputError(f"unknown fields: {', '.join(sorted(unknown))}")
    redirect_uris = body.get("redirect_uris")
    if (not isinstance(redirect_uris, list) or not redirect_uris
            or not all(isinstance(uri, str) and uri for uri in redirect_uris)):
        raise AdminInputError("redirect_uris must be a non-empty list of URLs")
    for name in ("client_id", "client_secret", "name", "scopes", "integration_username",
                 "certificate_pem"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise AdminInputError(f"{name} must be a string")
    for name in ("require_pkce", "password_flow_enabled"):
        if name in body and not isinstance(body[name], bool):
            raise AdminInputError(f"{name} must be true or false")
    values = {
        "client_id": "3MVG9" + secrets.token_urlsafe(24).replace("-", "A").replace("_", "z"),
        "client_secret": secrets.token_hex(32),
        "name": "Connected App",
        **body,
    }
    client = ClientApp(**values)
    _org().register_client(client)
    return jsonify(asdict(client)), 201


def init_app(app: Flask, org: OrgState) -> None:
    """Register the admin controls (create_app calls this only when admin_enabled)."""
    app.register_blueprint(bp)
