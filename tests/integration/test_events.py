"""The watchers' triggers, driven as the triggerer drives them (``async for event in trigger.run()``): the
NOTIFY trigger against the warehouse, the change-event trigger against a local org's Streaming API; and what
they record of themselves in the warehouse, as the status page reads it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from airflow.triggers.base import BaseEventTrigger
from psycopg.rows import dict_row
from simple_salesforce import Salesforce

from localorg.datadir import DB_FILE
from localorg.testing import RunningOrg, changed_org_file, running_org, sample_lead, view_all
from sfsync import events, load, migrations, status, streaming, tables, watchers
from sfsync.columns import Column
from sfsync.defaults import SALESFORCE_CONN_ID, SALESFORCE_EVENTS_CONN_ID, WAREHOUSE_CONN_ID
from sfsync.events import REPLAY_KEY, SalesforceChangeEventTrigger, WarehouseNotifyTrigger
from sfsync.registry import DEFAULT_REGISTRY, load_registry
from sfsync.watchers import CHANGE_EVENTS, WAREHOUSE_EDITS

pytestmark = pytest.mark.integration

DEBOUNCE = 0.4
QUIET = DEBOUNCE + 1.0  # long enough for a wake that should not come
COLUMNS = [
    Column("Id", "id", "text", createable=False, updateable=False),
    Column("IsDeleted", "isdeleted", "boolean", createable=False, updateable=False),
    Column("SystemModstamp", "systemmodstamp", "timestamptz", createable=False, updateable=False),
    Column("Title", "title", "text"),
]


class StateStore:
    """Stands in for the triggerer's ``asset_state_store``: what it keeps survives a trigger's restart."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


class Watching:
    """A trigger's run, its events queued as they come (the test never interrupts the trigger itself)."""

    def __init__(self, trigger: BaseEventTrigger) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(trigger))

    async def _run(self, trigger: BaseEventTrigger) -> None:
        async for event in trigger.run():
            self.queue.put_nowait(event.payload)

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, seconds: float = QUIET) -> None:
        await asyncio.sleep(seconds)
        assert self.queue.empty(), self.queue.get_nowait()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


# -- warehouse edits ------------------------------------------------------------------------------


@pytest.fixture
def conn(warehouse_url):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn)
        tables.ensure_table(conn, "lead", COLUMNS, True, "Lead")
        tables.ensure_table(conn, "contact", COLUMNS, True, "Contact")
        yield conn


def listeners(conn: psycopg.Connection, channel: str) -> list[int]:
    """The backends listening on ``channel`` (their last statement was its LISTEN)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE query = %s AND pid <> pg_backend_pid()",
        [f'LISTEN "{channel}"'],
    ).fetchall()
    return [pid for (pid,) in rows]


async def listening(conn: psycopg.Connection, channel: str) -> int:
    for _ in range(200):
        if pids := await asyncio.to_thread(listeners, conn, channel):
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"nobody listens on {channel}")


def edit(conn: psycopg.Connection, statement: str) -> None:
    conn.execute(statement)


def test_warehouse_edits_wake_once_a_burst_and_the_syncs_own_writes_not_at_all(conn):
    channel = events.outbox_channel("lead")

    async def scenario() -> None:
        watching = Watching(WarehouseNotifyTrigger(WAREHOUSE_CONN_ID, channel, DEBOUNCE, "Lead"))
        await listening(conn, channel)
        await asyncio.to_thread(three_edits, conn)
        assert await watching.next() == {"channel": channel, "notifications": 3}
        await watching.nothing()
        # One statement changing many rows notifies once, at commit.
        await asyncio.to_thread(edit, conn, "UPDATE salesforce.lead SET title = 'VP'")
        assert (await watching.next())["notifications"] == 1
        # Edits of another table, rolled-back edits and the sync's own writes wake nothing.
        await asyncio.to_thread(edit, conn, "INSERT INTO salesforce.contact (title) VALUES ('CEO')")
        await asyncio.to_thread(rolled_back, conn)
        await asyncio.to_thread(sync_writes, conn)
        await watching.nothing()
        await watching.stop()

    asyncio.run(scenario())
    assert conn.execute("SELECT count(*) FROM sfsync.outbox WHERE sobject = 'Lead'").fetchone() == (6,)


def three_edits(conn: psycopg.Connection) -> None:
    """Three transactions, one after another (three notifications, within one debounce: one wake)."""
    for title in ("CEO", "CTO", "CFO"):
        conn.execute(f"INSERT INTO salesforce.lead (title) VALUES ('{title}')")


def rolled_back(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute("INSERT INTO salesforce.lead (title) VALUES ('gone')")
        conn.execute("SELECT 1/0")


def sync_writes(conn: psycopg.Connection) -> None:
    names = [c.name for c in COLUMNS]
    load.create_staging(conn, "lead", "stage__t", names)
    load.copy_rows(conn, "stage__t", names, [("00Q1", False, "2025-03-01T12:00:00Z", "COO")])
    with conn.transaction():
        load.merge_staged(conn, "lead", "stage__t", names)


def test_a_dropped_listener_reconnects_and_wakes_once(conn, monkeypatch, capfd):
    monkeypatch.setattr(events, "RETRY_SECONDS", 0.2)
    channel = events.outbox_channel("lead")

    async def scenario() -> None:
        watching = Watching(WarehouseNotifyTrigger(WAREHOUSE_CONN_ID, channel, DEBOUNCE, "Lead"))
        pid = await listening(conn, channel)
        await asyncio.to_thread(edit, conn, f"SELECT pg_terminate_backend({pid})")
        # Edits while nobody listens are never notified: the listener wakes the DAG once it is back.
        assert await watching.next() == {"channel": channel, "notifications": 0}
        assert await listening(conn, channel) != pid
        await watching.nothing()
        await asyncio.to_thread(edit, conn, "INSERT INTO salesforce.lead (title) VALUES ('CEO')")
        assert (await watching.next())["notifications"] == 1
        await watching.stop()

    asyncio.run(scenario())
    logged = "".join(capfd.readouterr())  # the trigger's log, as Airflow writes it
    assert f"listening on {channel} failed (OperationalError: " in logged
    assert f"Listening on {channel} again" in logged


# -- what the watchers record -----------------------------------------------------------------------


def recorded(url: str, source: str) -> dict[str, Any] | None:
    """Lead's watcher of ``source``, as it last recorded itself."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM sfsync.watchers WHERE sobject = 'Lead' AND source = %s", [source]
        ).fetchone()


async def until(url: str, source: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The watcher's row, once ``check`` holds for it."""
    deadline = time.monotonic() + 20
    while (row := await asyncio.to_thread(recorded, url, source)) is None or not check(row):
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.05)
    return row


def lead_status(url: str) -> status.ObjectStatus:
    """Lead's status by the demo registry (where Lead has events)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return status.object_status(conn, load_registry(DEFAULT_REGISTRY), "Lead")


TRIGGERER_SILENT = (
    r"warehouse edits not watched: no word from the triggerer since (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC"
    r" \(is it running, and the DAG unpaused\?\): syncing on the 5-minute schedule"
)


def test_a_lost_listener_is_recorded_failing_then_following_again(conn, warehouse_url, monkeypatch):
    monkeypatch.setattr(events, "RETRY_SECONDS", 1.0)  # time enough to see it failing
    monkeypatch.setattr(watchers, "HEARTBEAT_SECONDS", 0.3)
    channel = events.outbox_channel("lead")

    async def scenario() -> None:
        watching = Watching(WarehouseNotifyTrigger(WAREHOUSE_CONN_ID, channel, DEBOUNCE, "Lead"))
        pid = await listening(conn, channel)
        first = await until(warehouse_url, WAREHOUSE_EDITS, lambda r: r["state"] == "following")
        assert (first["error"], first["retry_at"], first["woken_at"], first["wakes"]) == (None, None, None, 0)
        beat = await until(warehouse_url, WAREHOUSE_EDITS, lambda r: r["checked_at"] > first["checked_at"])
        assert beat["since"] == first["since"], "a heartbeat, not a new state"

        await asyncio.to_thread(edit, conn, f"SELECT pg_terminate_backend({pid})")
        failing = await until(warehouse_url, WAREHOUSE_EDITS, lambda r: r["state"] == "failing")
        assert failing["error"].startswith("OperationalError: "), failing["error"]
        assert failing["since"] > first["since"] and failing["retry_at"] > failing["since"]

        assert await watching.next() == {"channel": channel, "notifications": 0}  # listening again
        again = await until(warehouse_url, WAREHOUSE_EDITS, lambda r: r["wakes"] == 1)
        assert (again["state"], again["retry_at"]) == ("following", None)
        assert again["since"] > failing["since"] and again["woken_at"] >= again["since"]
        assert again["error"] == failing["error"], "the last error stays, for the page"
        await watching.stop()

    asyncio.run(scenario())
    edits = {w.source: w for w in lead_status(warehouse_url).watchers}[WAREHOUSE_EDITS]
    assert (edits.state, edits.wakes, edits.retry_at) == ("following", 1, None)
    with psycopg.connect(warehouse_url, autocommit=True) as c:  # the triggerer stopped 4 minutes ago
        c.execute("UPDATE sfsync.watchers SET checked_at = checked_at - interval '4 minutes'")
    lead = lead_status(warehouse_url)
    assert [(w.source, w.state) for w in lead.watchers] == [
        (CHANGE_EVENTS, status.NOT_RUNNING),  # never heard from
        (WAREHOUSE_EDITS, status.NOT_RUNNING),
    ]
    assert lead.health == status.LATE
    assert lead.reasons[0].startswith("Salesforce change events not watched: no word from the triggerer yet")
    assert re.fullmatch(TRIGGERER_SILENT, lead.reasons[1]), lead.reasons[1]


# -- Salesforce change events ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOrg]:
    """An org whose integration user has View All on Lead (so it may read its change events), holding an
    idle /meta/connect 2 s (Salesforce: 110 s); ``salesforce_default`` is its integration user."""
    data_dir = tmp_path_factory.mktemp("events")
    org_file = changed_org_file(data_dir / "org.yaml", view_all(["Lead"]))
    with (
        running_org(data_dir / "org", org_file=org_file, streaming_timeout_ms=2000) as running,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("REQUESTS_CA_BUNDLE", str(running.ca_file))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", running.airflow_conn_json("integration"))
        create_lead(running)  # a first change event to replay from
        yield running


def tls(org: RunningOrg) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(org.ca_file))


def create_lead(org: RunningOrg, user: str = "admin") -> str:
    """A Lead created over REST by a user of the org (``integration``: as the sync's push writes)."""
    return str(Salesforce(**org.salesforce_kwargs(user)).Lead.create(sample_lead())["id"])


def create_leads(org: RunningOrg, count: int) -> None:
    """``count`` Leads created by the admin in one sObject Collections call (one transaction)."""
    records = [{"attributes": {"type": "Lead"}, **sample_lead()} for _ in range(count)]
    answers = Salesforce(**org.salesforce_kwargs("admin")).restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert all(answer["success"] for answer in answers), answers


def watch_leads(org: RunningOrg, store: StateStore) -> Watching:
    """The trigger of Lead's change events; with nothing stored, from the org's latest event, so a change
    made while it subscribes is replayed to it (-1 would read only what comes after its subscription)."""
    store.values.setdefault(REPLAY_KEY, latest_replay_id(org))
    trigger = SalesforceChangeEventTrigger(SALESFORCE_CONN_ID, "Lead", DEBOUNCE, WAREHOUSE_CONN_ID)
    trigger.asset_state_store = store  # type: ignore[attr-defined]  # as the triggerer injects it
    return Watching(trigger)


async def woken(org: RunningOrg, watching: Watching) -> None:
    """A lead created now wakes the trigger."""
    await asyncio.to_thread(create_lead, org)
    assert (await watching.next())["changes"] == 1


def latest_replay_id(org: RunningOrg) -> int:
    with sqlite3.connect(org.data_dir / DB_FILE) as db:
        return int(db.execute("SELECT MAX(replay_id) FROM _change_events").fetchone()[0])


def test_salesforce_changes_wake_once_a_burst_and_the_replay_id_is_kept(org):
    store = StateStore()

    async def scenario() -> None:
        watching = watch_leads(org, store)
        # One call of three records: their events come together whatever the machine's load (three
        # calls could take longer than the debounce between them).
        await asyncio.to_thread(create_leads, org, 3)
        assert await watching.next() == {"channel": "/data/LeadChangeEvent", "changes": 3}
        await watching.nothing()
        await watching.stop()

    asyncio.run(scenario())
    assert store.values == {REPLAY_KEY: latest_replay_id(org)}


def test_a_subscriber_with_view_all_wakes_the_dag_for_an_integration_user_without_it(tmp_path, monkeypatch):
    """Salesforce refuses an object's change events to a user without View All on it (the default org's
    integration user): ``salesforce_events`` names one who has it (the admin), only to wake the DAG; the
    changes the integration user made still wake nothing."""
    with running_org(tmp_path / "org", streaming_timeout_ms=2000) as default_org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_org.ca_file))
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", default_org.airflow_conn_json("integration"))
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_EVENTS", default_org.airflow_conn_json("admin"))
        create_lead(default_org)  # a first change event to replay from

        async def scenario() -> None:
            store = StateStore()
            store.values[REPLAY_KEY] = latest_replay_id(default_org)
            trigger = SalesforceChangeEventTrigger(
                SALESFORCE_EVENTS_CONN_ID, "Lead", DEBOUNCE, WAREHOUSE_CONN_ID
            )
            trigger.asset_state_store = store  # type: ignore[attr-defined]  # as the triggerer injects it
            watching = Watching(trigger)
            await asyncio.to_thread(create_lead, default_org, "integration")  # as the push writes
            await watching.nothing()
            await asyncio.to_thread(create_lead, default_org, "admin")
            assert await watching.next() == {"channel": "/data/LeadChangeEvent", "changes": 1}
            await watching.stop()

        asyncio.run(scenario())


def test_the_integration_users_own_writes_wake_nothing(org):
    async def scenario() -> None:
        watching = watch_leads(org, StateStore())
        await asyncio.to_thread(create_lead, org, "integration")  # as the push writes
        await watching.nothing()
        await asyncio.to_thread(create_lead, org, "integration")
        await asyncio.to_thread(create_lead, org, "admin")
        assert (await watching.next())["changes"] == 1, "only the admin's change counts"
        await watching.stop()

    asyncio.run(scenario())


def test_a_restart_continues_from_the_stored_replay_id(org):
    store = StateStore()

    async def scenario() -> None:
        watching = watch_leads(org, store)
        await woken(org, watching)
        await watching.stop()
        await asyncio.to_thread(create_lead, org)  # while the trigger is down
        again = watch_leads(org, store)
        assert (await again.next())["changes"] == 1, "the change made while down wakes the DAG"
        await again.nothing()
        await again.stop()

    asyncio.run(scenario())
    assert store.values[REPLAY_KEY] == latest_replay_id(org)


def test_a_replay_id_salesforce_no_longer_keeps_wakes_at_once_then_new_events(org, capfd):
    store = StateStore()
    store.values[REPLAY_KEY] = 10**9  # never given (as one past its 72 hours)

    async def scenario() -> None:
        watching = watch_leads(org, store)
        assert await watching.next() == {"channel": "/data/LeadChangeEvent", "changes": 1}
        await woken(org, watching)
        await watching.stop()

    asyncio.run(scenario())
    logged = "".join(capfd.readouterr())
    assert "Salesforce no longer has replay id 1000000000: reading new events only" in logged
    assert store.values[REPLAY_KEY] == latest_replay_id(org)


def test_a_watcher_wakes_its_dag_while_it_cannot_record_its_state(org, unused_port, monkeypatch, capfd):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MARKETING_WAREHOUSE", f"postgres://sync@127.0.0.1:{unused_port}/warehouse"
    )

    async def scenario() -> None:
        watching = watch_leads(org, StateStore())
        await woken(org, watching)
        await watching.stop()

    asyncio.run(scenario())
    logged = "".join(capfd.readouterr())
    assert "Could not record the watcher's state in the warehouse (OperationalError: " in logged


def test_a_refused_subscription_is_recorded_and_the_object_late_until_a_watcher_follows(
    tmp_path, monkeypatch, warehouse_url
):
    """The default org's integration user has no View All on Lead: Salesforce refuses it Lead's change events,
    which the watcher records in words and the status page shows; a watcher subscribing as the admin
    (``salesforce_events``) follows them, and records its wake."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrations.migrate(conn)
    with running_org(tmp_path / "org", streaming_timeout_ms=2000) as default_org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_org.ca_file))
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", default_org.airflow_conn_json("integration"))
        store = StateStore()
        create_lead(default_org)  # a first change event to replay from
        store.values[REPLAY_KEY] = latest_replay_id(default_org)

        async def refused() -> dict[str, Any]:
            trigger = SalesforceChangeEventTrigger(SALESFORCE_CONN_ID, "Lead", DEBOUNCE, WAREHOUSE_CONN_ID)
            trigger.asset_state_store = store  # type: ignore[attr-defined]  # as the triggerer injects it
            watching = Watching(trigger)
            row = await until(warehouse_url, CHANGE_EVENTS, lambda r: r["state"] == "failing")
            await watching.stop()
            return row

        failing = asyncio.run(refused())
        assert failing["error"] == (
            "StreamingError: Salesforce refused the subscription to /data/LeadChangeEvent: 403::Forbidden"
            " (the subscribing user (salesforce_events, else salesforce_default) needs View All on the object"
            " (or View All Data))"
        )
        assert failing["retry_at"] > failing["since"]
        password = json.loads(default_org.airflow_conn_json("integration"))["password"]
        assert password not in failing["error"]
        lead = lead_status(warehouse_url)
        changes = {w.source: w for w in lead.watchers}[CHANGE_EVENTS]
        assert (changes.state, changes.error) == ("failing", failing["error"])
        assert lead.health == status.LATE
        since = failing["since"].astimezone(dt.UTC).strftime("%H:%M UTC")
        assert (
            f"Salesforce change events failing since {since} ({failing['error']}): syncing on the 5-minute"
            " schedule" in lead.reasons
        ), lead.reasons

        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_EVENTS", default_org.airflow_conn_json("admin"))

        async def following() -> dict[str, Any]:
            trigger = SalesforceChangeEventTrigger(
                SALESFORCE_EVENTS_CONN_ID, "Lead", DEBOUNCE, WAREHOUSE_CONN_ID
            )
            trigger.asset_state_store = store  # type: ignore[attr-defined]
            watching = Watching(trigger)
            followed = await until(warehouse_url, CHANGE_EVENTS, lambda r: r["state"] == "following")
            assert followed["since"] > failing["since"] and followed["woken_at"] is None
            await asyncio.to_thread(create_lead, default_org, "admin")
            assert (await watching.next())["changes"] == 1
            row = await until(warehouse_url, CHANGE_EVENTS, lambda r: r["wakes"] == 1)
            assert row["woken_at"] >= followed["since"] and row["since"] == followed["since"]
            await watching.stop()
            return row

        woke = asyncio.run(following())
    lead = lead_status(warehouse_url)
    changes = {w.source: w for w in lead.watchers}[CHANGE_EVENTS]
    assert (changes.state, changes.wakes, changes.woken_at) == ("following", 1, woke["woken_at"])
    assert not any(reason.startswith("Salesforce change events") for reason in lead.reasons), lead.reasons


def test_a_forgotten_client_handshakes_again_and_an_invalid_session_logs_in_again(org, monkeypatch):
    sessions: list[streaming.Session] = []
    session_from = streaming.session_from

    def recorded(sf: Any) -> streaming.Session:
        sessions.append(session_from(sf))
        return sessions[-1]

    monkeypatch.setattr(streaming, "session_from", recorded)

    async def scenario() -> None:
        watching = watch_leads(org, StateStore())
        await woken(org, watching)
        fault = {"kind": "unknown_client", "route": "^/cometd/", "count": 1}
        assert (await asyncio.to_thread(org.admin, "faults", fault))[0] == 200
        await asyncio.sleep(2.5)  # the held connect ends; the next one meets 403::Unknown client
        assert (await asyncio.to_thread(org.admin, "faults", None, "GET"))[1]["rules"] == []  # type: ignore[index]
        await woken(org, watching)
        assert len(sessions) == 1, "a new handshake, in the same session"
        revoke = f"{org.base_url}/services/oauth2/revoke"
        form = {"token": sessions[0].token}
        await asyncio.to_thread(lambda: httpx.post(revoke, data=form, verify=tls(org)))
        await asyncio.sleep(2.5)  # the held connect ends; the next one meets 401::Authentication invalid
        await woken(org, watching)
        assert len(sessions) == 2, "logged in again"
        await watching.stop()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 20
