"""Which addresses outbound calls (GitLab, push endpoints) may reach: the SSRF policy.

Pure decisions only, no I/O: the adapter that opens connections resolves the host name
itself, asks :meth:`OutboundPolicy.check_host` before resolving and
:meth:`OutboundPolicy.check_address` for EVERY resolved address, and then connects only to
an address that passed.

Rules (``VIA_RAH_OUTBOUND_ALLOWLIST`` holds host names, IP addresses and CIDRs):

* never, whatever the allowlist says: cloud metadata addresses, link-local, multicast,
  unspecified / "this network" (0.0.0.0/8, ``::``), broadcast and reserved ranges, and
  non-standard numeric spellings of IPv4 addresses (``2130706433``, ``0x7f.1``, ``0177.0.0.1``);
* only when allowlisted (by the request's host name or by an address/CIDR entry):
  loopback, private (RFC 1918, ``fc00::/7``), shared/CGNAT (``100.64.0.0/10``) and other
  special-purpose, non-public ranges (documentation, benchmarking, ...);
* everything else (public unicast) is allowed.

IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible,
SIIT, 6to4 ``2002::/16`` and NAT64 ``64:ff9b::/96``) are judged by the embedded address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from viarah.domain.shared.errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWLIST_VARIABLE = "VIA_RAH_OUTBOUND_ALLOWLIST"

# Instance metadata services: AWS/Azure/GCP/OpenStack/Oracle (169.254.169.254), AWS IMDS
# over IPv6, GCP metadata over IPv6, Alibaba Cloud, Azure WireServer.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "fd00:ec2::254",
        "fd20:ce::254",
        "100.100.100.200",
        "168.63.129.16",
    )
)


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


_UNSPECIFIED = _nets("0.0.0.0/8", "::/128")
_LINK_LOCAL = _nets("169.254.0.0/16", "fe80::/10")
_MULTICAST = _nets("224.0.0.0/4", "ff00::/8")
_BROADCAST = _nets("255.255.255.255/32")
_LOOPBACK = _nets("127.0.0.0/8", "::1/128")
_PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fec0::/10")
_SHARED = _nets("100.64.0.0/10")
_RESERVED = _nets("240.0.0.0/4")

# IPv6 prefixes whose low 32 bits are an IPv4 address.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = _nets("64:ff9b::/96", "64:ff9b:1::/48")

# Every dot-separated label is decimal, octal (leading 0) or hex (0x...): inet_aton would
# read it as an IPv4 address although it is not the standard dotted quad.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class AddressKind(Enum):
    """What an address is, in the words an operator reads in an error message."""

    PUBLIC = ("a public address", False, False)
    LOOPBACK = ("a loopback address", False, True)
    PRIVATE = ("a private address", False, True)
    SHARED = ("a shared (carrier-grade NAT) address", False, True)
    SPECIAL = ("a special-purpose, non-public address", False, True)
    METADATA = ("a cloud metadata address", True, False)
    LINK_LOCAL = ("a link-local address", True, False)
    MULTICAST = ("a multicast address", True, False)
    UNSPECIFIED = ("an unspecified (this-network) address", True, False)
    BROADCAST = ("a broadcast address", True, False)
    RESERVED = ("a reserved address", True, False)

    def __init__(self, description: str, never_allowed: bool, allowlistable: bool) -> None:
        self.description = description
        self.never_allowed = never_allowed
        self.allowlistable = allowlistable


class OutboundRefused(DomainError):
    """An outbound call would reach an address the policy refuses.

    ``host`` is what the caller asked for, ``address`` the offending IP (``None`` when the
    host itself is refused), ``kind`` what that address is. The message names the host and
    the reason, and tells how to allow it when the allowlist can.
    """

    code = "outbound_refused"

    def __init__(
        self,
        host: str,
        reason: str,
        *,
        address: str | None = None,
        kind: AddressKind | None = None,
    ) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        self.reason = reason
        if address is None or address == normalize_host(host):
            subject = f"{host} is {reason}"
        else:
            subject = f"{host} resolves to {address}, {reason}"
        if kind is not None and kind.allowlistable:
            hint = f"; add it to {ALLOWLIST_VARIABLE} to allow it"
        elif kind is not None:
            hint = " and is never allowed"
        else:
            hint = ""
        super().__init__(f"refused: {subject}{hint}")


def parse_address(value: str | IPAddress) -> IPAddress:
    """An IP address from text (``[::1]`` and zone-less forms accepted); ValueError if not."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_address(text.split("%", 1)[0])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, SIIT, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIIT or any(address in net for net in _NAT64):
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return low32
    return None


def classify(address: str | IPAddress) -> AddressKind:
    """What kind of address this is; IPv6 embedding IPv4 is judged by the IPv4 part."""
    ip = parse_address(address)
    if ip in METADATA_ADDRESSES:
        return AddressKind.METADATA
    inner = embedded_ipv4(ip)
    if inner is not None:
        return classify(inner)
    ordered: tuple[tuple[tuple[IPNetwork, ...], AddressKind], ...] = (
        (_UNSPECIFIED, AddressKind.UNSPECIFIED),
        (_LINK_LOCAL, AddressKind.LINK_LOCAL),
        (_MULTICAST, AddressKind.MULTICAST),
        (_BROADCAST, AddressKind.BROADCAST),
        (_LOOPBACK, AddressKind.LOOPBACK),
        (_PRIVATE, AddressKind.PRIVATE),
        (_SHARED, AddressKind.SHARED),
        (_RESERVED, AddressKind.RESERVED),
    )
    for networks, kind in ordered:
        if any(ip in net for net in networks):
            return kind
    if ip.is_reserved:
        return AddressKind.RESERVED
    if not ip.is_global:
        return AddressKind.SPECIAL
    return AddressKind.PUBLIC


def normalize_host(host: str) -> str:
    """Lower-case, without brackets around IPv6 and without the root dot."""
    value = host.strip().lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return value.rstrip(".")


def is_nonstandard_ipv4(host: str) -> bool:
    """True for ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1`` and the like."""
    value = normalize_host(host)
    labels = value.split(".")
    if not value or not all(_NUMERIC_LABEL.match(label) for label in labels):
        return False
    try:
        return str(ipaddress.IPv4Address(value)) != value
    except ValueError:
        return True


@dataclass(frozen=True, slots=True)
class _Allowlist:
    hosts: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]


def _parse_allowlist(entries: Iterable[str]) -> _Allowlist:
    hosts: set[str] = set()
    suffixes: list[str] = []
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if "://" in entry:  # a URL was given: keep its host
            entry = urlsplit(entry).hostname or ""
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{ALLOWLIST_VARIABLE}: {raw!r} is not a valid CIDR") from None
            continue
        try:
            ip = parse_address(entry)
        except ValueError:
            name = normalize_host(entry)
            if name.startswith("*."):
                suffixes.append(name[1:])
            elif name:
                hosts.add(name)
            continue
        networks.append(ipaddress.ip_network(ip))
    return _Allowlist(frozenset(hosts), tuple(suffixes), tuple(networks))


class OutboundPolicy:
    """Decides whether an outbound call may go to a host and to each address it resolves to.

    ``allowlist`` entries are host names (exact, or ``*.example.internal`` for every
    sub-domain), IP addresses, or CIDRs. They lift the refusal of loopback, private,
    shared and special-purpose addresses, never that of metadata, link-local, multicast,
    unspecified, broadcast or reserved ones.
    """

    def __init__(self, allowlist: Iterable[str] = ()) -> None:
        self._allow = _parse_allowlist(allowlist)

    def __repr__(self) -> str:
        entries = sorted(self._allow.hosts) + [f"*{s}" for s in self._allow.suffixes]
        entries += [str(n) for n in self._allow.networks]
        return f"OutboundPolicy(allowlist={entries!r})"

    def host_allowlisted(self, host: str) -> bool:
        """True when ``host`` (a name or an IP literal) is covered by the allowlist.

        Push endpoints use this to accept ``http://`` on allowlisted hosts only.
        """
        name = normalize_host(host)
        if name in self._allow.hosts or any(name.endswith(s) for s in self._allow.suffixes):
            return True
        try:
            return self._address_allowlisted(parse_address(name))
        except ValueError:
            return False

    def check_host(self, host: str) -> None:
        """Before resolving: refuse empty hosts, odd numeric IPv4 spellings, bad IP literals."""
        name = normalize_host(host)
        if not name:
            raise OutboundRefused(host or "(empty host)", "not a host name")
        if is_nonstandard_ipv4(name):
            raise OutboundRefused(
                host,
                "a non-standard numeric spelling of an IPv4 address (use the dotted form)",
                kind=AddressKind.RESERVED,
            )
        try:
            ip = parse_address(name)
        except ValueError:
            return
        self.check_address(ip, host=host)

    def check_address(self, address: str | IPAddress, *, host: str | None = None) -> None:
        """Return if a connection to ``address`` (resolved from ``host``) is allowed.

        Raises :class:`OutboundRefused` naming the host, the address and why.
        """
        ip = parse_address(address)
        kind = classify(ip)
        shown_host = host if host is not None else str(ip)
        if kind is AddressKind.PUBLIC:
            return
        if kind.allowlistable and (
            (host is not None and self.host_allowlisted(host)) or self._address_allowlisted(ip)
        ):
            return
        raise OutboundRefused(shown_host, kind.description, address=str(ip), kind=kind)

    def _address_allowlisted(self, ip: IPAddress) -> bool:
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(
            candidate.version == net.version and candidate in net
            for candidate in candidates
            for net in self._allow.networks
        )
