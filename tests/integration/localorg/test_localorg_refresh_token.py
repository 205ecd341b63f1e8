"""OAuth refresh tokens, driven as Singer's tap-salesforce and Airbyte's source-salesforce do: a form-encoded
POST of grant_type=refresh_token to /services/oauth2/token, then REST calls with the access token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from localorg.testing import RunningOrg, running_org

pytestmark = pytest.mark.integration

EXPIRED = {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def _refresh(org: RunningOrg, refresh_token: str, **overrides: str) -> requests.Response:
    app = org.definition.connected_apps[0]
    form = {
        "grant_type": "refresh_token",
        "client_id": app.consumer_key,
        "client_secret": app.consumer_secret,
        "refresh_token": refresh_token,
        **overrides,
    }
    return requests.post(
        f"{org.base_url}/services/oauth2/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        verify=str(org.ca_file),
    )


def _whoami(org: RunningOrg, grant: dict[str, str]) -> requests.Response:
    """The REST query a client runs with the answer: instance_url + access_token."""
    user_id = grant["id"].rsplit("/", 1)[1]
    return requests.get(
        f"{grant['instance_url']}/services/data/v59.0/query",
        params={"q": f"SELECT Username FROM User WHERE Id = '{user_id}'"},
        headers={"Authorization": f"Bearer {grant['access_token']}"},
        verify=str(org.ca_file),
    )


def _revoke(org: RunningOrg, token: str) -> requests.Response:
    return requests.post(
        f"{org.base_url}/services/oauth2/revoke", data={"token": token}, verify=str(org.ca_file)
    )


@pytest.mark.parametrize("user", ["integration", "admin"])
def test_refresh_token_grant_answers_like_salesforce(local_org: RunningOrg, user: str) -> None:
    response = _refresh(local_org, local_org.refresh_token(user))
    assert response.status_code == 200, response.text
    grant = response.json()
    assert set(grant) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert grant["token_type"] == "Bearer"
    assert grant["instance_url"] == local_org.base_url
    assert "refresh_token" not in grant  # the client keeps the one it has
    secret = local_org.definition.connected_apps[0].consumer_secret.encode()
    expected = hmac.new(secret, (grant["id"] + grant["issued_at"]).encode(), hashlib.sha256).digest()
    assert base64.b64decode(grant["signature"]) == expected
    query = _whoami(local_org, grant)
    assert query.status_code == 200, query.text
    assert query.json()["records"][0]["Username"] == local_org.credentials[user].username


def test_each_user_has_own_stable_refresh_token(local_org: RunningOrg) -> None:
    tokens = {user: local_org.refresh_token(user) for user in ("integration", "admin", "sales")}
    assert len(set(tokens.values())) == 3
    assert local_org.refresh_token("integration") == tokens["integration"]


@pytest.mark.parametrize(
    ("token", "overrides", "error"),
    [
        ("5Aep861notatoken", {}, EXPIRED),
        ("", {}, EXPIRED),
        (
            "valid",
            {"client_id": "someone-else"},
            {"error": "invalid_client_id", "error_description": "client identifier invalid"},
        ),
        (
            "valid",
            {"client_secret": "wrong"},
            {"error": "invalid_client", "error_description": "invalid client credentials"},
        ),
    ],
)
def test_refresh_errors(
    local_org: RunningOrg, token: str, overrides: dict[str, str], error: dict[str, str]
) -> None:
    if token == "valid":
        token = local_org.refresh_token()
    response = _refresh(local_org, token, **overrides)
    assert response.status_code == 400
    assert response.json() == error


def test_revoked_refresh_token_is_invalid_grant_and_ends_its_sessions(local_org: RunningOrg) -> None:
    token = local_org.refresh_token("sales")
    grant = _refresh(local_org, token).json()
    assert _whoami(local_org, grant).status_code == 200
    revoked = _revoke(local_org, token)
    assert (revoked.status_code, revoked.content) == (200, b"")
    refused = _refresh(local_org, token)
    assert refused.status_code == 400
    assert refused.json() == EXPIRED
    stale = _whoami(local_org, grant)  # access tokens obtained with it are revoked with it
    assert stale.status_code == 401
    assert stale.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    again = _revoke(local_org, token)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_token"
    # The user authorises the app again: a new refresh token, which works.
    renewed = local_org.refresh_token("sales")
    assert renewed != token
    assert _refresh(local_org, renewed).status_code == 200


def test_revoking_an_access_token_keeps_the_refresh_token(local_org: RunningOrg) -> None:
    token = local_org.refresh_token("integration")
    grant = _refresh(local_org, token).json()
    # GET with the token in the query string is the revoke endpoint's other form.
    revoked = requests.get(
        f"{local_org.base_url}/services/oauth2/revoke",
        params={"token": grant["access_token"]},
        verify=str(local_org.ca_file),
    )
    assert revoked.status_code == 200
    assert _whoami(local_org, grant).status_code == 401
    assert _whoami(local_org, _refresh(local_org, token).json()).status_code == 200


def test_refresh_tokens_and_revocations_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "org"
    # Printed by `python -m localorg connection` before any server ran on the directory.
    printed = subprocess.run(
        [sys.executable, "-m", "localorg", "connection", "--data", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3] / "include",
    ).stdout
    line = next(row for row in printed.splitlines() if row.startswith("refresh tokens (sfsync"))
    tokens = dict(pair.split(" ") for pair in line.split(": ", 1)[1].split(", "))
    kept, revoked = tokens["integration@localorg.test"], tokens["admin@localorg.test"]
    with running_org(data_dir) as org:
        assert org.refresh_token("integration") == kept
        assert _refresh(org, kept).status_code == 200
        assert _revoke(org, revoked).status_code == 200
    with running_org(data_dir) as org:
        grant = _refresh(org, kept)
        assert grant.status_code == 200
        assert _whoami(org, grant.json()).status_code == 200
        refused = _refresh(org, revoked)
        assert (refused.status_code, refused.json()) == (400, EXPIRED)
        assert org.refresh_token("admin") != revoked
