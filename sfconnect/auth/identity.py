"""The identity service: who the token belongs to, and where that user's org serves its APIs.

GET the `id` URL of the token response with `Authorization: Bearer`. Salesforce answers a dead
token with 403 `Bad_OAuth_Token` (not 401), and lists the org's endpoints in `urls`, with the API
version left as a literal `{version}` (urls.partner is where the SOAP calls go).
"""
from __future__ import annotations

from dataclasses import dataclass

import requests

from sfconnect.auth.tokens import TokenSet
from sfconnect.errors import InvalidSession, UpstreamError
from sfconnect.http import TokenGate

SERVICE = "identity"


@dataclass(frozen=True)
class Identity:
    """The fields of an identity response that the app shows or uses."""

    user_id: str
    organization_id: str
    username: str
    display_name: str
    email: str | None
    partner_url: str  # with the literal "{version}"
    urls: dict[str, str]  # every endpoint the identity names (`urls`), "{version}" unfilled


def fetch_identity(http: TokenGate, tokens: TokenSet) -> Identity:
    """Call the identity service for `tokens`; the id URL and urls.partner must be trusted."""
    id_url = http.trust.check(tokens.id_url)
    try:
        response = http.get(id_url, headers={"Authorization": f"Bearer {tokens.access_token}",
                                             "Accept": "application/json"})
    except requests.Timeout:
        raise UpstreamError(SERVICE, "the identity service did not answer in time") from None
    except requests.RequestException:
        raise UpstreamError(SERVICE, "the identity service could not be reached") from None
    if response.status_code in (401, 403):
        raise InvalidSession("Bad_OAuth_Token", "The identity service refused the access token.")
    if response.status_code != 200:
        raise UpstreamError(SERVICE, f"the identity service answered HTTP {response.status_code}")
    try:
        body = response.json()
        urls = body["urls"]
        identity = Identity(
            user_id=str(body["user_id"]),
            organization_id=str(body["organization_id"]),
            username=str(body["username"]),
            display_name=str(body.get("display_name") or body["username"]),
            email=body.get("email"),
            partner_url=str(urls["partner"]),
            urls={str(name): url for name, url in urls.items() if isinstance(url, str)},
        )
    except (ValueError, KeyError, TypeError):
        raise UpstreamError(SERVICE, "the identity service answered something unreadable") \
            from None
    http.trust.check(identity.partner_url)
    return identity
