"""The Streaming API: CometD (Bayeux 1.0) long polling at ``/cometd/<version>``, delivering the org's
Change Data Capture events (``changes``) on ``/data/<Object>ChangeEvent`` and ``/data/ChangeEvents`` with
Salesforce's replay extension, answers and errors.

A POST carries a JSON array of messages and is answered with an array of replies. A ``/meta/connect`` is
held on the event loop (no request thread) until events for the client are published or the advice's
timeout passes; a publishing transaction wakes every held connect when it commits. Streaming requests are
not API requests: they count in no API limit, and delivered events count in DailyDeliveredPlatformEvents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .auth import Sessions, session_token
from .calls import MAX_VERSION
from .changes import Event
from .faults import Faults
from .schema import SObject
from .store import Org, User
from .usage import DELIVERED_EVENTS_LIMIT

CONNECT_TIMEOUT_MS = 110_000  # Salesforce holds an idle /meta/connect this long (its advice.timeout)
OTHER_WRITERS_SECONDS = 1.0  # how often held connects look for events other processes published
CLIENT_TIMEOUT_SECONDS = 40.0  # a client that does not reconnect within this is forgotten
MIN_VERSION = 37
ALL_CHANGES = "/data/ChangeEvents"
_BATCH = 100  # events per channel in one /meta/connect answer
_CHANNEL = re.compile(r"/data/(\w+?)(__)?ChangeEvent")
_CLIENT_ID_CHARS = string.digits + string.ascii_lowercase
_REPLAY_INVALID = (
    "400::The replayId {{{}}} you provided was invalid. Please provide a valid ID, -2 to replay all events, "
    "or -1 to replay only new events."
)


@dataclass
class _Client:
    """A handshaken Bayeux client."""

    id: str
    user: User
    seen: float  # monotonic time of its last message: it expires CLIENT_TIMEOUT_SECONDS after
    woken: asyncio.Event = field(default_factory=asyncio.Event)  # events published, or the client dropped
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel -> last replay id delivered
    connected: bool = False  # answered a /meta/connect before: later ones are held
    holding: bool = False  # a /meta/connect is held now (a waiting client does not expire)


class Streaming:
    """The Bayeux server of one org."""

    def __init__(self, org: Org, sessions: Sessions, faults: Faults, timeout_ms: int = CONNECT_TIMEOUT_MS):
        self.org = org
        self.sessions = sessions
        self.faults = faults
        self.timeout_ms = timeout_ms
        self._clients: dict[str, _Client] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watching: asyncio.Task[None] | None = None  # _watch_other_writers, while connects are held
        org.changes.listen(self._published)

    async def respond(self, request: Request, body: bytes) -> Response:
        """Answer one POST to ``/cometd/<version>``."""
        self._loop = asyncio.get_running_loop()
        version = re.fullmatch(r"/cometd/(\d+)\.\d/?", request.url.path)
        uri_format = f"URI format: '/cometd/{MAX_VERSION}.0'"
        if version is None:
            return _bayeux(400, [_failure(f"400::API version in the URI is mandatory. {uri_format}")])
        if int(version.group(1)) < MIN_VERSION:
            error = (
                f"400::Unsupported API version. Only API versions '{MIN_VERSION}.0' and later are supported."
            )
            return _bayeux(400, [_failure(f"{error} {uri_format}")])
        try:
            messages = json.loads(body)
        except ValueError:
            messages = None
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _bayeux(400, [_failure("400::Bad request: a JSON array of Bayeux messages")])
        token = session_token(request.headers.get("authorization", ""))
        if self.faults.take(("unknown_client",), request.url.path) is not None:
            for message in messages:
                self._drop(str(message.get("clientId", "")))
        replies: list[dict[str, Any]] = []
        handshaken = False
        # A connect is answered last, after the other messages of its POST (a subscribe that came with it).
        for message in sorted(messages, key=lambda m: m.get("channel") == "/meta/connect"):
            if message.get("channel") == "/meta/connect":
                replies += await self._connect(message, token)
            else:
                reply = await run_in_threadpool(self._meta, message, token)
                handshaken = handshaken or bool(
                    reply.get("successful") and reply["channel"] == "/meta/handshake"
                )
                replies.append(reply)
        response = _bayeux(200, replies)
        if handshaken:
            # Salesforce's load balancers pin a client to its server with this cookie.
            response.set_cookie(
                "BAYEUX_BROWSER", secrets.token_urlsafe(12), path="/", secure=True, httponly=True
            )
        return response

    # -- meta channels other than connect (on a request thread: they read the store) ----------------

    def _meta(self, message: dict[str, Any], token: str) -> dict[str, Any]:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            return self._handshake(message, token)
        reply = _reply(message)
        if channel not in ("/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"):
            return {**reply, "error": f"400::Unknown channel {channel}", "successful": False}
        if channel != "/meta/disconnect":
            reply["subscription"] = message.get("subscription")
        client, refused = self._client(message, token)
        if client is None:
            return {**reply, **refused}
        if channel == "/meta/disconnect":
            self._drop(client.id)
            return {**reply, "successful": True}
        subscription = message.get("subscription")
        if channel == "/meta/unsubscribe":
            client.subscriptions.pop(str(subscription), None)
            return {**reply, "successful": True}
        error = self._subscribe(client, subscription, message.get("ext"))
        return {**reply, "error": error, "successful": False} if error else {**reply, "successful": True}

    def _handshake(self, message: dict[str, Any], token: str) -> dict[str, Any]:
        reply = _reply(message)
        user = self.sessions.user(token) if token else None
        if user is None:
            # Salesforce denies the handshake and nests the reason.
            reason = "401::Authentication invalid" if token else "401::Request requires authentication"
            return {
                **reply,
                "ext": {"sfdc": {"failureReason": reason}},
                "advice": {"reconnect": "none"},
                "error": "403::Handshake denied",
                "successful": False,
            }
        self._expire_idle()
        client_id = "".join(secrets.choice(_CLIENT_ID_CHARS) for _ in range(27))
        self._clients[client_id] = _Client(client_id, user, time.monotonic())
        return {
            "ext": {"replay": True, "payload.format": True},
            "minimumVersion": "1.0",
            "clientId": client_id,
            "supportedConnectionTypes": ["long-polling"],
            **reply,
            "version": "1.0",
            "successful": True,
        }

    def _subscribe(self, client: _Client, channel: Any, ext: Any) -> str | None:
        """Subscribe the client from the replay id its ``ext`` gives; an error message, or None."""
        if not channel:
            return "400::Channel name not specified"
        if not isinstance(channel, str) or not channel.startswith("/"):
            return "400::Channel subscriptions must start with a leading '/'"
        obj = self._entity(channel)
        if obj is None and channel != ALL_CHANGES:
            return f"400::The channel you requested to subscribe to does not exist {{{channel}}}"
        # An object's channel needs View All on it (or View All Data); /data/ChangeEvents takes anyone and
        # delivers only the objects the subscriber may view all of.
        if obj is not None and not self.org.sharing.views_all(client.user, obj):
            return "403::Forbidden"
        replays = ext.get("replay") if isinstance(ext, dict) else None
        replay = replays.get(channel, -1) if isinstance(replays, dict) else -1
        changes = self.org.changes
        if replay == -1:
            client.subscriptions[channel] = changes.latest()
        elif replay == -2:
            client.subscriptions[channel] = 0
        elif isinstance(replay, int) and not isinstance(replay, bool) and changes.retained(replay):
            client.subscriptions[channel] = replay
        else:
            return _REPLAY_INVALID.format(replay)
        return None

    def _entity(self, channel: str) -> SObject | None:
        """The CDC-enabled object of a ``/data/<Object>ChangeEvent`` channel (``Foo__ChangeEvent`` for
        ``Foo__c``), or None."""
        match = _CHANNEL.fullmatch(channel)
        if match is None:
            return None
        name = match.group(1) + ("__c" if match.group(2) else "")
        obj = self.org.schema.get(name)
        return obj if obj is not None and obj.name == name and self.org.changes.enabled(obj) else None

    # -- connect --------------------------------------------------------------------------------

    async def _connect(self, message: dict[str, Any], token: str) -> list[dict[str, Any]]:
        """Events for the client and the connect's reply; held while there are none."""
        reply = _reply(message)
        client, refused = await run_in_threadpool(self._client, message, token)
        if client is None:
            return [{**reply, **refused}]
        kind = message.get("connectionType", "long-polling")
        if kind != "long-polling":
            return [{**reply, "error": f"400::Invalid connection type {kind}", "successful": False}]
        advice = message.get("advice")
        wanted = advice.get("timeout") if isinstance(advice, dict) else None
        hold = self.timeout_ms if not isinstance(wanted, int) else min(wanted, self.timeout_ms)
        events = await run_in_threadpool(self._pending, client)
        if not events and client.connected and hold > 0:
            client.holding = True
            client.woken.clear()
            try:
                await self._hold(client, hold / 1000)
            finally:
                client.holding = False
            client, refused = await run_in_threadpool(self._client, message, token)
            if client is None:
                return [{**reply, **refused}]
            events = await run_in_threadpool(self._pending, client)
        client.connected = True
        client.seen = time.monotonic()
        advice = {"interval": 0, "timeout": self.timeout_ms, "reconnect": "retry"}
        return [*events, {**reply, "successful": True, "advice": advice}]

    async def _hold(self, client: _Client, seconds: float) -> None:
        """Until the client is woken or ``seconds`` pass."""
        if self._watching is None or self._watching.done():
            self._watching = asyncio.create_task(self._watch_other_writers())
        try:
            await asyncio.wait_for(client.woken.wait(), seconds)
        except TimeoutError:
            pass

    async def _watch_other_writers(self) -> None:
        """While connects are held, wake them all when another process published events on the org's data
        (the ``activity`` mode, a seeding script: their commits call no listener here)."""
        latest = await run_in_threadpool(self.org.changes.latest)
        while any(client.holding for client in self._clients.values()):
            await asyncio.sleep(OTHER_WRITERS_SECONDS)
            if (now := await run_in_threadpool(self.org.changes.latest)) != latest:
                latest = now
                self._wake_all()

    def _pending(self, client: _Client) -> list[dict[str, Any]]:
        """The event messages for the client's subscriptions since it last got them, as it may see them."""
        messages = []
        for channel, after in list(client.subscriptions.items()):
            obj = self._entity(channel)
            events = self.org.changes.since(after, None if obj is None else [obj.name], _BATCH)
            for event in events:
                payload = self._visible(client.user, event)
                if payload is not None:
                    data = {
                        "schema": _schema_id(event.entity),
                        "payload": payload,
                        "event": {"replayId": event.replay_id},
                    }
                    messages.append({"data": data, "channel": channel})
            if events and channel in client.subscriptions:
                client.subscriptions[channel] = events[-1].replay_id
        if messages:
            self.org.deliveries.count(DELIVERED_EVENTS_LIMIT, len(messages))
        return messages

    def _visible(self, user: User, event: Event) -> dict[str, Any] | None:
        """The event as the user gets it: fields it cannot see are left out, as are they from changedFields;
        None for an object it may not view all of."""
        obj = self.org.schema.objects[event.entity.lower()]
        if not self.org.sharing.views_all(user, obj):
            return None

        def visible(name: str) -> bool:
            f = obj.field(name.partition(".")[0])
            return f is None or self.org.schema.field_visible(f, user.profile)

        header = dict(event.payload["ChangeEventHeader"])
        header["changedFields"] = [name for name in header["changedFields"] if visible(name)]
        fields = {k: v for k, v in event.payload.items() if k != "ChangeEventHeader" and visible(k)}
        return {"ChangeEventHeader": header, **fields}

    # -- clients --------------------------------------------------------------------------------

    def _client(self, message: dict[str, Any], token: str) -> tuple[_Client | None, dict[str, Any]]:
        """The message's live client and a session still valid, or None and the error to answer."""
        self._expire_idle()
        client = self._clients.get(str(message.get("clientId", "")))
        if client is None:
            return None, {"error": "403::Unknown client", "successful": False, "advice": _HANDSHAKE}
        # Salesforce checks the session on every message; a revoked one ends the client. (A CometD client's
        # session never times out: each message keeps it alive, as here.)
        if not token or self.sessions.user(token) is None:
            self._drop(client.id)
            return None, {
                "error": "401::Authentication invalid",
                "successful": False,
                "advice": _NO_RECONNECT,
            }
        client.seen = time.monotonic()
        return client, {}

    def _drop(self, client_id: str) -> None:
        client = self._clients.pop(client_id, None)
        if client is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(client.woken.set)  # a held connect answers now

    def _expire_idle(self) -> None:
        """Forget the clients that neither wait on a connect nor sent anything for too long."""
        now = time.monotonic()
        for client in list(self._clients.values()):
            if not client.holding and now - client.seen > CLIENT_TIMEOUT_SECONDS:
                self._drop(client.id)

    def _published(self) -> None:
        """Called on the committing thread: wake every held connect."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake_all)
        except RuntimeError:  # the server has stopped
            pass

    def _wake_all(self) -> None:
        for client in list(self._clients.values()):
            client.woken.set()


_HANDSHAKE = {"reconnect": "handshake", "interval": 0}
_NO_RECONNECT = {"reconnect": "none", "interval": 0}


def _reply(message: dict[str, Any]) -> dict[str, Any]:
    """The fields every reply echoes: clientId, channel and id, when the message had them."""
    return {k: message[k] for k in ("clientId", "channel", "id") if k in message}


def _failure(error: str) -> dict[str, Any]:
    return {"error": error, "successful": False}


def _bayeux(status: int, replies: list[dict[str, Any]]) -> Response:
    return Response(
        json.dumps(replies, separators=(",", ":")), status, media_type="application/json;charset=UTF-8"
    )


def _schema_id(entity: str) -> str:
    """A stable schema id per object, shaped like Salesforce's (22 URL-safe base64 characters)."""
    return base64.urlsafe_b64encode(hashlib.md5(entity.encode()).digest()).decode()[:22]
