"""Registers sfsync with Airflow: the full load's timetable, so the scheduler can load the DAGs that use it,
and the "Salesforce sync" page (``sfsync.ui``), mounted at ``/sfsync`` and shown in the UI's navigation.

Every Airflow component imports this module; the page's application is built on its first request, in the
api-server only."""

from airflow.plugins_manager import AirflowPlugin

from sfsync.timetables import BackfillOnlyTimetable
from sfsync.ui import app as status_app

NAME = "Salesforce sync"


class SfsyncPlugin(AirflowPlugin):
    name = "sfsync"
    timetables = [BackfillOnlyTimetable]
    fastapi_apps = [{"app": status_app, "url_prefix": "/sfsync", "name": NAME}]
    # url_route: the UI shows the page in its own frame, at /plugin/salesforce-sync.
    external_views = [
        {"name": NAME, "href": "/sfsync/", "url_route": "salesforce-sync", "destination": "nav"}
    ]
