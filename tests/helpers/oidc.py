"""OpenID Connect in the app's tests: an app that asks for `openid`, the local org's id_token
spoiler switch, and a page's text as a reader sees it."""
from __future__ import annotations

import lxml.html
import requests

OPENID_SCOPES = "api refresh_token openid"


def start_openid_app(start_app, org, scopes: str = OPENID_SCOPES):  # noqa: ANN001, ANN201
    """The app against `org` with SF_SCOPES=`scopes`, its client allowed `openid`."""
    return start_app(org, client_fields={"scopes": OPENID_SCOPES}, SF_SCOPES=scopes)


def set_spoiler(org, value: str | None) -> None:  # noqa: ANN001
    """Spoil every id_token (or userinfo) the org issues from now on in one way; None: clean."""
    response = requests.post(f"{org.url}/__admin/faults", json={"id_token": value}, timeout=10)
    assert response.status_code == 200, response.text


def page_text(response: requests.Response) -> str:
    """A page's text, whitespace collapsed."""
    return " ".join(lxml.html.fromstring(response.text).text_content().split())
