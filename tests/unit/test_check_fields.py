import pytest

from sfsync.columns import check_fields
from sfsync.registry import RegistryError, SyncObject, UnknownFieldError

# A Lead as the integration user sees it: Fax is gone (deleted, or hidden by field-level security).
LEAD = {
    "fields": [
        {"name": name, "type": kind}
        for name, kind in [
            ("Id", "id"),
            ("Email", "email"),
            ("Title", "string"),
            ("Company", "string"),
            ("Address", "address"),
            ("Street", "textarea"),
            ("Description", "textarea"),
            ("SystemModstamp", "datetime"),
        ]
    ]
}


def lead(**entry):
    return SyncObject.model_validate({"sobject": "Lead", "direction": "bidirectional", **entry})


def test_every_name_found_gives_no_warning_whatever_its_case():
    entry = lead(
        fields=["Id", "SystemModstamp", "EMAIL", "title"],
        exclude=["description"],
        conflicts={"fields": {"eMail": "salesforce"}},
    )
    assert check_fields(entry, LEAD) == []
    assert check_fields(lead(), LEAD) == []  # fields: all


def test_a_misspelt_field_fails_naming_the_object_the_field_and_the_closest_name():
    with pytest.raises(UnknownFieldError) as raised:
        check_fields(lead(fields=["Id", "SystemModstamp", "Emial"]), LEAD)
    assert str(raised.value) == "Lead: fields names 'Emial', which Lead does not have (did you mean 'Email'?)"
    assert isinstance(raised.value, RegistryError)
    assert (raised.value.sobject, raised.value.fields) == ("Lead", ("Emial",))


def test_every_unknown_name_of_fields_and_conflicts_is_reported_at_once():
    entry = lead(
        fields=["Id", "SystemModstamp", "Title", "Zzyzx__c"],
        conflicts={"fields": {"Titel": "warehouse", "Email": "salesforce"}},
    )
    with pytest.raises(UnknownFieldError) as raised:
        check_fields(entry, LEAD)
    assert str(raised.value).splitlines() == [
        "Lead: fields names 'Zzyzx__c', which Lead does not have",  # nothing close: no suggestion
        "Lead: conflicts.fields names 'Titel', which Lead does not have (did you mean 'Title'?)",
    ]
    assert raised.value.fields == ("Zzyzx__c", "Titel")


def test_a_field_seen_before_that_vanished_is_only_a_warning():
    entry = lead(fields=["Id", "SystemModstamp", "Fax"], conflicts={"fields": {"Fax": "warehouse"}})
    # The caller passes the warehouse table's columns: lower-case, and any case is accepted.
    assert check_fields(entry, LEAD, known={"id", "systemmodstamp", "FAX"}) == [
        "Lead: fields names 'Fax', which the integration user can no longer see"
        " (deleted, or hidden by field-level security); its column stops updating",
        "Lead: conflicts.fields names 'Fax', which the integration user can no longer see"
        " (deleted, or hidden by field-level security); its rule has nothing to decide",
    ]
    with pytest.raises(UnknownFieldError, match="'Fax', which Lead does not have"):
        check_fields(entry, LEAD)  # never seen: a first run with a typo fails


def test_an_unknown_excluded_field_is_a_warning_and_a_vanished_one_says_nothing():
    entry = lead(exclude=["Emial", "Fax", "Fax"])
    assert check_fields(entry, LEAD, known=["fax"]) == [
        "Lead: exclude names 'Emial', which Lead does not have (did you mean 'Email'?)"
    ]
    assert check_fields(entry, LEAD) == [
        "Lead: exclude names 'Emial', which Lead does not have (did you mean 'Email'?)",
        "Lead: exclude names 'Fax', which Lead does not have",  # listed twice, reported once
    ]


def test_compound_fields_count_as_existing():
    entry = lead(fields=["Id", "SystemModstamp", "Address"], exclude=["address"])
    assert check_fields(entry, LEAD) == []
