"""The starter: a zip of a minimal, runnable web server flow client for this app's configuration.

The files are in `sfconnect/learn/starter/`: `app.py` (Flask, Authlib and zeep: state, PKCE, the
token response's signature, the refresh on INVALID_SESSION_ID), `requirements.txt` and a README.
The builder writes this app's login URL, client id, redirect URI, scopes and API version into
them as the defaults of `app.py`'s settings and into the README's table, and adds the partner
WSDL the app uses. The client secret is in no file: the starter reads SF_CLIENT_SECRET.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

from sfconnect.settings import Settings

FILES = Path(__file__).resolve().with_name("starter")
SHIPPED_WSDL = Path(__file__).resolve().parents[1] / "salesforce" / "wsdl" / "partner.wsdl"
FOLDER = "sfconnect-starter"
# `NAME = os.environ.get("SF_...", "<default>")` in app.py: the default is this app's value.
_SETTING_RE = re.compile(r'^(\w+ = os\.environ\.get\("(SF_\w+)", )(".*")(\))$', re.MULTILINE)


def configuration(settings: Settings, api_version: str) -> dict[str, str]:
    """The values the starter is written for, by environment variable name. No secret."""
    return {"SF_LOGIN_URL": settings.login_url, "SF_CLIENT_ID": settings.client_id,
            "SF_REDIRECT_URI": settings.redirect_uri, "SF_SCOPES": settings.scopes,
            "SF_API_VERSION": api_version}


def app_source(values: dict[str, str]) -> str:
    """starter/app.py with `values` as its settings' defaults."""
    source = (FILES / "app.py").read_text(encoding="utf-8")
    written: set[str] = set()

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in values:
            return match.group(0)
        written.add(name)
        return f"{match.group(1)}{json.dumps(values[name], ensure_ascii=False)}{match.group(4)}"

    source = _SETTING_RE.sub(fill, source)
    missing = set(values) - written
    if missing:  # a setting renamed in app.py but not here: better loud than a wrong default
        raise ValueError(f"starter/app.py has no setting for {sorted(missing)}")
    return source


def readme(values: dict[str, str]) -> str:
    """starter/README.md with the configuration's table filled."""
    text = (FILES / "README.md").read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"__{name}__", value.replace("`", "'").replace("|", "\\|"))
    return text


def wsdl_path(settings: Settings) -> Path:
    """The partner WSDL the app loads (SF_PARTNER_WSDL), when it is a file; else the shipped
    one."""
    configured = Path(str(settings.partner_wsdl))
    return configured if configured.is_file() else SHIPPED_WSDL


def build(settings: Settings, api_version: str) -> bytes:
    """The starter as a zip: sfconnect-starter/{app.py, requirements.txt, README.md,
    partner.wsdl}."""
    values = configuration(settings, api_version)
    files = {
        "app.py": app_source(values),
        "requirements.txt": (FILES / "requirements.txt").read_text(encoding="utf-8"),
        "README.md": readme(values),
        "partner.wsdl": wsdl_path(settings).read_text(encoding="utf-8"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(f"{FOLDER}/{name}", date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
    return buffer.getvalue()
