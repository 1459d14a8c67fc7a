"""Entry point: `python app.py` serves sfconnect on http://localhost:5000.

With no Connected App configured (no SF_CLIENT_ID in the environment or .env), it also starts the
local org (devorg) on 127.0.0.1:5001 in this process and registers the app with it, so a newcomer
sees the whole flow with no setup. Wiring only: the application itself never imports devorg.
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys

from dotenv import load_dotenv

import sfconnect
from sfconnect.settings import raw_settings

DEMO_USER = ("admin@devorg.local", "Welcome1!")  # a seeded user of the local org


def start_local_org(redirect_uri: str, host: str = "127.0.0.1", port: int = 5001,
                    quiet: bool = False) -> dict:
    """Start devorg in a background thread, register this app with it, return the settings.

    The registered app also has a certificate (its key in a temporary file, SF_JWT_KEY_FILE) and
    an integration user, so `flask sf token` can run every flow against it.
    """
    return _start_local_org(redirect_uri, host, port, quiet)[0]


def _start_local_org(redirect_uri: str, host: str, port: int, quiet: bool) -> tuple[dict, object]:
    import devorg  # only here: the local org is a stand-in, not part of the application

    key_file, certificate = _demo_jwt_key()
    client = devorg.ClientApp(
        client_id="3MVG9local" + secrets.token_hex(16),
        client_secret=secrets.token_hex(32),
        name="sfconnect (local demo)",
        redirect_uris=[redirect_uri],
        integration_username="integration@devorg.local",
        certificate_pem=certificate,
    )
    config = devorg.OrgConfig(clients=[client])
    org_app = devorg.create_app(config)
    server = devorg.serve_in_thread(org_app, host=host, port=port)
    if not quiet:
        print(f"No SF_CLIENT_ID configured: using the local org at {server.url}")
        print("  sign in as one of:")
        for user in config.users:
            print(f"    {user.username}  password: {user.password}")
    return {
        "SF_LOGIN_URL": server.url,
        "SF_CLIENT_ID": client.client_id,
        "SF_CLIENT_SECRET": client.client_secret,
        "SF_JWT_KEY_FILE": key_file,
        "SF_USERNAME": DEMO_USER[0],
    }, devorg.org_of(org_app)


def _demo_jwt_key() -> tuple[str, str]:
    """A fresh RSA key (written to a private temporary file) and its self-signed certificate."""
    import atexit
    import tempfile

    from devorg.keys import key_and_certificate

    private_pem, certificate = key_and_certificate("sfconnect local demo")
    fd, path = tempfile.mkstemp(prefix="sfconnect-jwt-", suffix=".pem")  # mode 0600
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path, certificate


def local_org_demo(local: dict, org: object) -> dict:
    """What the app may know of the local org it runs against (app.config's
    SFCONNECT_LOCAL_ORG_DEMO: `flask sf token` signs in with it, /local-org shows it)."""
    return {"username": DEMO_USER[0], "password": DEMO_USER[1], "login_url": local["SF_LOGIN_URL"],
            "users": [(user.username, user.password) for user in org.config.users]}


def create_app():  # noqa: ANN201 - a Flask app
    """The factory the flask CLI finds (`FLASK_APP=app flask sf token ...`): the configured org,
    or with no SF_CLIENT_ID the local org on a free port, with demo credentials for every flow."""
    load_dotenv()
    settings: dict[str, str] = {}
    demo = None
    if not os.environ.get("SF_CLIENT_ID"):
        redirect_uri = raw_settings()["SF_REDIRECT_URI"]
        local, org = _start_local_org(redirect_uri, "127.0.0.1", 0, quiet=True)
        settings.update(local)
        admin = org.data.user_by_username(DEMO_USER[0])
        issued = org.tokens.issue(local["SF_CLIENT_ID"], admin["Id"], "api refresh_token",
                                  with_refresh=True)
        demo = {**local_org_demo(local, org), "refresh_token": issued.refresh_token}
    app = sfconnect.create_app(settings)
    app.config["SFCONNECT_LOCAL_ORG_DEMO"] = demo
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--org-port", type=int, default=5001, help="port of the local org")
    args = parser.parse_args()
    # SIGTERM (docker stop, systemd, kill) exits like Ctrl+C does: atexit handlers run, and the
    # demo JWT key file is removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))

    load_dotenv()
    settings: dict[str, str] = {}
    demo = None
    if not os.environ.get("SF_CLIENT_ID"):
        redirect_uri = raw_settings()["SF_REDIRECT_URI"]
        local, org = _start_local_org(redirect_uri, "127.0.0.1", args.org_port, quiet=False)
        settings.update(local)
        settings.setdefault("ENV", os.environ.get("ENV", "development"))
        demo = local_org_demo(local, org)
    app = sfconnect.create_app(settings)
    app.config["SFCONNECT_LOCAL_ORG_DEMO"] = demo
    print(f"sfconnect: open http://localhost:{args.port}/")
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
