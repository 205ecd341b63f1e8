"""The Streaming API: Change Data Capture events over CometD long polling, read by a real Salesforce
streaming client (aiosfstream-ng) and, for exact wire shapes, by plain HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosfstream_ng import Client
from aiosfstream_ng.auth import AuthenticatorBase
from aiosfstream_ng.exceptions import ServerError
from aiosfstream_ng.replay import ReplayMarker, ReplayOption

from localorg.changes import RETENTION_MS
from localorg.datadir import DB_FILE
from localorg.testing import RunningOrg, changed_org_file, running_org, sample_lead, view_all

pytestmark = pytest.mark.integration

TIMEOUT_MS = 2000  # the org's advice.timeout: how long an idle /meta/connect is held
LEADS = "/data/LeadChangeEvent"


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOrg]:
    """An org whose integration user has View All on Lead (so it may subscribe to its change events) but
    still cannot see Lead.Internal_Rating__c; sales@ has neither View All nor View All Data."""
    data_dir = tmp_path_factory.mktemp("streaming")
    org_file = changed_org_file(data_dir / "org.yaml", view_all(["Lead"]))
    with running_org(data_dir / "org", org_file=org_file, streaming_timeout_ms=TIMEOUT_MS) as running:
        yield running


def tls(org: RunningOrg) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(org.ca_file))


def token(org: RunningOrg, user: str) -> str:
    """An OAuth access token (password grant) for a user of the org."""
    return str(_token_answer(org, user)["access_token"])


def _token_answer(org: RunningOrg, user: str) -> dict[str, Any]:
    app = org.definition.connected_apps[0]
    credentials = org.credentials[user]
    form = {
        "grant_type": "password",
        "client_id": app.consumer_key,
        "client_secret": app.consumer_secret,
        "username": credentials.username,
        "password": credentials.password + credentials.security_token,
    }
    answer = httpx.post(f"{org.base_url}/services/oauth2/token", data=form, verify=tls(org))
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def rest(org: RunningOrg, session: str, method: str, path: str, body: Any = None) -> Any:
    answer = httpx.request(
        method,
        f"{org.base_url}/services/data/v59.0/{path}",
        json=body,
        headers={"Authorization": f"Bearer {session}"},
        verify=tls(org),
    )
    answer.raise_for_status()
    return answer.json() if answer.content else None


def bayeux(org: RunningOrg, session: str, *messages: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{org.base_url}/cometd/59.0",
        json=list(messages),
        headers={"Authorization": f"Bearer {session}"},
        verify=tls(org),
        timeout=30,
    )


def handshake(org: RunningOrg, session: str) -> str:
    reply = bayeux(org, session, {"channel": "/meta/handshake", "version": "1.0", "id": "1"}).json()[0]
    assert reply["successful"], reply
    return str(reply["clientId"])


class LocalOrgAuthenticator(AuthenticatorBase):
    """aiosfstream's OAuth password flow against the local org (its own authenticators post to
    login.salesforce.com)."""

    def __init__(self, org: RunningOrg, user: str) -> None:
        super().__init__()
        self.org, self.user = org, user

    async def _authenticate(self) -> tuple[int, dict[str, Any]]:
        return 200, await asyncio.to_thread(_token_answer, self.org, self.user)


def client(org: RunningOrg, user: str = "integration", replay: Any = ReplayOption.NEW_EVENTS) -> Client:
    # connection_timeout=0: aiocometd-ng's wait_for(..., loop=) fails on Python >= 3.10.
    streaming = Client(LocalOrgAuthenticator(org, user), replay=replay, connection_timeout=0)
    streaming.ssl = tls(org)
    return streaming


async def receive(streaming: Client, count: int, record_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """The next ``count`` event messages (about ``record_ids`` only, if given)."""
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        message = await asyncio.wait_for(streaming.receive(), 15)
        ids = set(message["data"]["payload"]["ChangeEventHeader"]["recordIds"])
        if record_ids is None or ids & record_ids:
            messages.append(message)
    return messages


def test_rest_writes_arrive_as_change_events(org: RunningOrg) -> None:
    admin = token(org, "admin")

    async def scenario() -> list[dict[str, Any]]:
        async with client(org) as streaming:
            await streaming.subscribe(LEADS)
            lead = sample_lead(FirstName="Ada", Internal_Rating__c="A", City="London")
            lead_id = (await asyncio.to_thread(rest, org, admin, "POST", "sobjects/Lead", lead))["id"]
            path = f"sobjects/Lead/{lead_id}"
            await asyncio.to_thread(
                rest, org, admin, "PATCH", path, {"City": "Paris", "Internal_Rating__c": "B"}
            )
            await asyncio.to_thread(rest, org, admin, "DELETE", path)
            assert (await asyncio.to_thread(org.admin, "undelete", {"ids": [lead_id]}))[0] == 200
            return await receive(streaming, 4, {lead_id})

    created, updated, deleted, undeleted = asyncio.run(scenario())
    assert created["channel"] == LEADS and isinstance(created["data"]["schema"], str)
    replay_ids = [m["data"]["event"]["replayId"] for m in (created, updated, deleted, undeleted)]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 4
    header = created["data"]["payload"]["ChangeEventHeader"]
    assert header["entityName"] == "Lead" and header["changeType"] == "CREATE"
    assert header["changeOrigin"] == "com/salesforce/api/rest/59.0" and header["sequenceNumber"] == 1
    assert header["commitUser"].startswith("005") and header["changedFields"] == []
    assert abs(header["commitTimestamp"] - time.time() * 1000) < 60_000
    body = {k: v for k, v in created["data"]["payload"].items() if k != "ChangeEventHeader"}
    # Compound fields nest; the integration user cannot see Internal_Rating__c, so it is left out.
    assert body["Name"] == {"FirstName": "Ada", "LastName": "Lovelace"} and body["Address"] == {
        "City": "London"
    }
    assert body["Company"] == "Analytical Engines" and "Internal_Rating__c" not in body
    assert body["CreatedDate"].endswith("Z") and "Id" not in body and "SystemModstamp" not in body
    update = updated["data"]["payload"]
    assert update["ChangeEventHeader"]["changeType"] == "UPDATE"
    assert update["ChangeEventHeader"]["changedFields"] == ["Address.City", "LastModifiedDate"]
    assert set(update) == {"ChangeEventHeader", "Address", "LastModifiedDate"}
    assert update["Address"] == {"City": "Paris"}
    for message, kind in ((deleted, "DELETE"), (undeleted, "UNDELETE")):
        assert list(message["data"]["payload"]) == ["ChangeEventHeader"]
        assert message["data"]["payload"]["ChangeEventHeader"]["changeType"] == kind


def test_replay_all_and_from_a_stored_id_after_reconnecting(org: RunningOrg) -> None:
    admin = token(org, "admin")
    storage: dict[str, ReplayMarker] = {}

    def create() -> str:
        return str(rest(org, admin, "POST", "sobjects/Lead", sample_lead())["id"])

    async def scenario() -> None:
        async with client(org, replay=storage) as streaming:  # nothing stored yet: new events only
            await streaming.subscribe(LEADS)
            first = await asyncio.to_thread(create)
            await receive(streaming, 1, {first})
        assert storage[LEADS].replay_id > 0
        missed = [await asyncio.to_thread(create) for _ in range(2)]  # while nobody listens
        async with client(org, replay=storage) as streaming:
            await streaming.subscribe(LEADS)
            replayed = await receive(streaming, 2)
            assert [m["data"]["payload"]["ChangeEventHeader"]["recordIds"][0] for m in replayed] == missed
        async with client(org, replay=ReplayOption.ALL_EVENTS) as streaming:
            await streaming.subscribe(LEADS)
            everything = await receive(streaming, 3, {first, *missed})
            assert [m["data"]["payload"]["ChangeEventHeader"]["recordIds"][0] for m in everything] == [
                first,
                *missed,
            ]

    asyncio.run(scenario())


def test_invalid_or_expired_replay_id(org: RunningOrg) -> None:
    message = (
        "400::The replayId {{{}}} you provided was invalid. Please provide a valid ID, -2 to replay all "
        "events, or -1 to replay only new events."
    )
    admin = token(org, "admin")
    rest(org, admin, "POST", "sobjects/Lead", sample_lead())
    with sqlite3.connect(org.data_dir / DB_FILE) as db:
        oldest = db.execute("SELECT MIN(replay_id) FROM _change_events").fetchone()[0]
        # Past the 72-hour retention: replaying from it is refused, as from an id never published.
        db.execute(
            "UPDATE _change_events SET commit_ts = ? WHERE replay_id = ?",
            (int(time.time() * 1000) - RETENTION_MS - 1000, oldest),
        )
    session = token(org, "integration")
    for replay_id in (oldest, 10**9):
        client_id = handshake(org, session)
        subscribe = {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": LEADS,
            "id": "2",
            "ext": {"replay": {LEADS: replay_id}},
        }
        reply = bayeux(org, session, subscribe).json()[0]
        assert reply == {
            "clientId": client_id,
            "channel": "/meta/subscribe",
            "id": "2",
            "subscription": LEADS,
            "error": message.format(replay_id),
            "successful": False,
        }

    async def with_client() -> None:
        async with client(org, replay={LEADS: ReplayMarker("0", 10**9)}) as streaming:
            with pytest.raises(ServerError, match="you provided was invalid"):
                await streaming.subscribe(LEADS)

    asyncio.run(with_client())


def test_handshake_connect_and_the_idle_hold(org: RunningOrg) -> None:
    session = token(org, "integration")
    answer = bayeux(
        org,
        session,
        {
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling"],
            "ext": {"replay": True, "payload.format": True},
            "id": "1",
        },
    )
    assert "BAYEUX_BROWSER=" in answer.headers["set-cookie"]
    reply = answer.json()[0]
    client_id = reply.pop("clientId")
    assert reply == {
        "ext": {"replay": True, "payload.format": True},
        "minimumVersion": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "channel": "/meta/handshake",
        "id": "1",
        "version": "1.0",
        "successful": True,
    }
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling", "id": "2"}
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": LEADS, "id": "3"}
    first = bayeux(org, session, connect, subscribe).json()  # the first connect is answered at once
    advice = {"interval": 0, "timeout": TIMEOUT_MS, "reconnect": "retry"}
    assert first == [
        {
            "clientId": client_id,
            "channel": "/meta/subscribe",
            "id": "3",
            "subscription": LEADS,
            "successful": True,
        },
        {"clientId": client_id, "channel": "/meta/connect", "id": "2", "successful": True, "advice": advice},
    ]
    started = time.monotonic()
    assert bayeux(org, session, {**connect, "id": "4"}).json()[0]["successful"]
    assert TIMEOUT_MS / 1000 - 0.1 < time.monotonic() - started < TIMEOUT_MS / 1000 + 1.5


def test_a_held_connect_answers_when_an_event_is_published(org: RunningOrg) -> None:
    session, admin = token(org, "integration"), token(org, "admin")
    client_id = handshake(org, session)
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": LEADS}
    bayeux(org, session, connect, subscribe)

    async def scenario() -> tuple[float, list[dict[str, Any]]]:
        held = asyncio.create_task(asyncio.to_thread(bayeux, org, session, connect))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.to_thread(rest, org, admin, "POST", "sobjects/Lead", sample_lead())
        replies = (await held).json()
        return time.monotonic() - started, replies

    elapsed, replies = asyncio.run(scenario())
    assert elapsed < TIMEOUT_MS / 1000 - 0.5
    assert [r["channel"] for r in replies] == [LEADS, "/meta/connect"]


def test_a_held_connect_answers_when_another_process_publishes(tmp_path: Path) -> None:
    """``localorg activity`` writes to the org's store from its own process (as ``make run`` does): its events
    reach a connect held for 25 s within seconds, not at the hold's end."""
    org_file = changed_org_file(tmp_path / "org.yaml", view_all(["Lead"]))
    with running_org(tmp_path / "org", org_file=org_file, streaming_timeout_ms=25_000) as org:
        session = token(org, "admin")
        client_id = handshake(org, session)
        connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": LEADS}
        bayeux(org, session, connect, subscribe)
        activity = [sys.executable, "-m", "localorg", "activity", "--data", str(org.data_dir)]
        activity += ["--org", str(org_file), "--rate", "50", "--duration", "2"]
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(bayeux, org, session, connect)
            time.sleep(0.5)
            started = time.monotonic()
            with subprocess.Popen(activity, stdout=subprocess.DEVNULL):
                replies = held.result(timeout=90).json()
            elapsed = time.monotonic() - started
    assert [r for r in replies if r["channel"] == LEADS], replies
    assert elapsed < 15  # the activity starts and runs for 2 s; the hold would have lasted 25 s


def test_unknown_client_and_rehandshake(org: RunningOrg) -> None:
    session, admin = token(org, "integration"), token(org, "admin")
    unknown = bayeux(org, session, {"channel": "/meta/connect", "clientId": "nobody", "id": "9"}).json()
    assert unknown == [
        {
            "clientId": "nobody",
            "channel": "/meta/connect",
            "id": "9",
            "error": "403::Unknown client",
            "successful": False,
            "advice": {"reconnect": "handshake", "interval": 0},
        }
    ]

    async def scenario() -> None:
        async with client(org) as streaming:
            await streaming.subscribe(LEADS)
            # The next streaming request finds its client forgotten (as after 40 s without a reconnect):
            # the client handshakes again, subscribes again and keeps receiving.
            fault = {"kind": "unknown_client", "route": "^/cometd/", "count": 1}
            assert (await asyncio.to_thread(org.admin, "faults", fault))[0] == 200
            await asyncio.sleep(TIMEOUT_MS / 1000 + 0.5)
            status, rules = await asyncio.to_thread(org.admin, "faults", None, "GET")
            assert status == 200 and rules["rules"] == []  # type: ignore[index]
            lead = await asyncio.to_thread(rest, org, admin, "POST", "sobjects/Lead", sample_lead())
            await receive(streaming, 1, {lead["id"]})

    asyncio.run(scenario())


def test_revoked_session_and_denied_handshake(org: RunningOrg) -> None:
    session = token(org, "integration")
    client_id = handshake(org, session)
    revoked = httpx.post(f"{org.base_url}/services/oauth2/revoke", data={"token": session}, verify=tls(org))
    assert revoked.status_code == 200
    reply = bayeux(org, session, {"channel": "/meta/connect", "clientId": client_id, "id": "5"}).json()[0]
    assert reply == {
        "clientId": client_id,
        "channel": "/meta/connect",
        "id": "5",
        "error": "401::Authentication invalid",
        "successful": False,
        "advice": {"reconnect": "none", "interval": 0},
    }
    denied = bayeux(org, session, {"channel": "/meta/handshake", "version": "1.0"}).json()[0]
    assert denied == {
        "channel": "/meta/handshake",
        "ext": {"sfdc": {"failureReason": "401::Authentication invalid"}},
        "advice": {"reconnect": "none"},
        "error": "403::Handshake denied",
        "successful": False,
    }


def test_subscriptions_need_a_channel_and_view_all(org: RunningOrg) -> None:
    def subscribe(user: str, channel: str) -> dict[str, Any]:
        session = token(org, user)
        message = {"channel": "/meta/subscribe", "clientId": handshake(org, session), "subscription": channel}
        return dict(bayeux(org, session, message).json()[0])

    assert subscribe("sales", LEADS)["error"] == "403::Forbidden"
    assert subscribe("integration", "/data/ContactChangeEvent")["error"] == "403::Forbidden"
    assert subscribe("admin", "/data/ContactChangeEvent")["successful"]
    for channel in ("/data/TaskChangeEvent", "/data/NoSuchChangeEvent", "/topic/Leads"):
        error = f"400::The channel you requested to subscribe to does not exist {{{channel}}}"
        assert subscribe("admin", channel)["error"] == error
    # Anyone may subscribe to every object's changes, and gets those of the objects it may view all of.
    assert subscribe("sales", "/data/ChangeEvents")["successful"]


def test_streaming_counts_no_api_requests(org: RunningOrg) -> None:
    session, admin = token(org, "integration"), token(org, "admin")
    before = rest(org, admin, "GET", "limits")
    client_id = handshake(org, session)
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    subscribe = {
        "channel": "/meta/subscribe",
        "clientId": client_id,
        "subscription": LEADS,
        "ext": {"replay": {LEADS: -2}},
    }
    delivered = [r for r in bayeux(org, session, connect, subscribe).json() if r["channel"] == LEADS]
    assert delivered
    after = rest(org, admin, "GET", "limits")
    # Only the second limits request itself was counted.
    assert after["DailyApiRequests"]["Remaining"] == before["DailyApiRequests"]["Remaining"] - 1
    events = "DailyDeliveredPlatformEvents"
    assert after[events]["Remaining"] == before[events]["Remaining"] - len(delivered)
    assert after[events]["Max"] == 50_000


def test_events_survive_a_restart(org: RunningOrg) -> None:
    """Events are in the data directory's store: a new server on it replays them."""
    with sqlite3.connect(org.data_dir / DB_FILE) as db:
        latest = db.execute("SELECT MAX(replay_id) FROM _change_events").fetchone()[0]
    with running_org(org.data_dir, org_file=org.data_dir.parent / "org.yaml") as again:
        session = token(again, "admin")
        client_id = handshake(again, session)
        subscribe = {
            "channel": "/meta/subscribe",
            "clientId": client_id,
            "subscription": LEADS,
            "ext": {"replay": {LEADS: latest - 1}},
        }
        connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
        replies = bayeux(again, session, connect, subscribe).json()
        assert [r["data"]["event"]["replayId"] for r in replies if r["channel"] == LEADS] == [latest]


def test_collections_merge_and_conversion_publish_as_salesforce_does(org: RunningOrg) -> None:
    admin = token(org, "admin")
    client_id = handshake(org, admin)
    connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/data/ChangeEvents"}
    bayeux(org, admin, connect, subscribe)

    def events() -> list[dict[str, Any]]:
        replies = bayeux(org, admin, connect).json()
        return [r["data"]["payload"]["ChangeEventHeader"] for r in replies if r["channel"] != "/meta/connect"]

    # An allOrNone request that fails publishes nothing, not even for the records that were valid.
    bad = {
        "allOrNone": True,
        "records": [{"attributes": {"type": "Lead"}, **sample_lead()}, {"attributes": {"type": "Lead"}}],
    }
    rest(org, admin, "POST", "composite/sobjects", bad)
    leads = [rest(org, admin, "POST", "sobjects/Lead", sample_lead())["id"] for _ in range(3)]
    assert [(e["changeType"], e["recordIds"]) for e in events()] == [("CREATE", [i]) for i in leads]
    assert org.admin("merge", {"masterId": leads[0], "duplicateIds": [leads[1]]})[0] == 200
    merged = events()
    assert {(e["changeType"], e["recordIds"][0]) for e in merged} == {
        ("UPDATE", leads[0]),
        ("DELETE", leads[1]),
    }
    assert len({e["transactionKey"] for e in merged}) == 1
    assert org.admin("convert-lead", {"leadId": leads[2]})[0] == 200
    converted = events()
    assert [(e["entityName"], e["changeType"]) for e in converted] == [
        ("Account", "CREATE"),
        ("Contact", "CREATE"),
        ("Opportunity", "CREATE"),
        ("Lead", "UPDATE"),
    ]
    assert [e["sequenceNumber"] for e in converted] == [1, 2, 3, 4]
    assert {"IsConverted", "ConvertedAccountId", "Status"} <= set(converted[-1]["changedFields"])
