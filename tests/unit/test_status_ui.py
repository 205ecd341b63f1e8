"""The status page's rules without services: who sees which object, who may act, what a form post returns,
and that values from Salesforce reach the page escaped. Airflow's auth manager and the warehouse are
stand-ins here; tests/integration/test_status_page.py runs the real ones."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field

import pytest
from airflow.api_fastapi.core_api import security
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from sfsync import status
from sfsync.ui import routes as ui

GET_USER = security.get_user  # what GetUserDep depends on
NOW = dt.datetime.now(dt.UTC)  # the error below is due a day later: still waiting when the test runs


@dataclass
class User:
    name: str

    def get_name(self) -> str:
        return self.name


@dataclass
class AuthManager:
    """Reads the DAGs in ``readable``; ``granted`` holds (method, dag_id) pairs for the rest."""

    readable: set[str]
    granted: set[tuple[str, str]] = field(default_factory=set)

    def get_authorized_dag_ids(self, *, user: User, method: str = "GET") -> set[str]:
        return self.readable if method == "GET" else set()

    def is_authorized_dag(self, *, method: str, user: User, access_entity=None, details=None) -> bool:
        return (method, details.id) in self.granted

    def get_url_login(self, **kwargs: str) -> str:
        return f"/auth/login?next={kwargs['next_url']}"


REFUSED = status.WatcherStatus(
    source="change_events", state="failing", since=NOW, error="<b>403::Forbidden</b>",
    retry_at=NOW + dt.timedelta(minutes=5), woken_at=None, wakes=0, checked_at=NOW,
)  # fmt: skip


def object_status(entry) -> status.ObjectStatus:
    return status.ObjectStatus(
        sobject=entry.sobject, table=entry.table, direction=entry.direction, dag_id=entry.dag_id,
        health="failing", reasons=("1 open error",), last_run=None, last_success_at=None, lag_seconds=42.0,
        rows_in_24h=1234, rows_out_24h=5, backlog=2, oldest_pending_seconds=90.0, open_errors=1,
        full_load=None, watchers=(REFUSED,) if entry.sobject == "Lead" else (),
    )  # fmt: skip


ERROR = status.ErrorRow(
    row_id=7, sfid="00Q000000000001AAA", operation="update", status_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
    message="<script>alert('x')</script>", fields=("Title",), transient=True, attempts=2, first_seen=NOW,
    last_seen=NOW, next_attempt_at=NOW + dt.timedelta(days=1),
)  # fmt: skip


@pytest.fixture
def served(monkeypatch):
    """A client of the page mounted at /sfsync, as the api-server mounts it; ``as_user(auth)`` logs in."""
    actions: list[tuple] = []
    monkeypatch.setattr(ui, "_warehouse", lambda: contextlib.nullcontext(None))
    monkeypatch.setattr(ui, "_schedules", lambda dag_ids: {})
    monkeypatch.setattr(status, "overview", lambda conn, reg: [object_status(e) for e in reg.enabled()])
    monkeypatch.setattr(
        status, "org_status", lambda conn, reg: status.OrgStatus("org", 10, 100, 0.8, False, NOW, 0)
    )
    monkeypatch.setattr(
        status,
        "object_detail",
        lambda conn, reg, sobject, days: status.ObjectDetail(
            object_status(reg.get(sobject)), (), (), (ERROR,), ()
        ),
    )
    monkeypatch.setattr(
        status, "record_action", lambda conn, *args, **kwargs: actions.append((*args, kwargs))
    )
    monkeypatch.setattr(status, "retry_now", lambda conn, *args: actions.append(("retry", *args)) or True)

    @dataclass
    class Run:
        run_id: str = "manual__1"
        state: str = "queued"

    monkeypatch.setattr(
        "airflow.api.common.trigger_dag.trigger_dag",
        lambda dag_id, **kwargs: actions.append((dag_id, kwargs)) or Run(),
    )
    parent = FastAPI()
    parent.mount("/sfsync", ui.create_app())

    def as_user(auth: AuthManager, logged_in: bool = True) -> TestClient:
        monkeypatch.setattr(ui, "get_auth_manager", lambda: auth)
        sub = parent.routes[-1].app  # type: ignore[attr-defined]

        async def user() -> User:
            if not logged_in:
                raise HTTPException(401, "Not authenticated")
            return User("ursula")

        async def page_user(*args: object) -> User:
            return await user()

        monkeypatch.setattr(security, "get_user", page_user)  # pages call it themselves
        sub.dependency_overrides[GET_USER] = user
        return TestClient(parent, follow_redirects=False)

    as_user.actions = actions
    return as_user


def test_a_user_sees_only_the_objects_whose_dag_they_may_read(served):
    client = served(AuthManager({"sf_sync__lead"}))
    assert [o["sobject"] for o in client.get("/sfsync/api/overview").json()["objects"]] == ["Lead"]
    page = client.get("/sfsync/").text
    assert 'data-sobject="Lead"' in page and 'data-sobject="Contact"' not in page
    assert client.get("/sfsync/api/objects/Contact").status_code == 404, "another object's DAG is hidden"
    assert client.get("/sfsync/objects/Contact").status_code == 404
    assert client.get("/sfsync/api/objects/Lead?days=3").status_code == 422


def test_a_user_who_may_read_no_sync_dag_sees_nothing_not_even_the_org(served):
    client = served(AuthManager({"some_other_dag"}))
    assert client.get("/sfsync/api/overview").json() == {"objects": [], "org": None}
    assert client.get("/sfsync/api/org").status_code == 403
    assert client.get("/sfsync/metrics").text == ""
    page = client.get("/sfsync/").text
    assert "You may read none of the sync DAGs" in page and "api_used" not in page


def test_without_a_login_pages_go_to_the_login_and_the_api_answers_401(served):
    client = served(AuthManager({"sf_sync__lead"}), logged_in=False)
    page = client.get("/sfsync/objects/Lead?days=7")
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/login?next=/sfsync/objects/Lead?days=7"
    assert client.get("/sfsync/api/overview").status_code == 401
    assert client.post("/sfsync/api/objects/Lead/sync").status_code == 401


def test_actions_need_the_right_to_trigger_or_edit_the_dag(served):
    viewer = served(AuthManager({"sf_sync__lead"}))
    assert viewer.post("/sfsync/api/objects/Lead/sync", json={}).status_code == 403
    assert viewer.post("/sfsync/api/objects/Lead/errors/7/retry").status_code == 403
    assert 'disabled title="You may not do this">Sync now' in viewer.get("/sfsync/").text
    assert served.actions == []

    operator = served(AuthManager({"sf_sync__lead"}, {("POST", "sf_sync__lead"), ("PUT", "sf_sync__lead")}))
    answer = operator.post("/sfsync/api/objects/Lead/sync", json={})
    assert answer.json() == {
        "dag_id": "sf_sync__lead",
        "run_id": "manual__1",
        "state": "queued",
        "paused": False,
    }
    (dag_id, kwargs), recorded = served.actions[:2]
    assert dag_id == "sf_sync__lead" and kwargs["triggering_user_name"] == "ursula"
    assert kwargs["triggered_by"].value == "ui"
    assert recorded == ("sync now", "Lead", "ursula", {"detail": "manual__1"}), "who, what, which run"
    assert operator.post("/sfsync/api/objects/Lead/errors/7/retry").json()["by"] == "ursula"
    assert served.actions[2] == ("retry", "Lead", 7, "ursula")


def test_a_form_goes_back_to_its_page_and_never_elsewhere(served):
    client = served(AuthManager({"sf_sync__lead"}, {("POST", "sf_sync__lead")}))
    form = {"content-type": "application/x-www-form-urlencoded"}
    back = client.post(
        "/sfsync/api/objects/Lead/sync", content="next=%2Fsfsync%2Fobjects%2FLead%3Fdays%3D7", headers=form
    )
    assert (back.status_code, back.headers["location"]) == (303, "/sfsync/objects/Lead?days=7&done=sync")
    away = client.post("/sfsync/api/objects/Lead/sync", content="next=%2F%2Fevil.example%2F", headers=form)
    assert away.headers["location"] == "/sfsync/?done=sync"
    assert "A run was queued" in client.get(away.headers["location"]).text
    cross = client.post("/sfsync/api/objects/Lead/sync", headers=form | {"origin": "https://evil.example"})
    assert cross.status_code == 403, "a cross-site form is refused"


def test_values_from_salesforce_are_escaped(served):
    page = served(AuthManager({"sf_sync__lead"}, {("PUT", "sf_sync__lead")})).get("/sfsync/objects/Lead").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Retry now" in page and "Dismiss" in page, "a transient error waiting on backoff can be retried"
    assert 'data-k="rows_in_24h">1,234<' in page


def test_event_watchers_show_on_the_overview_the_object_page_and_in_the_json(served):
    client = served(AuthManager({"sf_sync__lead", "sf_sync__account"}))
    overview = client.get("/sfsync/").text
    assert 'data-source="change_events">Salesforce: failing</span>' in overview
    assert "schedule only" in overview, "an object without events"
    page = client.get("/sfsync/objects/Lead").text
    assert 'data-k="watcher_error">&lt;b&gt;403::Forbidden&lt;/b&gt;<' in page and "<b>403" not in page
    assert "Event watchers" not in client.get("/sfsync/objects/Account").text
    (lead,) = [o for o in client.get("/sfsync/api/overview").json()["objects"] if o["sobject"] == "Lead"]
    assert lead["watchers"] == [status.to_json(REFUSED)]
    assert lead["watchers"][0]["retry_at"] == REFUSED.retry_at.isoformat()
