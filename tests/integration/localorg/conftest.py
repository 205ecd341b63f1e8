"""Fixtures of the local org's own tests; the org itself and its clients come from tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from localorg.store import Org
from localorg.testing import RunningOrg


@pytest.fixture(scope="session")
def store(local_org: RunningOrg) -> Org:
    """Direct access to the running org's SQLite store (for backdated history)."""
    return Org(local_org.data_dir, local_org.definition)


@pytest.fixture
def unique() -> Callable[[], str]:
    """Unique strings, so tests sharing the session org do not see each other's records."""
    counter = iter(range(1_000_000))
    token = uuid.uuid4().hex[:8]
    return lambda: f"t{token}x{next(counter)}"
