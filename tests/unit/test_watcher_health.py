"""How an object's event watchers count in its health: following changes nothing; failing, or not heard from
for three minutes (the triggerer is down, the DAG paused), makes it late, saying why in words. And what of
an error may be recorded: no credentials."""

from __future__ import annotations

import datetime as dt

import pytest

from sfsync import status
from sfsync.registry import SyncSettings
from sfsync.watchers import CHANGE_EVENTS, WAREHOUSE_EDITS, redact

SETTINGS = SyncSettings()
NOW = dt.datetime(2025, 3, 1, 14, 30, tzinfo=dt.UTC)
SINCE = dt.datetime(2025, 3, 1, 14, 2, tzinfo=dt.UTC)
REFUSED = (
    "StreamingError: Salesforce refused the subscription to /data/LeadChangeEvent: 403::Forbidden"
    " (the subscribing user (salesforce_events, else salesforce_default) needs View All on the object"
    " (or View All Data))"
)


def row(state: str, silent_seconds: float, **more: object) -> dict[str, object]:
    """A row of ``status/watchers`` for a watcher last heard from ``silent_seconds`` ago."""
    at = NOW - dt.timedelta(seconds=silent_seconds)
    fields = {"state": state, "since": SINCE, "error": None, "retry_at": None, "woken_at": None, "wakes": 0}
    return fields | {"checked_at": at, "silent_seconds": silent_seconds} | more


def watcher(source: str, state: str, **more: object) -> status.WatcherStatus:
    fields = {
        "since": SINCE,
        "error": None,
        "retry_at": None,
        "woken_at": None,
        "wakes": 0,
        "checked_at": NOW,
    }
    return status.WatcherStatus(source, state, **(fields | more))  # type: ignore[arg-type]


def test_a_watcher_not_heard_from_for_three_minutes_or_never_is_not_running():
    assert status.watcher_status(CHANGE_EVENTS, row("following", 170)).state == "following"
    assert status.watcher_status(CHANGE_EVENTS, row("following", 180)).state == status.NOT_RUNNING
    failing = status.watcher_status(CHANGE_EVENTS, row("failing", 5, error=REFUSED, retry_at=NOW))
    assert (failing.state, failing.error, failing.retry_at) == ("failing", REFUSED, NOW)
    gone = status.watcher_status(CHANGE_EVENTS, row("failing", 600, error=REFUSED, retry_at=SINCE))
    assert (gone.state, gone.error, gone.retry_at) == (status.NOT_RUNNING, REFUSED, None), "no retry to wait"
    assert status.watcher_status(WAREHOUSE_EDITS, None) == status.WatcherStatus(
        WAREHOUSE_EDITS, status.NOT_RUNNING, None, None, None, None, 0, None
    )


def test_following_watchers_leave_the_health_as_it_was():
    following = (watcher(CHANGE_EVENTS, "following"), watcher(WAREHOUSE_EDITS, "following"))
    assert status.health(SETTINGS, 60, 0, None, None, following, now=NOW) == (status.HEALTHY, ())
    assert status.health(SETTINGS, 60, 0, None, None, (), now=NOW) == (status.HEALTHY, ()), "no events"


def test_a_failing_watcher_makes_the_object_late_and_says_why():
    failing = watcher(CHANGE_EVENTS, "failing", error=REFUSED, retry_at=NOW)
    assert status.health(SETTINGS, 60, 0, None, None, (failing,), "*/5 * * * *", NOW) == (
        status.LATE,
        (f"Salesforce change events failing since 14:02 UTC ({REFUSED}): syncing on the 5-minute schedule",),
    )


@pytest.mark.parametrize(
    ("checked_at", "schedule", "reason"),
    [
        (SINCE, "*/5 * * * *", "since 14:02 UTC (is it running, and the DAG unpaused?): syncing on the "
         "5-minute schedule"),
        (None, "*/15 * * * *", "yet (is it running, and the DAG unpaused?): syncing on the 15-minute "
         "schedule"),
        (SINCE - dt.timedelta(days=1), "0 * * * *", "since 2025-02-28 14:02 UTC (is it running, and the DAG "
         "unpaused?): syncing on its schedule (0 * * * *)"),
    ],
)  # fmt: skip
def test_a_watcher_that_does_not_run_makes_the_object_late(checked_at, schedule, reason):
    silent = watcher(WAREHOUSE_EDITS, status.NOT_RUNNING, checked_at=checked_at)
    assert status.health(SETTINGS, 60, 0, None, None, (silent,), schedule, NOW) == (
        status.LATE,
        ("warehouse edits not watched: no word from the triggerer " + reason,),
    )


def test_a_failing_object_stays_failing_and_names_its_watcher_too():
    failing = watcher(CHANGE_EVENTS, "failing", error=REFUSED)
    verdict, reasons = status.health(SETTINGS, None, 100, None, None, (failing,), now=NOW)
    assert verdict == status.FAILING
    assert reasons[0] == "100 open errors" and reasons[1].startswith("Salesforce change events failing")


def test_the_watcher_gauge_says_which_follow():
    lead = status.ObjectStatus(
        "Lead", "lead", "bidirectional", "sf_sync__lead", status.LATE, (), None, None, None, 0, 0, 0, None, 0,
        None, 0, (watcher(CHANGE_EVENTS, "failing"), watcher(WAREHOUSE_EDITS, "following")),
    )  # fmt: skip
    account = status.ObjectStatus(
        "Account", "account", "inbound", "sf_sync__account", status.HEALTHY, (), None, None, None, 0, 0, 0,
        None, 0, None,
    )  # fmt: skip
    text = status.prometheus([lead, account], status.OrgStatus(None, None, None, 0.8, False, None, 0))
    lines = [line for line in text.splitlines() if line.startswith("sfsync_watcher_following")]
    assert lines == [
        'sfsync_watcher_following{object="Lead",source="change_events"} 0.0',
        'sfsync_watcher_following{object="Lead",source="warehouse_edits"} 1.0',
    ]
    assert "# TYPE sfsync_watcher_following gauge" in text


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ('connection to "postgresql://sync:pa55word@db:5432/wh" failed', (),
         'connection to "postgresql://***@db:5432/wh" failed'),
        ("missing \"=\" after \"hunter22\" in connection info string", ("hunter22",),
         "missing \"=\" after \"***\" in connection info string"),
        ("invalid dsn: host=db password=pa55word user=sync", (),
         "invalid dsn: host=db password=*** user=sync"),
        ("401 for https://org.example/cometd?access_token=00D!abc&x=1", (),
         "401 for https://org.example/cometd?access_token=***&x=1"),
        ("sent Authorization: Bearer 00D!AQ.xyz, refused", (), "sent Authorization: Bearer ***, refused"),
        ('{"refresh_token": "5Aep861"}', (), '{"refresh_token": ***}'),
        (REFUSED, ("00D!session",), REFUSED),  # Salesforce's own words stay as they are
    ],
)  # fmt: skip
def test_errors_are_recorded_without_credentials(text, secrets, expected):
    assert redact(text, secrets) == expected
