"""How long Airflow takes to parse dags/: the DagBag fill, and each file through Airflow's own loader.

Prints figures, asserts nothing. Baseline: parsing an empty DAG file in the same run, so the figure for our
files is what the registry and the factory add on top of Airflow's own import cost.

    .venv/bin/python bench/dag_parse.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"

# Each measurement runs in a fresh interpreter, like the DAG processor's parsing subprocess.
PROBE = textwrap.dedent(
    """
    import sys, time, warnings
    warnings.simplefilter("ignore")
    from airflow.models import DagBag
    started = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    elapsed = time.perf_counter() - started
    assert not bag.import_errors, bag.import_errors
    print(f"{elapsed:.6f} {len(bag.dags)}")
    """
)


def measure(folder: Path, repeat: int) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        output = subprocess.run(
            [sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(output[-2]))
        count = int(output[-1])
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        Path(empty, "empty_dag.py").write_text(
            "from airflow.sdk import DAG\nwith DAG('empty', schedule=None):\n    pass\n"
        )
        baseline, _ = measure(Path(empty), args.repeat)
    ours, dags = measure(DAGS, args.repeat)
    per_file = {}
    for path in sorted(DAGS.glob("*.py")):
        with tempfile.TemporaryDirectory() as single:
            Path(single, path.name).write_text(path.read_text())
            per_file[path.name] = measure(Path(single), args.repeat)[0]
    print(
        f"dags/ parse (median of {args.repeat}, fresh interpreter each): {ours * 1000:.1f} ms for {dags} DAGs"
    )
    print(f"baseline, one empty DAG file:                   {baseline * 1000:.1f} ms")
    print(f"ratio to baseline:                              {ours / baseline:.1f}x")
    for name, seconds in per_file.items():
        print(f"  {name}: {seconds * 1000:.1f} ms")


if __name__ == "__main__":
    main()
