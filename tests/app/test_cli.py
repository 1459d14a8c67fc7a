"""`flask sf token --flow ...` against the local org over HTTP: each flow prints the masked token
response, the identity and when to use it; each failure is one line and exit code 1."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

import sfconnect
from devorg.keys import key_and_certificate
from tests.helpers.paths import REPO


def _key_and_certificate() -> tuple[bytes, str]:
    return key_and_certificate("sfconnect tests", days=1)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A key whose certificate the org knows, and another one it does not."""
    directory = tmp_path_factory.mktemp("keys")
    good_pem, certificate = _key_and_certificate()
    other_pem, _ = _key_and_certificate()
    (directory / "good.pem").write_bytes(good_pem)
    (directory / "other.pem").write_bytes(other_pem)
    (directory / "garbage.pem").write_text("not a key\n")
    return directory, certificate


def cli_app(org, tmp_path, client_fields=None, **settings):
    client = org.register("http://localhost:5000/oauth/callback", **(client_fields or {}))
    values = {"ENV": "testing", "SECRET_KEY": secrets.token_hex(32), "SF_LOGIN_URL": org.url,
              "SF_CLIENT_ID": client.client_id, "SF_CLIENT_SECRET": client.client_secret,
              "SESSION_FILE_DIR": str(tmp_path / "sessions"), "SF_USERNAME": "admin@devorg.local"}
    values.update(settings)
    return sfconnect.create_app(values), client


def run(app, *args):
    return app.test_cli_runner().invoke(args=["sf", "token", *args])


def test_jwt_flow_prints_masked_token_identity_and_when(local_org, tmp_path, keys):
    directory, certificate = keys
    app, client = cli_app(local_org, tmp_path, {"certificate_pem": certificate},
                          SF_JWT_KEY_FILE=str(directory / "good.pem"))
    result = run(app, "--flow", "jwt")
    assert result.exit_code == 0, result.output
    assert '"access_token": "00D5g0…' in result.output
    assert "username: admin@devorg.local" in result.output
    assert "server to server with a certificate" in result.output
    assert client.client_secret not in result.output
    issued = [t for t in local_org.state.tokens._by_access if t[:6] + "…" + t[-4:] in result.output]
    assert len(issued) == 1  # the access token is there only masked
    assert issued[0] not in result.output


def test_jwt_with_a_key_the_org_does_not_know_or_no_key_fails_in_one_line(local_org, tmp_path,
                                                                         keys):
    directory, certificate = keys
    for key_file, expected in (("other.pem", "jwt flow refused: invalid_grant"),
                               ("garbage.pem", "is not an RSA private key in PEM"),
                               ("missing.pem", "cannot read SF_JWT_KEY_FILE")):
        app, _ = cli_app(local_org, tmp_path, {"certificate_pem": certificate},
                         SF_JWT_KEY_FILE=str(directory / key_file))
        result = run(app, "--flow", "jwt")
        assert result.exit_code == 1, result.output
        assert expected in result.output
        assert "Traceback" not in result.output
        assert result.output.strip().splitlines()[-1].startswith("Error: ")
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_password_flow_works_and_is_refused_when_blocked_or_wrong(local_org, tmp_path):
    app, _ = cli_app(local_org, tmp_path)
    ok = run(app, "--flow", "password", "--password", "Welcome1!")
    assert ok.exit_code == 0, ok.output
    assert "username: admin@devorg.local" in ok.output
    assert "discouraged" in ok.output and "Welcome1!" not in ok.output

    wrong = run(app, "--flow", "password", "--password", "nope")
    assert wrong.exit_code == 1
    assert "password flow refused: invalid_grant: authentication failure" in wrong.output
    assert "blocked" in wrong.output and "Traceback" not in wrong.output

    blocked_app, _ = cli_app(local_org, tmp_path, {"password_flow_enabled": False})
    blocked = run(blocked_app, "--flow", "password", "--password", "Welcome1!")
    assert blocked.exit_code == 1
    assert "authentication failure" in blocked.output and "blocked" in blocked.output


def test_client_credentials_and_refresh_flows(local_org, tmp_path):
    app, client = cli_app(local_org, tmp_path)
    result = run(app, "--flow", "client-credentials")
    assert result.exit_code == 0, result.output
    assert "username: integration@devorg.local" in result.output
    assert "integration" in result.output.splitlines()[-1]

    admin = local_org.state.data.user_by_username("admin@devorg.local")
    issued = local_org.state.tokens.issue(client.client_id, admin["Id"], "api refresh_token",
                                          with_refresh=True)
    refreshed = run(app, "--flow", "refresh", "--refresh-token", issued.refresh_token)
    assert refreshed.exit_code == 0, refreshed.output
    assert "username: admin@devorg.local" in refreshed.output
    assert issued.refresh_token not in refreshed.output
    assert "renewing a session" in refreshed.output

    local_org.state.tokens.revoke(issued.refresh_token)
    dead = run(app, "--flow", "refresh", "--refresh-token", issued.refresh_token)
    assert dead.exit_code == 1
    assert "refresh flow refused: invalid_grant" in dead.output
    assert issued.refresh_token not in dead.output


def test_flask_cli_finds_the_group_and_starts_the_local_org_without_sf_client_id(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SF_", "FLASK_"))}
    env.update(ENV="testing", SESSION_FILE_DIR=str(tmp_path / "sessions"))
    flask = [sys.executable, "-m", "flask"]
    by_app = subprocess.run([*flask, "--app", "app", "sf", "token", "--flow", "jwt"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120)
    assert by_app.returncode == 0, by_app.stderr
    assert "username: admin@devorg.local" in by_app.stdout
    by_app = subprocess.run([*flask, "--app", "app", "sf", "token", "--flow",
                             "client-credentials"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    assert by_app.returncode == 0, by_app.stderr
    assert "username: integration@devorg.local" in by_app.stdout
    # The package itself never reaches for the local org: unconfigured, it names what is missing.
    by_package = subprocess.run([*flask, "--app", "sfconnect", "sf", "token", "--flow", "jwt"],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert by_package.returncode != 0
    assert "SF_CLIENT_ID" in by_package.stderr + by_package.stdout
