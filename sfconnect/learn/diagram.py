"""A sequence diagram of browser, app and Salesforce, drawn as SVG on the server.

No script, no CDN, no stylesheet (the pages' Content-Security-Policy allows neither inline styles
nor foreign hosts): presentation attributes only, every text escaped. The rows are the steps of
the flow in order; those this browser session has taken are drawn solid and counted, the others
faint and dashed (the id_token checks are taken only when openid is in the scope).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from html import escape

ACTORS = {"browser": ("Browser", 130), "app": ("sfconnect (this app)", 470),
          "salesforce": ("Salesforce", 810)}
WIDTH, TOP, ROW = 940, 96, 40
TAKEN, FAINT, MARK = "#0b5cab", "#b0b7c3", "#2e844a"

# (from, to, label, step it belongs to); the label names what travels, never its value.
ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("browser", "app", "GET /login (Connect)", "authorization request"),
    ("app", "browser", "302 to authorize: state, code_challenge (S256)",
     "authorization request"),
    ("browser", "salesforce", "authorize: sign in, Allow", "sign-in and consent at Salesforce"),
    ("salesforce", "browser", "302 to redirect_uri: code, state",
     "sign-in and consent at Salesforce"),
    ("browser", "app", "GET /oauth/callback?code&state", "callback"),
    ("app", "salesforce", "POST /services/oauth2/token: code, code_verifier, client_secret",
     "token request"),
    ("salesforce", "app", "access_token, refresh_token, instance_url, id, signature",
     "token response"),
    ("app", "app", "HMAC-SHA256(client_secret, id + issued_at)", "signature check"),
    ("app", "app", "id_token: JWKS signature, iss, aud, exp, nonce, at_hash",
     "id_token checks"),
    ("app", "salesforce", "GET id URL, Authorization: Bearer", "identity request"),
    ("salesforce", "app", "user, organization, urls with {version}", "identity response"),
    ("app", "app", "urls.partner with {version} filled", "endpoint chosen with {version} filled"),
    ("app", "salesforce", "POST urls.partner: query, SessionHeader sessionId", "SOAP request"),
    ("salesforce", "app", "QueryResult, or fault INVALID_SESSION_ID", "SOAP response"),
    ("app", "salesforce", "POST token: grant_type=refresh_token", "expired session and refresh"),
    ("salesforce", "app", "new access_token (and refresh_token if rotated)", "refresh response"),
    ("app", "salesforce", "GET urls.query?q= (REST), Authorization: Bearer", "REST query"),
    ("app", "salesforce", "POST /services/oauth2/revoke: token", "revoke"),
)


def taken_steps(entries: Iterable[Mapping]) -> Counter[str]:
    """How often each row's step appears in the trace (a response counts when one came)."""
    counts: Counter[str] = Counter()
    for entry in entries:
        step = str(entry.get("step"))
        counts[step] += 1
        answered = bool(entry.get("status"))
        if step == "token request" and answered:
            counts["token response"] += 1
        elif step == "identity request" and answered:
            counts["identity response"] += 1
        elif step == "SOAP request" and answered:
            counts["SOAP response"] += 1
        elif step == "expired session and refresh" and answered:
            counts["refresh response"] += 1
    return counts


def _text(x: float, y: float, text: str, fill: str, anchor: str = "middle", size: int = 12,
          weight: str = "normal") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" fill="{fill}" font-size="{size}" '
            f'font-weight="{weight}" text-anchor="{anchor}" '
            f'font-family="system-ui, sans-serif">{escape(text)}</text>')


def render_svg(entries: Iterable[Mapping]) -> str:
    """The diagram as an SVG document, the steps of `entries` marked."""
    counts = taken_steps(entries)
    height = TOP + ROW * len(ROWS) + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-labelledby="diagram-title">',
           '<title id="diagram-title">Sequence diagram of the OAuth 2.0 web server flow and the '
           'calls after it; the steps this session took are marked</title>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
           '<defs>',
           f'<marker id="on" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{TAKEN}"/></marker>',
           f'<marker id="off" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{FAINT}"/></marker>',
           '</defs>']
    bottom = TOP + ROW * len(ROWS)
    for name, x in ACTORS.values():
        out.append(f'<rect x="{x - 95}" y="20" width="190" height="36" rx="6" fill="#014486"/>')
        out.append(_text(x, 43, name, "#ffffff", size=14, weight="bold"))
        out.append(f'<line x1="{x}" y1="56" x2="{x}" y2="{bottom}" stroke="#8c8c8c" '
                   f'stroke-dasharray="4 4"/>')
    for index, (source, target, label, step) in enumerate(ROWS):
        y = TOP + ROW * index
        count = counts.get(step, 0)
        on = count > 0
        colour = TAKEN if on else FAINT
        dash = "" if on else ' stroke-dasharray="6 4"'
        x1, x2 = ACTORS[source][1], ACTORS[target][1]
        marker = "on" if on else "off"
        if source == target:
            out.append(f'<path d="M{x1},{y} h40 v16 h-38" fill="none" stroke="{colour}" '
                       f'stroke-width="{2 if on else 1}"{dash} marker-end="url(#{marker})"/>')
            out.append(_text(x1 + 48, y + 12, label, colour if on else "#8c8c8c", "start"))
        else:
            out.append(f'<line x1="{x1}" y1="{y + 8}" x2="{x2}" y2="{y + 8}" stroke="{colour}" '
                       f'stroke-width="{2 if on else 1}"{dash} marker-end="url(#{marker})"/>')
            out.append(_text((x1 + x2) / 2, y + 2, label, "#181818" if on else "#8c8c8c"))
        badge = f"✓ ×{count}" if on else "·"
        out.append(_text(18, y + 12, badge, MARK if on else FAINT, "start", 12, "bold"))
        out.append(f'<g><title>{escape(step)}</title></g>')
    legend_y = bottom + 30
    out.append(_text(18, legend_y, "✓ ×n: taken n times in this session (solid). Faint, dashed: "
                     "not taken yet.", "#5c5c5c", "start"))
    out.append("</svg>")
    return "\n".join(out)
