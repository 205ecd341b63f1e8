"""Seeding speed of the local org: N Leads (default 1,000,000) through ``python -m localorg seed``.

Runs the real CLI into a fresh data directory and prints the wall time, the rate and the size of the
SQLite file; it asserts nothing (a figure to watch, not a test).

Usage: python bench/localorg_seed.py [--count N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "org"
        command = [
            sys.executable,
            "-m",
            "localorg",
            "seed",
            "--data",
            str(data_dir),
            "--count",
            str(args.count),
        ]
        started = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        elapsed = time.perf_counter() - started
        counts = json.loads(out.splitlines()[0])
        size_mb = (data_dir / "org.sqlite").stat().st_size / 1e6
    others = ", ".join(f"{name}={n:,}" for name, n in counts.items() if name != "Lead")
    print(f"seeded {counts['Lead']:,} Leads (and {others}) in {elapsed:.1f}s")
    print(f"{counts['Lead'] / elapsed:,.0f} Leads/s including process start and the other objects")
    print(f"org.sqlite: {size_mb:,.0f} MB")


if __name__ == "__main__":
    main()
