"""The points where the learning features watch or stop the core, so that the core never imports
them. With nothing attached (the learning features off) every hook is a no-op.

- `pause_at(kind, data)`: just before a request the core controls, a hook installed with
  `install_pause` may answer with a page instead (step-by-step mode); None means go on. Kinds:
  "authorize" (data: url), "token" (login, state, code, token_url, redirect_uri,
  code_verifier) and "soap" (target, operation, argument, batch_size).
- `bulk(note)`: the outbound exchanges made inside it, in this thread, are repeats of one kind
  (an export's queryMore batches); an observer may keep them short (`bulk_note()`).
- `acting_for(key, label)`: the outbound exchanges made inside it, in this thread, use that
  connection's tokens (`acting()`), so an observer can label them with it.
- Signals (blinker, as Flask's own): `connected` when a sign-in has made a connection (key,
  label); `signing_out` before logout clears the session and `signed_out` after it;
  `checkpoint` when a worker thread of a streamed response has made exchanges that should be
  kept now (the response may end before the worker's context does);
  `id_token_checked` after an id_token's checks (id_token, refresh, verdicts: check -> "passed",
  "failed", "absent" or "not checked") and `userinfo_checked` after userinfo's sub was compared
  (verdict), sent with `report`.

The outbound exchanges themselves are observed through `sfconnect.http.observe_exchanges`.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping

from blinker import Namespace
from flask import Flask, current_app, has_app_context
from flask.typing import ResponseReturnValue

PauseHook = Callable[[str, Mapping[str, object]], "ResponseReturnValue | None"]
_PAUSE_KEY = "sfconnect.pause"

_signals = Namespace()
connected = _signals.signal("connected")
signing_out = _signals.signal("signing-out")
signed_out = _signals.signal("signed-out")
checkpoint = _signals.signal("checkpoint")
id_token_checked = _signals.signal("id-token-checked")
userinfo_checked = _signals.signal("userinfo-checked")

_BULK: contextvars.ContextVar[str | None] = contextvars.ContextVar("sfconnect_bulk",
                                                                    default=None)
_ACTING: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "sfconnect_acting", default=None)


def install_pause(app: Flask, hook: PauseHook) -> None:
    """Let `hook(kind, data)` stop the flow at each pause point of `app`."""
    app.extensions[_PAUSE_KEY] = hook


def pause_at(kind: str, data: Mapping[str, object]) -> ResponseReturnValue | None:
    """A page to show instead of going on, or None (always None with no hook installed)."""
    hook = current_app.extensions.get(_PAUSE_KEY)
    return hook(kind, data) if hook is not None else None


def report(signal: object, **data: object) -> None:
    """Send `signal` (one of the above) from the current app; nothing outside an app."""
    if has_app_context():
        signal.send(current_app._get_current_object(), **data)  # type: ignore[attr-defined]


@contextlib.contextmanager
def bulk(note: str) -> Iterator[None]:
    """Mark the exchanges made inside (in this thread) as bulk repeats, `note` saying why."""
    token = _BULK.set(note)
    try:
        yield
    finally:
        _BULK.reset(token)


def bulk_note() -> str | None:
    """Why the current exchanges are bulk repeats, or None when they are not."""
    return _BULK.get()


@contextlib.contextmanager
def acting_for(key: str, label: str) -> Iterator[None]:
    """Mark the exchanges made inside (in this thread) as made with connection `key`."""
    token = _ACTING.set((key, label))
    try:
        yield
    finally:
        _ACTING.reset(token)


def acting() -> tuple[str, str] | None:
    """(key, label) of the connection whose tokens the current exchanges use, or None."""
    return _ACTING.get()
