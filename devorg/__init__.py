"""devorg: a local stand-in for one Salesforce org, speaking Salesforce's wire formats over HTTP.

    app = devorg.create_app(OrgConfig(...))   # its OrgState: devorg.org_of(app)

The sfconnect application never imports this package; only the entry point and the tests do.
"""
from __future__ import annotations

import secrets

from flask import Flask

from .config import ClientApp, OrgConfig, SeedUser
from .server import RunningServer, serve_in_thread
from .state import OrgState

__all__ = ["ClientApp", "OrgConfig", "OrgState", "RunningServer", "SeedUser", "create_app",
           "org_of", "serve_in_thread"]


def create_app(config: OrgConfig | dict | None = None) -> Flask:
    """Build the org's Flask app, seeded and ready; `config` may be an OrgConfig or its fields."""
    if config is None:
        config = OrgConfig()
    elif isinstance(config, dict):
        config = OrgConfig(**config)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key or secrets.token_hex(32),
        # The org and the app may share a host on different ports, and cookies ignore ports.
        SESSION_COOKIE_NAME="devorg_session",
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    org = OrgState(config)
    app.extensions["devorg"] = org

    from . import admin, identity, oauth, rest, soap

    oauth.init_app(app, org)
    identity.init_app(app, org)
    rest.init_app(app, org)
    soap.init_app(app, org)
    if config.admin_enabled:
        admin.init_app(app, org)
    return app


def org_of(app: Flask) -> OrgState:
    """The OrgState behind a devorg app."""
    return app.extensions["devorg"]
