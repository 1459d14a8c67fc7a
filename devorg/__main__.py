"""`python -m devorg --port 5001`: run a local org and say how to use it (`--tls` for https)."""
from __future__ import annotations

import argparse
import tempfile

from werkzeug.serving import make_server

from . import ClientApp, OrgConfig, create_app
from .keys import write_tls_certificate
from .server import tls_context

DEMO_CLIENT = ClientApp(
    client_id="3MVG9devorgDEMOclientKEY",
    client_secret="devorg-demo-secret-not-for-production",
    name="sfconnect (demo)",
    redirect_uris=["http://localhost:5000/oauth/callback", "http://127.0.0.1:5000/oauth/callback"],
    integration_username="integration@devorg.local",
    scopes="api refresh_token openid",
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
    parser.add_argument("--tls", action="store_true",
                        help="serve https with a self-signed certificate made now")
    parser.add_argument("--tls-dir", default=None,
                        help="where --tls writes its certificate and key (default: a new temp dir)")
    args = parser.parse_args()
    config = OrgConfig(contact_count=args.contacts, access_token_lifetime=args.token_lifetime,
                       refresh_token_rotation=args.rotation, admin_enabled=args.admin,
                       clients=[DEMO_CLIENT])
    app = create_app(config)
    # Bind first, so the printed URL has the real port even with --port 0.
    certificate, context = None, None
    if args.tls:
        certificate, key = write_tls_certificate(args.tls_dir
                                                 or tempfile.mkdtemp(prefix="devorg-tls-"))
        context = tls_context(certificate, key)
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=context)
    base = f"{'https' if args.tls else 'http'}://{args.host}:{server.server_port}"
    print(f"Local Salesforce org listening on {base}")
    if certificate is not None:
        print(f"  certificate to trust: {certificate}")
        print(f"    (e.g. REQUESTS_CA_BUNDLE={certificate} or curl --cacert {certificate})")
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
