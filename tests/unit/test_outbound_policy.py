"""The outbound (SSRF) policy: which addresses GitLab and push calls may reach."""

from __future__ import annotations

import pytest

from viarah.domain.shared.errors import DomainError
from viarah.domain.shared.outbound import (
    AddressKind,
    OutboundPolicy,
    OutboundRefused,
    classify,
    embedded_ipv4,
    is_nonstandard_ipv4,
    parse_address,
)

OPEN = OutboundPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", AddressKind.PUBLIC),
        ("140.82.112.3", AddressKind.PUBLIC),
        ("2606:4700:4700::1111", AddressKind.PUBLIC),
        ("127.0.0.1", AddressKind.LOOPBACK),
        ("127.255.0.9", AddressKind.LOOPBACK),
        ("::1", AddressKind.LOOPBACK),
        ("10.0.0.5", AddressKind.PRIVATE),
        ("172.16.3.4", AddressKind.PRIVATE),
        ("172.31.255.255", AddressKind.PRIVATE),
        ("192.168.1.1", AddressKind.PRIVATE),
        ("fd12:3456::1", AddressKind.PRIVATE),
        ("fc00::1", AddressKind.PRIVATE),
        ("100.64.0.1", AddressKind.SHARED),
        ("100.127.255.254", AddressKind.SHARED),
        ("192.0.2.10", AddressKind.SPECIAL),
        ("198.18.0.1", AddressKind.SPECIAL),
        ("2001:db8::1", AddressKind.SPECIAL),
        ("169.254.169.254", AddressKind.METADATA),
        ("fd00:ec2::254", AddressKind.METADATA),
        ("100.100.100.200", AddressKind.METADATA),
        ("169.254.10.20", AddressKind.LINK_LOCAL),
        ("fe80::1", AddressKind.LINK_LOCAL),
        ("224.0.0.1", AddressKind.MULTICAST),
        ("239.255.255.250", AddressKind.MULTICAST),
        ("ff02::1", AddressKind.MULTICAST),
        ("0.0.0.0", AddressKind.UNSPECIFIED),
        ("0.1.2.3", AddressKind.UNSPECIFIED),
        ("::", AddressKind.UNSPECIFIED),
        ("255.255.255.255", AddressKind.BROADCAST),
        ("240.0.0.1", AddressKind.RESERVED),
    ],
)
def test_every_range_is_classified(address: str, kind: AddressKind) -> None:
    assert classify(address) is kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:127.0.0.1", AddressKind.LOOPBACK),  # IPv4-mapped
        ("::ffff:7f00:1", AddressKind.LOOPBACK),
        ("::ffff:169.254.169.254", AddressKind.METADATA),
        ("::ffff:10.1.2.3", AddressKind.PRIVATE),
        ("::ffff:8.8.8.8", AddressKind.PUBLIC),
        ("::127.0.0.1", AddressKind.LOOPBACK),  # IPv4-compatible (deprecated)
        ("::ffff:0:127.0.0.1", AddressKind.LOOPBACK),  # SIIT
        ("2002:7f00:1::1", AddressKind.LOOPBACK),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", AddressKind.METADATA),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", AddressKind.PUBLIC),
        ("64:ff9b::7f00:1", AddressKind.LOOPBACK),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", AddressKind.METADATA),
        ("64:ff9b::808:808", AddressKind.PUBLIC),
    ],
)
def test_ipv6_embedding_ipv4_is_judged_by_the_ipv4_address(address: str, kind: AddressKind) -> None:
    assert classify(address) is kind


def test_embedded_ipv4_is_not_invented_for_plain_ipv6() -> None:
    assert embedded_ipv4(parse_address("2606:4700::1111")) is None
    assert embedded_ipv4(parse_address("::1")) is None
    assert str(embedded_ipv4(parse_address("::ffff:10.0.0.1"))) == "10.0.0.1"


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_allowed_without_an_allowlist(address: str) -> None:
    OPEN.check_address(address, host="gitlab.example.com")  # does not raise


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.0.0.5", "192.168.0.7", "172.20.0.2", "fd00::5", "100.64.1.1"],
)
def test_loopback_private_and_cgnat_are_refused_by_default(address: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        OPEN.check_address(address)
    assert refused.value.address == address
    assert refused.value.kind is not None
    assert refused.value.kind.allowlistable
    assert "VIA_RAH_OUTBOUND_ALLOWLIST" in refused.value.message


def test_refusal_message_names_host_address_and_reason() -> None:
    with pytest.raises(OutboundRefused) as by_ip:
        OPEN.check_address("10.0.0.5")
    assert by_ip.value.message == (
        "refused: 10.0.0.5 is a private address; add it to VIA_RAH_OUTBOUND_ALLOWLIST to allow it"
    )
    with pytest.raises(OutboundRefused) as by_name:
        OPEN.check_address("10.0.0.5", host="gitlab.internal")
    assert by_name.value.message.startswith(
        "refused: gitlab.internal resolves to 10.0.0.5, a private address"
    )
    assert isinstance(by_name.value, DomainError)
    assert by_name.value.code == "outbound_refused"


def test_allowlist_by_cidr() -> None:
    policy = OutboundPolicy(["10.20.0.0/16", "fd00:1::/32"])
    policy.check_address("10.20.3.4")
    policy.check_address("fd00:1::9")
    policy.check_address("::ffff:10.20.3.4")  # mapped form of an allowlisted address
    with pytest.raises(OutboundRefused):
        policy.check_address("10.21.0.1")
    with pytest.raises(OutboundRefused):
        policy.check_address("127.0.0.1")


def test_allowlist_by_single_address() -> None:
    policy = OutboundPolicy(["127.0.0.1", "[::1]"])
    policy.check_address("127.0.0.1")
    policy.check_address("::1")
    with pytest.raises(OutboundRefused):
        policy.check_address("127.0.0.2")


def test_allowlist_by_host_name_covers_what_it_resolves_to() -> None:
    policy = OutboundPolicy(["GitLab.Internal.", "*.corp.example"])
    policy.check_address("10.0.0.5", host="gitlab.internal")
    policy.check_address("192.168.1.9", host="GITLAB.INTERNAL.")
    policy.check_address("172.16.0.1", host="git.corp.example")
    with pytest.raises(OutboundRefused):
        policy.check_address("10.0.0.5", host="other.internal")
    with pytest.raises(OutboundRefused):
        policy.check_address("10.0.0.5", host="corp.example")  # the wildcard is for subdomains
    with pytest.raises(OutboundRefused):
        policy.check_address("10.0.0.5")  # no host: the name entry does not apply


def test_allowlist_entries_given_as_urls_use_their_host() -> None:
    policy = OutboundPolicy(["http://gitlab.local:8080"])
    assert policy.host_allowlisted("gitlab.local")
    policy.check_address("127.0.0.1", host="gitlab.local")


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.1.1", "fe80::1"]
)
def test_metadata_and_link_local_are_refused_even_when_allowlisted(address: str) -> None:
    policy = OutboundPolicy(
        ["0.0.0.0/0", "::/0", "metadata.google.internal", "169.254.169.254", "fd00:ec2::254"]
    )
    with pytest.raises(OutboundRefused) as refused:
        policy.check_address(address, host="metadata.google.internal")
    assert refused.value.kind is not None
    assert refused.value.kind.never_allowed
    assert "never allowed" in refused.value.message
    assert "VIA_RAH_OUTBOUND_ALLOWLIST" not in refused.value.message


@pytest.mark.parametrize("address", ["224.0.0.1", "ff02::1", "0.0.0.0", "::", "240.1.2.3"])
def test_multicast_unspecified_and_reserved_are_never_allowed(address: str) -> None:
    with pytest.raises(OutboundRefused):
        OutboundPolicy(["0.0.0.0/0", "::/0"]).check_address(address)


def test_a_wide_allowlist_still_admits_private_addresses() -> None:
    policy = OutboundPolicy(["0.0.0.0/0"])
    policy.check_address("10.1.1.1")
    policy.check_address("127.0.0.1")


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "0177.0.0.1", "0x7f000001", "127.1", "017700000001", "0x7F.0.0.1"],
)
def test_nonstandard_numeric_ipv4_spellings_are_refused_even_when_allowlisted(host: str) -> None:
    assert is_nonstandard_ipv4(host)
    with pytest.raises(OutboundRefused) as refused:
        OutboundPolicy(["127.0.0.0/8", "0.0.0.0/0"]).check_host(host)
    assert host in refused.value.message
    assert "non-standard" in refused.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "gitlab.example.com", "123.example.com", "face.bad"])
def test_standard_hosts_are_not_mistaken_for_numeric_spellings(host: str) -> None:
    assert not is_nonstandard_ipv4(host)


def test_check_host_checks_ip_literals_and_lets_names_through_to_resolution() -> None:
    with pytest.raises(OutboundRefused):
        OPEN.check_host("127.0.0.1")
    with pytest.raises(OutboundRefused):
        OPEN.check_host("[::ffff:127.0.0.1]")
    with pytest.raises(OutboundRefused):
        OPEN.check_host("")
    OPEN.check_host("gitlab.example.com")  # names are judged by what they resolve to
    OPEN.check_host("8.8.8.8")
    OutboundPolicy(["127.0.0.1"]).check_host("127.0.0.1")


def test_host_allowlisted_for_push_http_exception() -> None:
    policy = OutboundPolicy(["push.local", "10.0.0.0/8"])
    assert policy.host_allowlisted("push.local")
    assert policy.host_allowlisted("10.9.9.9")
    assert not policy.host_allowlisted("push.example.com")
    assert not policy.host_allowlisted("127.0.0.1")


def test_invalid_cidr_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="VIA_RAH_OUTBOUND_ALLOWLIST"):
        OutboundPolicy(["10.0.0.0/33"])


def test_repr_lists_the_allowlist() -> None:
    assert "10.0.0.0/8" in repr(OutboundPolicy(["10.0.0.0/8", "gitlab.local"]))
