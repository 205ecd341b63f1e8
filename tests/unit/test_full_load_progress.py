"""A full-load slice's progress in the task log: rows, rate and time left, within a page too."""

import logging
import re

from sfsync import full_load
from sfsync.salesforce import BulkPage

PIECE = {"sobject": "Lead", "start": "2025-01-01T00:00:00+00:00", "end": "2025-01-31T00:00:00+00:00"}


def page(rows: int, chunks: int) -> BulkPage:
    lines = [b'"Id","Description"\n'] + [b'"00Q%d","two\nlines"\n' % i for i in range(rows)]
    size = -(-len(lines) // chunks)
    return BulkPage(rows, iter(b"".join(lines[i : i + size]) for i in range(0, len(lines), size)))


def test_progress_is_logged_within_pages_and_set_right_at_their_ends(caplog, monkeypatch):
    monkeypatch.setattr(full_load, "PROGRESS_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="sfsync.full_load")
    pages = full_load._progress([page(10, 5), page(4, 2)], 14, "Lead", PIECE)
    streamed = [b"".join(p) for p in pages]
    assert sum(s.count(b"\n") for s in streamed) == 2 + 2 * 14  # the pages pass through whole
    done = [int(m[1]) for m in re.finditer(r"(\d+) of 14 rows, \d+ rows/s, \d+ s left", caplog.text)]
    assert len(done) > 2, "more than a line per page"
    assert done == sorted(done) and max(done) == 14 and done[-1] == 14
    assert all(n <= 10 for n in done[: done.index(10) + 1]), "a page's estimate never passes its count"
