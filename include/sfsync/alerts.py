"""Alerts: an object whose lag or open errors reach the registry's thresholds raises an alert, and the
registry's Airflow notifier is called with a message naming the object and the cause.

An alert is raised once (``sfsync.alerts``), so a lagging object does not notify every five minutes; it is
cleared when its cause goes away, and a later crossing raises it again. A notifier that fails leaves the
alert unraised, so the next run tries again.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from sfsync import status
from sfsync.registry import Registry, SyncSettings

log = logging.getLogger(__name__)


def causes(settings: SyncSettings, now: status.ObjectStatus) -> dict[str, str]:
    """What the object passed, by cause (``lag``, ``errors``), in words."""
    found = {}
    lag_minutes = (now.lag_seconds or 0) / 60
    if settings.alert_lag_minutes is not None and lag_minutes >= settings.alert_lag_minutes:
        found["lag"] = (
            f"{now.sobject} is {lag_minutes:.0f} minutes behind Salesforce "
            f"(alert at {settings.alert_lag_minutes:g} minutes)"
        )
    if settings.alert_open_errors is not None and now.open_errors >= settings.alert_open_errors:
        found["errors"] = (
            f"{now.sobject} has {now.open_errors} open write-back errors "
            f"(alert at {settings.alert_open_errors})"
        )
    return found


def check(conn: psycopg.Connection, registry: Registry, sobject: str, context: Any) -> list[str]:
    """Raise the object's new alerts (calling the notifier) and clear those whose cause went away; the
    messages of the alerts raised now."""
    settings = registry.settings
    now = status.object_status(conn, registry, sobject)
    found = causes(settings, now)
    conn.execute(
        "UPDATE sfsync.alerts SET cleared_at = now() WHERE sobject = %s AND cleared_at IS NULL"
        " AND NOT cause = ANY(%s)",
        [now.sobject, list(found)],
    )
    sent = []
    for cause, message in found.items():
        # Claimed before the notifier is called: of two checks at once only one notifies, and a notifier
        # that fails rolls the claim back, so the next run tries again.
        with conn.transaction():
            claimed = conn.execute(
                "INSERT INTO sfsync.alerts (sobject, cause, message) VALUES (%s, %s, %s)"
                " ON CONFLICT (sobject, cause) WHERE cleared_at IS NULL DO NOTHING",
                [now.sobject, cause, message],
            ).rowcount
            if not claimed:
                continue
            log.warning("alert: %s", message)
            if settings.alert_notifier:
                notify(settings, context, message)
        sent.append(message)
    return sent


def notify(settings: SyncSettings, context: Any, message: str) -> None:
    """Call the registry's notifier, with the message in its template context as ``sfsync_alert``."""
    from airflow.sdk.module_loading import import_string

    assert settings.alert_notifier is not None
    notifier = import_string(settings.alert_notifier)(**settings.alert_notifier_args)
    notifier({**context, "sfsync_alert": message})
