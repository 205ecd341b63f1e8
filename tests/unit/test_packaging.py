"""What deploys: requirements.txt (Astronomer installs it) is the product's runtime dependencies, and no
development tool is among them or in the product's packages."""

from __future__ import annotations

import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def test_requirements_txt_is_the_products_dependencies():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    listed = [line for line in (PROJECT / "requirements.txt").read_text().splitlines() if line.strip()]
    assert listed == project["dependencies"], "run: make requirements"
    development = {spec.split(">")[0].split("[")[0] for spec in project["optional-dependencies"]["dev"]}
    assert not development & {spec.split(">")[0].split("[")[0] for spec in listed}


def test_the_image_leaves_the_development_tools_out():
    ignored = (PROJECT / ".dockerignore").read_text().splitlines()
    assert {"include/localorg", "include/sfsync_dev", "tests", "bench"} <= set(ignored)
    assert "ENV PYTHONPATH=/usr/local/airflow/include" in (PROJECT / "Dockerfile").read_text()
