"""``guard_conversations(judge=...)``: the judging step as a parameter (the service's seam).

Every surface finds, judges and applies the policy through ``guard_conversations``; the
service only swaps the judging step (decode processes and a shared batcher). What the judge
receives and returns must be exactly the readable images of every conversation, in order.
"""

from __future__ import annotations

import asyncio

import pytest

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.guard import Judgement
from safeclip_guardrail.images.sources import EncodedImage
from safeclip_guardrail.messages.conversation import aguard_conversations, guard_conversations
from safeclip_guardrail.messages.extraction import MessageView
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import data_url


@pytest.fixture
def setup():
    enc = PlantedEncoder(ConceptBank.default())
    guard = SafeCLIPGuard(enc)
    convs = [
        [MessageView("user", [{"type": "text", "text": "look"},
                              {"type": "image_url", "image_url": {"url": data_url(
                                  enc.plant_bytes("gun"))}}])],
        [MessageView("user", "no images here")],
        [MessageView("user", [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
                              {"type": "image_url", "image_url": {"url": data_url(
                                  enc.plant_bytes("neutral"))}}])],
    ]
    return enc, guard, convs


def test_a_sync_judge_sees_every_readable_image_once_and_decides_the_outcome(setup):
    _, guard, convs = setup
    seen: list[list[EncodedImage]] = []

    def judge(images: list[EncodedImage]) -> list[Judgement]:
        seen.append(images)
        return guard.judge_batch(images, forward=True)

    mine = guard_conversations(guard, convs, judge=judge)
    default = guard_conversations(guard, convs)
    assert len(seen) == 1 and len(seen[0]) == 2  # the file:// part never reaches a judge
    assert [o.result.model_dump() for o in mine] == [o.result.model_dump() for o in default]
    assert mine[0].result.categories == ["gun"]


def test_an_async_judge_and_errors_of_the_judge_in_place(setup):
    _, guard, convs = setup

    async def judge(images: list[EncodedImage]) -> list[Judgement]:
        await asyncio.sleep(0)
        return [Judgement(None, ImageInputError("refused by the judge", source=i.source))
                for i in images]

    outcomes = asyncio.run(aguard_conversations(guard, convs, judge=judge))
    first = outcomes[0].result.verdicts[0]
    assert first.category == "unreadable" and "refused by the judge" in first.error
    strict = guard.config.replace(on_error="raise")
    outcomes = asyncio.run(aguard_conversations(guard, convs, config=strict, judge=judge))
    assert isinstance(outcomes[0], ImageInputError)  # returned in its place, not raised
    assert not isinstance(outcomes[1], Exception)


def test_a_judge_that_returns_the_wrong_count_is_a_usage_error(setup):
    _, guard, convs = setup
    with pytest.raises(ConfigurationError, match="one per image"):
        guard_conversations(guard, convs, judge=lambda images: [])


def test_judge_decoded_equals_judge_batch(setup):
    enc, guard, _ = setup
    images = [EncodedImage(enc.plant_bytes(k)) for k in ("gun", "neutral", "blood")]
    decoded = [guard.decode(i) for i in images]
    a = guard.judge_batch(images)
    b = SafeCLIPGuard(enc).judge_decoded(decoded)  # a fresh cache: really judged again
    assert [j.verdict.model_dump() for j in a] == [j.verdict.model_dump() for j in b]
    with pytest.raises(ConfigurationError):
        guard.judge_decoded(decoded, forwards=[None])
