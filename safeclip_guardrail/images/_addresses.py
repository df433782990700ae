"""Which IP addresses a fetch may reach: the IANA special-purpose registries, as data.

A hand-kept list of "private" ranges drifts (``::ffff:0:a00:1``, the SIIT form of
10.0.0.1, once passed here), and so does :attr:`ipaddress.IPv4Address.is_global`, which
differs between Python versions. The decision is therefore drawn from the registries
themselves, transcribed entry by entry below with their "Globally Reachable" column:

- IANA IPv4 Special-Purpose Address Registry (iana-ipv4-special-registry), entries as of its
  2020-09-04 update;
- IANA IPv6 Special-Purpose Address Registry (iana-ipv6-special-registry), entries as of its
  2025-10-09 update (which added 100:0:0:1::/64, RFC 9780);
- for what those leave out, the IANA address-space registries: IPv4 224.0.0.0/4 is multicast
  (ipv4-address-space), and IPv6 unicast outside 2000::/3 "Global Unicast" is reserved by
  the IETF, unique-local, link-local or multicast (ipv6-address-space).

Rules (:func:`address_verdict`): the most specific registry entry that holds the address
decides; ``True`` allows, ``False`` and "N/A" refuse (but 6to4, "N/A", is judged by the
IPv4 address it carries). An address in no entry is reachable
if it is IPv4 unicast, or IPv6 inside 2000::/3. Every IPv6 form that carries an IPv4
address (IPv4-mapped, IPv4-compatible, SIIT-translated, NAT64 64:ff9b::/96, 6to4, ISATAP
interface ids) is unwrapped and the IPv4 address judged too: a packet to such an address
reaches that IPv4 address through a local translator or relay. Teredo (2001::/32) and the
local-use NAT64 prefix (64:ff9b:1::/48, where the IPv4 address may sit anywhere) are
refused whatever they carry. A scoped address (``fe80::1%eth0``) is refused.

Where Python's ``ipaddress.ip_address(a).is_global`` disagrees (measured on 3.11.7; 3.12.4
and 3.13 corrected part of it, so it also differs between versions): it calls global
192.0.0.0/24 outside its reachable entries, 192.0.0.8, 192.88.99.0/24, IPv4 multicast,
64:ff9b:1::/48, NAT64 and 6to4 forms of private addresses, 100:0:0:1::/64, 3fff::/20,
5f00::/16, fec0::/10, ff00::/8, anything outside 2000::/3 (``4000::1``), SIIT
``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d`` and IPv4-mapped public addresses (the
registry refuses ::ffff:0:0/96 outright); and it calls the registry's reachable entries
inside 2001::/23 (2001:1::1-3, 2001:3::/32, 2001:4:112::/48, 2001:20::/28, 2001:30::/28)
not global.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["IPV4_SPECIAL", "IPV6_SPECIAL", "AddressVerdict", "SpecialBlock", "address_verdict",
           "embedded_ipv4", "is_public_address", "special_block"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Reachable = Literal["True", "False", "N/A"]


@dataclass(frozen=True)
class SpecialBlock:
    """One entry of an IANA special-purpose address registry."""

    prefix: str
    name: str
    rfc: str
    reachable: Reachable
    """The registry's "Globally Reachable" column ("N/A" where it gives none)."""

    @property
    def network(self) -> Network:
        return ipaddress.ip_network(self.prefix)


def _b(prefix: str, name: str, rfc: str, reachable: Reachable) -> SpecialBlock:
    return SpecialBlock(prefix, name, rfc, reachable)


IPV4_SPECIAL: tuple[SpecialBlock, ...] = (
    _b("0.0.0.0/8", '"This network"', "RFC 791, section 3.2", "False"),
    _b("0.0.0.0/32", '"This host on this network"', "RFC 1122, section 3.2.1.3", "False"),
    _b("10.0.0.0/8", "Private-Use", "RFC 1918", "False"),
    _b("100.64.0.0/10", "Shared Address Space", "RFC 6598", "False"),
    _b("127.0.0.0/8", "Loopback", "RFC 1122, section 3.2.1.3", "False"),
    _b("169.254.0.0/16", "Link Local", "RFC 3927", "False"),
    _b("172.16.0.0/12", "Private-Use", "RFC 1918", "False"),
    _b("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890, section 2.1", "False"),
    _b("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", "False"),
    _b("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", "False"),
    _b("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", "True"),
    _b("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", "True"),
    _b("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", "False"),
    _b("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 section 2.2", "False"),
    _b("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", "False"),
    _b("192.31.196.0/24", "AS112-v4", "RFC 7535", "True"),
    _b("192.52.193.0/24", "AMT", "RFC 7450", "True"),
    _b("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", "N/A"),
    _b("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", "False"),
    _b("192.168.0.0/16", "Private-Use", "RFC 1918", "False"),
    _b("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", "True"),
    _b("198.18.0.0/15", "Benchmarking", "RFC 2544", "False"),
    _b("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", "False"),
    _b("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", "False"),
    _b("240.0.0.0/4", "Reserved", "RFC 1112, section 4", "False"),
    _b("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 section 7", "False"),
)
"""The IANA IPv4 Special-Purpose Address Registry (2020-09-04), one row per entry."""

IPV6_SPECIAL: tuple[SpecialBlock, ...] = (
    _b("::1/128", "Loopback Address", "RFC 4291", "False"),
    _b("::/128", "Unspecified Address", "RFC 4291", "False"),
    _b("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", "False"),
    _b("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", "True"),
    _b("64:ff9b:1::/48", "IPv4-IPv6 Translat.", "RFC 8215", "False"),
    _b("100::/64", "Discard-Only Address Block", "RFC 6666", "False"),
    _b("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", "False"),
    _b("2001::/23", "IETF Protocol Assignments", "RFC 2928", "False"),
    _b("2001::/32", "TEREDO", "RFC 4380, RFC 8190", "N/A"),
    _b("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", "True"),
    _b("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", "True"),
    _b("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast Address", "RFC 9665",
       "True"),
    _b("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", "False"),
    _b("2001:3::/32", "AMT", "RFC 7450", "True"),
    _b("2001:4:112::/48", "AS112-v6", "RFC 7535", "True"),
    _b("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", "N/A"),
    _b("2001:20::/28", "ORCHIDv2", "RFC 7343", "True"),
    _b("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", "True"),
    _b("2001:db8::/32", "Documentation", "RFC 3849", "False"),
    _b("2002::/16", "6to4", "RFC 3056", "N/A"),
    _b("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", "True"),
    _b("3fff::/20", "Documentation", "RFC 9637", "False"),
    _b("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", "False"),
    _b("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", "False"),
    _b("fe80::/10", "Link-Local Unicast", "RFC 4291", "False"),
)
"""The IANA IPv6 Special-Purpose Address Registry (2025-10-09), one row per entry."""

_IPV4_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")  # ipv4-address-space, RFC 5771
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")  # ipv6-address-space, RFC 4291
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 section 2.1, IPv4-translated
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 section 2.5.5.1, deprecated
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)  # RFC 5214 section 6.1 interface identifiers
_NETWORKS: dict[SpecialBlock, Network] = {b: b.network for b in (*IPV4_SPECIAL, *IPV6_SPECIAL)}


@dataclass(frozen=True)
class AddressVerdict:
    """Whether an address may be fetched from, and why not."""

    reachable: bool
    reason: str | None = None
    """Why it is refused (the registry entry, or the embedded address and its entry)."""


def special_block(ip: IPAddress) -> SpecialBlock | None:
    """The most specific registry entry holding ``ip``, or None."""
    table = IPV4_SPECIAL if ip.version == 4 else IPV6_SPECIAL
    best: SpecialBlock | None = None
    for block in table:
        net = _NETWORKS[block]
        if ip in net and (best is None or net.prefixlen > _NETWORKS[best].prefixlen):
            best = block
    return best


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the name of its form."""
    value = int(ip)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    out: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip.ipv4_mapped is not None:
        out.append(("IPv4-mapped", ip.ipv4_mapped))
    elif ip in _SIIT:
        out.append(("IPv4-translated (SIIT)", low))
    elif ip in _NAT64:
        out.append(("NAT64", low))
    elif ip in _COMPATIBLE and value > 1:
        out.append(("IPv4-compatible", low))
    elif ip in _SIX_TO_FOUR:
        out.append(("6to4", ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)))
    elif ip in _TEREDO and ip.teredo is not None:
        server, client = ip.teredo
        out += [("Teredo server", server), ("Teredo client", client)]
    if (value >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        out.append(("ISATAP", low))
    return out


def _block_verdict(block: SpecialBlock) -> AddressVerdict:
    if block.reachable == "True" or block.network == _SIX_TO_FOUR:  # 6to4: by what it carries
        return AddressVerdict(True)
    column = "N/A" if block.reachable == "N/A" else "not globally reachable"
    return AddressVerdict(False, f"{block.name} {block.prefix} [{block.rfc}]: {column} in the "
                                 "IANA special-purpose registry")


def _ipv4_verdict(ip: ipaddress.IPv4Address) -> AddressVerdict:
    block = special_block(ip)
    if block is not None:
        return _block_verdict(block)
    if ip in _IPV4_MULTICAST:
        return AddressVerdict(False, "multicast 224.0.0.0/4 [RFC 5771]")
    return AddressVerdict(True)


def _ipv6_verdict(ip: ipaddress.IPv6Address) -> AddressVerdict:
    block = special_block(ip)
    if block is not None:
        own = _block_verdict(block)
    elif ip in _IPV6_GLOBAL_UNICAST:
        own = AddressVerdict(True)
    else:
        own = AddressVerdict(False, "outside 2000::/3, the only IPv6 global unicast space in "
                                    "the IANA IPv6 address-space registry")
    if own.reachable and (ip in _TEREDO or ip in _NAT64_LOCAL):
        own = AddressVerdict(False, "Teredo or local-use NAT64: never fetched")
    # a packet to a translated form reaches the IPv4 address inside: its verdict comes first
    return _inner_verdicts(embedded_ipv4(ip)) or own


def _inner_verdicts(forms: Sequence[tuple[str, ipaddress.IPv4Address]]) -> AddressVerdict | None:
    for form, v4 in forms:
        verdict = _ipv4_verdict(v4)
        if not verdict.reachable:
            return AddressVerdict(False, f"{form} form of {v4}, {verdict.reason}")
    return None


def address_verdict(addr: str) -> AddressVerdict:
    """Whether ``addr`` (an IP literal, possibly with an IPv6 zone) is globally reachable."""
    if "%" in addr:
        return AddressVerdict(False, "a scoped (zone) address is link-local by definition")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return AddressVerdict(False, "not an IP address")
    return _ipv4_verdict(ip) if isinstance(ip, ipaddress.IPv4Address) else _ipv6_verdict(ip)


def is_public_address(addr: str) -> bool:
    """Whether ``addr`` may be fetched from (see :func:`address_verdict`)."""
    return address_verdict(addr).reachable
