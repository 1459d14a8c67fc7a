"""The local org's schema and seeded records (pure Python, no server)."""
from __future__ import annotations

import re

import pytest

from devorg.config import OrgConfig, SeedUser
from devorg.data import DELETED_EXTRA, OrgData, id_suffix, is_valid_id, to_id18

PREFIXES = {"User": "005", "Account": "001", "Contact": "003", "Opportunity": "006", "Lead": "00Q"}


def reference_suffix(id15: str) -> str:
    """Salesforce's published algorithm, written out plainly to check the fast one."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    out = ""
    for chunk in range(3):
        flags = 0
        for position in range(5):
            char = id15[chunk * 5 + position]
            if "A" <= char <= "Z":
                flags += 1 << position
        out += alphabet[flags]
    return out


@pytest.fixture(scope="module")
def data() -> OrgData:
    return OrgData.seed(OrgConfig())


@pytest.mark.parametrize(("id15", "id18"), [
    ("0015000000WWD7b", "0015000000WWD7bAAH"),  # palominolabs subquery fragment
    ("0035000000km1ow", "0035000000km1owAAA"),
    ("5005000000AaQxo", "5005000000AaQxoAAF"),
    ("006A000000LZhwN", "006A000000LZhwNIAT"),  # soapforce query_response.xml
    ("006A000000LaF4x", "006A000000LaF4xIAF"),
])
def test_case_safe_suffix_matches_real_ids(id15: str, id18: str) -> None:
    assert to_id18(id15) == id18
    assert id_suffix(id15) == reference_suffix(id15)
    assert is_valid_id(id15) and is_valid_id(id18)


def test_is_valid_id_rejects_bad_ids() -> None:
    assert not is_valid_id("ZZZ")
    assert not is_valid_id("0015000000WWD7bAAA")  # wrong suffix
    assert not is_valid_id("0015000000WWD7-")
    assert not is_valid_id("")


def test_every_seeded_id_is_a_valid_18_char_id_with_its_key_prefix(data: OrgData) -> None:
    seen = set()
    for name, prefix in PREFIXES.items():
        for record in data.records(name):
            record_id = record["Id"]
            assert len(record_id) == 18 and record_id.startswith(prefix)
            assert record_id[15:] == reference_suffix(record_id[:15])
            seen.add(record_id)
        assert data.sobject(name).key_prefix == prefix
    assert len(seen) == sum(len(data.records(n)) for n in PREFIXES)


def test_large_seed_ids_stay_valid_and_unique() -> None:
    big = OrgData.seed(OrgConfig(contact_count=20_000, account_count=300))
    ids = [r["Id"] for r in big.records("Contact")]
    assert len(set(ids)) == len(ids) == 20_000 + DELETED_EXTRA["Contact"]
    assert all(i[15:] == reference_suffix(i[:15]) for i in ids)


def test_counts_follow_config_and_deleted_rows_are_extra(data: OrgData) -> None:
    config = OrgConfig()
    contacts = data.records("Contact")
    live = [r for r in contacts if not r["IsDeleted"]]
    assert len(live) == config.contact_count
    assert len(contacts) - len(live) == DELETED_EXTRA["Contact"]
    assert len(data.visible_records("Contact")) == config.contact_count
    assert len(data.visible_records("contact", include_deleted=True)) == len(contacts)
    accounts = data.records("Account")
    assert len([a for a in accounts if not a["IsDeleted"]]) == config.account_count
    assert any(a["IsDeleted"] for a in accounts)
    assert data.records("Opportunity") and data.records("Lead")
    assert data.records("NoSuchThing") == []


def test_users_come_only_from_config() -> None:
    users = [SeedUser("one@x.local", "pw", "Öne", "Ünö", "one@x.local"),
             SeedUser("two@x.local", "pw", "Two", "Too", "two@x.local", "UTC")]
    seeded = OrgData.seed(OrgConfig(users=users))
    assert [u["Username"] for u in seeded.records("User")] == ["one@x.local", "two@x.local"]
    owners = {r["OwnerId"] for n in ("Account", "Contact", "Opportunity", "Lead")
              for r in seeded.records(n)}
    assert owners == {u["Id"] for u in seeded.records("User")}


def test_user_lookups(data: OrgData) -> None:
    admin = data.user_by_username("ADMIN@devorg.local")
    assert admin is not None
    assert admin["Name"] == "Ada Admin" and admin["LanguageLocaleKey"] == "en_US"
    assert admin["Email"] == "ada.admin@devorg.local"
    assert admin["TimeZoneSidKey"] == "America/Los_Angeles"
    assert data.user_by_id(admin["Id"]) is admin
    assert data.user_by_id(admin["Id"][:15]) is admin
    assert data.user_by_id("005000000000000AAA") is None
    assert data.user_by_id("nonsense") is None
    assert data.user_by_username("nobody@devorg.local") is None
    zoe = data.user_by_username("zoë.müller@devorg.local")
    assert zoe is not None and zoe["TimeZoneSidKey"] == "Europe/Berlin"


def test_schema_lookups_are_case_insensitive(data: OrgData) -> None:
    contact = data.sobject("cOnTaCt")
    assert contact is not None and contact.name == "Contact"
    assert contact.field("firstname").name == "FirstName"
    assert contact.field("nope") is None
    assert data.sobject("Nope") is None
    account_id = contact.field("AccountId")
    assert account_id.type == "reference" and account_id.soap_type == "tns:ID"
    assert account_id.reference_to == ["Account"] and account_id.relationship_name == "Account"
    assert contact.field("Id").soap_type == "tns:ID"
    assert contact.field("Birthdate").soap_type == "xsd:date"
    assert contact.field("CreatedDate").soap_type == "xsd:dateTime"
    assert contact.field("HasOptedOutOfEmail").soap_type == "xsd:boolean"
    account = data.sobject("Account")
    assert account.field("AnnualRevenue").type == "currency"
    assert account.field("NumberOfEmployees").soap_type == "xsd:int"
    assert "Energy" in account.field("Industry").picklist_values
    rels = {c.relationship_name: (c.child_sobject, c.field) for c in account.child_relationships}
    assert rels["Contacts"] == ("Contact", "AccountId")
    assert rels["Opportunities"] == ("Opportunity", "AccountId")
    assert account.child_relationship("contacts").relationship_name == "Contacts"
    assert set(data.schema) == set(PREFIXES)
    allowed = {"id", "string", "email", "phone", "url", "textarea", "picklist", "double",
               "currency", "int", "percent", "boolean", "date", "datetime", "reference"}
    for schema in data.schema.values():
        for f in schema.fields:
            assert f.type in allowed
            # Every record has a value (maybe None) for every field of its schema.
        names = {f.name for f in schema.fields}
        for record in data.records(schema.name):
            assert set(record) == names


def test_values_are_realistic(data: OrgData) -> None:
    texts = {v for n in data.schema for r in data.records(n) for v in r.values()
             if isinstance(v, str)}
    joined = "\n".join(texts)
    for needle in ("Zoë", "Müller", "東京", "O'Brien & Sons <Ltd>"):
        assert needle in joined
    contacts = data.visible_records("Contact")
    with_account = [c for c in contacts if c["AccountId"]]
    assert len(contacts) * 0.8 < len(with_account) < len(contacts)
    assert any(c["FirstName"] is None for c in contacts)
    assert any(c["Email"] is None for c in contacts)
    live_accounts = {a["Id"] for a in data.visible_records("Account")}
    assert {c["AccountId"] for c in with_account} <= live_accounts
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+", c["Email"]) for c in contacts if c["Email"])
    assert all(c["Name"] == " ".join(filter(None, (c["FirstName"], c["LastName"])))
               for c in contacts)


def test_seed_is_deterministic() -> None:
    first = OrgData.seed(OrgConfig())
    second = OrgData.seed(OrgConfig())
    for name in PREFIXES:
        assert first.records(name) == second.records(name)
    other = OrgData.seed(OrgConfig(seed=7))
    assert other.records("Contact") != first.records("Contact")


def test_record_by_id(data: OrgData) -> None:
    contact = data.records("Contact")[0]
    assert data.record_by_id(contact["Id"]) is contact
    assert data.record_by_id(contact["Id"][:15]) is contact
    assert data.record_by_id("bogus") is None


def test_create_app_seeds_the_org() -> None:
    import devorg

    app = devorg.create_app()
    org = devorg.org_of(app)
    assert len(org.data.visible_records("Contact")) == OrgConfig().contact_count
