"""The Salesforce sync page and its API, behind Airflow's own login and DAG permissions.

A user sees the objects whose ``sf_sync__<object>`` DAG they may read, and the org's API usage when they may
read at least one; "sync now" needs the right to trigger the object's DAG (POST on its runs), "retry now" and
"dismiss" the right to edit it (PUT). Pages send an unauthenticated user to Airflow's login; the API answers
401. The numbers come from ``sfsync.status``; the next scheduled run from Airflow's metadata database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import psycopg
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api import security
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.exceptions import AirflowNotFoundException
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from sfsync import status, warehouse
from sfsync.defaults import WAREHOUSE_CONN_ID
from sfsync.registry import Registry, SyncObject, load_registry
from sfsync.ui import pages

log = logging.getLogger(__name__)

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _days(
    days: Annotated[int, Query(description="1: the last 24 hours, hourly; 7: the last 7 days, 6-hourly")] = 1,
) -> int:
    if days not in (1, 7):
        raise HTTPException(422, "days is 1 or 7")
    return days


Days = Annotated[int, Depends(_days)]


class LoginRequired(Exception):
    """A page was asked for without a valid session: the answer is Airflow's login."""


class WarehouseUnavailable(Exception):
    """The warehouse could not be reached (the detail is logged, never shown)."""


async def page_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(security.bearer_scheme)],
) -> BaseUser:
    """The logged-in user, as Airflow's own API finds them (the ``_token`` cookie or a Bearer token)."""
    try:
        return await security.get_user(request, None, bearer)
    except HTTPException as error:
        raise LoginRequired from error


PageUser = Annotated[BaseUser, Depends(page_user)]


@dataclass(frozen=True)
class Schedule:
    """What Airflow knows of an object's DAG: the next scheduled run, and whether it is paused."""

    next_run: dt.datetime | None
    paused: bool


@dataclass(frozen=True)
class Overview:
    objects: list[status.ObjectStatus]
    org: status.OrgStatus | None  # None: the user may read no sync DAG
    schedules: dict[str, Schedule]
    can_sync: frozenset[str]  # the DAG ids the user may trigger


def _readable(user: BaseUser) -> set[str]:
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _may(user: BaseUser, dag_id: str, action: Literal["sync", "edit"]) -> bool:
    if action == "sync":
        return get_auth_manager().is_authorized_dag(
            method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
        )
    return get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=dag_id), user=user)


@contextlib.contextmanager
def _warehouse() -> Iterator[psycopg.Connection]:
    try:
        conn = warehouse.connect(WAREHOUSE_CONN_ID)
    except (psycopg.Error, AirflowNotFoundException) as error:
        log.warning("the warehouse is not reachable: %s", error)
        raise WarehouseUnavailable from error
    with conn:
        yield conn


def _schedules(dag_ids: list[str]) -> dict[str, Schedule]:
    """Each DAG's next scheduled run (``DagModel.next_dagrun_create_after``) and pause state."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(DagModel.dag_id, DagModel.next_dagrun_create_after, DagModel.is_paused).where(
        DagModel.dag_id.in_(dag_ids)
    )
    with create_session() as session:
        return {dag_id: Schedule(after, bool(paused)) for dag_id, after, paused in session.execute(query)}


def _overview(user: BaseUser) -> Overview:
    registry = load_registry()
    readable = _readable(user)
    if not any(entry.dag_id in readable for entry in registry.enabled()):
        return Overview([], None, {}, frozenset())
    with _warehouse() as conn:
        objects = [o for o in status.overview(conn, registry) if o.dag_id in readable]
        org = status.org_status(conn, registry)
    dag_ids = [o.dag_id for o in objects]
    can_sync = frozenset(d for d in dag_ids if _may(user, d, "sync"))
    return Overview(objects, org, _schedules(dag_ids), can_sync)


def _entry(registry: Registry, sobject: str, user: BaseUser) -> SyncObject:
    """The registry entry of ``sobject``; 404 when it is unknown, disabled or its DAG hidden from ``user``."""
    try:
        entry = registry.get(sobject)
    except KeyError:
        entry = None
    if entry is None or not entry.enabled or entry.dag_id not in _readable(user):
        raise HTTPException(404, f"no synced object {sobject!r}")
    return entry


def _schedule_json(schedule: Schedule | None) -> dict[str, Any]:
    if schedule is None:
        return {"next_run": None, "paused": None}
    return {"next_run": status.to_json(schedule.next_run), "paused": schedule.paused}


router = APIRouter()


# Pages ----------------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def overview_page(request: Request, user: PageUser) -> HTMLResponse:
    data = _overview(user)
    return HTMLResponse(
        pages.overview(
            pages.Context(_prefix(request), user.get_name(), request.query_params.get("done")),
            data.objects,
            data.org,
            {dag_id: (s.next_run, s.paused) for dag_id, s in data.schedules.items()},
            data.can_sync,
        )
    )


@router.get("/objects/{sobject}", response_class=HTMLResponse, include_in_schema=False)
def object_page(request: Request, sobject: str, user: PageUser, days: Days) -> HTMLResponse:
    registry = load_registry()
    entry = _entry(registry, sobject, user)
    with _warehouse() as conn:
        detail = status.object_detail(conn, registry, entry.sobject, days)
    schedule = _schedules([entry.dag_id]).get(entry.dag_id)
    return HTMLResponse(
        pages.detail(
            pages.Context(_prefix(request), user.get_name(), request.query_params.get("done")),
            detail,
            days,
            (schedule.next_run, schedule.paused) if schedule else None,
            may_sync=_may(user, entry.dag_id, "sync"),
            may_edit=_may(user, entry.dag_id, "edit"),
        )
    )


def _prefix(request: Request) -> str:
    """Where this app is mounted (``/sfsync``): pages link relative to it, whatever the host is called."""
    return str(request.scope.get("root_path", "")).rstrip("/")


# JSON and Prometheus --------------------------------------------------------------------------------------


@router.get("/api/overview")
def api_overview(user: GetUserDep) -> dict[str, Any]:
    data = _overview(user)
    return {
        "objects": [status.to_json(o) | _schedule_json(data.schedules.get(o.dag_id)) for o in data.objects],
        "org": status.to_json(data.org) if data.org else None,
    }


@router.get("/api/objects/{sobject}")
def api_object(sobject: str, user: GetUserDep, days: Days) -> dict[str, Any]:
    registry = load_registry()
    entry = _entry(registry, sobject, user)
    with _warehouse() as conn:
        detail = status.object_detail(conn, registry, entry.sobject, days)
    answer: dict[str, Any] = status.to_json(detail)
    answer["status"] |= _schedule_json(_schedules([entry.dag_id]).get(entry.dag_id))
    return answer


@router.get("/api/org")
def api_org(user: GetUserDep) -> dict[str, Any]:
    data = _overview(user)
    if data.org is None:
        raise HTTPException(403, "you may read none of the sync DAGs")
    answer: dict[str, Any] = status.to_json(data.org)
    return answer


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(user: GetUserDep) -> PlainTextResponse:
    data = _overview(user)
    text = status.prometheus(data.objects, data.org) if data.org else ""
    return PlainTextResponse(text, media_type=PROMETHEUS_TYPE)


# Actions --------------------------------------------------------------------------------------------------


async def _checked_origin(request: Request) -> None:
    """Refuse a browser's cross-site POST (the session cookie is SameSite=Lax already; this is a second
    lock): when the request names its origin, it must be this host."""
    origin = request.headers.get("origin")
    host = request.headers.get("x-forwarded-host") or request.headers.get("host")
    if origin and origin != "null" and urlsplit(origin).netloc != host:
        raise HTTPException(403, "cross-site request refused")


def _answer(request: Request, body: bytes, result: dict[str, Any], done: str) -> Response:
    """JSON for machines; a form posted by a page goes back to the page it names, with a notice."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        back = parse_qs(body.decode(errors="replace")).get("next", [""])[0]
        prefix = _prefix(request)
        if not back.startswith(prefix + "/") or back.startswith("//"):
            back = prefix + "/"
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}done={done}", status_code=303)
    return JSONResponse(result)


@router.post("/api/objects/{sobject}/sync", dependencies=[Depends(_checked_origin)])
async def sync_now(request: Request, sobject: str, user: GetUserDep) -> Response:
    body = await request.body()
    result = await _run_sync(sobject, user)
    return _answer(request, body, result, "sync_paused" if result["paused"] else "sync")


def _sync(sobject: str, user: BaseUser) -> dict[str, Any]:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType

    registry = load_registry()
    entry = _entry(registry, sobject, user)
    if not _may(user, entry.dag_id, "sync"):
        raise HTTPException(403, f"you may not trigger {entry.dag_id}")
    try:
        run = trigger_dag(
            entry.dag_id,
            triggered_by=DagRunTriggeredByType.UI,
            triggering_user_name=user.get_name(),
            replace_microseconds=False,
        )
    except DagNotFound as error:
        raise HTTPException(404, f"{entry.dag_id} is not in Airflow's database yet") from error
    except (DagRunAlreadyExists, ValueError) as error:
        raise HTTPException(409, str(error)) from error
    if run is None:
        raise HTTPException(409, f"{entry.dag_id} did not start a run")
    with _warehouse() as conn:
        status.record_action(conn, "sync now", entry.sobject, user.get_name(), detail=run.run_id)
    schedule = _schedules([entry.dag_id]).get(entry.dag_id)
    paused = bool(schedule and schedule.paused)  # the run waits until someone unpauses the DAG
    return {"dag_id": entry.dag_id, "run_id": run.run_id, "state": str(run.state), "paused": paused}


async def _run_sync(sobject: str, user: BaseUser) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_sync, sobject, user)


def _on_error(
    sobject: str, row_id: int, user: BaseUser, action: Literal["retry", "dismiss"]
) -> dict[str, Any]:
    registry = load_registry()
    entry = _entry(registry, sobject, user)
    if not _may(user, entry.dag_id, "edit"):
        raise HTTPException(403, f"you may not edit {entry.dag_id}")
    act = status.retry_now if action == "retry" else status.dismiss
    with _warehouse() as conn:
        if not act(conn, entry.sobject, row_id, user.get_name()):
            what = "waiting on backoff" if action == "retry" else "open"
            raise HTTPException(404, f"{entry.sobject} has no error {what} for row {row_id}")
    return {"sobject": entry.sobject, "row_id": row_id, "action": action, "by": user.get_name()}


@router.post("/api/objects/{sobject}/errors/{row_id}/retry", dependencies=[Depends(_checked_origin)])
async def retry_error(request: Request, sobject: str, row_id: int, user: GetUserDep) -> Response:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    result = await run_in_threadpool(_on_error, sobject, row_id, user, "retry")
    return _answer(request, body, result, "retry")


@router.post("/api/objects/{sobject}/errors/{row_id}/dismiss", dependencies=[Depends(_checked_origin)])
async def dismiss_error(request: Request, sobject: str, row_id: int, user: GetUserDep) -> Response:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    result = await run_in_threadpool(_on_error, sobject, row_id, user, "dismiss")
    return _answer(request, body, result, "dismiss")


# The application ------------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The app the plugin mounts; Airflow's auth dependencies resolve to the api-server's auth manager."""
    app = FastAPI(title="Salesforce sync", docs_url=None, redoc_url=None, openapi_url=None)
    # Mounted apps have no auth manager of their own in app.state: use the api-server's.
    app.dependency_overrides[security.auth_manager_from_app] = get_auth_manager
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> RedirectResponse:
        here = _prefix(request) + request.url.path.removeprefix(_prefix(request))
        if request.url.query:
            here += "?" + request.url.query
        return RedirectResponse(get_auth_manager().get_url_login(next_url=here), status_code=303)

    @app.exception_handler(WarehouseUnavailable)
    async def _unavailable(request: Request, _: WarehouseUnavailable) -> Response:
        message = f"The warehouse (Airflow connection {WAREHOUSE_CONN_ID!r}) is not reachable."
        if request.url.path.removeprefix(_prefix(request)).startswith(("/api/", "/metrics")):
            return JSONResponse({"detail": message}, status_code=503)
        return HTMLResponse(pages.unavailable(_prefix(request), message), status_code=503)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> Response:
        path = request.url.path.removeprefix(_prefix(request))
        if path.startswith(("/api/", "/metrics")) or error.status_code == 401:
            return JSONResponse(
                {"detail": error.detail}, status_code=error.status_code, headers=error.headers
            )
        return HTMLResponse(
            pages.unavailable(_prefix(request), str(error.detail)), status_code=error.status_code
        )

    return app
