from pathlib import Path

import pytest

from sfsync.registry import BIDIRECTIONAL_OBJECTS, RegistryError, load_registry

INVALID = Path(__file__).parents[1] / "fixtures" / "registry_invalid"

# Each invalid fixture and what its error must say (besides naming the file).
EXPECTED_ERRORS = {
    "unknown_key.yaml": ["entry 2 (Contact)", "unknown key 'directon'"],
    "unknown_object.yaml": ["entry 1 (Leed)", "unknown Salesforce object 'Leed'", "__c"],
    "unknown_direction.yaml": ["entry 1 (Account)", "direction", "'bidirectional' or 'inbound'"],
    "bidirectional_account.yaml": [
        "entry 1 (Account)",
        "only allowed for Campaign, CampaignMember, Contact, Lead",
    ],
    "missing_direction.yaml": ["entry 1 (Task)", "missing key 'direction'"],
    "duplicate_object.yaml": ["Lead is listed twice (entries 1 and 2)"],
    "bad_field_name.yaml": ["entry 1 (Lead)", "fields item 3 'Email Address'", "pattern"],
    "field_list_without_id.yaml": [
        "entry 1 (Opportunity)",
        "must include Id and the cursor field SystemModstamp",
    ],
    "not_yaml.yaml": ["not valid YAML (line 4"],
    "bad_schedule.yaml": ["entry 1 (Task)", "schedule: 'every 5 minutes' is not a cron expression"],
    "allow_delete_inbound.yaml": ["entry 1 (Opportunity)", "allow_delete needs direction 'bidirectional'"],
    "no_objects_list.yaml": ["unknown key 'objekts'", "missing key 'objects'"],
    "conflicts_inbound.yaml": ["entry 1 (Account)", "conflicts needs direction 'bidirectional'"],
    "conflicts_bad_winner.yaml": [
        "entry 1 (Contact)",
        "conflicts fields Title",
        "'warehouse' or 'salesforce'",
    ],
    "conflicts_same_field_twice.yaml": [
        "entry 1 (Lead)",
        "conflicts fields: 'Email' and 'email' name the same field",
    ],
    # PyYAML would keep the last value of a repeated key, dropping the first without a word.
    "duplicate_objects_key.yaml": [
        "not valid YAML (line 6, column 1)",
        "duplicate key 'objects' (first on line 1)",
    ],
    "duplicate_entry_key.yaml": ["(line 8, column 5)", "duplicate key 'exclude' (first on line 6)"],
    "duplicate_settings_key.yaml": [
        "(line 4, column 3)",
        "duplicate key 'lookback_seconds' (first on line 2)",
    ],
    "duplicate_conflict_field.yaml": [
        "(line 5, column 53)",
        "duplicate key 'Email' (first on line 5, column 16)",
    ],
}


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED_ERRORS)


@pytest.mark.parametrize("fixture", sorted(EXPECTED_ERRORS))
def test_invalid_registry_names_file_entry_and_problem(fixture):
    with pytest.raises(RegistryError) as raised:
        load_registry(INVALID / fixture)
    message = str(raised.value)
    assert fixture in message
    for expected in EXPECTED_ERRORS[fixture]:
        assert expected in message


def test_missing_file_is_named():
    with pytest.raises(RegistryError, match="nowhere.yaml: cannot read the registry"):
        load_registry(INVALID / "nowhere.yaml")


def test_default_registry_lists_every_object_with_its_direction():
    registry = load_registry()
    directions = {e.sobject: e.direction for e in registry.objects}
    assert {s for s, d in directions.items() if d == "bidirectional"} == BIDIRECTIONAL_OBJECTS
    inbound = {"Account", "User", "Opportunity", "OpportunityContactRole", "Task", "Event"}
    assert inbound <= {s for s, d in directions.items() if d == "inbound"}
    assert any(s.endswith("__c") for s in directions), "custom objects are synced too"


def test_enabled_entries_are_sorted_and_named_by_lower_case_api_name(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(
        "objects:\n"
        "  - {sobject: Subscription__c, direction: inbound}\n"
        "  - {sobject: Account, direction: inbound, enabled: false}\n"
        "  - {sobject: CampaignMember, direction: bidirectional}\n"
    )
    entries = list(load_registry(path).enabled())
    assert [(e.table, e.dag_id) for e in entries] == [
        ("campaignmember", "sf_sync__campaignmember"),
        ("subscription__c", "sf_sync__subscription__c"),
    ]


def test_registry_path_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text("objects:\n  - {sobject: Lead, direction: inbound, exclude: [Description]}\n")
    monkeypatch.setenv("SFSYNC_REGISTRY", str(path))
    (lead,) = load_registry().objects
    assert (lead.direction, lead.exclude) == ("inbound", ("Description",))


def test_the_sync_columns_cannot_be_excluded(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text("objects:\n  - {sobject: Lead, direction: inbound, exclude: [SystemModstamp]}\n")
    with pytest.raises(RegistryError, match="entry 1 \\(Lead\\): cannot exclude SystemModstamp"):
        load_registry(path)


def test_conflict_winners_default_to_marketos_rules_and_can_be_set_per_object_and_field(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(
        "objects:\n"
        "  - {sobject: Lead, direction: bidirectional, conflicts: {fields: {Email: salesforce}}}\n"
        "  - {sobject: Contact, direction: bidirectional}\n"
        "  - {sobject: Campaign, direction: bidirectional, conflicts: {winner: warehouse}}\n"
    )
    registry = load_registry(path)
    lead, contact, campaign = (registry.get(name) for name in ("Lead", "Contact", "Campaign"))
    assert (lead.winner("Title"), lead.winner("email")) == ("warehouse", "salesforce")
    assert contact.winner("Title") == "salesforce"
    assert campaign.winner("Name") == "warehouse"


def test_a_merge_key_may_be_overridden_by_the_mappings_own_keys(tmp_path):
    path = tmp_path / "objects.yaml"
    path.write_text(
        "objects:\n"
        "  - &lead {sobject: Lead, direction: inbound, page_size: 500}\n"
        "  - {<<: *lead, sobject: Contact}\n"
    )
    lead, contact = load_registry(path).objects
    assert (contact.sobject, contact.direction, contact.page_size) == ("Contact", "inbound", 500)
