"""The sequence diagram: SVG drawn by the server, steps taken marked, every text escaped."""
from __future__ import annotations

import requests
from lxml import etree

from sfconnect.learn.diagram import ROWS, render_svg
from tests.helpers.flow import sign_in

SVG = "{http://www.w3.org/2000/svg}"


def _badges(svg_text: str) -> list[str]:
    root = etree.fromstring(svg_text.encode())
    return [t.text for t in root.iter(f"{SVG}text") if t.get("x") == "18"][:len(ROWS)]


def test_flow_svg_marks_the_steps_this_session_took(start_app, local_org):
    running = start_app(local_org)
    http = requests.Session()
    empty = http.get(f"{running.url}/flow.svg")
    assert empty.status_code == 200
    assert empty.headers["Content-Type"].startswith("image/svg+xml")
    assert set(_badges(empty.text)) == {"·"}

    sign_in(http, running.url)
    http.get(f"{running.url}/query", params={"q": "SELECT Id FROM Account LIMIT 2"})
    svg = http.get(f"{running.url}/flow.svg").text
    root = etree.fromstring(svg.encode())  # well-formed XML
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}script")) and "<style" not in svg and "http://" not in \
        svg.replace("http://www.w3.org/2000/svg", "")
    marks = dict(zip((row[3] for row in ROWS), _badges(svg), strict=True))
    for step in ("authorization request", "sign-in and consent at Salesforce", "callback",
                 "token request", "token response", "signature check", "identity request",
                 "endpoint chosen with {version} filled", "SOAP request", "SOAP response"):
        assert marks[step].startswith("✓"), step
    for step in ("expired session and refresh", "revoke", "REST query"):
        assert marks[step] == "·", step
    page = http.get(f"{running.url}/flow")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page.text  # shown on /flow itself


def test_diagram_escapes_text():
    svg = render_svg([{"step": "<script>alert(1)</script>", "status": 200}])
    etree.fromstring(svg.encode())
    assert "<script>" not in svg
