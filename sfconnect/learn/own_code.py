"""From the trace to your own code: "Copy as" on /flow (sfconnect.learn.snippets), the starter
at /flow/starter.zip (sfconnect.learn.starter) and /local-org (sfconnect.learn.local_org_page).
Wiring and views only; none of them calls Salesforce."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template

from sfconnect import ext
from sfconnect.errors import error_page
from sfconnect.learn import local_org_page, snippets, starter

bp = Blueprint("own_code", __name__)


def init_app(app: Flask) -> None:
    """The routes, and for templates `copy_as(entry, seq)` and `local_org_running()`."""
    app.register_blueprint(bp)
    app.jinja_env.globals.update(copy_as=snippets.snippets_for,
                                 local_org_running=lambda: local_org_page.running() is not None)


@bp.get("/flow/starter.zip")
def starter_zip() -> Response:
    """A minimal web server flow client for this configuration, no secret in it."""
    body = starter.build(ext.settings(), ext.partner().api_version)
    response = Response(body, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{starter.FOLDER}.zip"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/local-org")
def local_org():  # noqa: ANN201
    """How to use the local org from your own code (only while app.py runs one)."""
    org = local_org_page.running()
    if org is None:
        return error_page(404, "no_local_org", "This app is configured for a Salesforce org, not "
                          "the local org: /local-org is there when app.py starts the local org "
                          "(no SF_CLIENT_ID set).", "No local org")
    return render_template("local_org.html", org=org, setup=local_org_page.setup(org),
                           snippets=local_org_page.snippets(org), soql=local_org_page.SOQL)
