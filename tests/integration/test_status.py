"""The sync's status from real run history: syncs of the local org through real DAG runs, a write-back that
Salesforce refuses, then what the status page reads, what its actions change, and the history's pruning."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from simple_salesforce import Salesforce

from localorg.testing import sample_lead
from sfsync import state, status
from sfsync.registry import load_registry

pytestmark = pytest.mark.integration


def one(url: str, query: str, params: list | None = None):
    with psycopg.connect(url) as conn:
        return conn.execute(query, params or []).fetchone()


def test_the_status_says_what_the_run_history_says(sync, private_org, warehouse_url, registry):
    registry("lag_late_minutes: 15, lag_failing_minutes: 60, errors_late: 1, errors_failing: 2")
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        leads = [admin.Lead.create(sample_lead(LastName=f"Status{i}"))["id"] for i in range(3)]
        sync("lead")
        sync("account")
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("UPDATE salesforce.lead SET title = 'VP' WHERE id = %s", [leads[0]])
        assert org.admin("faults", {"kind": "lock_row", "count": 1})[0] == 200
        sync("lead")  # the edit fails transiently: an open error, retried after its backoff

        reg = load_registry()
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            by_object = {s.sobject: s for s in status.overview(conn, reg)}
            lead, account = by_object["Lead"], by_object["Account"]
            assert set(by_object) == {e.sobject for e in reg.enabled()}
            written = one(
                warehouse_url,
                "SELECT sum(written) FILTER (WHERE direction <> 'outbound'), sum(api_calls)"
                " FROM sfsync.sync_runs WHERE sobject = 'Lead'",
            )
            assert (lead.rows_in_24h, lead.api_calls_24h) == (written[0], written[1])
            assert lead.rows_in_24h >= 3 and lead.rows_out_24h == 0
            (watermark,) = one(
                warehouse_url, "SELECT watermark FROM sfsync.sync_state WHERE sobject = 'Lead'"
            )
            (now,) = one(warehouse_url, "SELECT now()")
            assert abs(lead.lag_seconds - (now - watermark).total_seconds()) < 5
            assert (lead.backlog, lead.open_errors) == (1, 1)
            assert lead.health == status.LATE and lead.reasons == ("1 open error",)
            assert lead.last_run is not None and lead.last_success_at is not None
            assert account.health == status.HEALTHY and account.reasons == () and account.backlog == 0
            assert by_object["Opportunity"].last_run is None and by_object["Opportunity"].lag_seconds is None

            detail = status.object_detail(conn, reg, "Lead", days=1)
            assert len(detail.series) in (24, 25), "every hourly bucket of the day, empty ones too"
            assert sum(p.rows_in for p in detail.series) == lead.rows_in_24h
            assert sum(p.api_calls for p in detail.series) == lead.api_calls_24h
            (error,) = detail.errors
            assert (error.status_code, error.sfid, error.transient, error.attempts) == (
                "UNABLE_TO_LOCK_ROW", leads[0], True, 1,
            )  # fmt: skip
            assert error.next_attempt_at > now, "it waits out its backoff"
            assert {r.direction for r in detail.runs} == {"inbound", "outbound", "reconcile"}
            assert len(status.object_detail(conn, reg, "Lead", days=7).series) in (28, 29)

            assert status.retry_now(conn, "Lead", error.row_id, "ops@example.com")
            assert not status.retry_now(conn, "Lead", error.row_id, "ops@example.com"), "due already"
            assert status.dismiss(conn, "Lead", error.row_id, "ops@example.com")
            assert (
                status.overview(conn, reg)[
                    [s.sobject for s in status.overview(conn, reg)].index("Lead")
                ].open_errors
                == 0
            )
            actions = conn.execute(
                "SELECT action, sobject, row_id, username FROM sfsync.actions ORDER BY at"
            ).fetchall()
            assert actions == [
                ("retry now", "Lead", error.row_id, "ops@example.com"),
                ("dismiss", "Lead", error.row_id, "ops@example.com"),
            ]

        sync("lead")  # retried now, not after its backoff: the edit lands, and the error is gone
        assert admin.Lead.get(leads[0])["Title"] == "VP"
        assert one(warehouse_url, "SELECT count(*) FROM sfsync.sync_errors") == (0,)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            lead = next(s for s in status.overview(conn, reg) if s.sobject == "Lead")
            assert (lead.rows_out_24h, lead.backlog, lead.health) == (1, 0, status.HEALTHY)

            org_now = status.org_status(conn, reg)
            used, limit = one(warehouse_url, "SELECT used, max FROM sfsync.api_usage ORDER BY seen_at DESC")
            assert (org_now.used, org_now.limit, org_now.holding) == (used, limit, False)

            metrics = status.prometheus(status.overview(conn, reg), org_now)
            assert 'sfsync_rows_out_24h{object="Lead"} 1.0' in metrics
            assert f"sfsync_org_api_requests_used {float(used)}" in metrics
            assert all(line.startswith("#") or len(line.split(" ")) == 2 for line in metrics.splitlines())
            json = status.to_json(status.object_detail(conn, reg, "Lead"))
            assert json["status"]["sobject"] == "Lead" and isinstance(json["runs"][0]["started_at"], str)


def test_a_lagging_or_failing_object_says_why():
    settings = load_registry().settings
    failed = status.RunSummary("r", "outbound", "failed", dt.datetime.now(dt.UTC), None, "SalesforceError: x")
    assert status.health(settings, 60, 0, None, None) == (status.HEALTHY, ())
    assert status.health(settings, 20 * 60, 0, None, None) == (status.LATE, ("20 minutes behind Salesforce",))
    assert status.health(settings, 3 * 3600, 0, 45 * 60, failed) == (
        status.FAILING,
        ("3 hours behind Salesforce", "its last outbound run failed: SalesforceError: x",
         "a warehouse change waiting 45 minutes for its push"),
    )  # fmt: skip
    assert status.health(settings, None, 100, None, None) == (status.FAILING, ("100 open errors",))


def test_run_history_older_than_its_days_is_pruned_and_runs_at_work_stay(warehouse_url):
    from sfsync.migrations import migrate

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO sfsync.sync_runs (run_id, sobject, status, started_at, finished_at) VALUES"
            " ('old', 'Lead', 'merged', now() - interval '31 days', now() - interval '31 days'),"
            " ('stuck', 'Lead', 'extracting', now() - interval '31 days', NULL),"
            " ('recent', 'Lead', 'merged', now() - interval '29 days', now() - interval '29 days')"
        )
        conn.execute(
            "INSERT INTO sfsync.actions (action, sobject, username, at) VALUES"
            " ('sync now', 'Lead', 'a', now() - interval '31 days'), ('sync now', 'Lead', 'b', now())"
        )
        assert state.prune_history(conn, 30) == {"sync_runs": 1, "conflicts": 0, "actions": 1}
        left = conn.execute("SELECT run_id FROM sfsync.sync_runs ORDER BY run_id").fetchall()
        assert left == [("recent",), ("stuck",)]
        assert state.prune_history(conn, 30) == {"sync_runs": 0, "conflicts": 0, "actions": 0}
