"""Issue 11, finding 6: the fetcher refuses non-global targets and types every URL failure
(the total deadline against hostile servers: tests/unit/images/test_fetch_deadline.py; the address
registry table: tests/unit/images/test_addresses.py)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from safeclip_guardrail import ImageInputError, ImageOptions
from safeclip_guardrail.images import _fetch
from safeclip_guardrail.images._addresses import is_public_address
from safeclip_guardrail.images._fetch import check_url
from safeclip_guardrail.images.decode import decode_image

ALLOWED = ImageOptions(allow_urls=True, allowed_hosts=("images.example.com",), max_bytes=100_000)
PUBLIC = "93.184.216.34"


def _resolve_to(monkeypatch: pytest.MonkeyPatch, *addrs: str) -> None:
    """DNS is the third-party boundary: the fetcher's resolver answers with ``addrs``."""
    def fake(host: str, port: int) -> list[Any]:
        fam = socket.AF_INET6 if ":" in addrs[0] else socket.AF_INET
        return [(fam, socket.SOCK_STREAM, 6, "", (a_, port)) for a_ in addrs]
    monkeypatch.setattr(_fetch, "_resolve", fake)


@pytest.mark.parametrize("addr", [
    "100.64.0.1", "100.100.100.200",          # shared address space, incl. a metadata address
    "2002:a00:1::", "2002:7f00:1::1",         # 6to4 wrapping 10.0.0.1 / 127.0.0.1
    "fec0::1",                                 # site-local
    "64:ff9b::a00:1", "64:ff9b::7f00:1",       # NAT64 wrapping private / loopback
    "64:ff9b:1::a9fe:a9fe",                    # local-use NAT64 wrapping 169.254.169.254
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",    # Teredo
    "::7f00:1", "::ffff:a9fe:a9fe",            # IPv4-compatible / -mapped
    "198.18.0.1", "192.0.0.170", "240.0.0.1", "224.0.0.1", "255.255.255.255",
    "fd00::1", "ff02::1", "fe80::1%eth0", "2001:db8::1", "not-an-ip",
    "::ffff:0:a00:1",                          # SIIT form of 10.0.0.1 (issue 20.5)
])
def test_non_global_addresses_are_refused(monkeypatch: pytest.MonkeyPatch, addr: str) -> None:
    assert not is_public_address(addr)
    if addr != "not-an-ip":
        _resolve_to(monkeypatch, addr)
        with pytest.raises(ImageInputError, match="non-public address"):
            check_url("http://images.example.com/cat.png", ALLOWED)


@pytest.mark.parametrize("addr", [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946",
                                  "2002:5db8:d822::1", "64:ff9b::5db8:d822"])
def test_global_addresses_pass(addr: str) -> None:
    assert is_public_address(addr)


@pytest.mark.parametrize("url", [
    "http://images.example.com:99999/x.png",      # port out of range
    "http://images.example.com:abc/x.png",        # port not a number
    "http://[::1/x.png",                          # broken bracketed IPv6
    "http://[images.example.com]/x.png",          # brackets around a name
    "http://images.example.com\u2100evil/x.png",  # netloc changes under NFKC
    "http://user:pw@images.example.com/x.png",    # credentials
    "http://" + "a" * 300 + ".example.com/x.png",  # label too long for IDNA
])
def test_malformed_urls_are_typed(url: str) -> None:
    with pytest.raises(ImageInputError) as info:
        decode_image(url, ALLOWED)
    assert type(info.value) is ImageInputError


def test_non_ascii_and_control_characters_in_the_path_are_percent_encoded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _resolve_to(monkeypatch, PUBLIC)
    target = check_url("http://images.example.com/caf\u00e9 x.png?q=\u00fc\x01\r\nX-Evil: 1",
                       ALLOWED)  # (urlsplit itself drops CR, LF and TAB)
    assert target.path == "/caf%C3%A9%20x.png?q=%C3%BC%01X-Evil:%201"
    assert target.address == PUBLIC and target.port == 80
