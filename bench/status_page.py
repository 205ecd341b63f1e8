"""How fast the status page's numbers come back with 50 objects and a million runs of history.

Prints figures, asserts nothing. The warehouse is an embedded Postgres filled with 30 days of run history
(``--runs`` in all, spread over ``--objects`` registry objects), a write-back backlog, open errors and
decided conflicts. Each read is timed (median of ``--repeat``), against the budget of 300 ms a page and
against the baseline of one indexed lookup (an object's last run) measured in the same run.

    .venv/bin/python bench/status_page.py [--objects 50] [--runs 1000000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from localorg.testing import free_port
from sfsync import migrations, status
from sfsync.registry import DEFAULT_REGISTRY, load_registry
from sfsync.ui import pages
from sfsync_dev.embedded import EmbeddedWarehouse

BUDGET_MS = 300.0


def registry_file(scratch: Path, objects: int) -> Path:
    """The default registry, and custom objects up to ``objects`` in all."""
    lines = ["objects:"]
    default = load_registry(DEFAULT_REGISTRY).objects
    lines += [f"  - {{sobject: {e.sobject}, direction: {e.direction}}}" for e in default]
    lines += [f"  - {{sobject: Bench{i}__c, direction: inbound}}" for i in range(objects - len(default))]
    path = scratch / "objects.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fill(conn: psycopg.Connection, sobjects: list[str], runs: int) -> None:
    """``runs`` runs over the last 30 days, round-robin over the objects, and the rest of a busy sync."""
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO sfsync.sync_runs (run_id, sobject, direction, status, new, updated, deleted, skipped,"
        " api_calls, started_at, finished_at, window_start, watermark)"
        " SELECT 'scheduled__' || n, (%(objects)s::text[])[1 + n %% cardinality(%(objects)s::text[])],"
        " (ARRAY['inbound', 'inbound', 'inbound', 'outbound', 'reconcile'])[1 + n %% 5],"
        " CASE WHEN n %% 97 = 0 THEN 'skipped' ELSE 'merged' END,"
        " n %% 7, n %% 13, n %% 3, n %% 11, 1 + n %% 4,"
        " at, at + interval '2 seconds', at - interval '5 minutes', at"
        " FROM generate_series(1, %(runs)s) AS n,"
        " LATERAL (SELECT now() - interval '30 days' * (n::float8 / %(runs)s)) AS t(at)",
        {"objects": sobjects, "runs": runs},
    )
    conn.execute(
        "INSERT INTO sfsync.sync_state (sobject, watermark) SELECT s, now() - interval '3 minutes'"
        " FROM unnest(%s::text[]) AS s",
        [sobjects],
    )
    conn.execute(
        "INSERT INTO sfsync.outbox (sobject, row_id, operation, changed, changed_at)"
        " SELECT (%s::text[])[1 + n %% 4], n, 'update', '{}'::jsonb, now() - interval '1 second' * n"
        " FROM generate_series(1, 10000) AS n",
        [sobjects[:4]],
    )
    conn.execute(
        "INSERT INTO sfsync.sync_errors (sobject, row_id, operation, status_code, message, transient,"
        " change_id) SELECT (%s::text[])[1 + n %% 4], n, 'update', 'FIELD_CUSTOM_VALIDATION_EXCEPTION',"
        " 'refused', n %% 2 = 0, n FROM generate_series(1, 1000) AS n",
        [sobjects[:4]],
    )
    conn.execute(
        "INSERT INTO sfsync.conflicts (sobject, row_id, change_id, field, winner, reason, decided_at)"
        " SELECT (%s::text[])[1 + n %% 4], n, n, 'Title', 'warehouse', 'both changed',"
        " now() - interval '1 minute' * n FROM generate_series(1, 50000) AS n",
        [sobjects[:4]],
    )
    conn.execute("ANALYZE")
    print(f"filled {runs:,} runs over {len(sobjects)} objects in {time.perf_counter() - started:.1f} s")


def median_ms(read: Callable[[], Any], repeat: int) -> float:
    read()  # warm: plans cached, pages in memory, as on a page viewed more than once
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfsync-bench-") as scratch:
        os.environ["SFSYNC_REGISTRY"] = str(registry_file(Path(scratch), args.objects))
        registry = load_registry()
        sobjects = [e.sobject for e in registry.enabled()]
        pg = EmbeddedWarehouse(Path(scratch) / "pg", free_port()).start()
        try:
            with psycopg.connect(pg.url(), autocommit=True) as conn:
                migrations.migrate(conn)
                fill(conn, sobjects, args.runs)
                baseline = median_ms(
                    lambda: conn.execute(
                        "SELECT * FROM sfsync.sync_runs WHERE sobject = %s ORDER BY started_at DESC LIMIT 1",
                        [sobjects[0]],
                    ).fetchall(),
                    args.repeat,
                )
                busy = sobjects[0]  # one with a backlog, errors and conflicts
                page, everyone = (
                    pages.Context("/sfsync", "admin", None),
                    frozenset(e.dag_id for e in registry.enabled()),
                )
                reads = {
                    "overview (every object)": lambda: status.overview(conn, registry),
                    "org-wide API budget": lambda: status.org_status(conn, registry),
                    "overview page's data": lambda: (
                        status.overview(conn, registry),
                        status.org_status(conn, registry),
                    ),
                    "object page, 24 hours": lambda: status.object_detail(conn, registry, busy, 1),
                    "object page, 7 days": lambda: status.object_detail(conn, registry, busy, 7),
                    "overview page (data + HTML)": lambda: pages.overview(
                        page, status.overview(conn, registry), status.org_status(conn, registry), {}, everyone
                    ),
                    "object page (data + HTML)": lambda: pages.detail(
                        page,
                        status.object_detail(conn, registry, busy, 1),
                        1,
                        None,
                        may_sync=True,
                        may_edit=True,
                    ),
                    "Prometheus metrics": lambda: status.prometheus(
                        status.overview(conn, registry), status.org_status(conn, registry)
                    ),
                }
                print(f"baseline, one indexed lookup: {baseline:.2f} ms")
                for name, read in reads.items():
                    ms = median_ms(read, args.repeat)
                    verdict = "within" if ms <= BUDGET_MS else "OVER"
                    print(
                        f"{name:26s} {ms:8.1f} ms  {ms / baseline:7.0f}x baseline"
                        f"  {verdict} the {BUDGET_MS:.0f} ms budget"
                    )
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
