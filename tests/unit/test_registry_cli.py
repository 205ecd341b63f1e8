"""``python -m sfsync``: the registry's check and its committed JSON Schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sfsync.__main__ import SCHEMA_FILE, check, schema

INVALID = Path(__file__).parents[1] / "fixtures" / "registry_invalid"


def test_the_committed_schema_is_the_registrys():
    assert SCHEMA_FILE.read_text() == schema(), (
        "run: python -m sfsync schema > include/sfsync/registry.schema.json"
    )


def test_check_passes_a_good_registry_and_names_the_problems_of_a_bad_one():
    assert check(None, None) == []
    (problem,) = check(str(INVALID / "bad_schedule.yaml"), None)
    assert "entry 1 (Task)" in problem and "not a cron expression" in problem


def test_the_command_exits_non_zero_on_a_bad_registry():
    run = [sys.executable, "-m", "sfsync", "check", str(INVALID / "unknown_key.yaml")]
    done = subprocess.run(run, capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "unknown key 'directon'" in done.stderr
    good = subprocess.run(
        [sys.executable, "-m", "sfsync", "check"], capture_output=True, text=True, check=False
    )
    assert good.returncode == 0 and "registry ok" in good.stderr
