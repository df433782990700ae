"""The remote fetcher is injected through the public API; the URL policy runs before it."""

from __future__ import annotations

from typing import Any

import pytest

from safeclip_guardrail import (
    ConfigurationError,
    GuardConfig,
    ImageInputError,
    ImageOptions,
    SafeCLIPGuard,
)
from safeclip_guardrail.images.sources import (
    HttpFetcher,
    ImageFetcher,
    from_untrusted_string,
    from_url,
)
from safeclip_guardrail.messages.conversation import guard_conversations
from safeclip_guardrail.messages.extraction import MessageView, find_image_parts
from safeclip_guardrail.testing import FakeFetcher, PlantedEncoder

URL = "https://images.example.com/a.png"
ALLOW = {"allow_urls": True, "allowed_hosts": ["images.example.com"]}


def _guard(planted: PlantedEncoder, fetcher: Any, **options: Any) -> SafeCLIPGuard:
    return SafeCLIPGuard(planted, fetcher=fetcher, config=GuardConfig(**options))


def test_the_default_and_the_double_are_image_fetchers(planted: PlantedEncoder) -> None:
    assert isinstance(HttpFetcher(), ImageFetcher) and isinstance(FakeFetcher({}), ImageFetcher)
    assert isinstance(SafeCLIPGuard(planted).fetcher, HttpFetcher)


def test_a_trusted_url_is_judged_on_the_fetched_bytes(planted: PlantedEncoder) -> None:
    fetcher = FakeFetcher({URL: planted.plant_bytes("gun")})
    guard = _guard(planted, fetcher, images=ALLOW)
    assert guard.check(URL).flagged and fetcher.calls == [URL]
    assert guard.with_options(threshold=0.5).fetcher is fetcher  # options keep the fetcher


def test_every_forbidden_url_is_refused_before_the_fetcher(planted: PlantedEncoder) -> None:
    fetcher = FakeFetcher({URL: planted.plant_bytes("neutral")})
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, URL),  # allow_urls off (the default)
        ({"allow_urls": True, "allowed_hosts": ["cdn.example.org"]}, URL),  # host not listed
        (ALLOW, "http://user:pw@images.example.com/a.png"),  # credentials
        (ALLOW, "http://evil.example.com/images.example.com/a.png"),
    ]
    for images, url in cases:
        opts = ImageOptions(**images)
        with pytest.raises(ImageInputError):
            from_untrusted_string(url, options=opts, fetcher=fetcher)
        with pytest.raises(ImageInputError):
            _guard(planted, fetcher, images=images, on_error="raise").check(url)
        part, = find_image_parts([MessageView("user", [
            {"type": "image_url", "image_url": {"url": url}}])], options=opts, fetcher=fetcher)
        assert part.image is None and part.error is not None
    assert fetcher.calls == []


def test_unknown_urls_and_bad_fetchers_fail_closed(planted: PlantedEncoder) -> None:
    opts = ImageOptions(**ALLOW)
    with pytest.raises(ImageInputError, match="no image for"):
        from_url(URL, options=opts, fetcher=FakeFetcher({}))

    class Text:
        def fetch(self, url: str, options: ImageOptions) -> bytes:
            return "not bytes"  # type: ignore[return-value]

    with pytest.raises(ImageInputError, match="not bytes"):
        from_url(URL, options=opts, fetcher=Text())
    with pytest.raises(ImageInputError, match="empty"):
        from_url(URL, options=opts, fetcher=FakeFetcher({URL: b""}))
    with pytest.raises(ImageInputError, match="over the limit"):
        from_url(URL, options=ImageOptions(**ALLOW, max_bytes=8),
                 fetcher=FakeFetcher({URL: b"x" * 9}))
    with pytest.raises(ConfigurationError, match="ImageFetcher"):
        SafeCLIPGuard(planted, fetcher=lambda url, options: b"")  # type: ignore[arg-type]


def test_conversations_fetch_once_through_the_guard_and_forward_inline(
        planted: PlantedEncoder) -> None:
    fetcher = FakeFetcher({URL: planted.plant_bytes("neutral")})
    guard = _guard(planted, fetcher, images=ALLOW, mode="block")
    conv = [MessageView("user", [{"type": "text", "text": "hi"},
                                 {"type": "image_url", "image_url": {"url": URL}}])]
    out, = guard_conversations(guard, [conv])
    assert fetcher.calls == [URL]
    assert not isinstance(out, Exception)
    block = out.messages[0].content[1]
    assert block["image_url"]["url"].startswith("data:image/png;base64,")
