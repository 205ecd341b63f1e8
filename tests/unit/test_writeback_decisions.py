"""The push's decisions, without services: how pending changes fold, which side a conflict keeps, where a
replaced record's change goes, what cannot be sent, and how failures are classified for a retry."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sfsync.registry import SyncSettings
from sfsync.writeback import conflicts, send, settle, survivors
from sfsync.writeback.pending import Change, OutboxEntry, fold

LEAD = "00Q000000000001AAA"
MASTER = "00Q000000000002AAA"
CONTACT = "003000000000001AAA"


def entry(row_id: int, change_id: int, changed: dict, current: dict | None, operation: str = "update",
          sfid: str | None = LEAD, last_error: str | None = None) -> OutboxEntry:  # fmt: skip
    diffs = {column: {"old": old, "new": new} for column, (old, new) in changed.items()}
    return OutboxEntry(row_id, change_id, operation, sfid, diffs, current, last_error)


def change(values: dict, base: dict | None = None, **kwargs) -> Change:
    """An update of the lead ``LEAD`` whose row holds ``values`` now, unless ``kwargs`` say otherwise."""
    fields = {"row_id": 1, "change_id": 1, "operation": "update", "sfid": LEAD, "values": values,
              "base": base if base is not None else dict.fromkeys(values),
              "trail": {c: [v] for c, v in values.items()}, "current": {"id": LEAD, **values},
              "sobject": "Lead", "last_error": None} | kwargs  # fmt: skip
    return Change(**fields)


# -- Folding -----------------------------------------------------------------------------------------------


def test_a_chain_of_edits_folds_into_the_latest_value_and_the_value_it_replaced():
    current = {"id": LEAD, "title": "C", "rating": "Warm"}
    (folded,) = fold(
        "Lead",
        [
            entry(7, 10, {"title": ("A", "B")}, current),
            entry(7, 11, {"title": ("B", "C"), "rating": (None, "Warm")}, current),
        ],
    )
    assert (folded.row_id, folded.change_id, folded.operation, folded.sfid) == (7, 11, "update", LEAD)
    assert folded.values == {"title": "C", "rating": "Warm"}
    assert folded.base == {"title": "A", "rating": None}
    assert folded.trail == {"title": ["B", "C"], "rating": ["Warm"]}


def test_an_edit_made_over_a_pulled_value_starts_a_new_chain():
    current = {"id": LEAD, "title": "Y"}
    (folded,) = fold(
        "Lead", [entry(7, 1, {"title": ("A", "B")}, current), entry(7, 2, {"title": ("X", "Y")}, current)]
    )
    assert (folded.values, folded.base, folded.trail) == ({"title": "Y"}, {"title": "X"}, {"title": ["Y"]})


def test_the_row_as_it_is_now_decides_insert_or_update_and_the_record():
    inserted_then_pulled = [entry(1, 1, {"title": (None, "A")}, {"id": LEAD}, "insert", None)]
    never_sent = [entry(2, 2, {"title": (None, "A")}, {"id": None}, "insert", None)]
    deleted = [entry(3, 3, {}, None, "delete", LEAD)]
    truncated = [entry(4, 4, {"title": ("A", "B")}, None, "update", LEAD)]
    folded = fold("Lead", inserted_then_pulled + never_sent + deleted + truncated)
    assert [(c.row_id, c.operation, c.sfid) for c in folded] == [
        (1, "update", LEAD),
        (2, "insert", None),
        (3, "delete", LEAD),
        (4, "update", LEAD),
    ]


# -- Conflicts ---------------------------------------------------------------------------------------------


def winner_is(side: str):
    return lambda column: side


@pytest.mark.parametrize("side", ["salesforce", "warehouse"])
def test_a_field_changed_on_both_sides_keeps_the_winners_value_and_is_recorded(side):
    update = change({"title": "Warehouse"}, base={"title": "Old"})
    decided = conflicts.resolve([update], {LEAD: {"title": "Salesforce"}}, winner_is(side), {"title": "text"})
    assert [
        (c["field"], c["winner"], c["salesforce"].obj, c["warehouse"].obj, c["base"].obj) for c in decided
    ] == [("title", side, "Salesforce", "Warehouse", "Old")]
    assert update.values == ({} if side == "salesforce" else {"title": "Warehouse"})


def test_a_field_only_the_warehouse_changed_is_no_conflict():
    update = change({"title": "New"}, base={"title": "Old"})
    assert conflicts.resolve([update], {LEAD: {"title": "Old"}}, winner_is("salesforce"), {}) == []
    assert update.values == {"title": "New"}


def test_a_value_a_crashed_push_already_sent_is_no_conflict():
    update = change({"title": "Second"}, base={"title": "Old"}, trail={"title": ["First", "Second"]})
    assert conflicts.resolve([update], {LEAD: {"title": "First"}}, winner_is("salesforce"), {}) == []
    assert update.values == {"title": "Second"}


def test_values_are_compared_by_their_type_not_their_spelling():
    update = change(
        {"lastcalled": "2026-01-06T00:00:00+00:00"}, base={"lastcalled": "2026-01-05T10:00:00+00:00"}
    )
    latest = {LEAD: {"lastcalled": "2026-01-05T10:00:00.000+0000"}}
    assert conflicts.resolve([update], latest, winner_is("salesforce"), {"lastcalled": "timestamptz"}) == []
    as_text = conflicts.resolve([update], latest, winner_is("salesforce"), {"lastcalled": "text"})
    assert [c["field"] for c in as_text] == ["lastcalled"]


def test_without_asking_salesforce_a_value_pulled_over_the_edit_is_what_salesforce_has():
    pulled_over = change({"title": "Mine"}, base={"title": "Old"}, current={"id": LEAD, "title": "Theirs"})
    untouched = change({"title": "Mine"}, base={"title": "Old"}, row_id=2)
    assert conflicts.salesforce_seen(pulled_over, "title", {}) == "Theirs"
    assert conflicts.salesforce_seen(untouched, "title", {}) is conflicts.UNSEEN
    decided = conflicts.resolve([pulled_over, untouched], {}, winner_is("warehouse"), {})
    assert [(c["row_id"], c["salesforce"].obj) for c in decided] == [(1, "Theirs")]


# -- Merges and conversions ----------------------------------------------------------------------------------


def test_the_survivor_is_the_master_record_else_a_converted_leads_contact():
    assert survivors.of("Lead", MASTER, False, None) == ("Lead", MASTER)
    assert survivors.of("Lead", None, True, CONTACT) == ("Contact", CONTACT)
    assert survivors.of("Lead", None, False, CONTACT) is None
    assert survivors.of("Lead", "not-an-id", True, "x' OR Id != '") is None


def test_a_survivor_is_known_only_from_a_row_a_pull_marked_deleted_or_converted():
    merged = {"id": LEAD, "isdeleted": True, "masterrecordid": MASTER}
    assert survivors.known(change({"title": "A"}, current=merged)) == ("Lead", MASTER)
    assert survivors.known(change({"title": "A"}, current=merged | {"isdeleted": False})) is None


def test_only_an_update_refused_as_replaced_is_redirected():
    gone = settle.failure("ENTITY_IS_DELETED", "deleted")
    converted = settle.failure("CANNOT_UPDATE_CONVERTED_LEAD", "converted")
    assert survivors.was_replaced(change({}), gone) and survivors.was_replaced(change({}), converted)
    assert not survivors.was_replaced(change({}, operation="delete"), gone)
    assert not survivors.was_replaced(change({}), settle.failure("UNABLE_TO_LOCK_ROW", "busy"))
    assert not survivors.was_replaced(change({}), {"success": True, "id": LEAD})


def test_a_change_redirected_to_another_object_keeps_only_the_fields_it_can_write_there():
    redirected = change(
        {"title": "CEO", "company": "Acme", "id": LEAD}, base={"title": None, "company": None}
    )
    contact = {"title": {"updateable": True}, "company": {"updateable": False}}
    decided = survivors.redirect(redirected, "Contact", CONTACT, contact)
    assert [(c["field"], c["winner"], c["reason"]) for c in decided] == [
        ("company", "salesforce", f"Contact {CONTACT} has no such field to write")
    ]
    assert redirected.values == {"title": "CEO", "id": LEAD}
    assert (redirected.sobject, redirected.sfid, redirected.redirected) == ("Contact", CONTACT, True)


def test_a_change_redirected_to_a_merge_survivor_keeps_every_field():
    redirected = change({"title": "CEO", "company": "Acme"})
    assert survivors.redirect(redirected, "Lead", MASTER, {}) == []
    assert redirected.values == {"title": "CEO", "company": "Acme"}
    assert (redirected.sobject, redirected.sfid) == ("Lead", MASTER)


# -- Sending -------------------------------------------------------------------------------------------------


def test_a_row_gone_or_a_malformed_id_is_refused_before_any_call():
    gone = send.refusal(change({"title": "A"}, current=None), "lead")
    assert settle.codes(gone or {}) == {"ROW_NOT_FOUND"}
    malformed = send.refusal(change({"title": "A"}, sfid="00Q' OR Name != '"), "lead")
    assert settle.codes(malformed or {}) == {"MALFORMED_ID"}
    assert send.refusal(change({}, operation="delete", current=None), "lead") is None
    assert send.refusal(change({"title": "A"}), "lead") is None


def test_a_change_with_nothing_left_to_write_is_not_sent():
    key = "warehouse_id__c"
    assert not send.sendable(change({"id": LEAD, "isdeleted": False, key: "k"}), key)
    assert send.sendable(change({"title": "A"}), key)
    assert send.sendable(change({}, operation="insert", sfid=None), key)
    assert not send.sendable(change({}, operation="delete", sfid=None), key)


def test_a_call_refused_as_a_whole_fails_its_records_with_salesforces_code_or_as_transient():
    malformed = SalesforceMalformedRequest(
        "url", 400, "composite", [{"errorCode": "INVALID_FIELD", "message": "No such column 'Nope'"}]
    )
    assert send.call_failure(malformed) == settle.failure("INVALID_FIELD", "No such column 'Nope'")
    server = SalesforceGeneralError(
        "url", 500, "composite", [{"errorCode": "UNKNOWN_EXCEPTION", "message": "x"}]
    )
    assert settle.codes(send.call_failure(server)) == {"REQUEST_FAILED"}
    assert send.call_failure(requests.ConnectionError()) == settle.failure(
        "REQUEST_FAILED", "ConnectionError"
    )
    assert send.call_failure(TimeoutError("Bulk job aborted")) == settle.failure(
        "REQUEST_FAILED", "TimeoutError"
    )


# -- Settling ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "transient"),
    [("UNABLE_TO_LOCK_ROW", True), ("NOT_PROCESSED", True), ("REQUEST_FAILED", True),
     ("REQUIRED_FIELD_MISSING", False), ("DUPLICATE_VALUE", False), ("MALFORMED_ID", False)],
)  # fmt: skip
def test_failures_are_kept_transient_or_permanent_with_the_backoff_settings(code, transient):
    settings = SyncSettings(retry_after_seconds=30, retry_cap_seconds=900)
    failed = change({"title": "A"}, row_id=5, change_id=9)
    outcome = {"success": False, "errors": [{"statusCode": code, "message": "m", "fields": ["Title"]}]}
    assert settle.error_row("Lead", failed, outcome, settings) == {
        "sobject": "Lead", "row_id": 5, "change_id": 9, "sfid": LEAD, "operation": "update",
        "status_code": code, "message": "m", "fields": ["Title"], "transient": transient,
        "retry_after": 30, "retry_cap": 900,
    }  # fmt: skip


def test_a_failure_without_errors_is_kept_as_unknown_and_permanent():
    row = settle.error_row("Lead", change({}), {"success": False}, SyncSettings())
    assert (row["status_code"], row["transient"], row["message"]) == ("UNKNOWN", False, "{'success': False}")


def test_deleting_a_record_salesforce_already_deleted_counts_as_done():
    gone = settle.failure("ENTITY_IS_DELETED", "deleted")
    delete = change({}, operation="delete")
    assert settle.as_settled(delete, gone) is settle.UNCHANGED
    assert settle.counter(delete, settle.as_settled(delete, gone)) == "skipped"
    assert settle.as_settled(change({}), gone) == gone
    assert settle.counter(change({}, operation="insert"), {"success": True, "id": LEAD}) == "new"
