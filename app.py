"""Entry point: `python app.py` serves sfconnect on http://localhost:5000.

With no Connected App configured (no SF_CLIENT_ID in the environment or .env), it also starts the
local org (devorg) on 127.0.0.1:5001 in this process and registers the app with it, so a newcomer
sees the whole flow with no setup. Wiring only: the application itself never imports devorg.
"""
from __future__ import annotations

import argparse
import os
import secrets

from dotenv import load_dotenv

import sfconnect

DEFAULT_REDIRECT_URI = "http://localhost:5000/oauth/callback"


def start_local_org(redirect_uri: str, host: str = "127.0.0.1", port: int = 5001) -> dict:
    """Start devorg in a background thread, register this app with it, return the settings."""
    import devorg  # only here: the local org is a stand-in, not part of the application

    client = devorg.ClientApp(
        client_id="3MVG9local" + secrets.token_hex(16),
        client_secret=secrets.token_hex(32),
        name="sfconnect (local demo)",
        redirect_uris=[redirect_uri],
    )
    config = devorg.OrgConfig(clients=[client])
    server = devorg.serve_in_thread(devorg.create_app(config), host=host, port=port)
    print(f"No SF_CLIENT_ID configured: using the local org at {server.url}")
    print("  sign in as one of:")
    for user in config.users:
        print(f"    {user.username}  password: {user.password}")
    return {
        "SF_LOGIN_URL": server.url,
        "SF_CLIENT_ID": client.client_id,
        "SF_CLIENT_SECRET": client.client_secret,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--org-port", type=int, default=5001, help="port of the local org")
    args = parser.parse_args()

    load_dotenv()
    settings: dict[str, str] = {}
    if not os.environ.get("SF_CLIENT_ID"):
        redirect_uri = os.environ.get("SF_REDIRECT_URI", DEFAULT_REDIRECT_URI)
        settings.update(start_local_org(redirect_uri, port=args.org_port))
        settings.setdefault("ENV", os.environ.get("ENV", "development"))
    app = sfconnect.create_app(settings)
    print(f"sfconnect: open http://localhost:{args.port}/")
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
