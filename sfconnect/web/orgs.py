"""Several orgs at once: the page of this browser's connections (`GET /orgs`, HTML or JSON),
switching the active one and disconnecting one (`POST /orgs/<key>/activate|disconnect`, CSRF),
and the page for a link that names a connection that is gone."""
from __future__ import annotations

from flask import Blueprint, Flask, flash, jsonify, redirect, render_template, request, url_for

from sfconnect.auth.connection import (
    MAX_CONNECTIONS,
    Connection,
    activate,
    active_connection,
    all_connections,
    forget_connection,
)
from sfconnect.auth.oauth import revoke_connection
from sfconnect.errors import UnknownConnection, error_page, json_error

bp = Blueprint("orgs", __name__)


def describe(connection: Connection, active: bool) -> dict[str, object]:
    """What /orgs tells about a connection (never a token or a token record's id)."""
    return {"key": connection.key, "org_id": connection.organization_id,
            "user_id": connection.user_id, "username": connection.username,
            "display_name": connection.display_name, "instance_url": connection.instance_url,
            "login_host": connection.login_url, "is_sandbox": connection.is_sandbox,
            "active": active}


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


@bp.get("/orgs")
def orgs():  # noqa: ANN201
    """This browser's connections, the active one first; JSON with Accept: application/json."""
    active = active_connection()
    listed = [describe(c, active is not None and c.key == active.key)
              for c in all_connections()]
    if _wants_json():
        response = jsonify({"connections": listed, "max": MAX_CONNECTIONS})
        response.headers["Cache-Control"] = "private, no-store"
        return response
    return render_template("orgs.html", listed=listed)


@bp.post("/orgs/<key>/activate")
def activate_org(key: str):  # noqa: ANN201
    """Make a connection the active one: queries, exports and the rest use it from now on."""
    chosen = activate(key)
    if chosen is None:
        raise UnknownConnection(key)
    flash(f"Now using {chosen.label}.", "info")
    return redirect(_back(), code=303)


@bp.post("/orgs/<key>/disconnect")
def disconnect_org(key: str):  # noqa: ANN201
    """Disconnect one connection: its tokens revoked, the others untouched."""
    dropped = forget_connection(key)
    if dropped is None:
        raise UnknownConnection(key)
    if revoke_connection(dropped):
        flash(f"Disconnected {dropped.label}; its tokens were "
              "revoked.", "info")
    return redirect(_back(), code=303)


def _back() -> str:
    """Where a switch or a disconnect returns: the page it was made on, if it is this app's."""
    target = request.form.get("next") or ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("views.index")


def on_unknown_connection(error: UnknownConnection):  # noqa: ANN201
    """A link made for a connection this browser no longer has: say so, change nothing."""
    message = ("This link was made for an org connection that this browser no longer has (it "
               "was disconnected, replaced, or you signed out). Nothing was sent to Salesforce; "
               "your other connections are unchanged. Open the page again from the org you "
               "want.")
    if request.path.startswith("/export.") or _wants_json():
        return json_error(404, "UNKNOWN_ORG", message, org=error.key)
    return error_page(404, "UNKNOWN_ORG", message, "That org is no longer connected")


def init_app(app: Flask) -> None:
    """The /orgs routes, and the page for gone connections."""
    app.register_blueprint(bp)
    app.register_error_handler(UnknownConnection, on_unknown_connection)
