"""/flow/starter.zip: a minimal web server flow client for the app's own configuration. Unpacked,
installed in a fresh virtual environment from its requirements.txt (PyPI), run, signed in through
the local org's login and consent pages, queried, and refreshed after INVALID_SESSION_ID."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import requests

from tests.helpers.oauth import csrf_of, login
from tests.helpers.org import counters, mint_token
from tests.helpers.paths import REPO
from tests.helpers.servers import free_port
from tests.helpers.wait import until

SOQL = "SELECT Id, Name FROM Account ORDER BY Name LIMIT 7"
FILES = {"app.py", "requirements.txt", "README.md", "partner.wsdl"}


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE))


def _unpack(body: bytes, where: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = set(archive.namelist())
        assert names == {f"sfconnect-starter/{name}" for name in FILES}, names
        archive.extractall(where)
    return where / "sfconnect-starter"


def _clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and not k.startswith(("SF_", "FLASK_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(values)
    return env


def test_the_starter_is_this_configuration_without_the_secret(start_app, local_org):
    running = start_app(local_org, SF_SCOPES="api refresh_token", SF_API_VERSION="64.0")
    response = requests.get(f"{running.url}/flow/starter.zip", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name.split("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()}
    assert set(files) == FILES
    settings = running.app.extensions["sfconnect.settings"]
    source = files["app.py"]
    for name, value in (("SF_LOGIN_URL", local_org.url), ("SF_CLIENT_ID", running.client.client_id),
                        ("SF_REDIRECT_URI", settings.redirect_uri),
                        ("SF_SCOPES", "api refresh_token"), ("SF_API_VERSION", "64.0")):
        assert f'os.environ.get("{name}", "{value}")' in source, name
        assert f"`{value}`" in files["README.md"], name
    assert 'CLIENT_SECRET = os.environ["SF_CLIENT_SECRET"]' in source
    for text in files.values():
        assert running.client.client_secret not in text
    # Pinned as the app pins its own.
    ours = _pins((REPO / "requirements.txt").read_text())
    theirs = _pins(files["requirements.txt"])
    assert {"Flask", "Authlib", "zeep", "requests"} <= set(theirs)
    assert all(ours[name] == version for name, version in theirs.items()), theirs
    assert files["partner.wsdl"] == (REPO / "sfconnect" / "salesforce" / "wsdl" /
                                     "partner.wsdl").read_text()
    compile(source, "app.py", "exec")


def test_the_starter_installs_signs_in_queries_and_refreshes(start_app, fresh_org, tmp_path):
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/oauth/callback"
    running = start_app(fresh_org, SF_REDIRECT_URI=redirect_uri)
    running.client.redirect_uris.append(redirect_uri)  # the starter's, registered at the org
    starter = _unpack(requests.get(f"{running.url}/flow/starter.zip", timeout=30).content,
                      tmp_path)

    # A fresh virtual environment, from the starter's own requirements.txt.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", str(starter / "requirements.txt")],
        env=_clean_env(), capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]

    env = _clean_env(SF_CLIENT_SECRET=running.client.client_secret)
    # Its signature check refuses a response not signed with the secret.
    refused = subprocess.run(
        [str(python), "-c", "import app, werkzeug.exceptions as e\n"
         "try:\n app.verify_signature({'id': 'x', 'issued_at': '1', 'signature': 'AAAA'})\n"
         "except e.BadRequest:\n print('refused')"],
        cwd=starter, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.stdout.strip() == "refused", refused.stderr

    process = subprocess.Popen([str(python), "app.py"], cwd=starter, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the starter exited {process.returncode}: {process.stdout.read()}")
            try:
                return requests.get(base + "/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        until(answers, timeout=30, message="the starter did not start")
        browser = requests.Session()
        browser.trust_env = False
        assert "Connect to Salesforce" in browser.get(base + "/").text
        to_org = browser.get(base + "/login", allow_redirects=False)
        assert to_org.status_code == 302
        authorize_url = to_org.headers["Location"]
        assert authorize_url.startswith(f"{fresh_org.url}/services/oauth2/authorize?")
        assert "code_challenge_method=S256" in authorize_url and "state=" in authorize_url
        # The PKCE verifier waits on the server: the browser's (signed, readable) cookie holds
        # only the key of the sign-in under way.
        assert "code_verifier" not in _cookie_text(browser.cookies.get("session", ""))
        assert login(browser, authorize_url).status_code == 303
        consent = browser.get(authorize_url, allow_redirects=False)
        back = browser.post(authorize_url, data={"_csrf": csrf_of(consent.text),
                                                 "action": "allow"}, allow_redirects=False)
        assert back.headers["Location"].startswith(redirect_uri + "?")
        landed = browser.get(back.headers["Location"])  # the callback, then home
        assert landed.status_code == 200 and "Query" in landed.text, landed.text

        expected = requests.get(f"{fresh_org.url}/services/data/v66.0/query/", timeout=30,
                                params={"q": SOQL},
                                headers={"Authorization": f"Bearer {mint_token(fresh_org)}"})
        ids = [record["Id"] for record in expected.json()["records"]]
        first = browser.get(base + "/query", params={"q": SOQL})
        assert first.status_code == 200, first.text
        assert first.json()["size"] == 7
        assert [record["Id"] for record in first.json()["records"]] == ids

        # An expired session: SOAP answers HTTP 500 INVALID_SESSION_ID; the starter refreshes.
        refreshes = counters(fresh_org).get("token.refresh_token", 0)
        fresh_org.state.tokens.expire_all()
        again = browser.get(base + "/query", params={"q": SOQL})
        assert again.status_code == 200, again.text
        assert [record["Id"] for record in again.json()["records"]] == ids
        assert counters(fresh_org)["token.refresh_token"] == refreshes + 1
    finally:
        process.terminate()
        process.wait(timeout=10)


def _cookie_text(cookie: str) -> str:
    """What Flask's signed session cookie says: its payload, base64 (zlib when it starts with
    a dot), readable by anyone who holds the cookie."""
    compressed = cookie.startswith(".")
    payload = cookie.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()
