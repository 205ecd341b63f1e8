"""How a full load cuts an object's records into Bulk jobs of about equal size, from counts alone.

An object with no record in the range is skipped; one whose records fit in one job (the registry's
``full_load_job_records``, with a tenth to spare) is copied by one job over the whole range; a larger
one by about ``count / job_records`` jobs, cut along CreatedDate. Where to cut comes from a histogram
refined only where a cut falls: a bin that holds a cut and more than a quarter of a job's records is
split into equal spans of time and counted again (Salesforce answers 5 ``COUNT()`` queries in one
composite call, and the last span's count is the bin's minus the others'), so the calls grow with the
number of jobs, not with the years of history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise

#: Salesforce's earliest datetime: where a slice over an object's whole history starts.
EARLIEST = datetime(1700, 1, 1, tzinfo=UTC)
#: Refinement rounds at most: a cut still inside a bin after these stays at the bin's nearest edge (records
#: created within one second by a data load cannot be told apart by CreatedDate anyway).
MAX_ROUNDS = 8
#: How much more than ``full_load_job_records`` one job may copy, rather than the object taking one job more.
JOB_SLACK = 0.1
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Bin:
    """The records created in ``[start, end)``: ``count`` of them."""

    start: datetime
    end: datetime
    count: int


def jobs_for(count: int, job_records: int) -> int:
    """Bulk jobs for ``count`` records: none for none, else as few as hold them with up to ``JOB_SLACK``
    more than ``job_records`` each (an object of a million and a few records is one job, not two halves:
    every job costs calls and a wait in the org's queue)."""
    return -(-count // int(job_records * (1 + JOB_SLACK)))


def parts_for(bins: int, queries: int) -> int:
    """Into how many spans each of ``bins`` bins is split, when one call answers ``queries`` counts: as
    many as one call counts, shared among the bins (each span but the last needs a count)."""
    return max(2, 1 + queries // max(bins, 1))


def split(piece: Bin, parts: int) -> list[tuple[datetime, datetime]]:
    """``piece``'s span cut into ``parts`` about equal spans at whole seconds (fewer if it is shorter)."""
    seconds = int((piece.end - piece.start) / _SECOND)
    parts = max(1, min(parts, seconds))
    inner = [piece.start + _SECOND * (seconds * k // parts) for k in range(1, parts)]
    return list(pairwise([piece.start, *inner, piece.end]))


@dataclass
class Histogram:
    """An object's records per CreatedDate bin (in order, without gaps), and how many jobs take them."""

    bins: list[Bin]
    jobs: int

    @property
    def total(self) -> int:
        return sum(piece.count for piece in self.bins)

    def _cuts(self) -> list[float]:
        """Where each job but the last ends, in records counted from the first bin."""
        return [self.total * j / self.jobs for j in range(1, self.jobs)]

    def to_refine(self) -> list[int]:
        """The bins that a cut falls inside and that hold more than a quarter of a job's records (and can
        still be split: two seconds wide or more)."""
        tolerance = self.total / max(self.jobs, 1) / 4
        cuts, found, before = self._cuts(), [], 0
        for index, piece in enumerate(self.bins):
            after = before + piece.count
            wide = piece.end - piece.start >= 2 * _SECOND
            if piece.count > tolerance and wide and any(before < cut < after for cut in cuts):
                found.append(index)
            before = after
        return found

    def refine(self, index: int, bounds: list[tuple[datetime, datetime]], counts: list[int]) -> None:
        """Replace bin ``index`` by the spans ``bounds``, counted: ``counts`` for all but the last, which
        holds the rest (none, should records have gone since the bin was counted)."""
        rest = max(self.bins[index].count - sum(counts), 0)
        spans = zip(bounds, [*counts, rest], strict=True)
        self.bins[index : index + 1] = [Bin(start, end, count) for (start, end), count in spans]

    def slices(self) -> list[tuple[datetime, datetime]]:
        """The jobs' CreatedDate ranges, covering every bin: cut at the bin edges nearest to equal shares
        of the records (one range for one job, or none)."""
        ends = list(accumulate(piece.count for piece in self.bins))[:-1]  # records up to each inner edge
        edges = {
            self.bins[min(range(len(ends)), key=lambda i: abs(ends[i] - cut))].end
            for cut in (self._cuts() if ends else [])
        }
        return list(pairwise([self.bins[0].start, *sorted(edges), self.bins[-1].end]))
