"""The data directory (private key, admin token, records, Bulk spool) is readable by its owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from localorg.testing import running_org, sample_lead

pytestmark = pytest.mark.integration


def loose(data_dir: Path) -> dict[str, str]:
    """Everything under ``data_dir`` (itself included) that is not 0700 (directories) or 0600 (files)."""
    found = {}
    for path in [data_dir, *data_dir.rglob("*")]:
        mode, wanted = stat.S_IMODE(path.lstat().st_mode), 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            found[str(path.relative_to(data_dir))] = oct(mode)
    return found


def test_data_dir_is_private_when_created_and_tightened_when_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "new" / "org"
    with running_org(data_dir) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(org.ca_file))
        sf = Salesforce(**org.salesforce_kwargs("integration"))
        sf.Lead.create(sample_lead())
        assert list(sf.bulk2.Lead.query("SELECT Id FROM Lead", wait=0))
        assert sf.bulk2.Lead.insert(records=[sample_lead()], wait=0)[0]["numberRecordsProcessed"] == 1
        made = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file()}
        assert {
            "server.pem",
            "ca.pem",
            "admin-token",
            "org.sqlite",
            "org.sqlite-wal",
            "org.sqlite-shm",
        } <= made
        assert {name.rsplit("/", 1)[-1] for name in made if name.startswith("bulk/")} >= {
            "result-0.csv",
            "data.csv",
            "successfulResults.csv",
        }
        assert loose(data_dir) == {}
    (data_dir / "stray").mkdir()
    (data_dir / "stray" / "notes.txt").write_text("left by hand")
    for path in [data_dir, *data_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with running_org(data_dir):
        assert loose(data_dir) == {}
