"""Issue 11, finding 3: a batch decodes, encodes and lets go chunk by chunk, within budgets.

The verdicts are those of the unstreamed loop: one per input, in order, cached by SHA-256,
one encoder forward per ``batch_size`` chunk of new images.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Sequence

import pytest
from PIL import Image

from safeclip_guardrail import ConfigurationError, SafeCLIPGuard
from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import noise


class Watching(PlantedEncoder):
    """A planted encoder that, at every forward, counts the decoded frames still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[weakref.ref[Image.Image]] = []
        self.alive_at_forward: list[int] = []

    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        gc.collect()
        self.alive_at_forward.append(sum(r() is not None for r in self.seen))
        self.seen.extend(weakref.ref(im) for im in images)
        return super().encode_images(images)


def test_a_long_batch_holds_one_chunk_of_decoded_pixels() -> None:
    enc = Watching()
    guard = SafeCLIPGuard(enc).with_options(batch_size=4, cache_size=0)
    sources = [enc.plant_bytes("gun" if k % 3 else "neutral") for k in range(20)]
    verdicts = guard.check_batch(sources)
    assert enc.forward_counter.count == 5
    assert enc.alive_at_forward == [0, 0, 0, 0, 0]  # earlier chunks were let go
    assert [v.category for v in verdicts] == [("gun" if k % 3 else None) for k in range(20)]


def test_chunks_also_close_on_decoded_pixels() -> None:
    enc = PlantedEncoder()
    guard = SafeCLIPGuard(enc).with_options(batch_size=32, images={"chunk_pixels": 3 * 24 * 24})
    guard.check_batch([enc.plant_bytes("gun") for _ in range(9)])
    assert enc.forward_counter.count == 3


def test_streamed_verdicts_equal_one_by_one_verdicts() -> None:
    enc = PlantedEncoder()
    guard = SafeCLIPGuard(enc).with_options(batch_size=3, cache_size=0)
    a, b, c, d = (enc.plant_bytes(t) for t in ("gun", "neutral", "porn", "neutral"))
    sources: list[object] = [a, b, b"broken", c, a, d, a, "data:image/png;base64,@@", b, c]
    batch = guard.check_batch(sources)  # type: ignore[arg-type]
    singles = [guard.check(s) for s in sources]  # type: ignore[arg-type]
    assert [(v.flagged, v.category, v.error is None, v.image_sha256) for v in batch] == \
           [(v.flagged, v.category, v.error is None, v.image_sha256) for v in singles]
    # duplicates across chunks are encoded once per request even without a cache
    enc.forward_counter.count = 0
    guard.check_batch([a, b, c, d, a, b, c, d])
    assert enc.forward_counter.count == 2  # 4 distinct images, chunks of 3


def test_request_pixel_budget_fails_closed_past_it() -> None:
    enc = PlantedEncoder()
    guard = SafeCLIPGuard(enc).with_options(images={"max_request_pixels": 3 * 24 * 24})
    sources = [enc.plant_bytes("neutral") for _ in range(4)]
    small = enc.plant_bytes("gun", size=(4, 4))
    verdicts = guard.check_batch([*sources, small])
    assert [v.error is None for v in verdicts] == [True, True, True, False, False]
    assert "max_request_pixels=1728" in (verdicts[3].error or "")
    assert verdicts[3].flagged and verdicts[3].category == "unreadable"
    # the budget is per request: the next call starts afresh
    assert guard.check(sources[3]).error is None


def test_forwarded_bytes_survive_streaming() -> None:
    enc = PlantedEncoder()
    guard = SafeCLIPGuard(enc).with_options(batch_size=2, cache_size=0)
    sources = [enc.plant_bytes("neutral") for _ in range(5)]
    judged = guard.judge_batch(sources, forward=True)
    assert [j.forward.data for j in judged] == sources  # type: ignore[union-attr]


@pytest.mark.parametrize("single", [b"\x89PNG...", "aGVsbG8=", bytearray(b"xx")])
def test_a_lone_str_or_bytes_is_not_a_batch(single: object) -> None:
    guard = SafeCLIPGuard(PlantedEncoder())
    with pytest.raises(ConfigurationError, match="iterable of images"):
        guard.check_batch(single)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="iterable of images"):
        guard.judge_batch(single)  # type: ignore[arg-type]


def test_an_encoder_failure_in_a_later_chunk_reaches_the_caller() -> None:
    enc = PlantedEncoder()
    guard = SafeCLIPGuard(enc).with_options(batch_size=2, cache_size=0)
    good = [enc.plant_bytes("neutral") for _ in range(4)]
    stranger = noise(24, 24, seed=99)  # never planted: the planted encoder refuses it
    with pytest.raises(ConfigurationError, match="not planted"):
        guard.check_batch([*good[:3], stranger, good[3]])
    # the guard stays usable (the encode worker of the failed request is gone)
    assert all(v.error is None for v in guard.check_batch(good))
