"""The DagBag parses cleanly and holds exactly the DAGs the registry asks for, with the shared defaults."""

import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
from airflow.models import DagBag
from airflow.timetables.base import TimeRestriction

from sfsync.defaults import APPROVED_TAGS, SALESFORCE_POOL
from sfsync.registry import load_registry

DAGS = Path(__file__).resolve().parents[2] / "dags"
EXPECTED_SYNC_DAGS = sorted(e.dag_id for e in load_registry().enabled())


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_exactly_one_dag_per_registry_entry_plus_full_load(dagbag):
    assert sorted(dagbag.dag_ids) == sorted([*EXPECTED_SYNC_DAGS, "sf_full_load"])
    assert "sf_sync__lead" in EXPECTED_SYNC_DAGS and "sf_sync__campaignmember" in EXPECTED_SYNC_DAGS


@pytest.mark.parametrize("entry", list(load_registry().enabled()), ids=lambda e: e.dag_id)
def test_sync_dag_schedule_and_defaults(dagbag, entry):
    """Every 5 minutes (in UTC, as a plain cron schedule is); objects with events also when their assets
    have events, the cron staying the same."""
    dag = dagbag.dags[entry.dag_id]
    timetable = dag.timetable
    if entry.events:
        assert type(timetable).__name__ == "AssetOrTimeSchedule"
        timetable = timetable.timetable
    assert type(timetable).__name__ == "CronTriggerTimetable"
    assert (timetable.expression, str(timetable.timezone)) == ("*/5 * * * *", "UTC")
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.doc_md


@pytest.mark.parametrize("dag_id", [*EXPECTED_SYNC_DAGS, "sf_full_load"])
def test_retries_tags_and_start_date(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.default_args["retries"] >= 2
    assert set(dag.tags) <= APPROVED_TAGS and "sfsync" in dag.tags
    assert dag.start_date.tzinfo is not None and dag.start_date.utcoffset().total_seconds() == 0


def test_full_load_runs_by_hand_or_backfill_only(dagbag):
    dag = dagbag.dags["sf_full_load"]
    assert type(dag.timetable).__name__ == "BackfillOnlyTimetable"
    assert dag.catchup is False


def test_direction_tag_follows_the_registry(dagbag):
    for entry in load_registry().enabled():
        assert entry.direction in dagbag.dags[entry.dag_id].tags


@pytest.mark.parametrize("entry", list(load_registry().enabled()), ids=lambda e: e.dag_id)
def test_sync_dag_structure(dagbag, entry):
    """Bidirectional objects push the warehouse's changes first, then pull, in the same run; the pull needs
    the schema, not a successful push."""
    pull = {
        "extract_deltas": {"merge_into_target"},
        "merge_into_target": {"reconcile_ids"},
        "reconcile_ids": set(),
    }
    dag = dagbag.dags[entry.dag_id]
    if entry.direction == "bidirectional":
        expected = {
            "prepare_warehouse": {"push_changes", "extract_deltas"},
            "push_changes": {"extract_deltas"},
        } | pull
        assert dag.get_task("extract_deltas").trigger_rule == "all_done_min_one_success"
    else:
        expected = {"prepare_warehouse": {"extract_deltas"}} | pull
        assert dag.get_task("extract_deltas").trigger_rule == "all_success"
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == expected


@pytest.mark.parametrize("dag_id", EXPECTED_SYNC_DAGS)
def test_salesforce_calls_go_through_the_pool_and_merges_publish_the_table(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert pools["extract_deltas"] == pools["reconcile_ids"] == SALESFORCE_POOL
    (asset,) = dag.get_task("merge_into_target").outlets
    assert asset.name == f"salesforce.{dag_id.removeprefix('sf_sync__')}"


def test_full_load_structure(dagbag):
    dag = dagbag.dags["sf_full_load"]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == {
        "prepare_warehouse": {"plan_slices"},
        "plan_slices": {"copy_slice"},
        "copy_slice": {"hand_over"},
        "hand_over": set(),
    }
    assert dag.get_task("plan_slices").pool == dag.get_task("copy_slice").pool == SALESFORCE_POOL
    assert dag.get_task("hand_over").trigger_rule == "all_done", "failed slices are reported, not hidden"
    assert set(dag.params) == {"objects", "job_records"}


def test_full_load_is_backfilled_by_month_and_never_scheduled(dagbag):
    timetable = dagbag.dags["sf_full_load"].timetable
    start = pendulum.datetime(2025, 3, 1, tz="UTC")
    backfill = TimeRestriction(earliest=start, latest=start.add(months=2), catchup=True)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=backfill)
    assert (first.data_interval.start, first.data_interval.end) == (start, start.add(months=1))
    scheduler = TimeRestriction(earliest=start, latest=None, catchup=False)
    assert timetable.next_dagrun_info(last_automated_data_interval=None, restriction=scheduler) is None


@pytest.mark.parametrize(("interval", "days"), [("@weekly", 7), ("@daily", 1), ("0 0 1 */3 *", 90)])
def test_the_registry_chooses_the_backfill_interval(interval, days):
    from sfsync.timetables import BackfillOnlyTimetable

    timetable = BackfillOnlyTimetable.deserialize(BackfillOnlyTimetable(interval).serialize())
    start = pendulum.datetime(2025, 1, 1, tz="UTC")
    backfill = TimeRestriction(earliest=start, latest=start.add(years=1), catchup=True)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=backfill)
    assert (first.data_interval.end - first.data_interval.start).days == days
    assert timetable.summary == f"backfill only ({interval})"


def test_the_plugin_registers_the_timetable():
    from airflow import plugins_manager

    from sfsync.timetables import BackfillOnlyTimetable

    assert plugins_manager.get_import_errors() == {}
    assert BackfillOnlyTimetable in plugins_manager.get_timetables_plugins().values()


def test_bad_registry_fails_parsing_with_a_clear_error(monkeypatch):
    fixture = Path(__file__).parents[1] / "fixtures" / "registry_invalid" / "unknown_object.yaml"
    monkeypatch.setenv("SFSYNC_REGISTRY", str(fixture))
    bag = DagBag(dag_folder=str(DAGS))
    assert set(bag.import_errors) == {str(DAGS / "sf_sync.py"), str(DAGS / "sf_full_load.py")}
    for error in bag.import_errors.values():
        assert "unknown_object.yaml: entry 1 (Leed): sobject: unknown Salesforce object 'Leed'" in error


def test_parsing_makes_no_connection_and_loads_no_heavy_library():
    """The DAG processor parses dags/ often: no psycopg, requests or pandas at parse time."""
    probe = (
        "import sys, runpy\n"
        f"for f in {sorted(str(p) for p in DAGS.glob('*.py'))!r}: runpy.run_path(f)\n"
        "heavy = ('psycopg', 'requests', 'pandas', 'simple_salesforce')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
