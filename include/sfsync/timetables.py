"""``BackfillOnlyTimetable``: daily data intervals for backfills, and no scheduled runs at all."""

from __future__ import annotations

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable


class BackfillOnlyTimetable(CronDataIntervalTimetable):
    """Daily UTC intervals that only a backfill (or a manual trigger) ever runs.

    Airflow refuses backfills of unscheduled DAGs, and refuses to forbid scheduled runs of scheduled ones;
    the scheduler asks for the next run with no upper bound, a backfill always with one, so this timetable
    answers only the backfill.
    """

    def __init__(self) -> None:
        super().__init__("0 0 * * *", "UTC")

    @property
    def summary(self) -> str:
        return "backfill only (daily slices)"

    def serialize(self) -> dict:
        return {}

    @classmethod
    def deserialize(cls, data: dict) -> BackfillOnlyTimetable:
        return cls()

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if restriction.latest is None:
            return None
        return super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
