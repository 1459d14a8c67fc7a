"""What /local-org shows: how to use the local org (devorg) from your own code.

The app never imports devorg; it knows the local org is running because app.py, which started it,
says so in `app.config["SFCONNECT_LOCAL_ORG_DEMO"]` (its login URL and users). The client this
app is registered as there is a throwaway demo client, so its id and secret may be shown here,
and only here, and only while the login host is that local org on a loopback address.

The snippets get a token with the client credentials flow (the demo client runs as the org's
integration user), then query with curl, simple-salesforce, jsforce and zeep.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

from sfconnect import ext
from sfconnect.auth.trust import is_loopback
from sfconnect.learn.snippets import PARTNER_BINDING, Snippet

CONFIG_KEY = "SFCONNECT_LOCAL_ORG_DEMO"
SOQL = "SELECT Id, Name FROM Account ORDER BY Name LIMIT 5"


@dataclass(frozen=True)
class LocalOrg:
    """The running local org as this app knows it."""

    login_url: str
    client_id: str
    client_secret: str
    redirect_uri: str
    users: tuple[tuple[str, str], ...]
    api_version: str


def running(app: object = None) -> LocalOrg | None:
    """The local org app.py started for this app, or None (a real org, or started otherwise)."""
    app = app or current_app
    demo: Mapping[str, object] | None = app.config.get(CONFIG_KEY)
    settings = ext.settings(app)
    if not demo or not is_loopback(urlsplit(settings.login_url).hostname or ""):
        return None  # never show a secret of anything but a local stand-in
    users = demo.get("users") or [(demo.get("username"), demo.get("password"))]
    return LocalOrg(login_url=settings.login_url, client_id=settings.client_id,
                    client_secret=settings.client_secret, redirect_uri=settings.redirect_uri,
                    users=tuple((str(u), str(p)) for u, p in users if u),
                    api_version=ext.partner(app).api_version)


def setup(org: LocalOrg) -> str:
    """The shell lines that set the variables every snippet reads."""
    read = "python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])'"
    return textwrap.dedent(f"""\
        # The local org's demo client. Its secret is a stand-in's; keep a real one out of files.
        export SF_LOGIN_URL='{org.login_url}'
        export SF_CLIENT_ID='{org.client_id}'
        export SF_CLIENT_SECRET='{org.client_secret}'
        # A token by the client credentials flow (RFC 6749 §4.4): it runs as the integration user.
        answer=$(curl -sS "$SF_LOGIN_URL/services/oauth2/token" \\
          --data-urlencode grant_type=client_credentials \\
          --data-urlencode "client_id=$SF_CLIENT_ID" \\
          --data-urlencode "client_secret=$SF_CLIENT_SECRET")
        export SF_ACCESS_TOKEN=$(printf %s "$answer" | {read} access_token)
        export SF_INSTANCE_URL=$(printf %s "$answer" | {read} instance_url)
        export SF_ID_URL=$(printf %s "$answer" | {read} id)
        """)


def snippets(org: LocalOrg) -> list[Snippet]:
    """Working code for the local org, each reading the variables `setup` exports."""
    version = org.api_version
    curl = textwrap.dedent(f"""\
        # REST query (Salesforce's REST API Developer Guide, "Query"): GET with Bearer.
        curl -sS -i -G "$SF_INSTANCE_URL/services/data/v{version}/query/" \\
          -H "Authorization: Bearer $SF_ACCESS_TOKEN" \\
          --data-urlencode 'q={SOQL}'
        """)
    simple_salesforce = textwrap.dedent(f'''\
        # pip install simple-salesforce
        import os

        import requests
        from requests.adapters import HTTPAdapter
        from simple_salesforce import Salesforce


        class PlainHttp(HTTPAdapter):
            """simple-salesforce always writes https://; the local org answers plain http (unless
            it runs with `python -m devorg --tls`)."""

            def send(self, request, **kwargs):
                request.url = "http://" + request.url.removeprefix("https://")
                return super().send(request, **kwargs)


        instance_url = os.environ["SF_INSTANCE_URL"]
        session = requests.Session()
        if instance_url.startswith("http://"):
            session.mount("https://" + instance_url.removeprefix("http://"), PlainHttp())
        sf = Salesforce(instance_url=instance_url, session_id=os.environ["SF_ACCESS_TOKEN"],
                        session=session, version="{version}")
        result = sf.query("{SOQL}")
        print(result["totalSize"], [record["Id"] for record in result["records"]])
        ''')
    jsforce = textwrap.dedent(f"""\
        // npm install jsforce; save as local-org.mjs and run with node
        import jsforce from "jsforce";

        const conn = new jsforce.Connection({{
          instanceUrl: process.env.SF_INSTANCE_URL,
          accessToken: process.env.SF_ACCESS_TOKEN,
          version: "{version}",
        }});
        const result = await conn.query("{SOQL}");
        console.log(result.totalSize, JSON.stringify(result.records.map((record) => record.Id)));
        """)
    zeep = textwrap.dedent(f"""\
        # pip install zeep requests; the partner WSDL is in /flow/starter.zip (or SF_PARTNER_WSDL)
        import os

        import requests
        import zeep

        token = os.environ["SF_ACCESS_TOKEN"]
        # The identity service says where the org serves its APIs (urls.partner, {{version}}).
        identity = requests.get(os.environ["SF_ID_URL"], timeout=30,
                                headers={{"Authorization": f"Bearer {{token}}"}}).json()
        endpoint = identity["urls"]["partner"].replace("{{version}}", "{version}")
        client = zeep.Client(os.environ.get("SF_PARTNER_WSDL", "partner.wsdl"))
        service = client.create_service("{PARTNER_BINDING}", endpoint)
        response = service.query(queryString="{SOQL}",
                                 _soapheaders={{"SessionHeader": {{"sessionId": token}}}})
        result = response.body.result  # the reply has SOAP headers too: zeep answers both
        print(result.size, [record.Id for record in result.records])
        """)
    return [Snippet("curl", "curl", curl),
            Snippet("simple-salesforce", "Python (simple-salesforce)", simple_salesforce),
            Snippet("jsforce", "JavaScript (jsforce)", jsforce),
            Snippet("zeep", "Python (zeep, partner WSDL)", zeep)]
