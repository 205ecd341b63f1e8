"""Login (SOAP and OAuth 2.0 token endpoint) and sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html import escape
from typing import Any

from .database import User
from .store import Org

INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


@dataclass
class _Session:
    user: User
    last_used: float


class Sessions:
    """Session ids; like Salesforce's timeout, a session expires after a period without activity."""

    def __init__(self, org_id: str, timeout_seconds: float) -> None:
        self.org_id = org_id
        self.timeout = timeout_seconds
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> str:
        # Real session ids are "<15-char org id>!<opaque>"; some tools split on the "!".
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._sessions[token] = _Session(user, time.monotonic())
        return token

    def expire(self, token: str) -> None:
        """End a session now, as Salesforce does when it times out or is revoked."""
        with self._lock:
            self._sessions.pop(token, None)

    def user(self, token: str) -> User | None:
        """The session's user, or None when the session is unknown or expired."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.last_used > self.timeout:
                del self._sessions[token]
                return None
            session.last_used = now
            return session.user


def _check_password(org: Org, username: str, password: str) -> User | None:
    """Salesforce's API login takes the password with the security token appended."""
    user = org.users.get(username.strip())
    if user is None:
        return None
    expected = user.definition.password + user.definition.security_token
    return user if secrets.compare_digest(password.encode(), expected.encode()) else None


def soap_login(org: Org, sessions: Sessions, body: bytes, host: str, version: str) -> tuple[int, str]:
    """Answer a SOAP ``login`` call: (HTTP status, XML)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return 500, _soap_fault("soapenv:Client", "INVALID_SOAP_REQUEST", "Unable to parse the SOAP request")
    values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
    if "login" not in values:
        return 500, _soap_fault("soapenv:Client", "INVALID_OPERATION", "No operation available for request")
    user = _check_password(org, values.get("username", ""), values.get("password", ""))
    if user is None:
        return 500, _soap_fault("sf:INVALID_LOGIN", "INVALID_LOGIN", INVALID_LOGIN, "LoginFault")
    session_id = sessions.create(user)
    base = f"https://{host}/services/Soap"
    d = user.definition
    result = (
        f"<metadataServerUrl>{base}/m/{version}/{org.org_id[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{base}/u/{version}/{org.org_id[:15]}</serverUrl>"
        f"<sessionId>{escape(session_id)}</sessionId><userId>{user.id}</userId>"
        f"<userInfo><organizationId>{org.org_id}</organizationId>"
        f"<organizationName>{escape(org.definition.settings.org_name)}</organizationName>"
        f"<sessionSecondsValid>{int(sessions.timeout)}</sessionSecondsValid>"
        f"<userEmail>{escape(d.email)}</userEmail><userFullName>{escape(d.first_name)} {escape(d.last_name)}"
        f"</userFullName><userId>{user.id}</userId><userName>{escape(user.username)}</userName>"
        "<userTimeZone>GMT</userTimeZone></userInfo>"
    )
    return 200, (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><loginResponse><result>{result}</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


def _soap_fault(faultcode: str, code: str, message: str, fault_type: str = "UnexpectedErrorFault") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
        f'instance"><soapenv:Body><soapenv:Fault><faultcode>{faultcode}</faultcode><faultstring>{code}: '
        f'{escape(message)}</faultstring><detail><sf:{fault_type} xsi:type="sf:{fault_type}">'
        "<sf:exceptionCode>"
        f"{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        f"</sf:{fault_type}>"
        "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def oauth_token(
    org: Org, sessions: Sessions, form: dict[str, str], authorization: str | None, host: str
) -> tuple[int, dict[str, Any]]:
    """Answer ``POST /services/oauth2/token`` for the password and client_credentials grants."""
    grant = form.get("grant_type", "")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        try:
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    if grant not in ("password", "client_credentials"):
        return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
    app = next((a for a in org.definition.connected_apps if a.consumer_key == client_id), None)
    if app is None:
        return 400, {"error": "invalid_client_id", "error_description": "client identifier invalid"}
    if not secrets.compare_digest((client_secret or "").encode(), app.consumer_secret.encode()):
        return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    if grant == "password":
        user = _check_password(org, form.get("username", ""), form.get("password", ""))
        if user is None:
            return 400, {"error": "invalid_grant", "error_description": "authentication failure"}
    else:
        user = org.users[app.run_as]
    issued = str(int(time.time() * 1000))
    identity = f"https://{host}/id/{org.org_id}/{user.id}"
    # Salesforce signs id + issued_at with the consumer secret so clients can verify the response.
    signature = hmac.new(app.consumer_secret.encode(), (identity + issued).encode(), hashlib.sha256).digest()
    return 200, {
        "access_token": sessions.create(user),
        "instance_url": f"https://{host}",
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": base64.b64encode(signature).decode(),
    }
