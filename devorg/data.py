"""The local org's schema and seeded records: User, Account, Contact, Opportunity, Lead.

    data = OrgData.seed(config)       # deterministic from config.seed
    data.sobject("contact").field("firstname").name   -> "FirstName"
    data.records("Contact")           -> list of dicts, field API name -> Python value (None = null)

Values are Python objects (str, bool, int, float, datetime.date, aware datetime.datetime);
`soql.py` turns them into the partner API's text form.

Long because it is mostly data: the schema of five sObjects, field by field, as describe answers.
"""
from __future__ import annotations

import gc
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache

from .config import OrgConfig

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# Uppercase letters become "1", everything else "0": one translate gives a chunk's bit string.
_UPPER_BITS = str.maketrans({c: "1" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
                            | {c: "0" for c in _BASE62[:10] + _BASE62[36:]})


def id_suffix(id15: str) -> str:
    """The 3-character case-safe suffix Salesforce appends to a 15-character id."""
    out = []
    for start in (0, 5, 10):
        # Bit i of a chunk is set when its i-th character is uppercase, so reverse before int().
        bits = id15[start:start + 5].translate(_UPPER_BITS)[::-1]
        out.append(_SUFFIX_CHARS[int(bits, 2)])
    return "".join(out)


def to_id18(id15: str) -> str:
    """A 15-character id with its case-safe suffix (an 18-character id is returned unchanged)."""
    return id15 if len(id15) == 18 else id15 + id_suffix(id15)


def is_valid_id(value: str) -> bool:
    """True when `value` is a well-formed 15- or 18-character Salesforce id."""
    if len(value) not in (15, 18) or any(c not in _BASE62 for c in value):
        return False
    return len(value) == 15 or id_suffix(value[:15]) == value[15:]


def _base62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, r = divmod(n, 62)
        chars.append(_BASE62[r])
    return "".join(reversed(chars))


@cache
def _pairs() -> list[tuple[str, int]]:
    # Every 2-character base62 string with its case bits (bit 0: first character uppercase).
    return [(a + b, (a.isupper()) | (b.isupper()) << 1) for a in _BASE62 for b in _BASE62]


@dataclass
class FieldSchema:
    """One field of an sObject, described in Salesforce's describe words."""

    name: str
    label: str
    type: str
    soap_type: str
    length: int = 0
    nillable: bool = True
    reference_to: list[str] = field(default_factory=list)
    relationship_name: str | None = None
    picklist_values: list[str] = field(default_factory=list)


@dataclass
class ChildRelationship:
    """A child relationship such as Account.Contacts (Contact.AccountId)."""

    relationship_name: str
    child_sobject: str
    field: str


@dataclass
class SObjectSchema:
    """One sObject type: its fields and child relationships."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: list[FieldSchema]
    child_relationships: list[ChildRelationship] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_lower = {f.name.lower(): f for f in self.fields}
        self._rel_by_lower = {f.relationship_name.lower(): f for f in self.fields
                              if f.relationship_name}
        self._child_by_lower = {c.relationship_name.lower(): c for c in self.child_relationships}

    def field(self, name: str) -> FieldSchema | None:
        """The field called `name` (case-insensitive), or None."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> FieldSchema | None:
        """The reference field whose relationship name is `name` (e.g. "Account"), or None."""
        return self._rel_by_lower.get(name.lower())

    def child_relationship(self, name: str) -> ChildRelationship | None:
        """The child relationship called `name` (e.g. "Contacts"), or None."""
        return self._child_by_lower.get(name.lower())


_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "string": "xsd:string", "email": "xsd:string",
    "phone": "xsd:string", "url": "xsd:string", "textarea": "xsd:string",
    "picklist": "xsd:string", "double": "xsd:double", "currency": "xsd:double",
    "percent": "xsd:double", "int": "xsd:int", "boolean": "xsd:boolean", "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
_LENGTHS = {"string": 80, "email": 80, "phone": 40, "url": 255, "textarea": 32000,
            "picklist": 255, "id": 18, "reference": 18}


def _label(name: str) -> str:
    # "AnnualRevenue" -> "Annual Revenue"; "AccountId" -> "Account ID".
    if name == "Id":
        return "Record ID"
    if name.endswith("Id"):
        name = name[:-2] + " ID"
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and name[i - 1].islower():
            out.append(" ")
        out.append(c)
    return "".join(out)


def _f(name: str, type_: str, *, nillable: bool = True, to: str | None = None,
       rel: str | None = None, picklist: list[str] | None = None, length: int | None = None,
       label: str | None = None) -> FieldSchema:
    return FieldSchema(
        name=name, label=label or _label(name), type=type_, soap_type=_SOAP_TYPES[type_],
        length=_LENGTHS.get(type_, 0) if length is None else length,
        nillable=nillable and type_ not in ("id", "boolean"),
        reference_to=[to] if to else [], relationship_name=rel,
        picklist_values=list(picklist or []))


INDUSTRIES = ["Agriculture", "Banking", "Biotechnology", "Construction", "Education",
              "Electronics", "Energy", "Finance", "Healthcare", "Manufacturing", "Media",
              "Retail", "Technology", "Telecommunications", "Transportation"]
ACCOUNT_TYPES = ["Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
SALUTATIONS = ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."]
STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
          "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]
STAGE_PROBABILITY = {"Prospecting": 10.0, "Qualification": 10.0, "Needs Analysis": 20.0,
                     "Value Proposition": 50.0, "Proposal/Price Quote": 75.0,
                     "Negotiation/Review": 90.0, "Closed Won": 100.0, "Closed Lost": 0.0}
LEAD_STATUSES = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted",
                 "Closed - Not Converted"]
RATINGS = ["Hot", "Warm", "Cold"]
TIMEZONES = ["America/Los_Angeles", "Europe/Berlin", "UTC", "Asia/Tokyo"]


def _audit_fields() -> list[FieldSchema]:
    return [
        _f("CreatedDate", "datetime", nillable=False),
        _f("CreatedById", "reference", nillable=False, to="User", rel="CreatedBy"),
        _f("LastModifiedDate", "datetime", nillable=False),
        _f("LastModifiedById", "reference", nillable=False, to="User", rel="LastModifiedBy"),
        _f("SystemModstamp", "datetime", nillable=False, label="System Modstamp"),
    ]


def build_schema() -> dict[str, SObjectSchema]:
    """The describe-level schema of the five seeded sObjects."""
    user = SObjectSchema("User", "User", "Users", "005", [
        _f("Id", "id", nillable=False),
        _f("Username", "string", nillable=False),
        _f("LastName", "string", nillable=False),
        _f("FirstName", "string", length=40),
        _f("Name", "string", nillable=False, label="Full Name", length=121),
        _f("CompanyName", "string"),
        _f("Title", "string"),
        _f("Email", "email", nillable=False),
        _f("Phone", "phone"),
        _f("Alias", "string", nillable=False, length=8),
        _f("CommunityNickname", "string", nillable=False, length=40, label="Nickname"),
        _f("IsActive", "boolean", label="Active"),
        _f("TimeZoneSidKey", "picklist", nillable=False, picklist=TIMEZONES,
           label="Time Zone"),
        _f("LocaleSidKey", "picklist", nillable=False, picklist=["en_US", "de_DE"],
           label="Locale"),
        _f("LanguageLocaleKey", "picklist", nillable=False, picklist=["en_US"],
           label="Language"),
        _f("UserType", "picklist", picklist=["Standard"]),
        _f("LastLoginDate", "datetime"),
        _f("CreatedDate", "datetime", nillable=False),
        _f("LastModifiedDate", "datetime", nillable=False),
        _f("SystemModstamp", "datetime", nillable=False, label="System Modstamp"),
    ])
    account = SObjectSchema("Account", "Account", "Accounts", "001", [
        _f("Id", "id", nillable=False),
        _f("IsDeleted", "boolean", label="Deleted"),
        _f("Name", "string", nillable=False, length=255, label="Account Name"),
        _f("Type", "picklist", picklist=ACCOUNT_TYPES, label="Account Type"),
        _f("ParentId", "reference", to="Account", rel="Parent", label="Parent Account ID"),
        _f("BillingStreet", "textarea", length=255),
        _f("BillingCity", "string", length=40),
        _f("BillingPostalCode", "string", length=20, label="Billing Zip/Postal Code"),
        _f("BillingCountry", "string", length=80),
        _f("Phone", "phone", label="Account Phone"),
        _f("Website", "url"),
        _f("Industry", "picklist", picklist=INDUSTRIES),
        _f("AnnualRevenue", "currency"),
        _f("NumberOfEmployees", "int", label="Employees"),
        _f("Description", "textarea", label="Account Description"),
        _f("OwnerId", "reference", nillable=False, to="User", rel="Owner"),
        *_audit_fields(),
    ], [ChildRelationship("ChildAccounts", "Account", "ParentId"),
        ChildRelationship("Contacts", "Contact", "AccountId"),
        ChildRelationship("Opportunities", "Opportunity", "AccountId")])
    contact = SObjectSchema("Contact", "Contact", "Contacts", "003", [
        _f("Id", "id", nillable=False),
        _f("IsDeleted", "boolean", label="Deleted"),
        _f("AccountId", "reference", to="Account", rel="Account"),
        _f("LastName", "string", nillable=False, length=80),
        _f("FirstName", "string", length=40),
        _f("Salutation", "picklist", picklist=SALUTATIONS),
        _f("Name", "string", nillable=False, length=121, label="Full Name"),
        _f("MailingCity", "string", length=40),
        _f("MailingCountry", "string", length=80),
        _f("Phone", "phone", label="Business Phone"),
        _f("MobilePhone", "phone"),
        _f("Email", "email"),
        _f("Title", "string", length=128),
        _f("Department", "string"),
        _f("LeadSource", "picklist", picklist=LEAD_SOURCES),
        _f("Birthdate", "date"),
        _f("Description", "textarea", label="Contact Description"),
        _f("HasOptedOutOfEmail", "boolean", label="Email Opt Out"),
        _f("OwnerId", "reference", nillable=False, to="User", rel="Owner"),
        *_audit_fields(),
    ])
    opportunity = SObjectSchema("Opportunity", "Opportunity", "Opportunities", "006", [
        _f("Id", "id", nillable=False),
        _f("IsDeleted", "boolean", label="Deleted"),
        _f("AccountId", "reference", to="Account", rel="Account"),
        _f("Name", "string", nillable=False, length=120, label="Name"),
        _f("Description", "textarea"),
        _f("StageName", "picklist", nillable=False, picklist=STAGES, label="Stage"),
        _f("Amount", "currency"),
        _f("Probability", "percent", label="Probability (%)"),
        _f("CloseDate", "date", nillable=False),
        _f("Type", "picklist", picklist=["New Customer", "Existing Customer - Upgrade",
                                         "Existing Customer - Renewal"],
           label="Opportunity Type"),
        _f("LeadSource", "picklist", picklist=LEAD_SOURCES),
        _f("IsClosed", "boolean", label="Closed"),
        _f("IsWon", "boolean", label="Won"),
        _f("OwnerId", "reference", nillable=False, to="User", rel="Owner"),
        *_audit_fields(),
    ])
    lead = SObjectSchema("Lead", "Lead", "Leads", "00Q", [
        _f("Id", "id", nillable=False),
        _f("IsDeleted", "boolean", label="Deleted"),
        _f("LastName", "string", nillable=False, length=80),
        _f("FirstName", "string", length=40),
        _f("Salutation", "picklist", picklist=SALUTATIONS),
        _f("Name", "string", nillable=False, length=121, label="Full Name"),
        _f("Title", "string", length=128),
        _f("Company", "string", nillable=False, length=255),
        _f("City", "string", length=40),
        _f("Country", "string", length=80),
        _f("Phone", "phone"),
        _f("Email", "email"),
        _f("LeadSource", "picklist", picklist=LEAD_SOURCES),
        _f("Status", "picklist", nillable=False, picklist=LEAD_STATUSES),
        _f("Industry", "picklist", picklist=INDUSTRIES),
        _f("Rating", "picklist", picklist=RATINGS),
        _f("AnnualRevenue", "currency"),
        _f("NumberOfEmployees", "int", label="Employees"),
        _f("IsConverted", "boolean", label="Converted"),
        _f("OwnerId", "reference", nillable=False, to="User", rel="Owner"),
        *_audit_fields(),
    ])
    return {s.name: s for s in (user, account, contact, opportunity, lead)}


FIRST_NAMES = ["Liz", "Tom", "Zoë", "José", "Ana", "Björn", "François", "Mei", "Hiroshi", "Ada",
               "Grace", "Alan", "Noël", "Søren", "Ilse", "Rahul", "Chloé", "Łukasz", "Amélie",
               "Omar", "Yuki", "Sean", "Siobhán", "Dmitri", "Priya", "Marta", "Kwame", "Leïla"]
LAST_NAMES = ["Müller", "O'Brien", "Smith", "García", "Nguyen", "Dubois", "Tanaka", "Rossi",
              "Kowalski", "Andersson", "Okafor", "Lovelace", "Hopper", "Turing", "Schröder",
              "D'Angelo", "Van der Berg", "Øster", "Ramírez", "Chen", "Patel", "Ivanova",
              "Brontë", "Kim", "Fitzgerald-Smythe", "佐藤", "Núñez"]
COMPANY_STEMS = ["United Oil & Gas", "O'Brien & Sons <Ltd>", "東京 Trading 株式会社",
                 "Müller GmbH", "Burlington Textiles", "Edge Communications",
                 "Grand Hotels & Resorts",
                 "Pyramid Construction", "Dickenson plc", "GenePoint", "Express Logistics",
                 "University of Arizona", "sForce", "Café Zoë", "Łódź Metalworks",
                 "\"Quoted\" Industries", "Åland Shipping", "Nordic Fjord AS"]
CITIES = [("San Francisco", "USA"), ("Berlin", "Germany"), ("東京", "Japan"),
          ("Zürich", "Switzerland"), ("São Paulo", "Brazil"), ("London", "UK"),
          ("Paris", "France"), ("Kraków", "Poland"), ("Singapore", "Singapore"),
          ("Austin", "USA"), ("Montréal", "Canada"), ("Dublin", "Ireland")]
TITLES = ["CEO", "CFO", "VP, Sales", "Director of Ops & IT", "Engineer", "Buyer",
          "Head of <R&D>", "SVP, Procurement", "Office Manager", "Analyst"]
DEPARTMENTS = ["Sales", "Finance", "R&D", "Operations", "Procurement", "IT"]
STREETS = ["1 Market St", "Friedrichstraße 43", "2-1-1 Marunouchi", "Bahnhofstrasse 12",
           "Av. Paulista 1000", "221B Baker St", "10 Rue de Rivoli", "ul. Floriańska 5"]
_EPOCH = datetime(2023, 1, 1, 9, 0, 0, tzinfo=UTC)


def _ascii_slug(text: str) -> str:
    # Email local parts stay ASCII: drop everything but letters and digits.
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum()) or "x"


class OrgData:
    """The org's schema and records; built once by `seed` and read-only afterwards."""

    def __init__(self, schema: dict[str, SObjectSchema],
                 records: dict[str, list[dict]]) -> None:
        self.schema = schema
        self._schema_lower = {name.lower(): s for name, s in schema.items()}
        self._records = records
        self._by_id: dict[str, dict[str, dict]] = {
            name: {r["Id"]: r for r in rows} for name, rows in records.items()}
        self._users_by_username = {r["Username"].lower(): r for r in records["User"]}
        # Records a plain query sees (IsDeleted rows hidden); the data never changes after seed.
        self._live = {name: [r for r in rows if not r.get("IsDeleted")]
                      for name, rows in records.items()}

    def sobject(self, name: str) -> SObjectSchema | None:
        """The schema of sObject `name` (case-insensitive), or None."""
        return self._schema_lower.get(name.lower())

    def records(self, sobject_name: str) -> list[dict]:
        """All records of an sObject, deleted ones included (IsDeleted=True); [] if unknown."""
        schema = self.sobject(sobject_name)
        return self._records.get(schema.name, []) if schema else []

    def visible_records(self, sobject_name: str, include_deleted: bool = False) -> list[dict]:
        """Records a query sees: without IsDeleted rows unless `include_deleted` (queryAll).

        The list is shared: callers must not modify it.
        """
        schema = self.sobject(sobject_name)
        if schema is None:
            return []
        return (self._records if include_deleted else self._live)[schema.name]

    def index(self, sobject_name: str) -> dict[str, dict]:
        """Records of an sObject keyed by their 18-character Id."""
        schema = self.sobject(sobject_name)
        return self._by_id.get(schema.name, {}) if schema else {}

    def record_by_id(self, record_id: str) -> dict | None:
        """Any record by its 15- or 18-character Id, or None."""
        if not is_valid_id(record_id):
            return None
        record_id = to_id18(record_id)
        for schema in self.schema.values():
            if record_id.startswith(schema.key_prefix):
                return self._by_id[schema.name].get(record_id)
        return None

    def user_by_username(self, username: str) -> dict | None:
        """The User record with this username (case-insensitive, as Salesforce), or None."""
        return self._users_by_username.get((username or "").lower())

    def user_by_id(self, user_id: str) -> dict | None:
        """The User record with this 15- or 18-character Id, or None."""
        if not user_id or not is_valid_id(user_id):
            return None
        return self._by_id["User"].get(to_id18(user_id))

    @classmethod
    def seed(cls, config: OrgConfig) -> OrgData:
        """Build the schema and the seeded records, deterministically from `config.seed`."""
        collecting = gc.isenabled()
        gc.disable()  # hundreds of thousands of fresh dicts would trigger useless collections
        try:
            data = _Seeder(config).build()
        finally:
            if collecting:
                gc.enable()
        if config.contact_count >= _FREEZE_AT:
            # The records live as long as the org and hold no cycles; without this every full
            # collection re-scans them, which costs a large org ~25 ms pauses while paging.
            gc.freeze()
        return data


_FREEZE_AT = 20_000
# Live rows come from the config's counts; these few extra rows are deleted (queryAll only).
DELETED_EXTRA = {"Account": 1, "Contact": 3, "Opportunity": 1, "Lead": 1}


class _Seeder:
    def __init__(self, config: OrgConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        # Each sObject numbers its ids from its own seeded start, so ids look varied.
        self._next: dict[str, int] = {}

    def ids(self, prefix: str, count: int) -> list[str]:
        start = self._next.get(prefix)
        if start is None:
            start = self.rng.randrange(62 ** 4, 62 ** 5 - 10_000_000)
        self._next[prefix] = start + count
        # "0035g00000" + 5 base62 chars: the first two 5-char chunks never change, so only the
        # last suffix character varies; it is built from per-character case bits.
        head = prefix + "5g00000"
        fixed = id_suffix(head + "00000")[:2]
        pairs = _pairs()
        out = []
        last_hi, hi_text, hi_bits = -1, "", 0
        for n in range(start, start + count):
            hi, lo = divmod(n, 3844)
            if hi != last_hi:
                last_hi, hi_text = hi, _base62(hi, 3)
                hi_bits = int(hi_text.translate(_UPPER_BITS)[::-1], 2)
            lo_text, lo_bits = pairs[lo]
            out.append(f"{head}{hi_text}{lo_text}{fixed}{_SUFFIX_CHARS[hi_bits | lo_bits << 3]}")
        return out

    def stamps(self, count: int, spread_days: int = 700) -> list[datetime]:
        rng = self.rng
        span = spread_days * 86400
        return [_EPOCH + timedelta(seconds=rng.randrange(span)) for _ in range(count)]

    def build(self) -> OrgData:
        schema = build_schema()
        users = self.users()
        user_ids = [u["Id"] for u in users] or [None]
        accounts = self.accounts(user_ids)
        live_account_ids = [a["Id"] for a in accounts if not a["IsDeleted"]]
        contacts = self.contacts(user_ids, live_account_ids)
        opportunities = self.opportunities(user_ids, live_account_ids)
        leads = self.leads(user_ids)
        return OrgData(schema, {"User": users, "Account": accounts, "Contact": contacts,
                                "Opportunity": opportunities, "Lead": leads})

    def users(self) -> list[dict]:
        seeds = self.config.users
        ids = self.ids("005", len(seeds))
        rows = []
        for i, (uid, seed) in enumerate(zip(ids, seeds, strict=True)):
            created = _EPOCH - timedelta(days=30 - i)
            alias = (_ascii_slug(seed.first_name)[:1] + _ascii_slug(seed.last_name))[:8]
            rows.append({
                "Id": uid, "Username": seed.username, "LastName": seed.last_name,
                "FirstName": seed.first_name,
                "Name": f"{seed.first_name} {seed.last_name}".strip(),
                "CompanyName": self.config.org_name, "Title": None, "Email": seed.email,
                "Phone": None, "Alias": alias,
                "CommunityNickname": _ascii_slug(seed.username.split("@")[0])[:40],
                "IsActive": True, "TimeZoneSidKey": seed.timezone,
                "LocaleSidKey": "de_DE" if seed.timezone == "Europe/Berlin" else "en_US",
                "LanguageLocaleKey": "en_US", "UserType": "Standard",
                "LastLoginDate": None, "CreatedDate": created,
                "LastModifiedDate": created, "SystemModstamp": created,
            })
        return rows

    def audit(self, row: dict, owner: str | None, created: datetime) -> None:
        modified = created + timedelta(hours=self.rng.randrange(256))
        row["OwnerId"] = owner
        row["CreatedDate"] = created
        row["CreatedById"] = owner
        row["LastModifiedDate"] = modified
        row["LastModifiedById"] = owner
        row["SystemModstamp"] = modified

    def accounts(self, user_ids: list[str]) -> list[dict]:
        rng = self.rng
        live = self.config.account_count
        total = live + DELETED_EXTRA["Account"]
        ids = self.ids("001", total)
        stamps = self.stamps(total)
        rows = []
        for i in range(total):
            stem = COMPANY_STEMS[i % len(COMPANY_STEMS)]
            cycle = i // len(COMPANY_STEMS)
            name = stem if cycle == 0 else f"{stem} #{cycle + 1}"
            city, country = CITIES[rng.randrange(len(CITIES))]
            revenue = None if i % 5 == 3 else float(rng.choice(
                (250_000, 1_200_000, 5_500_000, 12_000_000, 350_000_000)))
            row = {
                "Id": ids[i], "IsDeleted": i >= live, "Name": name,
                "Type": rng.choice(ACCOUNT_TYPES) if i % 7 else None,
                # A few subsidiaries, so Parent.Parent paths have something to walk.
                "ParentId": ids[i - 3] if i % 6 == 5 and i < live else None,
                "BillingStreet": rng.choice(STREETS) if i % 4 else None,
                "BillingCity": city, "BillingPostalCode": f"{rng.randrange(10000, 99999)}",
                "BillingCountry": country,
                "Phone": f"+1 (415) 555-{rng.randrange(10000):04d}" if i % 3 else None,
                "Website": f"https://www.{_ascii_slug(stem)}.example.com" if i % 4 != 1 else None,
                "Industry": rng.choice(INDUSTRIES) if i % 6 else None,
                "AnnualRevenue": revenue,
                "NumberOfEmployees": rng.randrange(1, 50_000) if i % 5 != 2 else None,
                "Description": (f"Key account for {name}.\nSecond line & <markup>."
                                if i % 3 == 0 else None),
            }
            self.audit(row, user_ids[i % len(user_ids)], stamps[i])
            rows.append(row)
        return rows

    def contacts(self, user_ids: list[str], account_ids: list[str]) -> list[dict]:
        rng = self.rng
        live = self.config.contact_count
        total = live + DELETED_EXTRA["Contact"]
        ids = self.ids("003", total)
        accounts = account_ids or [None]
        n_accounts = len(accounts)
        # One random draw per row, sliced into bit windows: far cheaper than a call per field.
        draws = [rng.getrandbits(128) for _ in range(total)]
        slugs = {last: _ascii_slug(last) for last in LAST_NAMES}
        hours = [_EPOCH + timedelta(hours=h) for h in range(700 * 24)]
        seconds = [timedelta(seconds=s) for s in range(3600)]
        day_steps = [timedelta(days=d) for d in range(30)]
        born0 = date(1950, 1, 1)
        birthdays = [born0 + timedelta(days=d) for d in range(365 * 50)]
        n_users = len(user_ids)
        rows = []
        append = rows.append
        for i in range(total):
            r = draws[i]
            first = FIRST_NAMES[r % len(FIRST_NAMES)] if i % 17 != 4 else None
            last = LAST_NAMES[(r >> 8) % len(LAST_NAMES)]
            city, country = CITIES[(r >> 16) % len(CITIES)]
            number = (r >> 24) % 10_000
            created = hours[(r >> 40) % len(hours)] + seconds[i % 3600]
            owner = user_ids[i % n_users]
            modified = created + day_steps[i % 30]
            append({
                "Id": ids[i], "IsDeleted": i >= live,
                "AccountId": accounts[(r >> 64) % n_accounts] if i % 10 != 7 else None,
                "LastName": last, "FirstName": first,
                "Salutation": SALUTATIONS[(r >> 96) % len(SALUTATIONS)] if i % 3 else None,
                "Name": f"{first} {last}" if first else last,
                "MailingCity": city if i % 9 != 1 else None, "MailingCountry": country,
                "Phone": f"+1 (415) 555-{number:04d}" if i % 4 else None,
                "MobilePhone": f"+49 151 {number:04d}{i % 1000:03d}" if i % 3 == 1 else None,
                "Email": f"{slugs[last]}.{i}@example.com" if i % 8 != 5 else None,
                "Title": TITLES[(r >> 100) % len(TITLES)] if i % 5 != 3 else None,
                "Department": DEPARTMENTS[(r >> 104) % len(DEPARTMENTS)] if i % 2 else None,
                "LeadSource": LEAD_SOURCES[(r >> 108) % len(LEAD_SOURCES)] if i % 6 != 2 else None,
                "Birthdate": birthdays[(r >> 112) % len(birthdays)] if i % 4 == 2 else None,
                "Description": "Met at Dreamforce; likes \"quotes\" & <tags>." if i % 50 == 9
                else None,
                "HasOptedOutOfEmail": i % 11 == 0,
                "OwnerId": owner, "CreatedDate": created, "CreatedById": owner,
                "LastModifiedDate": modified, "LastModifiedById": owner,
                "SystemModstamp": modified,
            })
        return rows

    def opportunities(self, user_ids: list[str], account_ids: list[str]) -> list[dict]:
        rng = self.rng
        live = max(2, self.config.account_count * 2)
        total = live + DELETED_EXTRA["Opportunity"]
        ids = self.ids("006", total)
        stamps = self.stamps(total)
        rows = []
        for i in range(total):
            stage = rng.choice(STAGES)
            account = account_ids[i % len(account_ids)] if account_ids and i % 9 != 4 else None
            amount = None if i % 8 == 6 else float(rng.randrange(5, 2000) * 500)
            row = {
                "Id": ids[i], "IsDeleted": i >= live, "AccountId": account,
                "Name": f"{COMPANY_STEMS[i % len(COMPANY_STEMS)]} - Deal {i + 1}",
                "Description": "Renewal & upsell <phase 2>" if i % 5 == 0 else None,
                "StageName": stage, "Amount": amount,
                "Probability": STAGE_PROBABILITY[stage],
                "CloseDate": date(2024, 1, 1) + timedelta(days=rng.randrange(730)),
                "Type": rng.choice(["New Customer", "Existing Customer - Upgrade",
                                    "Existing Customer - Renewal"]) if i % 4 else None,
                "LeadSource": rng.choice(LEAD_SOURCES) if i % 3 else None,
                "IsClosed": stage.startswith("Closed"), "IsWon": stage == "Closed Won",
            }
            self.audit(row, user_ids[i % len(user_ids)], stamps[i])
            rows.append(row)
        return rows

    def leads(self, user_ids: list[str]) -> list[dict]:
        rng = self.rng
        live = 40
        total = live + DELETED_EXTRA["Lead"]
        ids = self.ids("00Q", total)
        stamps = self.stamps(total)
        rows = []
        for i in range(total):
            first = rng.choice(FIRST_NAMES) if i % 9 != 3 else None
            last = rng.choice(LAST_NAMES)
            city, country = rng.choice(CITIES)
            status = rng.choice(LEAD_STATUSES)
            row = {
                "Id": ids[i], "IsDeleted": i >= live, "LastName": last, "FirstName": first,
                "Salutation": rng.choice(SALUTATIONS) if i % 2 else None,
                "Name": f"{first} {last}" if first else last,
                "Title": rng.choice(TITLES) if i % 4 else None,
                "Company": rng.choice(COMPANY_STEMS),
                "City": city if i % 5 else None, "Country": country,
                "Phone": f"+44 20 7946 {rng.randrange(10000):04d}" if i % 3 else None,
                "Email": f"{_ascii_slug(last)}.lead{i}@example.org" if i % 7 != 2 else None,
                "LeadSource": rng.choice(LEAD_SOURCES) if i % 5 != 4 else None,
                "Status": status,
                "Industry": rng.choice(INDUSTRIES) if i % 3 else None,
                "Rating": rng.choice(RATINGS) if i % 2 == 0 else None,
                "AnnualRevenue": float(rng.randrange(1, 400) * 25_000) if i % 4 != 3 else None,
                "NumberOfEmployees": rng.randrange(1, 5000) if i % 6 else None,
                "IsConverted": status == "Closed - Converted",
            }
            self.audit(row, user_ids[i % len(user_ids)], stamps[i])
            rows.append(row)
        return rows
