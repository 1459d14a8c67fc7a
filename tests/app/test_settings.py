"""Settings: the layers (config/ < .env < environment < create_app's dict) and every refusal,
each naming its variable; then the settings seen through the running app over HTTP."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import lxml.html
import pytest
import requests
from cryptography.fernet import Fernet

import sfconnect
from sfconnect.settings import DEFAULT_WSDL, ConfigError, derive_token_key, load_settings

BASE = {
    "ENV": "testing",
    "SF_CLIENT_ID": "3MVG9example",
    "SF_CLIENT_SECRET": "s3cr3t",
}


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No SF_* variables from the machine, and a working directory without a .env."""
    for name in sfconnect.settings.SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(**overrides):
    return load_settings({**BASE, **overrides}, environ={}, dotenv_path="/nonexistent/.env")


def refused(variable: str, **overrides) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(**overrides)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    return caught.value


def test_defaults():
    settings = load()
    assert settings.login_url == "https://login.salesforce.com"
    assert settings.redirect_uri == "http://localhost:5000/oauth/callback"
    assert settings.scopes == "api refresh_token"
    assert settings.api_version is None
    assert settings.partner_wsdl == str(DEFAULT_WSDL)
    assert settings.session_type == "filesystem"
    assert [(h.key, h.label, h.url) for h in settings.login_hosts] == [
        ("production", "Production", "https://login.salesforce.com"),
        ("sandbox", "Sandbox", "https://test.salesforce.com"),
    ]
    assert settings.secret_key_generated
    assert settings.token_key == derive_token_key(settings.secret_key)
    assert not settings.secure_cookies


def test_production_refuses_to_start_without_secret_key():
    error = refused("SECRET_KEY", ENV="production")
    assert "ENV=production" in str(error)
    refused("SECRET_KEY", ENV="production", SECRET_KEY="short")
    assert load(ENV="production", SECRET_KEY="k" * 40).secret_key == "k" * 40


def test_create_app_refuses_in_production_without_secret_key(clean_env, monkeypatch):
    monkeypatch.setenv("ENV", "production")
    with pytest.raises(ConfigError, match="^SECRET_KEY: "):
        sfconnect.create_app({"SF_CLIENT_ID": "a", "SF_CLIENT_SECRET": "b"})


def test_required_client_credentials():
    refused("SF_CLIENT_ID", SF_CLIENT_ID="")
    refused("SF_CLIENT_SECRET", SF_CLIENT_SECRET="")


@pytest.mark.parametrize("url", [
    "http://login.salesforce.com",  # plain http off loopback
    "ftp://login.salesforce.com",
    "login.salesforce.com",
    "https://login.salesforce.com/services/oauth2",  # not a bare origin
    "https://user:pw@login.salesforce.com",
    "https://login.salesforce.com?x=1",
    "https://login.salesforce.com:99999",
    "",
    # Hosts the gate's grammar refuses: the token must never go to a host read two ways.
    "https://attacker.example\\.salesforce.com",
    "https://attacker.example%2F.salesforce.com",
    "https://login.salesforce.com.",
    "https://b\u00fccher.salesforce.com",
    "https://login salesforce.com",
])
def test_login_url_refused(url):
    refused("SF_LOGIN_URL", SF_LOGIN_URL=url)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://login.salesforce.com/", "https://login.salesforce.com"),
    ("https://Acme.My.Salesforce.com", "https://acme.my.salesforce.com"),
    ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
    ("http://localhost:5001/", "http://localhost:5001"),
    ("http://[::1]:5001", "http://[::1]:5001"),
])
def test_login_url_accepted(url, expected):
    assert load(SF_LOGIN_URL=url).login_url == expected


def test_login_host_choices():
    my_domain = load(SF_LOGIN_URL="https://acme.my.salesforce.com")
    assert [(h.key, h.label) for h in my_domain.login_hosts] == [
        ("host1", "My Domain (acme.my.salesforce.com)")]
    listed = load(SF_LOGIN_HOSTS="Sandbox=https://test.salesforce.com, "
                                 "Acme=https://acme.my.salesforce.com")
    assert [(h.key, h.label, h.url) for h in listed.login_hosts] == [
        ("production", "Production", "https://login.salesforce.com"),
        ("sandbox", "Sandbox", "https://test.salesforce.com"),
        ("host3", "Acme", "https://acme.my.salesforce.com"),
    ]
    assert listed.login_host("host3").url == "https://acme.my.salesforce.com"
    assert listed.login_host(None).key == "production"
    assert listed.login_host("nope") is None
    refused("SF_LOGIN_HOSTS", SF_LOGIN_HOSTS="Evil=http://evil.example.com")


def test_redirect_uri_rules():
    refused("SF_REDIRECT_URI", SF_REDIRECT_URI="http://app.example.com/oauth/callback")
    refused("SF_REDIRECT_URI", SF_REDIRECT_URI="https://app.example.com/elsewhere")
    refused("SF_REDIRECT_URI", SF_REDIRECT_URI="/oauth/callback")
    secure = load(SF_REDIRECT_URI="https://app.example.com/oauth/callback")
    assert secure.secure_cookies


def test_scopes_need_api():
    refused("SF_SCOPES", SF_SCOPES="refresh_token")
    refused("SF_SCOPES", SF_SCOPES="api <script>")
    assert load(SF_SCOPES="api,refresh_token, id").scopes == "api refresh_token id"
    assert load(SF_SCOPES="full").scopes == "full"


def test_api_version_and_wsdl(tmp_path):
    assert load(SF_API_VERSION="62").api_version == "62.0"
    assert load(SF_API_VERSION="62.0").api_version == "62.0"
    refused("SF_API_VERSION", SF_API_VERSION="v62")
    refused("SF_PARTNER_WSDL", SF_PARTNER_WSDL=str(tmp_path / "missing.wsdl"))


def test_session_store_settings():
    refused("SESSION_TYPE", SESSION_TYPE="memcached")
    refused("REDIS_URL", SESSION_TYPE="redis")
    refused("REDIS_URL", SESSION_TYPE="redis", REDIS_URL="http://127.0.0.1:6379")
    assert load(SESSION_TYPE="redis", REDIS_URL="redis://127.0.0.1:6379/0").session_type == "redis"
    refused("SESSION_LIFETIME", SESSION_LIFETIME="forever")


def test_token_key():
    refused("SF_TOKEN_KEY", SF_TOKEN_KEY="not-a-fernet-key")
    key = Fernet.generate_key().decode()
    assert load(SF_TOKEN_KEY=key).token_key == key.encode()
    # Derived keys follow SECRET_KEY, so every worker of one deployment reads the same records.
    assert load(SECRET_KEY="a" * 40).token_key == load(SECRET_KEY="a" * 40).token_key
    assert load(SECRET_KEY="a" * 40).token_key != load(SECRET_KEY="b" * 40).token_key


def test_trusted_hosts():
    assert load(SF_TRUSTED_HOSTS="api.example.com, .corp.example").trusted_hosts == (
        "api.example.com", ".corp.example")
    # A port may be named; without one an entry means the https port, 443.
    assert load(SF_TRUSTED_HOSTS="gw.example.com:8443 .corp.example:9443").trusted_hosts == (
        "gw.example.com:8443", ".corp.example:9443")
    for bad in ("https://api.example.com/", "api.example.com:0", "api.example.com:70000",
                "api.example.com:", "user@api.example.com", "api.example.com\\x",
                "api.example.com/x", "api%2Eexample.com"):
        refused("SF_TRUSTED_HOSTS", SF_TRUSTED_HOSTS=bad)


def test_unknown_env_is_refused():
    refused("ENV", ENV="staging")


def test_layers_dotenv_then_environment_then_overrides(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("SF_CLIENT_ID=from-dotenv\nSF_CLIENT_SECRET=dotenv-secret\n"
                      "SF_SCOPES=api\nSF_API_VERSION=60.0\n")
    environ = {"SF_SCOPES": "api refresh_token id", "SF_API_VERSION": "61.0",
               "UNRELATED": "ignored"}
    settings = load_settings({"ENV": "testing", "SF_API_VERSION": "62.0"}, environ=environ,
                             dotenv_path=dotenv)
    assert settings.client_id == "from-dotenv"
    assert settings.client_secret == "dotenv-secret"
    assert settings.scopes == "api refresh_token id"  # environment beats .env
    assert settings.api_version == "62.0"  # create_app's dict beats both


def test_dotenv_in_working_directory_is_read_by_create_app(clean_env, monkeypatch):
    (clean_env / ".env").write_text("SF_CLIENT_ID=dotenv-client\nSF_CLIENT_SECRET=x\n"
                                    "SESSION_FILE_DIR=sessions-here\n")
    app = sfconnect.create_app({"ENV": "testing"})
    settings = app.extensions["sfconnect.settings"]
    assert settings.client_id == "dotenv-client"
    assert settings.session_file_dir == str(clean_env / "sessions-here")


def test_environment_defaults_come_from_config_dir():
    # config/production.py is what makes a SECRET_KEY mandatory; development does not.
    assert load(ENV="development").secret_key_generated
    refused("SECRET_KEY", ENV="production")


def test_secret_never_in_repr():
    settings = load(SF_CLIENT_SECRET="very-secret-value")
    assert "very-secret-value" not in repr(settings)


# --------------------------------------------------------------- over HTTP, through the app

def test_production_and_sandbox_choice_on_the_page(start_app, local_org):
    running = start_app(local_org, SF_LOGIN_URL="https://login.salesforce.com",
                        SF_SCOPES="api refresh_token id")
    page = lxml.html.fromstring(requests.get(running.url + "/").text)
    assert page.xpath("//input[@name='login']/@value") == ["production", "sandbox"]
    for key, host in (("production", "login.salesforce.com"),
                      ("sandbox", "test.salesforce.com")):
        response = requests.get(f"{running.url}/login", params={"login": key},
                                allow_redirects=False)
        assert response.status_code == 302
        location = urlsplit(response.headers["Location"])
        assert (location.scheme, location.netloc, location.path) == (
            "https", host, "/services/oauth2/authorize")
        assert parse_qs(location.query)["scope"] == ["api refresh_token id"]


def test_single_login_host_shows_no_choice(start_app, local_org):
    running = start_app(local_org)
    page = lxml.html.fromstring(requests.get(running.url + "/").text)
    assert not page.xpath("//input[@name='login']")
    assert page.xpath("//button[@id='connect']")
