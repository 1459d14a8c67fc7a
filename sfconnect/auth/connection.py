"""The browser's connections: who is signed in to which org, kept in the session (no secrets),
and how a view runs a call as that user (`call_with_session`, `with_session_tokens`) or requires
one (`connected`).

A browser session holds up to MAX_CONNECTIONS connections, one user in one org each, named by a
key made from the org and user ids (so a link made for a connection still finds it after that
user connects again). One is active: the session's "sf" entry, where it always was; the others
wait under "sf_others". A request may name another with `org=<key>` (links made for one
connection: paging, exports), without switching; a key that is gone is UnknownConnection."""
from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from flask import has_request_context, redirect, request, session, url_for

from sfconnect import ext, hooks
from sfconnect.errors import NotConnected, UnknownConnection
from sfconnect.settings import SANDBOX_HOST

if TYPE_CHECKING:
    from sfconnect.auth.tokens import TokenService, TokenSet

T = TypeVar("T")
SESSION_KEY = "sf"  # the session's entry for the active connection
OTHERS_KEY = "sf_others"  # the session's other connections, a list of entries
ORG_PARAM = "org"  # the query parameter naming a connection by its key
MAX_CONNECTIONS = 5  # per browser session; a sixth disconnects the one used longest ago


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
    is_sandbox: bool = False
    used_at: float = 0.0  # when a request last used or activated it (epoch seconds)

    # Fields added after sessions were first written: a session without them still loads.
    _OPTIONAL = ("urls", "is_sandbox", "used_at")

    @property
    def key(self) -> str:
        """The connection's name in URLs and forms: the same user of the same org, the same key."""
        return connection_key(self.organization_id, self.user_id)

    @property
    def label(self) -> str:
        """Who at which org, as a person reads it."""
        return f"{self.username} at {self.org_label}"

    @property
    def org_label(self) -> str:
        """What the header calls the org: its instance's host, and sandbox or production."""
        host = urlsplit(self.instance_url).netloc
        return f"{host} ({'sandbox' if self.is_sandbox else 'production'})"

    @classmethod
    def from_session(cls, value: object) -> Connection | None:
        """Read a session entry; None when absent or malformed."""
        if not isinstance(value, dict):
            return None
        urls = value.get("urls")
        try:
            fields = {name: str(value[name]) for name in cls.__dataclass_fields__
                      if name not in cls._OPTIONAL}
        except KeyError:
            return None
        if not isinstance(urls, dict):
            urls = {}  # a session from before the urls were kept with it
        used_at = value.get("used_at")
        return cls(**fields, urls={str(k): str(v) for k, v in urls.items()},
                   is_sandbox=value.get("is_sandbox") is True,
                   used_at=float(used_at) if isinstance(used_at, int | float) else 0.0)

    def to_session(self) -> dict[str, object]:
        """The connection's session entry."""
        return asdict(self)


def connection_key(organization_id: str, user_id: str) -> str:
    """A short key for one user in one org (not a secret: both ids are on every page)."""
    return hashlib.sha256(f"{organization_id}/{user_id}".encode()).hexdigest()[:12]


def is_sandbox(login_url: str, instance_url: str) -> bool:
    """Whether a sign-in was to a sandbox: at test.salesforce.com, or an org under a sandbox
    My Domain (acme--dev.sandbox.my.salesforce.com)."""
    hosts = (urlsplit(login_url).hostname or "", urlsplit(instance_url).hostname or "")
    return hosts[0] == SANDBOX_HOST or any(".sandbox.my.salesforce" in host for host in hosts)


def active_connection() -> Connection | None:
    """The active connection (the header's), or None when the browser is not connected."""
    return Connection.from_session(session.get(SESSION_KEY))


def all_connections() -> list[Connection]:
    """Every connection of this browser session, the active one first."""
    others = session.get(OTHERS_KEY)
    found = [active_connection(), *(Connection.from_session(value)
                                    for value in (others if isinstance(others, list) else []))]
    return [connection for connection in found if connection is not None]


def connection_named(key: str) -> Connection | None:
    """This browser's connection with `key`, or None."""
    return next((c for c in all_connections() if c.key == key), None)


def current_connection() -> Connection | None:
    """The connection this request is for: the one its `org` parameter names (a link made for
    it), else the active one; None when the browser is not connected. UnknownConnection when
    `org` names a connection this browser no longer has."""
    key = request.args.get(ORG_PARAM) if has_request_context() else None
    if not key:
        return active_connection()
    connection = connection_named(key)
    if connection is None:
        raise UnknownConnection(key)
    return connection


def _save(connections: list[Connection]) -> None:
    """Store `connections`, the first one active."""
    if not connections:
        session.pop(SESSION_KEY, None)
        session.pop(OTHERS_KEY, None)
        return
    session[SESSION_KEY] = connections[0].to_session()
    session[OTHERS_KEY] = [connection.to_session() for connection in connections[1:]]


def keep_connection(connection: Connection) -> list[Connection]:
    """Make `connection` the active one. Returns the connections it displaces, for the caller to
    revoke: the same user in the same org connected before (with another token record), and,
    past MAX_CONNECTIONS, the one used longest ago."""
    connection = replace(connection, used_at=time.time())
    before = all_connections()
    kept = [c for c in before if c.key != connection.key]
    displaced = [c for c in before if c.key == connection.key
                 and c.token_record != connection.token_record]
    while len(kept) >= MAX_CONNECTIONS:
        oldest = min(kept, key=lambda c: c.used_at)
        kept.remove(oldest)
        displaced.append(oldest)
    _save([connection, *kept])
    return displaced


def update_connection(connection: Connection) -> None:
    """Write `connection` back where it is (e.g. after Refresh identity); the active one stays."""
    _save([connection if c.key == connection.key else c for c in all_connections()])


def activate(key: str) -> Connection | None:
    """Make the connection with `key` the active one; None when there is none."""
    connections = all_connections()
    chosen = next((c for c in connections if c.key == key), None)
    if chosen is not None:
        chosen = replace(chosen, used_at=time.time())
        _save([chosen, *(c for c in connections if c.key != key)])
    return chosen


def forget_connection(key: str) -> Connection | None:
    """Drop the connection with `key` from the session (the caller revokes its tokens); when it
    was the active one, the one used most recently becomes active. The dropped one, or None."""
    connections = all_connections()
    dropped = next((c for c in connections if c.key == key), None)
    rest = [c for c in connections if c.key != key]
    if dropped is not None and connections and connections[0].key == key:
        rest.sort(key=lambda c: c.used_at, reverse=True)
    _save(rest)
    return dropped


def note_use(connection: Connection, every_s: float = 60.0) -> None:
    """Remember that a request used `connection` (at most once a minute: a session write)."""
    if time.time() - connection.used_at >= every_s:
        update_connection(replace(connection, used_at=time.time()))


def connected(view: Callable[..., T]) -> Callable[..., T]:
    """A page that talks to Salesforce: a browser that is not connected goes to the home page
    (which offers Connect) instead; a link naming a connection that is gone gets a page saying
    so (UnknownConnection)."""

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
    note_use(connection)
    try:
        with hooks.acting_for(connection.key, connection.label):
            return run(ext.tokens(), connection)
    except NotConnected:
        forget_connection(connection.key)  # this one only: the others are not disturbed
        raise
