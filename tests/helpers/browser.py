"""For the browser tests (tests/app/conftest.py has their `browser` and `page` fixtures): one
headless Debian Chromium driven by Playwright (no browser is ever downloaded), signing in through
the local org's login and consent pages, and the accessibility check.

Every page the `page` fixture loads is checked with axe-core (WCAG 2.1 A and AA, and axe's best
practices) once it has loaded; the test fails at teardown on any violation, listing each one. A
test that opens a context of its own calls `watch_accessibility(context)` and, before closing it,
`assert_accessible(page)`, which also checks the page as it is at that moment (a state reached by
typing or clicking, which no `load` covers). axe-core comes from node_modules (`npm ci`, run by
scripts/test.sh), never from a CDN."""
from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.helpers.org import ADMIN
from tests.helpers.paths import REPO

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

AXE_JS = REPO / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
# The app, the local org and the tests' own pages are served on 127.0.0.1. A test's stand-in for
# another site has to be another site, so it is served on `localhost`, and is not checked.
CHECKED_HOSTS = ["127.0.0.1"]
# How long a page's check may take once the page has loaded (axe takes well under a second).
CHECK_DEADLINE_S = 20
_REPORT_BINDING = "__sfconnectAxeReport"

# Runs in every document of a watched context, after axe itself: on `load`, an HTML page of a
# checked host is checked and the violations go to Python through the binding. The binding is
# looked up when called, as Playwright installs it with a script of its own. `state.done` says the
# load check has reported; `state.check` queues a check of the page as it is (axe runs one at a
# time).
_CHECK_SCRIPT = """
(() => {
  if (window.top !== window) {
    return;  // a frame is checked with its page (axe is in the frame too, to answer it)
  }
  const hosts = %(hosts)s;
  const tags = %(tags)s;
  const state = {done: false, checked: false, check: null};
  Object.defineProperty(window, "__sfconnectAxe", {value: state});
  const target = (node) => node.target.map((t) => Array.isArray(t) ? t.join(" >>> ") : t)
    .join(" | ");
  const run = (when) => axe.run(document, {runOnly: {type: "tag", values: tags},
                                           resultTypes: ["violations"]})
    .then((results) => window.%(binding)s({
      url: location.href, when, violations: results.violations.map((v) => ({
        rule: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => ({target: target(n), html: n.html})),
      })),
    }))
    .catch((error) => window.%(binding)s({url: location.href, when,
                                           error: String(error && error.stack || error)}));
  let queue = Promise.resolve();
  addEventListener("load", () => {
    if (!hosts.includes(location.hostname) || document.contentType !== "text/html") {
      state.done = true;
      return;
    }
    state.checked = true;
    state.check = (when) => (queue = queue.then(() => run(when)));
    state.check("load").finally(() => { state.done = true; });
  }, {once: true});
})();
"""


@functools.cache
def axe_source() -> str:
    """axe-core's script, read once per run."""
    if not AXE_JS.is_file():
        pytest.fail(f"axe-core is missing ({AXE_JS.relative_to(REPO)}): run scripts/test.sh, "
                    "or `npm ci` at the repository's root", pytrace=False)
    return AXE_JS.read_text(encoding="utf-8")


@functools.cache
def axe_version() -> str:
    package = json.loads((AXE_JS.parent / "package.json").read_text(encoding="utf-8"))
    return package["version"]


@dataclass(frozen=True)
class Violation:
    """One rule axe found broken on one page, with the elements that break it."""

    url: str
    rule: str
    impact: str
    help: str
    targets: tuple[str, ...]
    html: tuple[str, ...]

    def __str__(self) -> str:
        nodes = "".join(f"\n      {target}   {html[:160]}"
                        for target, html in zip(self.targets, self.html, strict=True))
        return f"  {self.rule} ({self.impact}): {self.help}\n    on {self.url}{nodes}"


class AccessibilityAudit:
    """axe-core on every page load of one browser context: the violations found, the URLs checked,
    and the errors of axe itself. The binding only records (Playwright's sync API must not be
    called from inside a callback)."""

    def __init__(self, context) -> None:
        self.violations: list[Violation] = []
        self.checked: list[str] = []
        self.errors: list[str] = []
        context.add_init_script(script=axe_source())
        context.add_init_script(script=_CHECK_SCRIPT % {
            "hosts": json.dumps(CHECKED_HOSTS), "tags": json.dumps(AXE_TAGS),
            "binding": _REPORT_BINDING})
        context.expose_binding(_REPORT_BINDING, self._record)

    def _record(self, source, report: dict) -> None:
        url = report["url"]
        if "error" in report:
            self.errors.append(f"axe could not check {url} ({report['when']}): {report['error']}")
            return
        self.checked.append(url)
        for found in report["violations"]:
            violation = Violation(url, found["rule"], found["impact"], found["help"],
                                  tuple(n["target"] for n in found["nodes"]),
                                  tuple(n["html"] for n in found["nodes"]))
            if violation not in self.violations:  # a page checked on load, then as it is
                self.violations.append(violation)

    def settle(self, page, deadline_s: float = CHECK_DEADLINE_S) -> None:
        """Wait until the check of the page's current document has reported (if it is checked).
        A navigation meanwhile starts the wait again on the new document, within one deadline."""
        if page.is_closed():
            return
        deadline = time.monotonic() + deadline_s
        while True:
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            try:
                page.wait_for_function(
                    "() => !window.__sfconnectAxe || window.__sfconnectAxe.done",
                    polling=50, timeout=remaining_ms)
                return
            except PlaywrightTimeoutError:
                pytest.fail(f"the accessibility check of {page.url} did not finish within "
                            f"{deadline_s:g} s", pytrace=False)
            except PlaywrightError as error:
                navigated = re.search(r"context was destroyed|navigat", str(error), re.I)
                if not navigated or time.monotonic() > deadline:
                    raise

    def check_now(self, page) -> None:
        """Check the page as it is now (after its load check has reported)."""
        self.settle(page)
        if not page.is_closed():
            page.evaluate("() => window.__sfconnectAxe && window.__sfconnectAxe.checked "
                          "&& window.__sfconnectAxe.check('now')")

    def take_failures(self) -> str | None:
        """The report of everything found so far (then forgotten, so nothing is reported twice),
        or None when every checked page passed."""
        if not self.violations and not self.errors:
            return None
        lines = [f"axe-core {axe_version()} ({', '.join(AXE_TAGS)}) found "
                 f"{len(self.violations)} violation(s):", *map(str, self.violations),
                 *self.errors]
        self.violations.clear()
        self.errors.clear()
        return "\n".join(lines)


def watch_accessibility(context) -> AccessibilityAudit:
    """Check every page `context` loads from now on with axe-core; returns the audit."""
    audit = AccessibilityAudit(context)
    context.accessibility_audit = audit
    return audit


def assert_accessible(page, now: bool = True) -> None:
    """Fail on any violation found so far in the page's context: waits for the check of the page
    loaded last and, with `now`, checks the page as it is at this moment too."""
    audit: AccessibilityAudit = page.context.accessibility_audit
    if now:
        audit.check_now(page)
    else:
        audit.settle(page)
    failures = audit.take_failures()
    if failures:
        pytest.fail(failures, pytrace=False)


def app_problems(page, running) -> list[str]:
    """Console errors of the app's pages (the local org's own pages are not under test)."""
    return [p for p in page.problems if p.startswith(running.url)]


def sign_in(page, running, org, username: str = ADMIN[0], password: str = ADMIN[1]) -> None:
    """Connect from the app's home page: sign in at the local org and allow access."""
    page.goto(running.url + "/")
    expect(page.locator(".status-text")).to_have_text("Not connected")
    page.get_by_role("button", name="Connect to Salesforce").click()
    page.wait_for_url(re.compile(re.escape(org.url) + r"/services/oauth2/authorize\?.*"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log In").click()
    expect(page.get_by_role("heading", name="Allow Access?")).to_be_visible()
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(running.url + "/")
