"""The app's settings: config/ defaults, then `.env`, then the environment, then create_app's dict.

Every setting is named by its environment variable. `load_settings` reads and checks them all at
once and raises `ConfigError` naming the variable at fault: a bad start stops with one clear line.
"""
from __future__ import annotations

import base64
import os
import re
import runpy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from dotenv import dotenv_values

from sfconnect.auth.trust import is_loopback, listed_host, target_of
from sfconnect.errors import UntrustedHost

REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"
DEFAULT_WSDL = Path(__file__).resolve().parent / "salesforce" / "wsdl" / "partner.wsdl"
ENVIRONMENTS = ("development", "production", "testing")

# Every variable the app reads; anything else in the environment is ignored.
SETTING_NAMES = (
    "ENV", "SECRET_KEY", "SF_LOGIN_URL", "SF_LOGIN_HOSTS", "SF_CLIENT_ID", "SF_CLIENT_SECRET",
    "SF_REDIRECT_URI", "SF_SCOPES", "SF_API_VERSION", "SF_PARTNER_WSDL", "SF_TRUSTED_HOSTS",
    "SF_TOKEN_KEY", "SESSION_TYPE", "SESSION_FILE_DIR", "REDIS_URL", "SESSION_LIFETIME",
    "SF_HTTP_TIMEOUT", "SF_JWT_KEY_FILE", "SF_USERNAME", "SF_LEARNING", "TRACE_BUDGET_KB",
)
# The well-known login hosts, and what the Connect button calls them.
PRODUCTION_HOST = "login.salesforce.com"
SANDBOX_HOST = "test.salesforce.com"
_HOST_LABELS = {PRODUCTION_HOST: ("production", "Production"),
                SANDBOX_HOST: ("sandbox", "Sandbox")}
_SCOPE = re.compile(r"^[A-Za-z0-9_:./-]+$")
_API_VERSION = re.compile(r"^(\d{2,3})(\.0)?$")


class ConfigError(Exception):
    """A setting is missing, malformed or contradicts another; `variable` names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class LoginHost:
    """One login host the Connect button offers: `key` goes in the form, `url` is its origin."""

    key: str
    label: str
    url: str


@dataclass(frozen=True)
class Settings:
    """Checked settings of one app instance."""

    env: str
    secret_key: str
    login_url: str
    login_hosts: tuple[LoginHost, ...]
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: str
    api_version: str | None
    partner_wsdl: str
    trusted_hosts: tuple[str, ...]
    token_key: bytes = field(repr=False)
    session_type: str
    session_file_dir: str | None  # None: the app's instance folder (create_app fills it in)
    redis_url: str | None
    session_lifetime: int
    http_timeout: float
    jwt_key_file: str | None  # `flask sf token --flow jwt`: the signing key (PEM)
    username: str | None  # ... and the user it signs in as
    learning: bool  # the learning features (sfconnect.learn) are wired in
    trace_budget_kb: int  # KB of the store a browser session's flow trace may take; 0: no limit
    secret_key_generated: bool

    @property
    def http_timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds for every call to Salesforce."""
        return (min(5.0, self.http_timeout), self.http_timeout)

    @property
    def refresh_lock_s(self) -> float:
        """How long one refresh may hold the single-flight lock: its one HTTP call, and a margin."""
        connect, read = self.http_timeouts
        return connect + read + 10.0

    @property
    def secure_cookies(self) -> bool:
        """The browser reaches the app over https (the redirect URI says so): cookies are Secure."""
        return self.redirect_uri.startswith("https://")

    def login_host(self, key: str | None) -> LoginHost | None:
        """The login host offered under `key`, or the default one when `key` is empty."""
        if not key:
            return self.login_hosts[0]
        return next((host for host in self.login_hosts if host.key == key), None)


def raw_settings(overrides: Mapping[str, object] | None = None,
                 environ: Mapping[str, str] | None = None,
                 dotenv_path: str | os.PathLike | None = None) -> dict[str, str]:
    """Merge the layers, later ones winning: config/default.py, config/<ENV>.py, .env, the
    environment, then `overrides`."""
    environ = os.environ if environ is None else environ
    overrides = {k: str(v) for k, v in (overrides or {}).items() if v is not None}
    path = Path(dotenv_path) if dotenv_path is not None else Path.cwd() / ".env"
    dotenv = ({k: v for k, v in dotenv_values(path).items() if v is not None}
              if path.is_file() else {})

    env = (overrides.get("ENV") or environ.get("ENV") or dotenv.get("ENV") or "development").lower()
    if env not in ENVIRONMENTS:
        raise ConfigError("ENV", f"must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    merged: dict[str, str] = {}
    layers = (_config_module("default"), _config_module(env), dotenv, environ, overrides)
    for index, layer in enumerate(layers):
        for name, value in layer.items():
            # REQUIRE_SECRET_KEY is a property of the environment's defaults, not a setting.
            if name in SETTING_NAMES or (name == "REQUIRE_SECRET_KEY" and index < 2):
                merged[name] = str(value).strip()
    merged["ENV"] = env
    return merged


def load_settings(overrides: Mapping[str, object] | None = None,
                  environ: Mapping[str, str] | None = None,
                  dotenv_path: str | os.PathLike | None = None) -> Settings:
    """Read and check every setting; raise ConfigError naming the first variable at fault."""
    raw = raw_settings(overrides, environ, dotenv_path)
    env = raw["ENV"]

    secret_key = raw["SECRET_KEY"]
    generated = False
    if not secret_key:
        if raw["REQUIRE_SECRET_KEY"] == "True":
            raise ConfigError("SECRET_KEY", f"is required when ENV={env}; set it to a long "
                              "random string (python -c 'import secrets; "
                              "print(secrets.token_hex(32))')")
        secret_key, generated = secrets.token_hex(32), True
    elif env == "production" and len(secret_key) < 32:
        raise ConfigError("SECRET_KEY", "must be at least 32 characters long in production")

    login_url = _origin("SF_LOGIN_URL", raw["SF_LOGIN_URL"])
    client_id = raw["SF_CLIENT_ID"]
    if not client_id:
        raise ConfigError("SF_CLIENT_ID", "is required: the consumer key of your External "
                          "Client App (or run app.py without it to use the local org)")
    client_secret = raw["SF_CLIENT_SECRET"]
    if not client_secret:
        raise ConfigError("SF_CLIENT_SECRET", "is required: the consumer secret of your "
                          "External Client App")

    session_type = raw["SESSION_TYPE"].lower()
    if session_type not in ("filesystem", "redis"):
        raise ConfigError("SESSION_TYPE", f"must be 'filesystem' or 'redis', not {session_type!r}")
    redis_url = raw["REDIS_URL"] or None
    if session_type == "redis":
        if not redis_url:
            raise ConfigError("REDIS_URL", "is required when SESSION_TYPE=redis")
        if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("REDIS_URL", "must start with redis://, rediss:// or unix://")

    token_key = raw["SF_TOKEN_KEY"]
    if token_key:
        try:
            Fernet(token_key.encode())
        except ValueError:
            raise ConfigError("SF_TOKEN_KEY", "must be a Fernet key: 32 url-safe base64-encoded "
                              "bytes (Fernet.generate_key())") from None
        key_bytes = token_key.encode()
    else:
        key_bytes = derive_token_key(secret_key)

    lifetime = raw["SESSION_LIFETIME"]
    if not lifetime.isdigit() or int(lifetime) <= 0:
        raise ConfigError("SESSION_LIFETIME", "must be a positive number of seconds")

    http_timeout = _http_timeout(raw["SF_HTTP_TIMEOUT"])

    return Settings(
        env=env,
        secret_key=secret_key,
        secret_key_generated=generated,
        login_url=login_url,
        login_hosts=_login_hosts(login_url, raw["SF_LOGIN_HOSTS"]),
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=_redirect_uri(raw["SF_REDIRECT_URI"]),
        scopes=_scopes(raw["SF_SCOPES"]),
        api_version=_api_version(raw["SF_API_VERSION"]),
        partner_wsdl=_partner_wsdl(raw["SF_PARTNER_WSDL"]),
        trusted_hosts=_trusted_hosts(raw["SF_TRUSTED_HOSTS"]),
        token_key=key_bytes,
        session_type=session_type,
        session_file_dir=(str(Path(raw["SESSION_FILE_DIR"]).resolve())
                          if raw["SESSION_FILE_DIR"] else None),
        redis_url=redis_url,
        session_lifetime=int(lifetime),
        http_timeout=http_timeout,
        jwt_key_file=raw["SF_JWT_KEY_FILE"] or None,
        username=raw["SF_USERNAME"] or None,
        learning=_switch("SF_LEARNING", raw["SF_LEARNING"]),
        trace_budget_kb=_trace_budget_kb(raw["TRACE_BUDGET_KB"]),
    )


def derive_token_key(secret_key: str) -> bytes:
    """A Fernet key for the token records, derived from SECRET_KEY with HKDF-SHA256."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"sfconnect token records v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def _config_module(name: str) -> dict[str, object]:
    path = CONFIG_DIR / f"{name}.py"
    if not path.is_file():
        return {}
    return {k: v for k, v in runpy.run_path(str(path)).items() if k.isupper()}


def _origin(variable: str, value: str) -> str:
    """A login host URL reduced to its origin; https unless the host is loopback."""
    if not value:
        raise ConfigError(variable, "is required")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(variable, f"must be an absolute https URL, not {value!r}")
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigError(variable, f"must use https (plain http only for loopback): {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise ConfigError(variable, f"must be a bare origin like https://login.salesforce.com, "
                          f"not {value!r}")
    try:
        port = parts.port
        target_of(value)  # the host as the sender reads it, by the gate's strict grammar
    except ValueError:
        raise ConfigError(variable, f"has a bad port: {value!r}") from None
    except UntrustedHost:
        raise ConfigError(variable, f"is not a well-formed origin: {value!r}") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _login_hosts(login_url: str, extra: str) -> tuple[LoginHost, ...]:
    """SF_LOGIN_URL first, then Sandbox/Production when it is one of them, then SF_LOGIN_HOSTS."""
    urls: list[tuple[str | None, str]] = [(None, login_url)]
    default_host = urlsplit(login_url).hostname
    if not extra.strip() and default_host in _HOST_LABELS:
        other = SANDBOX_HOST if default_host == PRODUCTION_HOST else PRODUCTION_HOST
        urls.append((None, f"https://{other}"))
    for item in (part.strip() for part in extra.split(",")):
        if not item:
            continue
        label, _, url = item.rpartition("=") if "=" in item else ("", "", item)
        urls.append((label.strip() or None, _origin("SF_LOGIN_HOSTS", url.strip())))

    hosts: list[LoginHost] = []
    for label, url in urls:
        if any(host.url == url for host in hosts):
            continue
        hostname = urlsplit(url).hostname or url
        key, default_label = _HOST_LABELS.get(hostname, (f"host{len(hosts) + 1}",
                                                         f"My Domain ({hostname})"))
        hosts.append(LoginHost(key=key, label=label or default_label, url=url))
    return tuple(hosts)


def _redirect_uri(value: str) -> str:
    variable = "SF_REDIRECT_URI"
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(variable, f"must be an absolute URL, not {value!r}")
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise ConfigError(variable, "must use https (plain http only for localhost/127.0.0.1)")
    if not parts.path.endswith("/oauth/callback") or parts.query or parts.fragment:
        raise ConfigError(variable, "must point at this app's /oauth/callback, with no query "
                          f"or fragment: {value!r}")
    return value


def _scopes(value: str) -> str:
    scopes = value.replace(",", " ").split()
    if not scopes or not all(_SCOPE.match(scope) for scope in scopes):
        raise ConfigError("SF_SCOPES", f"must be space-separated scope names, not {value!r}")
    if "api" not in scopes and "full" not in scopes:
        raise ConfigError("SF_SCOPES", "must include 'api' (or 'full'): the partner API "
                          "needs it")
    return " ".join(scopes)


def _api_version(value: str) -> str | None:
    if not value:
        return None
    match = _API_VERSION.match(value)
    if not match:
        raise ConfigError("SF_API_VERSION", f"must look like 66.0, not {value!r}")
    return f"{match.group(1)}.0"


def _partner_wsdl(value: str) -> str:
    path = Path(value) if value else DEFAULT_WSDL
    if not path.is_file():
        raise ConfigError("SF_PARTNER_WSDL", f"no such file: {str(path)!r}")
    return str(path.resolve())


def _http_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 300:
        raise ConfigError("SF_HTTP_TIMEOUT", f"must be a number of seconds between 0 and 300, "
                          f"not {value!r}")
    return seconds


def _trace_budget_kb(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > 1024 * 1024:
        raise ConfigError("TRACE_BUDGET_KB", f"must be a whole number of KB up to 1048576 (0: no "
                          f"budget), not {value!r}")
    return int(value)


def _switch(variable: str, value: str) -> bool:
    if value.lower() not in ("on", "off"):
        raise ConfigError(variable, f"must be on or off, not {value!r}")
    return value.lower() == "on"


def _trusted_hosts(value: str) -> tuple[str, ...]:
    hosts = []
    for host in value.replace(",", " ").split():
        host = host.lower()
        try:
            listed_host(host)  # the grammar the trust policy reads it with
        except ValueError:
            raise ConfigError("SF_TRUSTED_HOSTS", f"{host!r} is not a host name (use "
                              "example.com, or .example.com for every subdomain, either with "
                              ":port when it is not 443)") from None
        hosts.append(host)
    return tuple(hosts)
