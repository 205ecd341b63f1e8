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

from . import oauth
from .database import User
from .store import Org

INVALID_LOGIN = "Invalid username, password, security token; or user locked out."
EXPIRED_TOKEN = {"error": "invalid_grant", "error_description": "expired access/refresh token"}


@dataclass
class _Session:
    user: User
    last_used: float
    refresh_token: str | None  # the refresh token it was obtained with: revoking that ends it too


class Sessions:
    """Session ids; like Salesforce's timeout, a session expires after a period without activity."""

    def __init__(self, org_id: str, timeout_seconds: float) -> None:
        self.org_id = org_id
        self.timeout = timeout_seconds
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User, refresh_token: str | None = None) -> str:
        # Real session ids are "<15-char org id>!<opaque>"; some tools split on the "!".
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._sessions[token] = _Session(user, time.monotonic(), refresh_token)
        return token

    def expire(self, token: str) -> bool:
        """End a session now, as Salesforce does when it times out or is revoked; False if there was none."""
        with self._lock:
            return self._sessions.pop(token, None) is not None

    def expire_refreshed(self, refresh_token: str) -> None:
        """End every session obtained with ``refresh_token`` (revoking it revokes them)."""
        with self._lock:
            for token in [t for t, s in self._sessions.items() if s.refresh_token == refresh_token]:
                del self._sessions[token]

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


def session_token(authorization: str) -> str:
    """The session id of an ``Authorization: Bearer <id>`` (or ``OAuth <id>``) header, else ""."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") else ""


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
    """Answer ``POST /services/oauth2/token`` for the password, client_credentials and refresh_token
    grants."""
    grant = form.get("grant_type", "")
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if authorization and authorization.lower().startswith("basic "):
        try:
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    if grant not in ("password", "client_credentials", "refresh_token"):
        return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
    app = next((a for a in org.definition.connected_apps if a.consumer_key == client_id), None)
    if app is None:
        return 400, {"error": "invalid_client_id", "error_description": "client identifier invalid"}
    if not secrets.compare_digest((client_secret or "").encode(), app.consumer_secret.encode()):
        return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    refresh_token = None
    if grant == "password":
        user = _check_password(org, form.get("username", ""), form.get("password", ""))
        if user is None:
            return 400, {"error": "invalid_grant", "error_description": "authentication failure"}
    elif grant == "refresh_token":
        # Unknown, revoked, another app's, or a user's who no longer exists: all the same answer.
        refresh_token = form.get("refresh_token", "")
        issued_to = oauth.owner(org.conn(), refresh_token)
        if issued_to is None or issued_to[0] != app.consumer_key or issued_to[1] not in org.users:
            return 400, dict(EXPIRED_TOKEN)
        user = org.users[issued_to[1]]
    else:
        user = org.users[app.run_as]
    issued = str(int(time.time() * 1000))
    identity = f"https://{host}/id/{org.org_id}/{user.id}"
    # Salesforce signs id + issued_at with the consumer secret so clients can verify the response.
    signature = hmac.new(app.consumer_secret.encode(), (identity + issued).encode(), hashlib.sha256).digest()
    # The refresh grant answers no new refresh token: the client keeps using the one it has.
    return 200, {
        "access_token": sessions.create(user, refresh_token),
        "instance_url": f"https://{host}",
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": base64.b64encode(signature).decode(),
    }


def oauth_revoke(org: Org, sessions: Sessions, form: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    """Answer ``/services/oauth2/revoke`` (``token=``): a refresh token is revoked with every access token
    obtained with it, an access token alone. 200 with no body, or 400 ``invalid_token``."""
    token = form.get("token", "")
    if token and sessions.expire(token):
        return 200, None
    if token:
        with org.write_lock:
            revoked = oauth.revoke(org.conn(), token, int(time.time() * 1000))
        if revoked:
            sessions.expire_refreshed(token)
            return 200, None
    return 400, {"error": "invalid_token", "error_description": "Invalid token"}
