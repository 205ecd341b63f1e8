"""The soak, short (``bench/soak.py``; ``make soak`` runs the long one): three cycles of Lead and Contact
while the org changes, API calls fail and task processes are SIGKILLed, with warehouse edits, inserts and
deletes made meanwhile; then two clean cycles, and nothing may be lost, twinned or sent twice."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_a_short_soak_loses_nothing_and_sends_nothing_twice(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import soak

    # Seed 11's few faults include a dropped answer to a Collections PATCH (an update or an upsert that
    # Salesforce committed) in the second cycle, with a cycle left to recover in before the clean ones.
    args = soak.parse_args(
        ["--cycles", "3", "--objects", "Lead,Contact", "--leads", "300", "--faults", "3", "--seed", "11"]
    )
    with mock.patch.dict(os.environ):  # the stack points the sync's environment at its services
        found = soak.soak(args, tmp_path)
    soak.report(found)
    assert found.figures["rows compared"] > 200  # the Leads and Contacts the integration user sees
    assert {name: found.figures[name] for name in soak.MUST_BE_ZERO} == dict.fromkeys(soak.MUST_BE_ZERO, 0), {
        name: examples for name, examples in found.examples.items() if examples
    }
