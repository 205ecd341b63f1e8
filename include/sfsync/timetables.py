"""``BackfillOnlyTimetable``: data intervals for backfills (monthly unless the registry says otherwise), and
no scheduled runs at all."""

from __future__ import annotations

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable

DEFAULT_INTERVAL = "@monthly"


class BackfillOnlyTimetable(CronDataIntervalTimetable):
    """UTC intervals of a cron expression or preset that only a backfill (or a manual trigger) ever runs.

    Airflow refuses backfills of unscheduled DAGs, and refuses to forbid scheduled runs of scheduled ones;
    the scheduler asks for the next run with no upper bound, a backfill always with one, so this timetable
    answers only the backfill.
    """

    def __init__(self, interval: str = DEFAULT_INTERVAL) -> None:
        super().__init__(interval, "UTC")
        self.interval = interval

    @property
    def summary(self) -> str:
        return f"backfill only ({self.interval})"

    def serialize(self) -> dict:
        return {"interval": self.interval}

    @classmethod
    def deserialize(cls, data: dict) -> BackfillOnlyTimetable:
        return cls(data.get("interval", "0 0 * * *"))  # serialized before intervals were chosen: daily

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if restriction.latest is None:
            return None
        return super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
