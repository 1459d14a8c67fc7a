"""The browser's connection: who is signed in, kept in the session (no secrets), and how a view
runs a call as that user (`call_with_session`, `with_session_tokens`) or requires one
(`connected`)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, TypeVar

from flask import redirect, session, url_for

from sfconnect import ext
from sfconnect.errors import NotConnected

if TYPE_CHECKING:
    from sfconnect.auth.tokens import TokenService, TokenSet

T = TypeVar("T")
SESSION_KEY = "sf"  # the session's entry for the connection


@dataclass(frozen=True)
class Connection:
    """Who is connected in this browser session (kept in the session: no secrets)."""

    token_record: str
    user_id: str
    organization_id: str
    username: str
    display_name: str
    partner_url: str
    login_url: str
    instance_url: str
    # The identity's endpoints (urls.query, urls.rest ...), "{version}" unfilled; kept at sign-in
    # and at Refresh identity, read by the pages that need one.
    urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_session(cls, value: object) -> Connection | None:
        """Read the session's "sf" entry; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        urls = value.get("urls")
        try:
            fields = {name: str(value[name]) for name in cls.__dataclass_fields__
                      if name != "urls"}
        except KeyError:
            return None
        if not isinstance(urls, dict):
            urls = {}  # a session from before the urls were kept with it
        return cls(**fields, urls={str(k): str(v) for k, v in urls.items()})

    def to_session(self) -> dict[str, str]:
        """The session's "sf" entry."""
        return asdict(self)


def current_connection() -> Connection | None:
    """This browser's connection, or None when it is not connected."""
    return Connection.from_session(session.get(SESSION_KEY))


def connected(view: Callable[..., T]) -> Callable[..., T]:
    """A page that talks to Salesforce: a browser that is not connected goes to the home page
    (which offers Connect) instead."""

    @functools.wraps(view)
    def wrapped(*args: object, **kwargs: object):  # noqa: ANN202
        if current_connection() is None:
            return redirect(url_for("views.index"))
        return view(*args, **kwargs)

    return wrapped


def call_with_session(call: Callable[[str, str], T]) -> T:
    """Run `call(partner_endpoint, session_id)` as the browser's user, refreshing once if needed.

    Raises NotConnected when the browser has no Salesforce connection or it cannot be refreshed
    (the connection is then removed from the session).
    """
    return _as_browser_user(lambda service, connection: service.call(connection, call))


def with_session_tokens(use: Callable[[Connection, TokenSet], T]) -> T:
    """Run `use(connection, tokens)` as the browser's user, refreshing once if needed (e.g. the
    identity service's 403 Bad_OAuth_Token, raised as InvalidSession). NotConnected as above."""
    return _as_browser_user(lambda service, connection: service.with_tokens(
        connection, lambda tokens: use(connection, tokens)))


def _as_browser_user(run: Callable[[TokenService, Connection], T]) -> T:
    connection = current_connection()
    if connection is None:
        raise NotConnected()
    try:
        return run(ext.tokens(), connection)
    except NotConnected:
        session.pop(SESSION_KEY, None)
        raise
