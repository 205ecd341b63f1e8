"""The "Salesforce sync" page in a real ``airflow api-server``: run history made by real syncs against a
local org (one push refused by Salesforce through the org's fault rules) and Lead's change-event watcher,
which Salesforce refuses, then its API with real logins and permissions, and the page in headless Chromium
inside the Airflow UI. Screenshots go to ``.sfsync/test/artifacts/``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import requests
from airflow.utils.state import DagRunState
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from simple_salesforce import Salesforce

from localorg.testing import free_port, running_org, sample_lead

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT / ".sfsync" / "test" / "artifacts"
USERS = {"admin": "admin", "vera": "viewer"}  # user -> role; each one's password is their name reversed
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def password(user: str) -> str:
    return user[::-1] + "-Pw1"


@dataclass
class Served:
    base: str  # the api-server, e.g. http://127.0.0.1:8123
    warehouse_url: str
    secrets: list[str]  # values that must never appear in a page or an answer

    def token(self, user: str) -> str:
        answer = requests.post(
            f"{self.base}/auth/token", json={"username": user, "password": password(user)}, timeout=10
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def get(self, path: str, user: str | None = None, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return requests.get(
            f"{self.base}{path}", headers=headers, timeout=30, allow_redirects=False, **kwargs
        )

    def post(self, path: str, user: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return requests.post(f"{self.base}{path}", headers=headers, json={}, timeout=30)

    def fetch(self, query: str, params: list | None = None) -> list[tuple]:
        with psycopg.connect(self.warehouse_url) as conn:
            return conn.execute(query, params).fetchall()


def _sync(dagbag, table: str) -> None:
    dag = dagbag.dags[f"sf_sync__{table}"]
    for task in dag.tasks:
        task.retries = 0
    assert dag.test().state == DagRunState.SUCCESS


@contextlib.contextmanager
def _api_server(env: dict[str, str]) -> Iterator[str]:
    """``airflow api-server`` with the plugin, on a free port, until the block ends (its whole group)."""
    port = free_port()
    log = open(ARTIFACTS / "api-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "-p", str(port), "-H", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (ARTIFACTS / "api-server.log").read_text()[-3000:]
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the api-server did not answer within 90 s"
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _make_history(dagbag, warehouse_url: str, org) -> None:
    """Lead: three syncs, the second one's push refused (UNABLE_TO_LOCK_ROW, waiting on its backoff) and the
    third one's landing; Campaign: one sync."""
    sf_admin = Salesforce(**org.salesforce_kwargs("admin"))
    leads = [sf_admin.Lead.create(sample_lead())["id"] for _ in range(3)]
    _sync(dagbag, "lead")
    _sync(dagbag, "campaign")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("UPDATE salesforce.lead SET title = 'VP' WHERE id = %s", [leads[0]])
    assert org.admin("faults", {"kind": "lock_row", "count": 1})[0] == 200
    _sync(dagbag, "lead")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("UPDATE salesforce.lead SET title = 'CTO' WHERE id = %s", [leads[1]])
    _sync(dagbag, "lead")


@pytest.fixture(scope="module")
def served(dagbag, postgres_server, tmp_path_factory) -> Iterator[Served]:
    """Real run history in a fresh warehouse, served by a real api-server that knows the DAGs and two users:
    ``admin`` and ``vera`` (a viewer)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = f"sfsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    warehouse_url = make_conninfo(postgres_server, dbname=name)
    p = conninfo_to_dict(postgres_server)
    auth = quote(str(p["user"]), safe="") + (
        ":" + quote(str(p["password"]), safe="") if p.get("password") else ""
    )
    try:
        with running_org(tmp_path_factory.mktemp("org")) as org, pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_MARKETING_WAREHOUSE", f"postgres://{auth}@{p['host']}:{p['port']}/{name}")
            mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", org.airflow_conn_json("integration"))
            mp.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
            _make_history(dagbag, warehouse_url, org)
            (Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").write_text(
                json.dumps({user: password(user) for user in USERS})
            )
            env = os.environ | {
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
                "AIRFLOW__API__WORKERS": "1",
            }
            reserialize = [sys.executable, "-m", "airflow", "dags", "reserialize"]
            subprocess.run(reserialize, env=env, check=True, capture_output=True)
            with _api_server(env) as base:
                secret = json.loads(org.airflow_conn_json("integration"))["password"]
                yield Served(base, warehouse_url, [secret])
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _refused_change_events(served: Served) -> str:
    """Run Lead's change-event watcher as the triggerer does until it has recorded that Salesforce refuses
    it Lead's events (the integration user has no View All on Lead); its error, as recorded."""
    from sfsync.defaults import SALESFORCE_CONN_ID, WAREHOUSE_CONN_ID
    from sfsync.events import SalesforceChangeEventTrigger

    served.fetch("DELETE FROM sfsync.watchers RETURNING sobject")
    query = "SELECT error FROM sfsync.watchers WHERE sobject = 'Lead' AND state = 'failing'"

    async def run() -> str:
        trigger = SalesforceChangeEventTrigger(SALESFORCE_CONN_ID, "Lead", 1.0, WAREHOUSE_CONN_ID)
        watching = asyncio.ensure_future(anext(trigger.run()))  # no event comes
        try:
            deadline = time.monotonic() + 30
            while not (rows := await asyncio.to_thread(served.fetch, query)):
                assert time.monotonic() < deadline and not watching.done(), "no failure recorded"
                await asyncio.sleep(0.1)
            return str(rows[0][0])
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)

    return asyncio.run(run())


def _expected(served: Served, sobject: str) -> dict[str, int]:
    """The numbers the page must show for ``sobject``, read from the warehouse by hand."""
    ((rows_in, rows_out, calls),) = served.fetch(
        "SELECT coalesce(sum(new + updated + deleted) FILTER (WHERE direction <> 'outbound'), 0),"
        " coalesce(sum(new + updated + deleted) FILTER (WHERE direction = 'outbound'), 0),"
        " coalesce(sum(api_calls), 0)"
        " FROM sfsync.sync_runs WHERE sobject = %s AND started_at > now() - interval '24 hours'",
        [sobject],
    )
    ((errors,),) = served.fetch(
        "SELECT count(*) FROM sfsync.sync_errors WHERE sobject = %s AND dismissed_at IS NULL", [sobject]
    )
    ((backlog,),) = served.fetch(
        "SELECT count(*) FROM sfsync.outbox WHERE sobject = %s AND pushed_at IS NULL", [sobject]
    )
    return {
        "rows_in_24h": rows_in,
        "rows_out_24h": rows_out,
        "api_calls_24h": calls,
        "open_errors": errors,
        "backlog": backlog,
    }


def test_the_api_needs_a_login_and_shows_only_what_the_user_may_read(served):
    for path in ("/sfsync/api/overview", "/sfsync/api/org", "/sfsync/api/objects/Lead", "/sfsync/metrics"):
        assert served.get(path).status_code == 401, path
    assert served.post("/sfsync/api/objects/Lead/sync").status_code == 401
    page = served.get("/sfsync/")
    assert page.status_code == 303 and "/auth/login" in page.headers["location"], "a page asks to log in"
    assert served.get("/sfsync/api/objects/Nope", "admin").status_code == 404


def test_a_viewer_sees_the_numbers_and_cannot_act(served):
    overview = served.get("/sfsync/api/overview", "vera")
    assert overview.status_code == 200
    assert "Lead" in {o["sobject"] for o in overview.json()["objects"]}
    assert served.post("/sfsync/api/objects/Lead/sync", "vera").status_code == 403
    ((row_id,),) = served.fetch("SELECT row_id FROM sfsync.sync_errors WHERE sobject = 'Lead'")
    for action in ("retry", "dismiss"):
        refused = served.post(f"/sfsync/api/objects/Lead/errors/{row_id}/{action}", "vera")
        assert refused.status_code == 403, action
    assert served.fetch("SELECT count(*) FROM sfsync.sync_errors") == [(1,)], "nothing changed"


def test_the_json_equals_the_warehouse_and_metrics_parse(served):
    refused = _refused_change_events(served)
    answer = served.get("/sfsync/api/overview", "admin").json()
    objects = {o["sobject"]: o for o in answer["objects"]}
    for sobject in ("Lead", "Campaign"):
        got = objects[sobject]
        want = _expected(served, sobject)
        assert {k: got[k] for k in want} == want
        ((watermark,),) = served.fetch(
            "SELECT watermark FROM sfsync.sync_state WHERE sobject = %s", [sobject]
        )
        assert got["lag_seconds"] == pytest.approx(time.time() - watermark.timestamp(), abs=30)
        dag = served.get(f"/api/v2/dags/{got['dag_id']}", "admin").json()
        assert (got["next_run"], got["paused"]) == (
            dag["next_dagrun_run_after"].replace("Z", "+00:00"),
            dag["is_paused"],
        ), "the next scheduled run is Airflow's"
    assert objects["Lead"]["open_errors"] == 1 and objects["Lead"]["rows_out_24h"] >= 1
    watchers = {w["source"]: w for w in objects["Lead"]["watchers"]}
    assert (watchers["change_events"]["state"], watchers["change_events"]["error"]) == ("failing", refused)
    assert "403::Forbidden" in refused and watchers["warehouse_edits"]["state"] == "not running"
    assert objects["Campaign"]["watchers"] == [], "Campaign has no events"
    ((used, limit),) = served.fetch("SELECT used, max FROM sfsync.api_usage ORDER BY seen_at DESC LIMIT 1")
    assert (answer["org"]["used"], answer["org"]["limit"]) == (used, limit)
    assert served.get("/sfsync/api/org", "admin").json()["used"] == used

    detail = served.get("/sfsync/api/objects/Lead?days=7", "admin").json()
    (error,) = detail["errors"]
    assert (error["status_code"], error["transient"], error["attempts"]) == ("UNABLE_TO_LOCK_ROW", True, 1)
    ((runs,),) = served.fetch("SELECT count(*) FROM sfsync.sync_runs WHERE sobject = 'Lead'")
    assert len(detail["runs"]) == runs
    assert sum(p["rows_in"] for p in detail["series"]) == _expected(served, "Lead")["rows_in_24h"]
    assert served.get("/sfsync/api/objects/Lead?days=3", "admin").status_code == 422

    metrics = served.get("/sfsync/metrics", "admin")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    label = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"'
    sample = re.compile(rf"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{{{label}(,{label})*\}})? \S+$")
    lines = [line for line in metrics.text.splitlines() if line and not line.startswith("#")]
    assert lines and all(sample.match(line) for line in lines), metrics.text
    for value in [line.rsplit(" ", 1)[1] for line in lines]:
        float(value)
    assert 'sfsync_watcher_following{object="Lead",source="change_events"} 0.0' in lines
    for text in (metrics.text, json.dumps(answer), json.dumps(detail)):
        assert not any(secret in text for secret in served.secrets)


def test_the_page_in_the_airflow_ui(served):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)

    assert Path(CHROMIUM).exists(), "make test installs Debian's chromium when it is missing"
    expected = {s: _expected(served, s) for s in ("Lead", "Campaign")}
    refused = _refused_change_events(served)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)  # the Airflow UI loads slowly on a busy machine
            page.goto(f"{served.base}/auth/login")
            page.fill("input[name='username']", "admin")
            page.fill("input[name='password']", password("admin"))
            page.click("button[type='submit']")
            page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
            page.goto(f"{served.base}/plugin/salesforce-sync")
            frame = page.frame_locator("iframe[title='Salesforce sync']")
            for sobject, numbers in expected.items():
                row = frame.locator(f"tr[data-sobject='{sobject}']")
                for key, value in numbers.items():
                    expect(row.locator(f"[data-k='{key}']")).to_have_text(f"{value:,}")
            expect(frame.locator("tr[data-sobject='Lead'] [data-k='health']")).to_have_text(
                re.compile("healthy|late|failing")
            )
            changes = frame.locator("tr[data-sobject='Lead'] [data-k='watcher'][data-source='change_events']")
            expect(changes).to_have_text("Salesforce: failing")
            why = re.escape(f"({refused}): syncing on the 5-minute schedule")
            expect(frame.locator("tr[data-sobject='Lead'] td:has([data-k='health']) .why")).to_have_text(
                re.compile(rf"Salesforce change events failing since [\d: -]+ UTC {why}")
            )
            ((used,),) = served.fetch("SELECT used FROM sfsync.api_usage ORDER BY seen_at DESC LIMIT 1")
            expect(frame.locator("[data-k='api_used']")).to_have_text(f"{used:,}")
            page.screenshot(path=ARTIFACTS / "status-overview.png", full_page=True)

            frame.locator("tr[data-sobject='Lead'] a").first.click()
            expect(frame.locator("h1")).to_contain_text("Lead")
            expect(frame.locator("figure[data-chart='rows'] svg rect").first).to_be_attached()
            error = frame.locator("#error-table tbody tr")
            expect(error).to_have_count(1)
            expect(error.locator("[data-k='status_code']")).to_have_text("UNABLE_TO_LOCK_ROW")
            ((sfid,),) = served.fetch("SELECT sfid FROM sfsync.sync_errors")
            expect(error.locator("[data-k='sfid']")).to_have_text(sfid)
            watcher = frame.locator("#watcher-table tr[data-source='change_events']")
            expect(watcher.locator("[data-k='watcher_error']")).to_have_text(refused)
            page.screenshot(path=ARTIFACTS / "status-lead.png", full_page=True)
            html = frame.locator("html").inner_html()
            assert not any(secret in html for secret in served.secrets)
            assert not any(c["value"] in html for c in page.context.cookies()), "no session on the page"

            frame.locator("button:has-text('Sync now')").click()
            expect(frame.locator(".notice")).to_contain_text("queued")
            expect(frame.locator(".notice")).to_contain_text("paused")  # the test's DAGs are paused
            page.screenshot(path=ARTIFACTS / "status-sync-now.png", full_page=True)

            frame.locator("#error-table button:has-text('Retry now')").click()
            expect(frame.locator(".notice")).to_contain_text("due now")
            expect(frame.locator("#error-table button:has-text('Retry now')")).to_have_count(0)
        finally:
            browser.close()
    actions = served.fetch("SELECT action, sobject, username, detail FROM sfsync.actions ORDER BY at")
    assert [a[:3] for a in actions] == [("sync now", "Lead", "admin"), ("retry now", "Lead", "admin")], (
        "each action is recorded with who took it"
    )
    assert served.fetch("SELECT next_attempt_at <= now() FROM sfsync.sync_errors") == [(True,)]
    run = f"/api/v2/dags/sf_sync__lead/dagRuns/{quote(actions[0][3])}"
    queued = served.get(run, "admin").json()
    assert (queued["state"], queued["run_type"], queued["triggered_by"], queued["triggering_user_name"]) == (
        "queued",
        "manual",
        "ui",
        "admin",
    )
    token = served.token("admin")
    requests.delete(f"{served.base}{run}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_an_editor_dismisses_an_error(served):
    ((row_id,),) = served.fetch("SELECT row_id FROM sfsync.sync_errors WHERE sobject = 'Lead'")
    assert served.post(f"/sfsync/api/objects/Lead/errors/{row_id}/dismiss", "admin").status_code == 200
    assert served.post(f"/sfsync/api/objects/Lead/errors/{row_id}/dismiss", "admin").status_code == 404
    lead = {o["sobject"]: o for o in served.get("/sfsync/api/overview", "admin").json()["objects"]}["Lead"]
    assert lead["open_errors"] == 0
    assert served.fetch("SELECT dismissed_by FROM sfsync.sync_errors") == [("admin",)]
