"""Where the access token may go: the trust policy, and the one way a URL's host is read.

A URL that two parsers read differently is how a token reaches a host nobody trusts
(`https://attacker.example\\.salesforce.com/` is a Salesforce host to `urllib.parse` and
`attacker.example` to urllib3, which requests connects with). So a URL is read once, by a strict
grammar that refuses `\\`, `@`, `%`, whitespace, control characters and non-ASCII in the
authority outright, and only when urllib3's own parser reads the same scheme, host and port from
it. The policy then decides on that (scheme, host, port): the configured login hosts (exact
origin), Salesforce's own domains on the https default port, and `SF_TRUSTED_HOSTS` (`host`,
`.domain`, either with `:port`, else 443); plain http only for a login host on loopback.

`sfconnect.http.TokenGate` applies `TrustPolicy.check` to every prepared request it sends; the
call sites also check early, so a bad URL from the identity service fails the sign-in at once.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from sfconnect.errors import UntrustedHost

# Hosts under these domains are Salesforce's own; the token may go there (https, port 443).
SALESFORCE_DOMAINS = (
    "salesforce.com", "force.com", "cloudforce.com", "database.com", "salesforce-setup.com",
    "salesforce.mil", "force.mil", "cloudforce.mil", "sfcrmproducts.cn", "sfcrmapps.cn",
)
DEFAULT_PORTS = {"https": 443, "http": 80}

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# scheme://host[:port] followed by the path, query, fragment or the end: nothing else.
_ORIGIN = re.compile(
    rf"^(?P<scheme>https?)://(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?=[/?#]|$)", re.IGNORECASE)
_PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
# An SF_TRUSTED_HOSTS entry: host or .domain (every subdomain), either with :port (else 443).
_LISTED = re.compile(rf"^(?P<host>\.?(?=.{{1,253}}(?::|$)){_LABEL}(?:\.{_LABEL})*)"
                     r"(?::(?P<port>[0-9]{1,5}))?$")


def is_loopback(hostname: str | None) -> bool:
    """True for localhost and loopback addresses, where plain http is allowed."""
    if not hostname:
        return False
    hostname = hostname.lower().strip("[]")
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    """Where a request to a URL connects: scheme, lower-case host (IPv6 unbracketed), port."""

    scheme: str
    host: str
    port: int


def target_of(url: str) -> Target:
    """The scheme, host and port a URL connects to; UntrustedHost when the strict grammar and
    urllib3 (the sender's parser) do not read exactly the same ones from it."""
    if not isinstance(url, str) or "\\" in url or not _PRINTABLE_ASCII.match(url):
        raise UntrustedHost(str(url))
    match = _ORIGIN.match(url)
    if match is None or len(match["host"]) > 255:
        raise UntrustedHost(url)
    scheme = match["scheme"].lower()
    host = match["host"].lower()
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UntrustedHost(url) from None
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise UntrustedHost(url)
    try:
        sender = parse_url(url)
    except (LocationParseError, ValueError):
        raise UntrustedHost(url) from None
    sender_host = (sender.host or "").lower().strip("[]")
    sender_port = sender.port or DEFAULT_PORTS.get(sender.scheme or "", 0)
    if (sender.scheme, sender_host, sender_port, sender.auth) != (scheme, host, port, None):
        raise UntrustedHost(url)
    return Target(scheme, host, port)


# Where a My Domain typed by a user may be: the client secret goes to its token endpoint, so only
# Salesforce's own My Domain suffixes (sandbox, developer, scratch and setup domains are under
# them: acme--dev.sandbox.my.salesforce.com, acme.develop.my.salesforce.com ...).
MY_DOMAIN_SUFFIXES = ("my.salesforce.com", "my.salesforce-setup.com", "my.salesforce.mil",
                      "my.sfcrmproducts.cn")


def my_domain_origin(text: str) -> str:
    """The origin of a My Domain URL a user typed (`https://acme.my.salesforce.com`, a trailing
    slash allowed); ValueError saying why when it is not https on 443 under MY_DOMAIN_SUFFIXES."""
    url = text.strip()
    url = url if "://" in url else f"https://{url}"  # people type the domain alone
    url = url[:-1] if url.endswith("/") else url
    try:
        target = target_of(url)
    except UntrustedHost:
        raise ValueError("it is not a well-formed https URL of a host") from None
    if _ORIGIN.match(url).end() != len(url):  # type: ignore[union-attr]
        raise ValueError("it must be the domain alone, without a path, query or fragment")
    if target.scheme != "https" or target.port != 443:
        raise ValueError("it must be https on the standard port")
    if not any(target.host.endswith("." + suffix) for suffix in MY_DOMAIN_SUFFIXES):
        raise ValueError("it is not under Salesforce's My Domain domains ("
                         + ", ".join(f"*.{suffix}" for suffix in MY_DOMAIN_SUFFIXES) + ")")
    return f"https://{target.host}"


def listed_host(entry: str) -> tuple[str, int]:
    """An SF_TRUSTED_HOSTS entry as (host or .domain, port); ValueError when it is not one."""
    match = _LISTED.match(entry.lower())
    port = int(match["port"] or 443) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError(f"not a host or host:port: {entry!r}")
    return match["host"], port


def _under(hostname: str, domains: Iterable[str]) -> bool:
    return any(hostname == domain or hostname.endswith("." + domain) for domain in domains)


class TrustPolicy:
    """Which URLs may receive the access token (see the module docstring)."""

    def __init__(self, login_urls: Iterable[str], trusted_hosts: Iterable[str] = ()) -> None:
        self._origins = frozenset(target_of(url) for url in login_urls)
        self._listed = [listed_host(entry) for entry in trusted_hosts]

    def check(self, url: str) -> str:
        """Return `url` when the token may be sent there; raise UntrustedHost otherwise."""
        if not self.trusts(target_of(url)):
            raise UntrustedHost(url)
        return url

    def trusts(self, target: Target) -> bool:
        """Whether the token may go to `target`."""
        if target in self._origins:
            return target.scheme == "https" or is_loopback(target.host)
        if target.scheme != "https":
            return False
        if target.port == 443 and _under(target.host, SALESFORCE_DOMAINS):
            return True
        for host, port in self._listed:
            if port != target.port:
                continue
            if target.host == host or (host.startswith(".") and target.host.endswith(host)):
                return True
        return False


def check_instance_url(instance_url: str) -> str:
    """The instance_url of a token response must be well-formed and https (or loopback).

    It is shown and kept, not trusted by itself: the token goes to it only when the policy
    trusts its host (it is a Salesforce host, a login host or listed)."""
    target = target_of(instance_url)
    if target.scheme == "http" and not is_loopback(target.host):
        raise UntrustedHost(instance_url)
    return instance_url.rstrip("/")
