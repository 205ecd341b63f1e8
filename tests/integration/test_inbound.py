"""The incremental sync, Salesforce to warehouse: real local org, real Postgres, real Airflow runs.

After every scenario the whole table is compared with what the integration user reads from the org
(queryAll: every visible record, every visible field, deletes flagged).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time

import psycopg
import pytest
from simple_salesforce import Salesforce

from localorg.store import Org
from localorg.testing import sample_lead
from sfsync import full_load, load, salesforce, state, warehouse
from sfsync.context import run_step
from sfsync.extract import extract
from sfsync.merge import merge
from sfsync.migrations import migrate
from sfsync.reconcile import reconcile
from sfsync.registry import load_registry

pytestmark = pytest.mark.integration


def test_lead_lifecycle_initial_changes_and_idle(sync, admin, hidden, matches_org, warehouse_url):
    visible = [admin.Lead.create(sample_lead(LastName=f"Visible{i}"))["id"] for i in range(5)]
    invisible = hidden.Lead.create(sample_lead(LastName="Secret"))["id"]

    first = sync("lead")
    assert first["status"] == "merged" and first["new"] >= 5
    assert matches_org("Lead") >= 5
    with psycopg.connect(warehouse_url) as conn:
        (took,) = conn.execute(
            "SELECT duration FROM sfsync.sync_runs WHERE sobject = 'Lead' ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        assert dt.timedelta(0) < took < dt.timedelta(minutes=1), "the run's duration, next to its counters"
        assert conn.execute("SELECT count(*) FROM salesforce.lead WHERE id = %s", [invisible]).fetchone() == (
            0,
        )
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'lead'"
            )
        }
    assert "internal_rating__c" not in columns, "a field hidden from the integration user never appears"

    admin.Lead.update(visible[0], {"Status": "Working - Contacted"})
    admin.Lead.delete(visible[1])
    changed = sync("lead")
    assert (changed["updated"], changed["deleted"]) == (1, 1)
    assert matches_org("Lead") >= 5

    def versions() -> list[tuple]:
        with psycopg.connect(warehouse_url) as conn:
            rows = conn.execute("SELECT _sfsync_row_id, xmin::text FROM salesforce.lead ORDER BY 1")
            return rows.fetchall()

    before = versions()
    idle = sync("lead")
    assert (idle["new"], idle["updated"], idle["deleted"]) == (0, 0, 0), "a second run changes nothing"
    assert versions() == before, "and writes no row (not even the same values again)"
    assert idle["api_calls"] == 1, "describe and delta in one composite call"
    assert matches_org("Lead") >= 5


def test_only_a_run_that_changed_rows_gives_its_table_asset_an_event(sync, admin):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    def events() -> int:
        with create_session() as session:
            return session.scalar(
                select(func.count())
                .select_from(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == "salesforce.lead")
            )

    admin.Lead.create(sample_lead(LastName="Fresh"))
    before = events()
    assert sync("lead")["new"] >= 1
    assert events() == before + 1, "fresh data: an event for the DAGs scheduled on the table"
    assert sync("lead")["new"] == 0
    assert events() == before + 1, "no change: no event (the merge task ends skipped)"


def _store(org) -> Org:
    """Direct access to a running org's store: for history that cannot be made through the API."""
    return Org(org.data_dir, org.definition)


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def test_records_sharing_one_systemmodstamp_across_page_boundaries(sync, registry, private_org, matches_org):
    registry(Lead="page_size: 200")
    with private_org() as org:
        store = _store(org)
        with store.write(store.users["admin@localorg.test"]) as txn:  # one transaction, one SystemModstamp
            for i in range(450):
                store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"Tied{i}"))
        first = sync("lead")
        assert first["new"] == 450 and first["api_calls"] == 1 + 3, "describe, then 3 pages of 200"
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        assert matches_org("Lead", integration) == 450
        again = sync("lead")
        assert (again["new"], again["updated"], again["skipped"]) == (0, 0, 450), "re-read, never re-applied"


def test_late_commit_inside_the_lookback_is_caught(sync, private_org, matches_org, warehouse_url):
    with private_org() as org:
        store, integration = _store(org), Salesforce(**org.salesforce_kwargs("integration"))
        integration.Lead.create(sample_lead(LastName="Early"))
        sync("lead")
        with psycopg.connect(warehouse_url) as conn:
            (watermark,) = conn.execute(
                "SELECT watermark FROM sfsync.sync_state WHERE sobject = 'Lead'"
            ).fetchone()
        # A transaction that committed after the last run, stamped a minute before that run's window ended.
        with store.write(store.users["admin@localorg.test"], at=_ms(watermark) - 60_000) as txn:
            late = store.save(txn, store.schema.objects["lead"], sample_lead(LastName="Late"))
        assert sync("lead")["new"] == 1
        assert matches_org("Lead", integration) == 2
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT lastname FROM salesforce.lead WHERE id = %s", [late]).fetchone() == (
                "Late",
            )


def _lead_fields(document) -> list:
    return next(o for o in document["objects"] if o["name"] == "Lead")["fields"]


def test_new_field_is_added_and_a_field_turning_invisible_stops_updating(
    sync, private_org, org_definition, matches_org, warehouse_url, tmp_path
):
    data = tmp_path / "org"
    with private_org(data) as org:
        lead = Salesforce(**org.salesforce_kwargs("admin")).Lead.create(sample_lead(Title="CTO"))["id"]
        sync("lead")

    def add_score(document):
        _lead_fields(document).append({"name": "Score__c", "type": "double", "precision": 5, "scale": 1})

    with private_org(data, org_definition(add_score)) as org:
        Salesforce(**org.salesforce_kwargs("admin")).Lead.update(lead, {"Score__c": 42.5})
        assert sync("lead")["updated"] == 1
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute("SELECT score__c FROM salesforce.lead WHERE id = %s", [lead]).fetchone() == (
                decimal.Decimal("42.5"),
            )
            assert conn.execute(
                "SELECT numeric_precision, numeric_scale FROM information_schema.columns"
                " WHERE table_name = 'lead' AND column_name = 'score__c'"
            ).fetchone() == (5, 1)

    def hide_title(document):
        add_score(document)
        profile = next(p for p in document["profiles"] if p["name"] == "Integration User")
        profile["hidden_fields"]["Lead"].append("Title")

    with private_org(data, org_definition(hide_title)) as org:
        Salesforce(**org.salesforce_kwargs("admin")).Lead.update(lead, {"Title": "CEO", "Score__c": 50})
        changed = sync("lead")
        assert changed["status"] == "merged" and changed["updated"] == 1, (
            "a field turning invisible fails nothing"
        )
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(warehouse_url) as conn:
            row = conn.execute("SELECT title, score__c FROM salesforce.lead WHERE id = %s", [lead]).fetchone()
        assert row == ("CTO", decimal.Decimal("50.0")), "the hidden column keeps its last visible value"


def test_a_field_made_visible_is_filled_in_on_records_that_do_not_change(
    sync, private_org, org_definition, matches_org, warehouse_url, tmp_path
):
    data = tmp_path / "org"
    with private_org(data) as org:
        store = _store(org)
        hour_ago = _ms(dt.datetime.now(dt.UTC)) - 3_600_000  # before the lookback of every later run
        with store.write(store.users["admin@localorg.test"], at=hour_ago) as txn:
            leads = [
                store.save(txn, store.schema.objects["lead"], sample_lead(Internal_Rating__c="ABC"[i]))
                for i in range(3)
            ]
        sync("lead")

    def show_rating(document):
        profile = next(p for p in document["profiles"] if p["name"] == "Integration User")
        profile["hidden_fields"]["Lead"].remove("Internal_Rating__c")

    registry = load_registry()
    entry, run_id = registry.get("Lead"), "manual__rating"
    with private_org(data, org_definition(show_rating)) as org, pytest.MonkeyPatch.context() as patched:
        # A first run meets the field and fails for good; the next run still knows to read it all.
        patched.setattr("sfsync.extract.source", lambda *args: (_ for _ in ()).throw(TimeoutError("gave up")))
        with pytest.raises(TimeoutError):
            run_step(extract, "manual__failed", entry, settings=registry.settings)
        patched.undo()
        first = run_step(extract, run_id, entry, settings=registry.settings)
        # The worker dies before the merge; the retry reads every record again too, though the field list
        # is the remembered one by now.
        retried = run_step(extract, run_id, entry, settings=registry.settings)
        assert first["rows"] == retried["rows"] >= 3
        merged = run_step(merge, run_id, entry, retried, settings=registry.settings)
        assert merged["updated"] >= 3, "no record changed, every one gets the field"
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        with psycopg.connect(warehouse_url) as conn:
            rated = conn.execute(
                "SELECT id, internal_rating__c FROM salesforce.lead WHERE id = ANY(%s) ORDER BY id", [leads]
            ).fetchall()
        assert rated == sorted((lead, "ABC"[i]) for i, lead in enumerate(leads))
        idle = sync("lead")
        assert (idle["new"], idle["updated"], idle["api_calls"]) == (0, 0, 1), "then back to deltas"


@pytest.mark.parametrize("bulk_threshold", [2000, 2])  # read by Id, or every record again through Bulk
def test_records_turning_visible_without_changing_are_found_by_the_reconciliation(
    sync, registry, private_org, org_definition, matches_org, warehouse_url, tmp_path, bulk_threshold
):
    registry(Lead=f"bulk_threshold: {bulk_threshold}")

    def share_confidential(document):
        document["sharing_rules"].append(
            {"name": "Confidential_to_Integration", "objects": ["Lead"], "owned_by_role": "Confidential",
             "shared_with_role": "Integration"}
        )  # fmt: skip

    def reconciled_now(run_id: str) -> dict:
        return run_step(reconcile, run_id, load_registry().get("Lead"), force=True)

    def held(lead: str) -> list:
        with psycopg.connect(warehouse_url) as conn:
            return conn.execute("SELECT isdeleted FROM salesforce.lead WHERE id = %s", [lead]).fetchall()

    data = tmp_path / "org"
    with private_org(data) as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        admin.Lead.create(sample_lead(LastName="Visible"))
        hidden = Salesforce(**org.salesforce_kwargs("hidden"))
        secret, *others = [hidden.Lead.create(sample_lead(LastName=f"Secret{i}"))["id"] for i in range(3)]
        sync("lead")
        assert held(secret) == []
    for run, definition, expected in (
        ("shared", org_definition(share_confidential), [(False,)]),  # a sharing rule: no record changes
        ("unshared", None, [(True,)]),
        ("shared again", org_definition(share_confidential), [(False,)]),
    ):
        with private_org(data, definition) as org:
            reconciled = reconciled_now(f"manual__{run}")
            assert held(secret) == expected, run
            assert reconciled["found"] == (3 if expected == [(False,)] else 0), run
            matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
            idle = sync("lead")
            assert (idle["new"], idle["updated"], idle["deleted"]) == (0, 0, 0), run


def test_a_user_row_flagged_as_gone_comes_back_when_salesforce_shows_the_user(sync, warehouse_url):
    sync("user")  # User has no IsDeleted: the column is the sync's own
    with psycopg.connect(warehouse_url) as conn, conn.transaction():
        warehouse.as_the_sync(conn)
        (user,) = conn.execute(
            "UPDATE salesforce.user SET isdeleted = true WHERE id = (SELECT min(id) FROM salesforce.user)"
            " RETURNING id"
        ).fetchone()
    registry = load_registry()
    reconciled = run_step(
        reconcile, "manual__users", registry.get("User"), force=True, settings=registry.settings
    )
    assert (reconciled["flagged"], reconciled["found"]) == (0, 1)
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT isdeleted FROM salesforce.user WHERE id = %s", [user]).fetchone() == (
            False,
        )


def test_crash_between_extraction_and_merge_then_retry(private_org, warehouse_url, matches_org):
    registry = load_registry()
    entry, run_id = registry.get("Lead"), "manual__crash-test"
    with private_org() as org, psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        for i in range(3):
            admin.Lead.create(sample_lead(LastName=f"Crash{i}"))
        first = run_step(extract, run_id, entry, settings=registry.settings)
        # The worker dies here. Later Salesforce changes, and the retry extracts the same frozen window.
        watermark = dt.datetime.fromisoformat(first["watermark"])
        time.sleep(max(0.0, (watermark - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
        admin.Lead.create(sample_lead(LastName="AfterTheWindow"))
        retried = run_step(extract, run_id, entry, settings=registry.settings)
        assert retried["watermark"] == first["watermark"] and retried["rows"] == 3
        merged = run_step(merge, run_id, entry, retried, settings=registry.settings)
        assert merged["new"] == 3
        # The merge committed but its worker died before reporting: the retry must not apply it twice.
        assert run_step(merge, run_id, entry, retried, settings=registry.settings) == merged
        assert conn.execute("SELECT count(*) FROM salesforce.lead").fetchone() == (3,)
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sfsync' AND tablename LIKE 'stage%'"
        ).fetchone() == (0,)
        (watermark,) = conn.execute("SELECT watermark FROM sfsync.sync_state").fetchone()
        assert watermark.isoformat() == first["watermark"]
        after = "manual__after-the-crash"
        extracted = run_step(extract, after, entry, settings=registry.settings)
        assert run_step(merge, after, entry, extracted, settings=registry.settings)["new"] == 1
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_crash_inside_the_first_merge_then_retry(private_org, warehouse_url, monkeypatch):
    registry = load_registry()
    entry, run_id = registry.get("Lead"), "manual__crash-in-merge"
    with private_org() as org, psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        ids = [admin.Lead.create(sample_lead(LastName=f"First{i}"))["id"] for i in range(3)]
        admin.Lead.delete(ids[0])
        extracted = run_step(extract, run_id, entry, settings=registry.settings)

        def crash(*args, **kwargs):
            raise RuntimeError("worker lost after the rows were inserted, before the commit")

        with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="worker lost"):
            patched.setattr(state, "finish_run", crash)  # the empty table took the plain inserts
            run_step(merge, run_id, entry, extracted, settings=registry.settings)
        assert conn.execute("SELECT count(*) FROM salesforce.lead").fetchone() == (0,)
        assert conn.execute("SELECT max(watermark) FROM sfsync.sync_state").fetchone() == (None,)  # none yet
        merged = run_step(merge, run_id, entry, extracted, settings=registry.settings)
        assert (merged["new"], merged["deleted"], merged["updated"], merged["skipped"]) == (2, 1, 0, 0)
        assert run_step(merge, run_id, entry, extracted, settings=registry.settings) == merged
        assert conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE isdeleted AND _sfsync_deleted_at IS NOT NULL)"
            " FROM salesforce.lead"
        ).fetchone() == (3, 1)


def test_large_delta_goes_through_bulk_api(sync, registry, private_org, matches_org):
    registry(Lead="bulk_threshold: 100")
    with private_org() as org:
        store = _store(org)
        with store.write(store.users["sales@localorg.test"]) as txn:
            for i in range(250):
                store.save(
                    txn,
                    store.schema.objects["lead"],
                    sample_lead(LastName=f"Bulk{i}", AnnualRevenue=i * 1000),
                )
        first = sync("lead")
        # describe with a COUNT() of the window in one composite call (no REST page is read twice), then
        # the Bulk job: create, one poll or two, results.
        assert first["new"] == 250 and 4 <= first["api_calls"] <= 5
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))


def test_api_budget_guard_skips_extraction_without_spending_calls(sync, private_org, warehouse_url):
    with private_org():
        sync("lead")
        with psycopg.connect(warehouse_url) as conn:
            conn.execute("UPDATE sfsync.api_usage SET used = max * 0.95")
        skipped = sync("lead")
    assert skipped["status"] == "skipped" and skipped["api_calls"] == 0


def test_lifecycle_deletes_undeletes_merges_conversions_and_purges(
    sync, private_org, matches_org, warehouse_url
):
    with private_org() as org:
        admin = Salesforce(**org.salesforce_kwargs("admin"))
        integration = Salesforce(**org.salesforce_kwargs("integration"))
        leads = [
            admin.Lead.create(sample_lead(LastName=f"L{i}", Email=f"l{i}@example.com"))["id"]
            for i in range(6)
        ]
        account = admin.Account.create({"Name": "Acme"})["id"]
        contacts = [admin.Contact.create({"LastName": f"C{i}", "AccountId": account})["id"] for i in range(3)]
        for table in ("lead", "contact", "account"):
            sync(table)

        admin.Lead.delete(leads[0])
        admin.Lead.delete(leads[1])
        assert org.admin("undelete", {"ids": [leads[1]]})[0] == 200
        assert org.admin("merge", {"masterId": leads[2], "duplicateIds": [leads[3]]})[0] == 200
        assert org.admin("merge", {"masterId": contacts[0], "duplicateIds": [contacts[1]]})[0] == 200
        assert org.admin("convert-lead", {"leadId": leads[4], "accountId": account})[0] == 200
        for table in ("lead", "contact", "account", "opportunity"):
            sync(table)
            matches_org(table.capitalize(), integration)
        with psycopg.connect(warehouse_url) as conn:
            merged = conn.execute(
                "SELECT isdeleted, masterrecordid FROM salesforce.lead WHERE id = %s", [leads[3]]
            )
            assert merged.fetchone() == (True, leads[2])
            converted = conn.execute(
                "SELECT isconverted, convertedcontactid IS NOT NULL, convertedaccountid"
                " FROM salesforce.lead WHERE id = %s",
                [leads[4]],
            ).fetchone()
            assert converted == (True, True, account)

        assert org.admin("purge", {"ids": [leads[0]]})[0] == 200  # gone from every read path
        admin.Lead.delete(leads[5])
        assert org.admin("purge", {"ids": [leads[5]]})[0] == 200  # deleted and purged between two runs
        sync("lead")
        run_step(full_load.plan, "manual__loading", ["Lead"])
        waiting = run_step(reconcile, "manual__early", load_registry().get("Lead"), force=True)
        assert waiting == {"status": "waiting for full load manual__loading"}, "its slices are not listed"
        with pytest.raises(RuntimeError, match="1 slices failed"):
            run_step(full_load.finish, "manual__loading")
        flagged = run_step(reconcile, "manual__reconcile", load_registry().get("Lead"), force=True)
        assert flagged["flagged"] == 1, "only the record purged before the sync saw its delete"
        matches_org("Lead", integration)
        with psycopg.connect(warehouse_url) as conn:
            gone = conn.execute(
                "SELECT id, isdeleted, _sfsync_deleted_at IS NOT NULL FROM salesforce.lead"
                " WHERE id = ANY(%s) ORDER BY id",
                [[leads[0], leads[5]]],
            ).fetchall()
        assert sorted(gone) == sorted([(leads[0], True, True), (leads[5], True, True)])


def _bulk_leads(org, count: int, deleted: int) -> list[str]:
    """``count`` Leads in one transaction, the first ``deleted`` of them deleted afterwards."""
    store = _store(org)
    with store.write(store.users["sales@localorg.test"]) as txn:
        ids = [
            store.save(txn, store.schema.objects["lead"], sample_lead(LastName=f"Bulk{i}", AnnualRevenue=i))
            for i in range(count)
        ]
    admin = Salesforce(**org.salesforce_kwargs("admin"))
    for record_id in ids[:deleted]:
        admin.Lead.delete(record_id)
    return ids


def _whole_table(conn) -> list[tuple]:
    """Every row and column of salesforce.lead; the sync's clocks as whether each is that of the row's sync,
    as the merge sets them."""
    cursor = conn.execute("SELECT * FROM salesforce.lead ORDER BY _sfsync_row_id")
    names = [c.name for c in cursor.description]
    synced, deleted = names.index("_sfsync_synced_at"), names.index("_sfsync_deleted_at")
    return [
        (
            *row[:synced],
            row[synced] is not None,
            row[deleted] == (row[synced] if row[names.index("isdeleted")] else None),
        )
        for row in cursor.fetchall()
    ]


def _run(entry, run_id: str) -> tuple[dict, dict]:
    registry = load_registry()
    extracted = run_step(extract, run_id, entry, settings=registry.settings)
    return extracted, run_step(merge, run_id, entry, extracted, settings=registry.settings)


def _start_over(conn) -> None:
    conn.execute("DROP TABLE salesforce.lead")
    conn.execute("DELETE FROM sfsync.sync_state")
    conn.execute("DELETE FROM sfsync.sync_runs")


def test_first_bulk_run_copies_straight_into_the_table_as_the_general_path_would(
    registry, private_org, warehouse_url, matches_org, monkeypatch
):
    registry(Lead="bulk_threshold: 100")
    with private_org() as org, psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        _bulk_leads(org, 250, deleted=3)
        entry = load_registry().get("Lead")
        extracted, merged = _run(entry, "manual__fast")
        assert (extracted["status"], extracted["rows"]) == ("extracted", 250) and "bulk_job" in extracted, (
            "the extract task leaves the Bulk job's results to the merge task, which finishes the run"
        )
        assert (merged["status"], merged["new"], merged["deleted"], merged["updated"]) == (
            "merged",
            247,
            3,
            0,
        )
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        fast = _whole_table(conn)
        assert conn.execute("SELECT count(*) FROM sfsync.outbox").fetchone() == (0,)

        _start_over(conn)
        with monkeypatch.context() as patched:
            patched.setattr(load, "holds_ids", lambda *args: True)  # the general path
            extracted, general = _run(entry, "manual__general")
        assert extracted["status"] == "extracted"
        assert {k: v for k, v in general.items() if k not in ("api_calls", "seconds")} == {
            k: v for k, v in merged.items() if k not in ("api_calls", "seconds")
        }
        assert abs(general["api_calls"] - merged["api_calls"]) <= 1, "the same calls, give or take a poll"
        assert _whole_table(conn) == fast


def test_fast_path_meeting_a_stored_id_falls_back_to_staging_and_merge(
    registry, private_org, warehouse_url, matches_org, monkeypatch
):
    registry(Lead="bulk_threshold: 100")
    with private_org() as org, psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        entry = load_registry().get("Lead")
        ids = _bulk_leads(org, 150, deleted=2)
        _run(entry, "manual__first")
        conn.execute("DELETE FROM sfsync.sync_state")  # the next window holds all 150 again
        Salesforce(**org.salesforce_kwargs("admin")).Lead.update(ids[10], {"Title": "Changed"})
        reads = []
        original = salesforce.Salesforce._bulk_pages
        monkeypatch.setattr(load, "holds_ids", lambda *args: False)  # a writer raced the check
        monkeypatch.setattr(
            salesforce.Salesforce,
            "_bulk_pages",
            lambda self, *args: reads.append(args) or original(self, *args),
        )
        extracted, merged = _run(entry, "manual__again")
        assert extracted["status"] == "extracted" and len(reads) == 2, "results read again for staging"
        assert (merged["new"], merged["updated"], merged["deleted"], merged["skipped"]) == (0, 1, 0, 149)
        # describe + count, the job's creation, one poll or two, and both reads of its one results page
        assert 5 <= merged["api_calls"] <= 6
        matches_org("Lead", Salesforce(**org.salesforce_kwargs("integration")))
        assert conn.execute("SELECT count(*) FROM sfsync.outbox").fetchone() == (0,)


def test_crashes_in_and_after_the_fast_path_then_retries(registry, private_org, warehouse_url, monkeypatch):
    registry(Lead="bulk_threshold: 100")
    with private_org() as org, psycopg.connect(warehouse_url, autocommit=True) as conn:
        migrate(conn)
        _bulk_leads(org, 120, deleted=1)
        entry, run_id, settings = load_registry().get("Lead"), "manual__crash-fast", load_registry().settings

        def crash(*args, **kwargs):
            raise RuntimeError("worker lost after the COPY, before the commit")

        extracted = run_step(extract, run_id, entry, settings=settings)
        with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="worker lost"):
            patched.setattr(state, "finish_run", crash)
            run_step(merge, run_id, entry, extracted, settings=settings)
        assert conn.execute("SELECT count(*) FROM salesforce.lead").fetchone() == (0,)
        assert conn.execute("SELECT status FROM sfsync.sync_runs").fetchone() == ("extracting",)
        assert conn.execute("SELECT max(watermark) FROM sfsync.sync_state").fetchone() == (None,)  # none yet

        done = run_step(merge, run_id, entry, extracted, settings=settings)
        assert (done["status"], done["new"], done["deleted"]) == ("merged", 119, 1)
        table = _whole_table(conn)
        # Committed, but the worker died before reporting: both tasks' retries return the record.
        assert run_step(extract, run_id, entry, settings=settings) == done
        assert run_step(merge, run_id, entry, extracted, settings=settings) == done
        assert _whole_table(conn) == table
        (watermark,) = conn.execute("SELECT watermark FROM sfsync.sync_state").fetchone()
        assert watermark == conn.execute("SELECT watermark FROM sfsync.sync_runs").fetchone()[0]
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sfsync' AND tablename LIKE 'stage%'"
        ).fetchone() == (0,)
