"""The full load's slices, without services: how many Bulk jobs an object takes, where its range is cut
(from counts the org answers five to a composite call), and what that costs in calls."""

import datetime as dt
import itertools
import re
from bisect import bisect_left

import pytest

from sfsync import full_load, slicing
from sfsync.salesforce import COMPOSITE_QUERIES

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 1, tzinfo=UTC)
WHOLE = (slicing.EARLIEST, NOW)
_BOUNDS = re.compile(r"CreatedDate >= (\S+) AND CreatedDate < (\S+)")


class CountingOrg:
    """Answers the plan's queries from a list of CreatedDates, counting composite calls as the org does."""

    def __init__(self, created: list[dt.datetime]) -> None:
        self.created = sorted(created)
        self.calls = 0

    def query_many(self, queries: list[str]) -> list[dict]:
        self.calls += -(-len(queries) // COMPOSITE_QUERIES)
        return [self._answer(query) for query in queries]

    def _answer(self, query: str) -> dict:
        if "COUNT()" not in query:  # the first record
            first = self.created[0].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
            return {"records": [{"CreatedDate": first}]}
        low, high = (
            dt.datetime.fromisoformat(b.replace("Z", "+00:00")) for b in _BOUNDS.search(query).groups()
        )
        return {"totalSize": self.count(low, high)}

    def count(self, low: dt.datetime, high: dt.datetime) -> int:
        return bisect_left(self.created, high) - bisect_left(self.created, low)


def sliced(org: CountingOrg, job_records: int, interval=WHOLE) -> list[tuple[dt.datetime, dt.datetime]]:
    count = org.count(*interval)
    histogram = full_load.histograms_of(org, {"Lead": count}, interval, job_records, interval == WHOLE)[
        "Lead"
    ]
    slices = histogram.slices()
    assert slices[0][0] == interval[0] and slices[-1][1] == interval[1], "the whole range"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices)), "without gaps or overlaps"
    assert len(slices) <= max(histogram.jobs, 1)
    return slices


def spread(count: int, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    return [start + (end - start) * i / count for i in range(count)]


@pytest.mark.parametrize(
    ("count", "jobs"), [(0, 0), (1, 1), (1000, 1), (1100, 1), (1101, 2), (2200, 2), (2201, 3), (5000, 5)]
)
def test_an_object_takes_a_job_per_job_records_with_a_tenth_to_spare_and_none_when_empty(count, jobs):
    assert slicing.jobs_for(count, 1000) == jobs


def test_an_object_that_fits_in_one_job_is_one_slice_over_its_whole_range_without_a_call():
    org = CountingOrg(spread(999, dt.datetime(2016, 1, 1, tzinfo=UTC), NOW))
    assert sliced(org, 1000) == [WHOLE]
    assert org.calls == 0, "its count came with its describe"
    assert sliced(CountingOrg([NOW]), 1000, (NOW, NOW)) == [(NOW, NOW)], "an empty backfill interval"


def test_ten_years_of_records_are_cut_into_equal_slices_in_a_few_calls():
    org = CountingOrg(spread(5000, dt.datetime(2016, 1, 1, tzinfo=UTC), NOW))
    slices = sliced(org, 1000)
    sizes = [org.count(*piece) for piece in slices]
    assert len(slices) == 5 and all(750 <= size <= 1250 for size in sizes), sizes
    assert org.calls <= 4, "the first record, then a round per finer cut"


def test_records_loaded_in_one_hour_after_an_old_outlier_cost_calls_by_depth_not_by_age():
    hour = dt.datetime(2025, 6, 1, 9, tzinfo=UTC)
    org = CountingOrg(
        [dt.datetime(1990, 1, 1, tzinfo=UTC), *spread(2999, hour, hour + dt.timedelta(hours=1))]
    )
    sizes = [org.count(*piece) for piece in sliced(org, 1000)]
    assert len(sizes) == 3 and all(500 <= size <= 1500 for size in sizes), sizes
    assert org.calls <= 1 + slicing.MAX_ROUNDS


def test_a_backfill_interval_is_cut_from_its_own_bounds():
    month = (dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2025, 2, 1, tzinfo=UTC))
    org = CountingOrg(spread(2000, *month))
    sizes = [org.count(*piece) for piece in sliced(org, 1000, month)]
    assert sizes == [1000, 1000] and org.calls == 1, "one round: five counts in one call"


def test_records_created_in_one_second_stay_in_one_slice_and_the_refinement_ends():
    second = dt.datetime(2025, 6, 1, 9, tzinfo=UTC)
    org = CountingOrg([second] * 2500 + spread(500, dt.datetime(2024, 1, 1, tzinfo=UTC), second))
    sizes = [org.count(*piece) for piece in sliced(org, 1000)]
    assert sum(sizes) == 3000 and max(sizes) == 2500, sizes
    assert org.calls <= 1 + slicing.MAX_ROUNDS


def test_objects_refined_together_share_their_calls():
    month = (dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2025, 2, 1, tzinfo=UTC))
    org = CountingOrg(spread(2000, *month))
    histograms = full_load.histograms_of(
        org, dict.fromkeys(["Lead", "Contact", "Task"], 2000), month, 1000, False
    )
    assert org.calls <= 2 and all(len(h.slices()) == 2 for h in histograms.values())


def test_a_bin_is_split_at_whole_seconds_and_counted_again_but_for_its_last_span():
    piece = slicing.Bin(NOW, NOW + dt.timedelta(seconds=10), 9)
    spans = slicing.split(piece, 3)
    assert spans == [
        (NOW, NOW + dt.timedelta(seconds=3)),
        (NOW + dt.timedelta(seconds=3), NOW + dt.timedelta(seconds=6)),
        (NOW + dt.timedelta(seconds=6), NOW + dt.timedelta(seconds=10)),
    ]
    histogram = slicing.Histogram([piece], 3)
    histogram.refine(0, spans, [2, 9])
    assert [b.count for b in histogram.bins] == [2, 9, 0], "records gone since: never a negative count"
    assert slicing.parts_for(1, 5) == 6 and slicing.parts_for(5, 5) == 2 and slicing.parts_for(9, 5) == 2
