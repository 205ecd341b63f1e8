from datetime import UTC, datetime, timedelta, timezone

import pytest

from sfsync import columns, soql


def field(name, kind, **extra):
    return {"name": name, "type": kind, **extra}


@pytest.mark.parametrize(
    ("describe_field", "expected"),
    [
        (field("Id", "id"), "text"),
        (field("OwnerId", "reference"), "text"),
        (field("Description", "textarea", length=131072), "text"),
        (field("Tags__c", "multipicklist"), "text"),
        (field("IsDeleted", "boolean"), "boolean"),
        (field("NumberOfEmployees", "int", digits=8), "bigint"),
        (field("AnnualRevenue", "currency", precision=18, scale=0), "numeric(18,0)"),
        (field("Probability", "percent", precision=3, scale=0), "numeric(3,0)"),
        (field("Score__c", "double", precision=5, scale=1), "numeric(5,1)"),
        (field("Latitude", "double"), "numeric"),
        (field("CloseDate", "date"), "date"),
        (field("SystemModstamp", "datetime"), "timestamptz"),
        (field("StartTime__c", "time"), "time"),
    ],
)
def test_postgres_types_keep_salesforce_precision(describe_field, expected):
    assert columns.pg_type(describe_field) == expected


def test_columns_skip_compound_fields_and_honour_include_and_exclude():
    describe = {
        "fields": [
            field("Id", "id"),
            field("BillingCity", "string", compoundFieldName="BillingAddress"),
            field("BillingAddress", "address"),
            field("Location__Latitude__s", "double", precision=18, scale=6, compoundFieldName="Location__c"),
            field("Location__c", "location"),
            field("Description", "textarea"),
            field("SystemModstamp", "datetime"),
        ]
    }
    # The compounds' components are synced in their place, as any other field.
    assert [(c.name, c.pg_type) for c in columns.synced(describe)] == [
        ("id", "text"),
        ("billingcity", "text"),
        ("location__latitude__s", "numeric(18,6)"),
        ("description", "text"),
        ("systemmodstamp", "timestamptz"),
    ]
    assert [c.field for c in columns.synced(describe, exclude=["Description"])] == [
        "Id", "BillingCity", "Location__Latitude__s", "SystemModstamp"
    ]  # fmt: skip
    # A listed field the integration user cannot see is simply absent: no error.
    assert [c.name for c in columns.synced(describe, include=["Id", "SystemModstamp", "Hidden__c"])] == [
        "id", "systemmodstamp"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "wider"),
    [
        ("text", "text", "text"),
        ("numeric(5,1)", "numeric(18,2)", "numeric(18,2)"),
        ("numeric(18,0)", "numeric(10,4)", "numeric(22,4)"),
        ("bigint", "numeric(10,2)", "numeric(21,2)"),
        ("numeric(5,1)", "bigint", "numeric(20,1)"),
        ("date", "timestamptz", "timestamptz"),
        ("boolean", "text", "text"),
        ("numeric(18,2)", "text", "text"),
        ("timestamptz", "numeric(18,0)", "text"),
    ],
)
def test_a_type_change_widens_and_never_loses_data(old, new, wider):
    assert columns.widen(old, new) == wider


def test_delta_query_is_half_open_ordered_with_id_tie_breaker():
    upper = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)
    low = upper - timedelta(minutes=15)
    assert soql.delta_query("Lead", ["Id", "Email", "SystemModstamp"], "SystemModstamp", low, upper) == (
        "SELECT Id, Email, SystemModstamp FROM Lead"
        " WHERE SystemModstamp >= 2025-03-01T11:50:00.000Z AND SystemModstamp < 2025-03-01T12:05:00.000Z"
        " ORDER BY SystemModstamp, Id"
    )


def test_first_window_has_no_lower_bound_and_literals_are_utc():
    upper = datetime(2025, 3, 1, 14, 5, tzinfo=timezone(timedelta(hours=2)))
    assert soql.delta_query("Account", ["Id"], "LastModifiedDate", None, upper) == (
        "SELECT Id FROM Account WHERE LastModifiedDate < 2025-03-01T12:05:00.000Z"
        " ORDER BY LastModifiedDate, Id"
    )
