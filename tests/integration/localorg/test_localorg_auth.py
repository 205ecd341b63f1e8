"""Login flows, session expiry and the Airflow hook."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import requests
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook
from simple_salesforce import Salesforce, SalesforceAuthenticationFailed

from localorg.testing import RunningOrg, running_org

pytestmark = pytest.mark.integration


def test_soap_login_through_domain_trick(local_org: RunningOrg) -> None:
    sf = Salesforce(**local_org.salesforce_kwargs("integration"))
    assert sf.sf_instance == f"127.0.0.1:{local_org.port}"
    assert sf.query("SELECT Id FROM User WHERE Username = 'integration@localorg.test'")["totalSize"] == 1


def test_soap_login_response_shape(local_org: RunningOrg) -> None:
    user = local_org.credentials["admin"]
    envelope = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:n1="urn:partner.soap.sforce.com">'
        f"<env:Body><n1:login><n1:username>{user.username}</n1:username><n1:password>{user.password}"
        f"{user.security_token}</n1:password></n1:login></env:Body></env:Envelope>"
    )
    # No SOAPAction header: routed on the service path in the query string.
    response = requests.post(
        f"{local_org.base_url}/?.salesforce.com/services/Soap/u/59.0",
        data=envelope,
        headers={"content-type": "text/xml"},
    )
    assert response.status_code == 200
    assert "<sessionId>" in response.text
    assert f"<serverUrl>https://127.0.0.1:{local_org.port}/services/Soap/u/59.0/00D" in response.text


def test_wrong_password_is_soap_login_fault(local_org: RunningOrg) -> None:
    kwargs = local_org.salesforce_kwargs("integration") | {"password": "wrong"}
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        Salesforce(**kwargs)
    assert caught.value.code == "INVALID_LOGIN"
    assert "Invalid username, password, security token; or user locked out." in str(caught.value)


def test_password_without_token_is_rejected(local_org: RunningOrg) -> None:
    kwargs = local_org.salesforce_kwargs("integration") | {"security_token": ""}
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(**kwargs)


def test_oauth_password_flow(local_org: RunningOrg) -> None:
    user = local_org.credentials["integration"]
    app = local_org.definition.connected_apps[0]
    sf = Salesforce(
        username=user.username,
        password=user.password + user.security_token,
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        domain=f"127.0.0.1:{local_org.port}/?",
    )
    assert sf.query("SELECT COUNT() FROM Lead")["done"] is True


def test_oauth_client_credentials_runs_as_integration_user(local_org: RunningOrg) -> None:
    app = local_org.definition.connected_apps[0]
    sf = Salesforce(
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
        domain=f"127.0.0.1:{local_org.port}/?",
    )
    created = sf.Account.create({"Name": "client credentials"})
    owner = sf.Account.get(created["id"])["OwnerId"]
    assert sf.User.get(owner)["Username"] == "integration@localorg.test"


@pytest.mark.parametrize(
    ("form", "basic", "error"),
    [
        (
            {"grant_type": "password", "username": "integration@localorg.test", "password": "nope"},
            True,
            {"error": "invalid_grant", "error_description": "authentication failure"},
        ),
        (
            {"grant_type": "client_credentials"},
            False,
            {"error": "invalid_client_id", "error_description": "client identifier invalid"},
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": "localorg-consumer-key",
                "client_secret": "bad",
            },
            False,
            {"error": "invalid_client", "error_description": "invalid client credentials"},
        ),
    ],
)
def test_oauth_errors(
    local_org: RunningOrg, form: dict[str, str], basic: bool, error: dict[str, str]
) -> None:
    app = local_org.definition.connected_apps[0]
    headers = {}
    if basic:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{app.consumer_key}:{app.consumer_secret}".encode()).decode()
        )
    response = requests.post(
        f"{local_org.base_url}/?.salesforce.com/services/oauth2/token", data=form, headers=headers
    )
    assert response.status_code == 400
    assert response.json() == error


def test_unknown_session_gets_invalid_session_list(local_org: RunningOrg) -> None:
    response = requests.get(
        f"{local_org.base_url}/services/data/v59.0/sobjects", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_expired_session_logs_in_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_org(tmp_path / "short", session_timeout=1) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        sf = Salesforce(**org.salesforce_kwargs("integration"))
        first_session = sf.session_id
        assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
        time.sleep(1.5)
        stale = requests.get(
            f"{org.base_url}/services/data/v59.0/limits/",
            headers={"Authorization": f"Bearer {first_session}"},
        )
        assert stale.status_code == 401
        assert stale.json()[0]["errorCode"] == "INVALID_SESSION_ID"
        # simple-salesforce sees the 401 list and logs in again transparently.
        assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
        assert sf.session_id != first_session


@pytest.mark.parametrize("form", ["json", "uri"])
def test_airflow_hook_from_connection_env(
    local_org: RunningOrg, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    value = local_org.airflow_conn_json() if form == "json" else local_org.airflow_conn_uri()
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", value)
    hook = SalesforceHook(salesforce_conn_id="salesforce_default")
    status, message = hook.test_connection()
    assert status is True, message
    assert "Name" in hook.get_available_fields("Account")
    assert json.loads(local_org.airflow_conn_json())["extra"]["version"] == "59.0"
