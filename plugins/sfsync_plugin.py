"""Registers sfsync's timetable with Airflow, so the scheduler can load the DAGs that use it."""

from airflow.plugins_manager import AirflowPlugin

from sfsync.timetables import BackfillOnlyTimetable


class SfsyncPlugin(AirflowPlugin):
    name = "sfsync"
    timetables = [BackfillOnlyTimetable]
