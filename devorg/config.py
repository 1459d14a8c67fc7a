"""Settings of one local org: who can sign in, which apps are registered, how it misbehaves."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeedUser:
    """A user who can sign in on the local org's login page."""

    username: str
    password: str
    first_name: str
    last_name: str
    email: str
    timezone: str = "America/Los_Angeles"


@dataclass
class ClientApp:
    """A registered Connected App / External Client App."""

    client_id: str
    client_secret: str
    name: str
    redirect_uris: list[str]
    scopes: str = "api refresh_token"
    require_pkce: bool = True
    # client_credentials runs as this user (Salesforce's "Run As" setting).
    integration_username: str | None = None
    # PEM certificate whose key signs JWT bearer assertions; None disables that flow.
    certificate_pem: str | None = None
    # Admins can block the username-password flow (Salesforce's default for new orgs).
    password_flow_enabled: bool = True


DEFAULT_USERS = [
    SeedUser("admin@devorg.local", "Welcome1!", "Ada", "Admin", "ada.admin@devorg.local"),
    SeedUser("zoë.müller@devorg.local", "Welcome1!", "Zoë", "Müller", "zoe.mueller@devorg.local",
             "Europe/Berlin"),
    SeedUser("integration@devorg.local", "Integr8!on", "Integration", "User",
             "integration@devorg.local", "UTC"),
]


@dataclass
class OrgConfig:
    """Everything a local org is seeded with. All fields have working defaults."""

    org_id: str = "00D5g000004ZbXyEAK"
    org_name: str = "sfconnect Local Org"
    users: list[SeedUser] = field(default_factory=lambda: list(DEFAULT_USERS))
    clients: list[ClientApp] = field(default_factory=list)
    # Size of the seeded data set (a benchmark asks for 100,000 Contacts).
    contact_count: int = 250
    account_count: int = 40
    seed: int = 20261122
    access_token_lifetime: int = 7200
    # Salesforce's authorization codes live 15 minutes; tests shorten this.
    authorization_code_lifetime: int = 900
    refresh_token_rotation: bool = False
    # The /__admin routes for tests and demos exist only when this is on.
    admin_enabled: bool = False
    # API versions this org serves; the newest is the default.
    api_versions: tuple[str, ...] = tuple(f"{v}.0" for v in range(20, 67))
    secret_key: str | None = None
