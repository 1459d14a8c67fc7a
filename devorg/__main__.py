"""`python -m devorg --port 5001`: run a local org and say how to use it."""
from __future__ import annotations

import argparse

from werkzeug.serving import make_server

from . import ClientApp, OrgConfig, create_app

DEMO_CLIENT = ClientApp(
    client_id="3MVG9devorgDEMOclientKEY",
    client_secret="devorg-demo-secret-not-for-production",
    name="sfconnect (demo)",
    redirect_uris=["http://localhost:5000/oauth/callback", "http://127.0.0.1:5000/oauth/callback"],
    integration_username="integration@devorg.local",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devorg", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--contacts", type=int, default=OrgConfig.contact_count,
                        help="number of seeded Contacts")
    parser.add_argument("--token-lifetime", type=int, default=OrgConfig.access_token_lifetime,
                        help="access token lifetime in seconds")
    parser.add_argument("--rotation", action="store_true", help="turn refresh-token rotation on")
    parser.add_argument("--admin", action="store_true", help="enable the /__admin test controls")
    args = parser.parse_args()
    config = OrgConfig(contact_count=args.contacts, access_token_lifetime=args.token_lifetime,
                       refresh_token_rotation=args.rotation, admin_enabled=args.admin,
                       clients=[DEMO_CLIENT])
    app = create_app(config)
    # Bind first, so the printed URL has the real port even with --port 0.
    server = make_server(args.host, args.port, app, threaded=True)
    base = f"http://{args.host}:{server.server_port}"
    print(f"Local Salesforce org listening on {base}")
    print(f"  login URL:  {base}   (authorize at {base}/services/oauth2/authorize)")
    print("  users:")
    for user in config.users:
        print(f"    {user.username}  password: {user.password}")
    print(f"  demo client: {DEMO_CLIENT.name}")
    print(f"    client id:     {DEMO_CLIENT.client_id}")
    print(f"    client secret: {DEMO_CLIENT.client_secret}")
    print(f"    redirect URIs: {', '.join(DEMO_CLIENT.redirect_uris)}")
    print(f"    client_credentials runs as: {DEMO_CLIENT.integration_username}")
    if args.admin:
        print(f"  admin controls: {base}/__admin/counters (and settings, faults, clients)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
