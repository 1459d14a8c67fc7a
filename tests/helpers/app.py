"""sfconnect in tests: the app as the start_app fixture serves it, its outbound gate, and the
threads its exports run in."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from devorg import ClientApp, RunningServer
from tests.helpers.org import LocalOrg

# `python SERVE_APP` serves sfconnect in a process of its own (settings from the environment).
SERVE_APP = Path(__file__).resolve().with_name("serve_app.py")
# The name sfconnect.web.exports gives the thread that runs an export's queryMore loop.
EXPORT_THREAD = "sfconnect-export"


class LateApp:
    """A WSGI app whose target is set after the server has bound its port."""

    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


@dataclass
class RunningApp:
    """sfconnect served over HTTP: its URL, the Flask app, its client app at the org."""

    url: str
    app: object
    client: ClientApp
    org: LocalOrg
    server: RunningServer


def gate_for(*urls: str, purpose: str = "partner", timeout: float = 30):  # noqa: ANN201
    """The app's outbound gate for `purpose`, trusting the login hosts `urls` (the orgs' URLs)."""
    from sfconnect.auth.trust import TrustPolicy
    from sfconnect.http import token_gate

    return token_gate(purpose, TrustPolicy(urls), timeout)


def export_threads() -> set[threading.Thread]:
    """The export loops running in this process now (the apps under test run in it): a test
    waits for the ones it started to end instead of waiting for a count to stop moving."""
    return {thread for thread in threading.enumerate()
            if thread.name == EXPORT_THREAD and thread.is_alive()}
