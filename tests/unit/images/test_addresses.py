"""Issue 20.5: "globally reachable" comes from the IANA special-purpose registries.

The expected verdicts below are written out from the registries' "Globally Reachable"
column (iana-ipv4-special-registry, iana-ipv6-special-registry), one address inside every
entry, not computed from the module's table: a transcription error there fails here.
"""

from __future__ import annotations

import ipaddress

import pytest

from safeclip_guardrail.images._addresses import (
    IPV4_SPECIAL,
    IPV6_SPECIAL,
    address_verdict,
    is_public_address,
    special_block,
)

# (registry entry, an address inside it and in no more specific entry, reachable?)
REGISTRY = [
    ("0.0.0.0/8", "0.1.2.3", False),
    ("0.0.0.0/32", "0.0.0.0", False),
    ("10.0.0.0/8", "10.1.2.3", False),
    ("100.64.0.0/10", "100.100.100.200", False),  # a cloud metadata address
    ("127.0.0.0/8", "127.0.0.1", False),
    ("169.254.0.0/16", "169.254.169.254", False),
    ("172.16.0.0/12", "172.31.255.254", False),
    ("192.0.0.0/24", "192.0.0.100", False),
    ("192.0.0.0/29", "192.0.0.1", False),
    ("192.0.0.8/32", "192.0.0.8", False),
    ("192.0.0.9/32", "192.0.0.9", True),
    ("192.0.0.10/32", "192.0.0.10", True),
    ("192.0.0.170/32", "192.0.0.170", False),
    ("192.0.0.171/32", "192.0.0.171", False),
    ("192.0.2.0/24", "192.0.2.1", False),
    ("192.31.196.0/24", "192.31.196.1", True),
    ("192.52.193.0/24", "192.52.193.1", True),
    ("192.88.99.0/24", "192.88.99.1", False),  # "N/A": deprecated
    ("192.88.99.2/32", "192.88.99.2", False),
    ("192.168.0.0/16", "192.168.1.1", False),
    ("192.175.48.0/24", "192.175.48.6", True),
    ("198.18.0.0/15", "198.19.255.1", False),
    ("198.51.100.0/24", "198.51.100.7", False),
    ("203.0.113.0/24", "203.0.113.9", False),
    ("240.0.0.0/4", "250.1.2.3", False),
    ("255.255.255.255/32", "255.255.255.255", False),
    ("::1/128", "::1", False),
    ("::/128", "::", False),
    ("::ffff:0:0/96", "::ffff:93.184.216.34", False),  # even around a public address
    ("64:ff9b::/96", "64:ff9b::5db8:d822", True),  # NAT64 of 93.184.216.34
    ("64:ff9b:1::/48", "64:ff9b:1::5db8:d822", False),
    ("100::/64", "100::1", False),
    ("100:0:0:1::/64", "100:0:0:1::1", False),
    ("2001::/23", "2001:100::1", False),
    ("2001::/32", "2001:0:5db8:d822::a247:27dd", False),  # Teredo, public server and client
    ("2001:1::1/128", "2001:1::1", True),
    ("2001:1::2/128", "2001:1::2", True),
    ("2001:1::3/128", "2001:1::3", True),
    ("2001:2::/48", "2001:2::1", False),
    ("2001:3::/32", "2001:3::1", True),
    ("2001:4:112::/48", "2001:4:112::1", True),
    ("2001:10::/28", "2001:10::1", False),  # "N/A": deprecated ORCHID
    ("2001:20::/28", "2001:20::1", True),
    ("2001:30::/28", "2001:30::1", True),
    ("2001:db8::/32", "2001:db8::1", False),
    ("2002::/16", "2002:5db8:d822::1", True),  # "N/A": judged by 93.184.216.34 inside
    ("2620:4f:8000::/48", "2620:4f:8000::1", True),
    ("3fff::/20", "3fff::1", False),
    ("5f00::/16", "5f00::1", False),
    ("fc00::/7", "fd00::1", False),
    ("fe80::/10", "fe80::1", False),
]

# translated and embedded forms: the IPv4 address inside is judged too
EMBEDDED = [
    ("::ffff:0:a00:1", False),            # SIIT (RFC 2765) form of 10.0.0.1: the case
    ("::ffff:0:5db8:d822", False),        # SIIT of a public address: outside 2000::/3
    ("::ffff:10.0.0.1", False),           # IPv4-mapped
    ("::a00:1", False), ("::5db8:d822", False),  # IPv4-compatible (deprecated)
    ("64:ff9b::a00:1", False), ("64:ff9b::7f00:1", False), ("64:ff9b::a9fe:a9fe", False),
    ("64:ff9b::c000:aa", False),          # NAT64 of 192.0.0.170
    ("2002:a00:1::", False), ("2002:7f00:1::1", False), ("2002:c0a8:101::1", False),
    ("2002:6440:1::1", False),            # 6to4 of 100.64.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ("2001:470:1:1:0:5efe:a00:1", False),  # ISATAP interface id around 10.0.0.1
    ("2001:470:1:1:200:5efe:c0a8:101", False),
    ("2001:470:1:1:0:5efe:5db8:d822", True),
]

OTHERS = [
    ("93.184.216.34", True), ("8.8.8.8", True), ("1.1.1.1", True),
    ("2606:2800:220:1:248:1893:25c8:1946", True),
    ("224.0.0.1", False), ("239.255.255.250", False),      # IPv4 multicast
    ("ff02::1", False), ("ff0e::1", False),                # IPv6 multicast
    ("fec0::1", False), ("4000::1", False), ("::2:1", False),  # outside 2000::/3
    ("fe80::1%eth0", False), ("2606:2800:220:1::1%1", False),  # scoped
    ("not-an-ip", False), ("", False), ("1.2.3.4.5", False),
]


def test_every_registry_entry_has_a_row_here() -> None:
    assert {p for p, _, _ in REGISTRY} == {b.prefix for b in (*IPV4_SPECIAL, *IPV6_SPECIAL)}
    assert len(IPV4_SPECIAL) == 26 and len(IPV6_SPECIAL) == 25


@pytest.mark.parametrize(("prefix", "addr", "reachable"), REGISTRY)
def test_registry_entries(prefix: str, addr: str, reachable: bool) -> None:
    block = special_block(ipaddress.ip_address(addr))
    assert block is not None and block.prefix == prefix  # the most specific entry decides
    verdict = address_verdict(addr)
    assert verdict.reachable is reachable
    assert (verdict.reason is None) is reachable


@pytest.mark.parametrize(("addr", "reachable"), EMBEDDED + OTHERS)
def test_embedded_forms_and_the_rest(addr: str, reachable: bool) -> None:
    assert is_public_address(addr) is reachable


def test_the_reason_names_what_was_carried_and_its_entry() -> None:
    reason = address_verdict("::ffff:0:a00:1").reason or ""
    assert "SIIT" in reason and "10.0.0.1" in reason and "Private-Use" in reason
    assert "RFC 1918" in reason
    assert "6to4 form of 127.0.0.1, Loopback" in (address_verdict("2002:7f00:1::1").reason or "")
    assert "multicast" in (address_verdict("224.0.0.1").reason or "")
