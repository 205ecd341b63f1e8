"""The data directory is its owner's only: it holds the server's private key, the admin token and every
record. Directories are 0700 and files 0600 whatever the umask, and whatever an older localorg, a copy or
a hand left looser is tightened again each time an org opens the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600
DB_FILE = "org.sqlite"  # the org's store (database.py)


def make_private(data_dir: Path) -> Path:
    """Create ``data_dir`` if missing and make it and everything under it its owner's only."""
    data_dir.mkdir(DIR_MODE, parents=True, exist_ok=True)
    for root, _, files in os.walk(data_dir):
        _chmod(root, DIR_MODE)
        for name in files:
            _chmod(os.path.join(root, name), FILE_MODE)
    return data_dir


def private_opener(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for ``open``: a new file is private from its first byte, an existing one made so."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, data: bytes) -> None:
    with open(path, "wb", opener=private_opener) as out:
        out.write(data)


def _chmod(path: str, mode: int) -> None:
    try:
        if not os.path.islink(path):  # a link's target may lie outside the directory
            os.chmod(path, mode)
    except FileNotFoundError:
        pass  # a running server's Bulk spool files come and go
