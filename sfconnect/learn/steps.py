"""Step-by-step mode: the app pauses before each request it controls and shows what it will send.

A switch on the home page (`POST /step` with `mode=on|off`, CSRF-checked) keeps the mode in the
server-side session; it is off by default, and while it is off nothing here runs. When it is on,
the four pause points each store one *pending step*, {id, kind, data, created}, in the browser's
step record (StepStore, server-side), and show it parameter by parameter, secrets masked exactly
as in the trace (sfconnect.redaction):

    authorize  GET /login         the authorize URL, before the redirect (state and PKCE already
                                  made and kept by Authlib); Continue is
                                  GET /step/authorize?step=<id>
    token      /oauth/callback    the token request, after the state was checked
    jwks       after the token    with openid: the discovery document and JWKS fetched for the
                                  id_token's checks (its header and claims shown)
    userinfo   after the checks   with openid: GET userinfo, whose sub must be the id_token's
    identity   after the token    GET on the id URL with Authorization: Bearer
    soap       GET /query         the SOAP envelope and the endpoint with {version} filled

Continue (`POST /step` with `continue=<id>`, CSRF-checked) takes the pending step out of the
record, so it runs once: a replayed or stale Continue is refused with a 400 page. The browser sends
nothing but the step's id; the code, the verifier and the token record id stay on the server.
The core knows nothing of this mode: it offers pause points (sfconnect.hooks.pause_at) and
logout signals, and this module installs a hook on them. What a Continue does is registered per
kind (`on_continue`); the sign-in's own Continues (the token request, the identity call) call the
core's sign-in functions (sfconnect.auth.oauth).
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TypeVar

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from sfconnect import ext, hooks
from sfconnect.auth import identity, oauth, oidc
from sfconnect.auth.tokens import TokenSet, verify_signature
from sfconnect.errors import NotConnected
from sfconnect.learn.step_pages import StaleStep, describe, paused_record
from sfconnect.settings import Settings
from sfconnect.store import Conflict, SealedRecords

T = TypeVar("T")

bp = Blueprint("steps", __name__)

MODE_KEY = "step_mode"  # True while step-by-step mode is on
RECORD_KEY = "step_record"  # the id of this browser's step record (see StepStore)
STORE_KEY = "sfconnect.steps"  # app.extensions: the StepStore
HANDLERS_KEY = "sfconnect.step_handlers"  # app.extensions: kind -> what its Continue does
KINDS = ("authorize", "token", "jwks", "userinfo", "identity", "soap")

Handler = Callable[[dict], ResponseReturnValue]


class StepStore:
    """Each browser's steps in a record of its own, next to the token records (a file, or a Redis
    hash), Fernet-encrypted with the token key (a paused token request holds the code and the
    verifier): {"pending": step or None, "approved": {"kind", "target"} or None}.

    Not in the session itself: Flask-Session writes the whole session back at the end of every
    request, so a request that was under way meanwhile (the SOQL form's describe lookups) would
    write back a session without the step. Only the record's id is in the session, set when the
    switch is turned on; every change is a compare-and-set on the record's version, so of two
    Continues of one step, one runs and the other is refused.
    """

    EMPTY = {"pending": None, "approved": None}

    def __init__(self, records: SealedRecords) -> None:
        self.records = records

    def load(self, record_id: str) -> tuple[int | None, dict]:
        """(version or None, document) of a record; an empty document when there is none."""
        found = self.records.read(record_id)
        if found is None:
            return None, dict(self.EMPTY)
        return found.version, {**self.EMPTY, **found.document}

    def update(self, record_id: str, change: Callable[[dict], T]) -> T:
        """Apply `change(document)` (which edits it in place) by compare-and-set; its result."""
        try:
            return self.records.update(record_id, change, self.EMPTY)
        except Conflict:
            raise StaleStep() from None  # another request kept changing it: nothing ran

    def delete(self, record_id: str) -> None:
        """Forget a record."""
        self.records.delete(record_id)


def _store() -> StepStore:
    return current_app.extensions[STORE_KEY]


def _record_id() -> str | None:
    record_id = session.get(RECORD_KEY)
    return record_id if isinstance(record_id, str) else None


# -------------------------------------------------------------------------------- the switch

def is_on() -> bool:
    """Whether this browser session is in step-by-step mode."""
    return session.get(MODE_KEY) is True and _record_id() is not None


def set_mode(on: bool) -> None:
    """Turn the mode on or off; off drops (and disposes of) any pending step."""
    if on:
        if not is_on():
            session[RECORD_KEY] = secrets.token_urlsafe(32)
            session[MODE_KEY] = True
        return
    discard()
    record_id = _record_id()
    if record_id:
        _store().delete(record_id)
    session.pop(MODE_KEY, None)
    session.pop(RECORD_KEY, None)


# ------------------------------------------------------------------------- the state machine

def _valid(step: object) -> bool:
    return (isinstance(step, dict) and step.get("kind") in KINDS
            and isinstance(step.get("data"), dict) and isinstance(step.get("id"), str))


def pause(kind: str, data: Mapping[str, object]) -> dict:
    """Make `kind` the pending step (replacing any other) and return it."""
    if kind not in KINDS:
        raise ValueError(f"unknown step kind {kind!r}")
    record_id = _record_id()
    if record_id is None:
        raise StaleStep()  # the mode was turned off meanwhile
    step = {"id": secrets.token_urlsafe(16), "kind": kind, "data": dict(data),
            "created": time.time()}

    def change(document: dict) -> object:
        replaced, document["pending"], document["approved"] = document["pending"], step, None
        return replaced

    _dispose(_store().update(record_id, change))
    return step


def pending() -> dict | None:
    """The pending step, if any."""
    record_id = _record_id()
    if record_id is None:
        return None
    step = _store().load(record_id)[1]["pending"]
    return step if _valid(step) else None


def take(step_id: str | None, *kinds: str) -> dict:
    """Take the pending step whose id is `step_id` out of the store (it runs once).

    Raises StaleStep when no step of `kinds` with that id is pending.
    """
    record_id = _record_id()
    if not step_id or record_id is None:
        raise StaleStep()

    def change(document: dict) -> dict | None:
        step = document["pending"]
        if (not _valid(step) or step["kind"] not in kinds
                or not hmac.compare_digest(step["id"].encode(), step_id.encode())):
            return None
        document["pending"] = None
        return step

    step = _store().update(record_id, change)
    if step is None:
        raise StaleStep()
    return step


def discard() -> None:
    """Drop the pending step; a sign-in paused after the token exchange has its tokens revoked."""
    record_id = _record_id()
    if record_id is None:
        return

    def change(document: dict) -> object:
        dropped, document["pending"] = document["pending"], None
        return dropped

    _dispose(_store().update(record_id, change))


def _dispose(step: object) -> None:
    record = step.get("data", {}).get("token_record") if isinstance(step, dict) else None
    if record:
        service = ext.tokens()
        service.disconnect(str(record))  # best effort: False when Salesforce is unreachable


def approve(kind: str, target: str) -> None:
    """Let the next GET of `target` run its `kind` call without pausing (once)."""
    record_id = _record_id()
    if record_id is None:
        raise StaleStep()

    def change(document: dict) -> None:
        document["approved"] = {"kind": kind, "target": target}

    _store().update(record_id, change)


def pauses(kind: str, target: str) -> bool:
    """Whether a GET of `target` must pause before its `kind` call: the mode is on and the
    request was not just approved by a Continue (an approval is used up here)."""
    if not is_on():
        return False

    def change(document: dict) -> bool:
        if document["approved"] == {"kind": kind, "target": target}:
            document["approved"] = None
            return False
        return True

    return _store().update(_record_id(), change)


def on_continue(app: Flask, kind: str, handler: Handler) -> None:
    """Register what Continue does for a step of `kind`: `handler(data)` returns the response."""
    app.extensions.setdefault(HANDLERS_KEY, {})[kind] = handler


# ------------------------------------------------------------------------------------ routes

@bp.get("/step")
def show():  # noqa: ANN201
    """The pending step (after a redirect, so a reload never repeats a Continue)."""
    step = pending()
    if step is None:
        return redirect(url_for("views.index"))
    return page(step)


def page(step: Mapping[str, object]) -> ResponseReturnValue:
    """The step page of `step`; a step whose tokens or connection are gone is dropped."""
    try:
        described = describe(step)
    except (StaleStep, NotConnected):
        discard()
        raise
    return render_template("step.html", step=described, steps=sign_in_steps())


def sign_in_steps() -> int:
    """How many steps a sign-in and a first query take: two more with OpenID Connect (the
    id_token's key set, then userinfo)."""
    return 6 if oidc.has_openid(ext.settings().scopes) else 4


@bp.post("/step")
def step():  # noqa: ANN201
    """The switch (`mode=on|off`) and Continue (`continue=<step id>`); both CSRF-checked."""
    mode = request.form.get("mode")
    if mode in ("on", "off"):
        set_mode(mode == "on")
        flash("Step-by-step mode is on: the app will pause before each request it makes and "
              "show it to you." if mode == "on" else "Step-by-step mode is off.", "info")
        return redirect(url_for("views.index"), code=303)
    if "continue" not in request.form:
        raise StaleStep()
    taken = take(request.form.get("continue"), "token", "jwks", "userinfo", "identity",
                 "soap")
    handler = current_app.extensions.get(HANDLERS_KEY, {}).get(taken["kind"])
    if handler is None:  # pragma: no cover - every kind's module registers its handler
        raise StaleStep()
    return handler(taken["data"])


@bp.get("/step/authorize")
def authorize():  # noqa: ANN201
    """Continue on the authorization request: on to Salesforce, with the URL the step showed."""
    return redirect(take(request.args.get("step"), "authorize")["data"]["url"])


def _continue_token_request(data: dict) -> ResponseReturnValue:
    """Step-by-step mode, Continue on the token request: exchange the code, keep the tokens in a
    token record of their own, and pause again before the identity call."""
    client = ext.oauth().client_for_url(str(data["login"]))
    if client is None:
        raise StaleStep()
    params = {"code": data["code"], "state": data["state"]}
    if data.get("code_verifier"):
        params["code_verifier"] = data["code_verifier"]
    with oauth.upstream("oauth"):
        token = client.fetch_access_token(redirect_uri=data.get("redirect_uri"),
                                          allow_redirects=False, **params)
    verify_signature(token, ext.settings().client_secret)
    tokens = TokenSet.from_response(token, client.login_host.url)
    login = client.login_host.url
    if oidc.has_openid(ext.settings().scopes):
        # Kept in a record of their own (revoked if the sign-in is dropped) while the id_token
        # waits for its checks at the next two steps; the connection it would replace stays.
        id_token = token.get("id_token")
        pause("jwks", {"login": login, "token_record": ext.tokens().vault.create(tokens),
                       "id_token": id_token if isinstance(id_token, str) else "",
                       "nonce": data.get("nonce")})
        return redirect(url_for("steps.show"), code=303)
    pause("identity", {"login": login, "token_record": ext.tokens().vault.create(tokens)})
    return redirect(url_for("steps.show"), code=303)


def _refuse(record_id: str, tokens: TokenSet, refused: oidc.IdTokenRefused
            ) -> ResponseReturnValue:
    """A failed check at a paused sign-in: its tokens revoked, its record gone, the page."""
    page = oauth.refuse_sign_in(tokens, refused)
    ext.tokens().vault.delete(record_id)
    return page


def _continue_jwks(data: dict) -> ResponseReturnValue:
    """Step-by-step mode with openid, Continue on the key set: fetch the discovery document and
    the JWKS, check the id_token, and pause again before userinfo."""
    record_id, stored = paused_record(data)
    tokens = stored.tokens
    login = str(data["login"])
    token = {"id_token": data.get("id_token"), "access_token": tokens.access_token}
    try:
        claims = ext.oidc().verify_id_token(login, token, data.get("nonce"))
    except oidc.IdTokenRefused as refused:
        return _refuse(record_id, tokens, refused)
    except Exception:
        ext.tokens().disconnect(record_id)
        raise
    pause("userinfo", {"login": login, "token_record": record_id, "sub": claims["sub"],
                       "id_claims": oidc.kept_claims(claims)})
    return redirect(url_for("steps.show"), code=303)


def _continue_userinfo(data: dict) -> ResponseReturnValue:
    """Step-by-step mode with openid, Continue on userinfo: its sub must be the id_token's; then
    the tokens are kept with the sign-in's iss, aud and sub, and the identity call is next."""
    record_id, stored = paused_record(data)
    login = str(data["login"])
    service = ext.tokens()
    try:
        ext.oidc().check_userinfo(login, stored.tokens.access_token, str(data["sub"]))
    except oidc.IdTokenRefused as refused:
        return _refuse(record_id, stored.tokens, refused)
    except Exception:
        service.disconnect(record_id)
        raise
    kept = replace(stored.tokens, id_claims=dict(data["id_claims"]))
    if service.vault.replace(record_id, stored.version, kept) is None:
        raise StaleStep()  # the paused sign-in was dropped meanwhile
    pause("identity", {"login": login, "token_record": record_id})
    return redirect(url_for("steps.show"), code=303)


def _continue_identity_request(data: dict) -> ResponseReturnValue:
    """Step-by-step mode, Continue on the identity call: meet the user, finish signing in."""
    service = ext.tokens()
    record_id, stored = paused_record(data)
    try:
        who = identity.fetch_identity(ext.identity_http(), stored.tokens)
    except Exception:
        # Tokens the app will not keep are revoked, so none is left alive unaccounted for.
        service.disconnect(record_id)
        raise
    return oauth.signed_in(str(data["login"]), stored.tokens, who, record_id)


def _continue_soap(data: dict) -> ResponseReturnValue:
    """Continue a paused query: approve exactly that request, then make it again."""
    target = str(data.get("target") or "")
    if not target.startswith("/") or target.startswith("//"):
        raise StaleStep()
    approve("soap", target)
    return redirect(target, code=303)


def _pause_hook(kind: str, data: Mapping[str, object]) -> ResponseReturnValue | None:
    """The core's pause points: with the mode on, store the step and show it instead."""
    if kind == "soap":
        if not pauses("soap", str(data["target"])):  # off, or just approved by its Continue
            return None
        return page(pause("soap", data))
    if not is_on():
        return None
    if kind == "token":
        pause("token", data)
        return redirect(url_for("steps.show"), code=303)  # a reload never repeats the callback
    return page(pause(kind, data))


def _on_signing_out(_app: Flask) -> None:
    # A sign-in paused after its token exchange has its tokens revoked with the mode turned off;
    # the switch itself outlives the sign-in (turned on again once the session is new).
    g.step_mode_kept = is_on()
    set_mode(False)


def _on_signed_out(_app: Flask) -> None:
    if g.pop("step_mode_kept", False):
        set_mode(True)


def on_stale_step(_error: StaleStep) -> ResponseReturnValue:
    """A Continue for a step that is not pending: 400, nothing sent."""
    return render_template(
        "error.html", title="This step is no longer waiting", code="stale_step", status=400,
        message="This Continue belongs to a step that was already continued, replaced by a "
                "newer one, or dropped when step-by-step mode was turned off or you signed out. "
                "Nothing was sent to Salesforce. Start again from the home page."), 400


def _context() -> dict[str, object]:
    return {"step_mode": is_on()}


def init_app(app: Flask, settings: Settings) -> StepStore:
    """The step records, the switch, the step pages, Continue for paused queries, and the
    stale-step page."""
    store = app.extensions[STORE_KEY] = StepStore(ext.backend(app).sealed("steps"))
    app.register_blueprint(bp)
    hooks.install_pause(app, _pause_hook)
    hooks.signing_out.connect(_on_signing_out, app)
    hooks.signed_out.connect(_on_signed_out, app)
    on_continue(app, "token", _continue_token_request)
    on_continue(app, "jwks", _continue_jwks)
    on_continue(app, "userinfo", _continue_userinfo)
    on_continue(app, "identity", _continue_identity_request)
    on_continue(app, "soap", _continue_soap)
    app.register_error_handler(StaleStep, on_stale_step)
    app.context_processor(_context)
    return store
