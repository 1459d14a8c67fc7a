"""devorg over https: a self-signed certificate made at start, trusted by path."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from cryptography import x509
from joserfc import jwt
from joserfc.jwk import KeySet

import devorg
from devorg import RunningServer, serve_in_thread
from tests.helpers.oauth import CALLBACK, exchange, get_code
from tests.helpers.org import LocalOrg
from tests.helpers.paths import REPO


@pytest.fixture(scope="module")
def tls_org() -> Iterator[RunningServer]:
    server = serve_in_thread(devorg.create_app(), tls=True)
    yield server
    server.shutdown()


def test_https_with_the_certificate_trusted(tls_org):
    assert tls_org.url.startswith("https://127.0.0.1:")
    response = requests.get(f"{tls_org.url}/services/data/", verify=str(tls_org.certificate),
                            timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()[-1]["url"].startswith("/services/data/v")


def test_localhost_is_in_the_certificate_too(tls_org):
    response = requests.get(f"https://localhost:{tls_org.port}/services/data/",
                            verify=str(tls_org.certificate), timeout=10)
    assert response.status_code == 200


def test_https_without_trusting_the_certificate_fails(tls_org):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_org.url}/services/data/", timeout=10)


def test_certificate_names_and_key_permissions(tls_org):
    certificate = x509.load_pem_x509_certificate(tls_org.certificate.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    key = tls_org.certificate.parent / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_identity_urls_say_https(tls_org):
    # The org builds its URLs from the request: over https, the token's id and instance_url are
    # https too.
    org = devorg.org_of(tls_org.server.app)
    user = org.data.user_by_username("admin@devorg.local")
    record = org.tokens.issue("x", user["Id"], "api", with_refresh=False)
    response = requests.get(f"{tls_org.url}/id/{org.org_id}/{user['Id']}",
                            headers={"Authorization": f"Bearer {record.access_token}"},
                            verify=str(tls_org.certificate), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["id"].startswith(f"{tls_org.url}/id/")


def test_python_m_devorg_tls_prints_the_certificate_to_trust(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "devorg", "--tls", "--port", "0", "--tls-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = process.stdout.readline().split()[-1]
        certificate = process.stdout.readline().split()[-1]
        assert base.startswith("https://127.0.0.1:")
        assert certificate == str(tmp_path / "certificate.pem")
        response = requests.get(f"{base}/services/data/", verify=certificate, timeout=10)
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_discovery_over_https_names_https_endpoints(tls_org):
    document = requests.get(f"{tls_org.url}/.well-known/openid-configuration",
                            verify=str(tls_org.certificate), timeout=10).json()
    assert document["issuer"] == tls_org.url
    assert document["jwks_uri"] == f"{tls_org.url}/id/keys"


def test_openid_code_flow_over_https(tls_org, monkeypatch):
    # requests trusts the org's certificate through the environment, as a user would set it.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_org.certificate))
    org = LocalOrg(tls_org.url, devorg.org_of(tls_org.server.app), tls_org)
    client = org.register(CALLBACK, scopes="api refresh_token openid")
    code, verifier = get_code(org.url, client, scope="api refresh_token openid", nonce="tls")
    response = exchange(org.url, client, code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["instance_url"] == tls_org.url
    assert tokens["id"].startswith(f"{tls_org.url}/id/")
    keys = KeySet.import_key_set(requests.get(f"{tls_org.url}/id/keys", timeout=10).json())
    claims = jwt.decode(tokens["id_token"], keys, algorithms=["RS256"]).claims
    assert (claims["iss"], claims["sub"], claims["nonce"]) == (tls_org.url, tokens["id"], "tls")
