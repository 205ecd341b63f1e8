"""A Salesforce Streaming API client: the change events of one channel over Bayeux/CometD long polling
(``/cometd/<api version>``), with Salesforce's replay extension.

Only what the event watcher needs, on httpx (which Airflow itself requires, so nothing new is installed):
handshake, subscribe from a replay id (``NEW_EVENTS``, ``ALL_EVENTS`` or one received before), and
``/meta/connect`` polls the server holds until events come (``advice.timeout``, 110 s at Salesforce), as
the server's advice says (``retry`` after ``interval``, ``handshake`` again, or ``none``). Cookies (the
``BAYEUX_BROWSER`` that pins a client to its server) stay in the HTTP client. A forgotten client
(``403::Unknown client``) handshakes again and resubscribes from the last event it received, so nothing is
missed; an invalid session (``401::Authentication invalid``) logs in again. A replay id Salesforce no longer
keeps (past its 72 hours) or never gave is refused: the client resubscribes for new events and reports a
``Gap``, since events may have been missed. Transport failures and refusals that retrying cannot fix raise;
``events()`` called again continues from the last event received.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

from sfsync.defaults import SALESFORCE_CONN_ID

if TYPE_CHECKING:
    from sfsync.salesforce import Salesforce

NEW_EVENTS, ALL_EVENTS = -1, -2
#: How much longer than the server's hold an HTTP read of a /meta/connect may take before it counts as lost.
HOLD_MARGIN_SECONDS = 30.0
REQUEST_SECONDS = 30.0
#: Handshakes in a row without a successful /meta/connect before the client gives up (its caller backs off).
MAX_HANDSHAKES = 3
#: Why Salesforce refuses a subscription, in words an operator can act on.
_SUBSCRIBE_HINTS = {
    403: "the subscribing user (salesforce_events, else salesforce_default) needs View All on the object"
    " (or View All Data)",
    400: "is Change Data Capture enabled for this object in Setup?",
}


@dataclass(frozen=True)
class Session:
    """What a login gives the client: the org's address, the session (never shown), the API version, the
    user's Id and how to verify the org's certificate."""

    instance_url: str
    token: str = field(repr=False)
    version: str
    user_id: str
    verify: ssl.SSLContext | bool = True


@dataclass(frozen=True)
class ChangeEvent:
    replay_id: int
    header: dict[str, Any]  # the payload's ChangeEventHeader


@dataclass(frozen=True)
class Gap:
    """Events may have been missed (why, in words)."""

    reason: str


class StreamingError(RuntimeError):
    """Salesforce refused the stream in a way that retrying at once cannot fix (its own error text)."""


@dataclass(frozen=True)
class Advice:
    """The server's advice: how to reconnect (``retry``, ``handshake``, ``none``), after how long, and how
    long it holds a /meta/connect; each reply's advice updates the fields it names."""

    reconnect: str = "retry"
    interval: float = 0.0  # seconds
    timeout: float = 110.0  # seconds

    def updated(self, advice: Any) -> Advice:
        if not isinstance(advice, dict):
            return self
        return Advice(
            str(advice.get("reconnect", self.reconnect)),
            advice["interval"] / 1000 if isinstance(advice.get("interval"), int) else self.interval,
            advice["timeout"] / 1000 if isinstance(advice.get("timeout"), int) else self.timeout,
        )


def error_code(reply: dict[str, Any]) -> tuple[int, str]:
    """The code and text of a failed reply: Bayeux errors are ``code:args:text`` (Salesforce's
    ``403::Unknown client``); a denied handshake nests the cause in ``ext.sfdc.failureReason``."""
    ext = reply.get("ext")
    reason = ext.get("sfdc", {}).get("failureReason") if isinstance(ext, dict) else None
    code, _, rest = str(reason or reply.get("error") or "").partition(":")
    return (int(code) if code.isdigit() else 0), rest.partition(":")[2] or rest


def session_from(sf: Salesforce) -> Session:
    """The streaming session of the sync's logged-in Salesforce client (blocking: a query for the user's
    Id), verifying the org's certificate as its HTTP session does (``REQUESTS_CA_BUNDLE`` included)."""
    client = sf.client
    verify = client.session.merge_environment_settings(client.base_url, {}, None, None, None)["verify"]
    if isinstance(verify, str):
        verify = ssl.create_default_context(cafile=verify)
    instance = f"https://{client.sf_instance}"
    sync_user = sf.user_id(SALESFORCE_CONN_ID)  # whose changes are the sync's own, whoever subscribes
    return Session(instance, client.session_id, str(client.sf_version), sync_user, verify)


class _LoginAgain(Exception):
    """The session is no longer valid."""


class _HandshakeAgain(Exception):
    """The server forgot the client, or advised a new handshake."""


class ChangeStream:
    """The events of ``channel`` from ``replay_id`` on, for sessions that ``login`` gives; ``subscribed`` is
    called whenever Salesforce accepted the subscription (the stream follows the channel from then on)."""

    def __init__(
        self,
        login: Callable[[], Awaitable[Session]],
        channel: str,
        replay_id: int = NEW_EVENTS,
        subscribed: Callable[[], None] | None = None,
    ):
        self.channel = channel
        self.replay_id = replay_id  # the last event received (or where to start)
        self._login = login
        self._subscribed = subscribed
        self._session: Session | None = None
        self._connected = False  # a /meta/connect succeeded since the last handshake
        self._proven = False  # ... since the last login
        self._ids = itertools.count(1)

    async def events(self) -> AsyncIterator[ChangeEvent | Gap]:
        """Follow the channel for ever; raises on a transport failure or a refusal (call again to go on)."""
        while True:
            if self._session is None:
                self._session, self._proven = await self._login(), False
            headers = {"Authorization": f"Bearer {self._session.token}"}
            url = f"{self._session.instance_url}/cometd/{self._session.version}"
            async with httpx.AsyncClient(headers=headers, verify=self._session.verify) as http:
                try:
                    async for item in self._follow(http, url):
                        yield item
                except _LoginAgain:
                    # A session just given that the server refuses is not renewed in a loop.
                    if not self._proven:
                        raise StreamingError(
                            "Salesforce refused a new session: 401::Authentication invalid"
                        ) from None
                    self._session = None

    async def _follow(self, http: httpx.AsyncClient, url: str) -> AsyncIterator[ChangeEvent | Gap]:
        """Handshake, subscribe and poll, and again whenever the server forgets the client."""
        handshakes = 0
        while True:
            # A server that forgets every client at once is not asked again in a tight loop either.
            handshakes = 0 if self._connected else handshakes + 1
            if handshakes > MAX_HANDSHAKES:
                raise StreamingError(f"Salesforce forgot the client {MAX_HANDSHAKES} times running")
            self._connected = False
            try:
                client_id = await self._handshake(http, url)
                gap = await self._subscribe(http, url, client_id)
                if self._subscribed is not None:
                    self._subscribed()
                if gap is not None:
                    yield gap
                async for event in self._poll(http, url, client_id):
                    yield event
            except _HandshakeAgain:
                pass

    async def _handshake(self, http: httpx.AsyncClient, url: str) -> str:
        message = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "ext": {"replay": True},
        }
        reply = _meta(await self._send(http, url, message), message)
        if reply.get("successful"):
            return str(reply["clientId"])
        if error_code(reply)[0] == 401:
            raise _LoginAgain
        raise StreamingError(f"Salesforce denied the handshake: {reply.get('error')}")

    async def _subscribe(self, http: httpx.AsyncClient, url: str, client_id: str) -> Gap | None:
        """Subscribe from ``replay_id``; a Gap when Salesforce refused that id, and new events are read."""
        gap = None
        while True:
            message = {
                "channel": "/meta/subscribe",
                "clientId": client_id,
                "subscription": self.channel,
                "ext": {"replay": {self.channel: self.replay_id}},
            }
            reply = _meta(await self._send(http, url, message), message)
            if reply.get("successful"):
                return gap
            code, text = error_code(reply)
            if code == 400 and "replayId" in text and self.replay_id != NEW_EVENTS:
                gap = Gap(f"Salesforce no longer has replay id {self.replay_id}: reading new events only")
                self.replay_id = NEW_EVENTS
                continue
            _raise_for(reply, f"Salesforce refused the subscription to {self.channel}", _SUBSCRIBE_HINTS)

    async def _poll(self, http: httpx.AsyncClient, url: str, client_id: str) -> AsyncIterator[ChangeEvent]:
        """The channel's events, /meta/connect after /meta/connect, until the server wants a new handshake."""
        advice = Advice()
        connect: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
            "advice": {"timeout": 0},  # Bayeux: the first connect is answered at once
        }
        while True:
            replies = await self._send(http, url, connect, advice.timeout + HOLD_MARGIN_SECONDS)
            connect.pop("advice", None)
            for reply in replies:
                if reply.get("channel") == self.channel and isinstance(reply.get("data"), dict):
                    data = reply["data"]
                    self.replay_id = int(data["event"]["replayId"])
                    yield ChangeEvent(self.replay_id, dict(data["payload"].get("ChangeEventHeader", {})))
            reply = _meta(replies, connect)
            advice = advice.updated(reply.get("advice"))
            if not reply.get("successful"):
                _raise_for(reply, "Salesforce refused the connection")
            self._connected = self._proven = True
            if advice.reconnect == "handshake":
                return
            if advice.reconnect == "none":
                raise StreamingError("Salesforce advised not to reconnect")
            await asyncio.sleep(advice.interval)

    async def _send(
        self, http: httpx.AsyncClient, url: str, message: dict[str, Any], read: float = REQUEST_SECONDS
    ) -> list[dict[str, Any]]:
        message["id"] = str(next(self._ids))
        response = await http.post(url, json=[message], timeout=httpx.Timeout(REQUEST_SECONDS, read=read))
        if response.status_code == 401:  # an expired session may be refused before Bayeux answers
            raise _LoginAgain
        response.raise_for_status()
        replies = response.json()
        return [r for r in replies if isinstance(r, dict)] if isinstance(replies, list) else []


def _meta(replies: list[dict[str, Any]], message: dict[str, Any]) -> dict[str, Any]:
    """The reply to ``message`` among ``replies`` (by its id; a failure when the server gave none)."""
    for reply in replies:
        if reply.get("channel") == message["channel"] and reply.get("id", message["id"]) == message["id"]:
            return reply
    return {"channel": message["channel"], "successful": False, "error": "no reply"}


def _raise_for(reply: dict[str, Any], what: str, hints: dict[int, str] | None = None) -> NoReturn:
    """What a failed reply makes the client do: log in again, handshake again, or give up."""
    code, text = error_code(reply)
    if code == 401:
        raise _LoginAgain
    if (code == 403 and text == "Unknown client") or Advice().updated(reply.get("advice")).reconnect == (
        "handshake"
    ):
        raise _HandshakeAgain
    hint = (hints or {}).get(code)
    raise StreamingError(f"{what}: {reply.get('error')}" + (f" ({hint})" if hint else ""))
