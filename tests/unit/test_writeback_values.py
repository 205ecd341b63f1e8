"""How write-back values are spelled for Salesforce and compared with what it returns."""

from __future__ import annotations

import pytest

from sfsync.writeback.bulk import _cell, _error
from sfsync.writeback.conflicts import same as _same


@pytest.mark.parametrize(
    ("value", "pg_type", "cell"),
    [
        (None, "text", "#N/A"),
        ("", "text", "#N/A"),
        (True, "boolean", "true"),
        (1e16, "double precision", "10000000000000000"),
        (1e-07, "numeric(18,8)", "0.0000001"),
        (42, "bigint", "42"),
        ("2026-01-05T10:00:00.123456+02:00", "timestamptz", "2026-01-05T08:00:00.123Z"),
        ("10:30:00", "time", "10:30:00.000Z"),
        ("2026-01-05", "date", "2026-01-05"),
        ('He said "hi",\nthen left', "text", 'He said "hi",\nthen left'),
    ],
)
def test_bulk_cells_are_spelled_as_salesforce_documents(value, pg_type, cell):
    assert _cell(value, pg_type) == cell


def test_bulk_errors_keep_salesforces_code_message_and_fields():
    assert _error("REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --") == {
        "statusCode": "REQUIRED_FIELD_MISSING",
        "message": "Required fields are missing: [LastName]",
        "fields": ["LastName"],
    }
    assert _error("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access: --")["fields"] == []


@pytest.mark.parametrize(
    ("salesforce", "warehouse", "pg_type", "same"),
    [
        ("2026-01-05T10:00:00.000+0000", "2026-01-05T10:00:00+00:00", "timestamptz", True),
        ("2026-01-05T10:00:01.000+0000", "2026-01-05T10:00:00+00:00", "timestamptz", False),
        ("10:00:00.000Z", "10:00:00", "time", True),
        (5.0, 5, "numeric(18,2)", True),
        ("20240105", "2024-01-05", "text", False),
        (True, 1, "boolean", False),
        (None, None, "text", True),
        (None, "x", "text", False),
    ],
)
def test_values_compare_by_the_columns_type(salesforce, warehouse, pg_type, same):
    assert _same(salesforce, warehouse, pg_type) is same
