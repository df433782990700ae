"""The policy, framework-free: judgement -> verdict (``on_error`` once), verdicts -> decision.

Every surface (``check_batch``, the conversation layer and the adapters on it, ChatLlava's
plan, the RAG guard, NeMo) calls :func:`policy.verdict_for` and :func:`policy.decide`;
these tests pin what they decide, with hand-built verdicts and no model.
"""

from __future__ import annotations

import itertools

import pytest

from safeclip_guardrail import policy
from safeclip_guardrail.config import InterventionConfig
from safeclip_guardrail.errors import (
    ConfigurationError,
    EncoderOutputError,
    GuardrailViolation,
    ImageInputError,
)
from safeclip_guardrail.guard import Judgement, SafeCLIPGuard
from safeclip_guardrail.result import UNREADABLE, ImageVerdict
from safeclip_guardrail.testing import PlantedEncoder

CLEAN = ImageVerdict(flagged=False, top_category="neutral", source="guard's name")
GUN = ImageVerdict(flagged=True, category="gun", top_category="gun", source="guard's name")
KNIFE = ImageVerdict(flagged=True, category="knife", top_category="knife")


def cfg(**options: object) -> InterventionConfig:
    return InterventionConfig.model_validate(options)


# ---------------------------------------------------------------- verdict_for
def test_a_judged_verdict_is_kept_and_renamed_only_when_asked() -> None:
    judged = Judgement(GUN, source="<3 bytes>")
    assert policy.verdict_for(judged, cfg()) is GUN
    assert policy.verdict_for(judged, cfg(), source="metadata['image']").source == \
        "metadata['image']"


@pytest.mark.parametrize("why", [
    ImageInputError("not an image", source="block 2"),  # extraction could not read the part
    Judgement(None, ImageInputError("not an image", source="block 2"), source="block 2"),
    Judgement(None, EncoderOutputError("NaN embedding", source="block 2"), source="block 2"),
])
def test_errors_go_through_on_error_once(why: Judgement | ImageInputError) -> None:
    blocked = policy.verdict_for(why, cfg())
    assert blocked.flagged and blocked.category == UNREADABLE and blocked.source == "block 2"
    allowed = policy.verdict_for(why, cfg(on_error="allow"))
    assert not allowed.flagged and allowed.error and allowed.toxic_score == 1.0
    with pytest.raises((ImageInputError, EncoderOutputError)):
        policy.verdict_for(why, cfg(on_error="raise"))


@pytest.mark.parametrize("never", [None, Judgement(None, None, source="slot 0")])
def test_an_image_never_judged_fails_closed(never: Judgement | None) -> None:
    verdict = policy.verdict_for(never, cfg(on_error="allow"), source="slot 0")
    assert verdict.error == "the image was not judged" and verdict.source == "slot 0"
    assert not policy.decide([verdict], cfg(on_error="allow")).parts[0].forward


def test_check_batch_applies_the_same_rule(planted: PlantedEncoder,
                                           planted_guard: SafeCLIPGuard) -> None:
    images = [planted.plant_bytes("gun"), b"not an image"]
    judged = planted_guard.judge_batch(images)
    expected = [policy.verdict_for(j, planted_guard.config, source=j.source) for j in judged]
    assert planted_guard.check_batch(images) == expected
    assert expected[1].category == UNREADABLE and expected[0].category == "gun"


# ---------------------------------------------------------------- decide
def test_each_message_takes_its_strongest_action_and_the_request_the_strongest() -> None:
    config = cfg(mode="rewrite", policy={"knife": "redact"})
    d = policy.decide([CLEAN, GUN, KNIFE, CLEAN], config, messages=[0, 0, 3, 5])
    assert {m: md.action for m, md in d.per_message.items()} == {0: "rewrite", 3: "redact", 5: "pass"}
    assert d.action == "redact" and not d.blocked and d.refusal is None
    assert [p.forward for p in d.parts] == [True, True, False, True]  # rewrite forwards
    assert d.parts[2].placeholder == policy.REDACTED.format(category="knife")
    assert d.per_message[0].instruction == config.safe_instruction
    assert d.per_message[3].instruction is None
    assert d.result.verdicts == [CLEAN, GUN, KNIFE, CLEAN] and d.result.action == "redact"
    assert d.per_message[0].result.verdicts == [CLEAN, GUN]


def test_block_stops_the_request_with_the_refusal() -> None:
    d = policy.decide([CLEAN, GUN], cfg(mode="block"), messages=[1, 2])
    assert d.blocked and d.refusal is not None and "gun" in d.refusal
    assert [p.forward for p in d.parts] == [True, False]


def test_raise_raises_with_every_verdict() -> None:
    with pytest.raises(GuardrailViolation) as info:
        policy.decide([CLEAN, GUN], cfg(policy={"gun": "raise"}), messages=[0, 1])
    assert info.value.result.verdicts == [CLEAN, GUN]
    assert info.value.result.action == "raise"


def test_unreadable_is_never_forwarded_and_blocks_by_default() -> None:
    bad = policy.verdict_for(ImageInputError("truncated"), cfg(on_error="allow"))
    allowed = policy.decide([bad, CLEAN], cfg(on_error="allow"))
    assert allowed.action == "pass" and [p.forward for p in allowed.parts] == [False, True]
    assert allowed.parts[0].placeholder == policy.UNREADABLE_PLACEHOLDER
    blocked = policy.verdict_for(ImageInputError("truncated"), cfg())
    assert policy.decide([blocked], cfg(mode="annotate")).action == "block"
    assert policy.decide([blocked], cfg(policy={UNREADABLE: "redact"})).action == "redact"


def test_a_custom_placeholder_template() -> None:
    d = policy.decide([GUN], cfg(mode="redact"), redacted="[{category} removed {x}]")
    assert d.parts[0].placeholder == "[gun removed {x}]"  # other braces are left alone


def test_no_verdicts_pass_and_mismatched_messages_are_a_usage_error() -> None:
    empty = policy.decide([], cfg(mode="block"))
    assert empty.action == "pass" and not empty.parts and not empty.per_message
    with pytest.raises(ConfigurationError, match="one message index per verdict"):
        policy.decide([CLEAN, GUN], cfg(), messages=[0])


# ---------------------------------------------------------------- the steps of decide, one by one
def test_the_strongest_action_wins_in_the_documented_order() -> None:
    order = ["pass", "annotate", "rewrite", "redact", "block", "raise"]
    for weaker, stronger in itertools.pairwise(order):
        assert policy.strongest_action([stronger, weaker]) == stronger
        assert policy.strongest_action([weaker, stronger, weaker]) == stronger
    assert policy.strongest_action([]) == "pass"


def test_action_for_a_verdict_follows_mode_then_the_class_policy() -> None:
    assert policy.action_for(CLEAN, cfg(mode="block")) == "pass"  # clean is never acted on
    assert policy.action_for(GUN, cfg(mode="redact")) == "redact"
    assert policy.action_for(GUN, cfg(mode="redact", policy={"gun": "annotate"})) == "annotate"
    assert policy.action_for(KNIFE, cfg(mode="redact", policy={"gun": "annotate"})) == "redact"


def test_an_unreadable_verdict_blocks_unless_mode_or_its_policy_say_more_or_else() -> None:
    bad = policy.verdict_for(ImageInputError("truncated"), cfg())
    assert policy.action_for(bad, cfg(mode="annotate")) == "block"  # at least block
    assert policy.action_for(bad, cfg(mode="raise")) == "raise"  # the stronger of the two
    assert policy.action_for(bad, cfg(mode="raise", policy={UNREADABLE: "redact"})) == "redact"


@pytest.mark.parametrize(("action", "flagged_forwarded"), [
    ("pass", True), ("annotate", True), ("rewrite", True),
    ("redact", False), ("block", False), ("raise", False)])
def test_what_is_forwarded_under_each_action(action: str, flagged_forwarded: bool) -> None:
    assert policy.forwarded(CLEAN, action) is True
    assert policy.forwarded(GUN, action) is flagged_forwarded
    unreadable = policy.verdict_for(ImageInputError("truncated"), cfg(on_error="allow"))
    assert not unreadable.flagged and policy.forwarded(unreadable, action) is False  # never


def test_placeholders_name_the_category_or_say_it_could_not_be_checked() -> None:
    assert policy.placeholder_for(GUN) == "[image removed by the SafeCLIP guardrail: flagged as gun]"
    assert policy.placeholder_for(GUN, redacted="<{category}>") == "<gun>"
    unreadable = policy.verdict_for(ImageInputError("truncated"), cfg())
    assert policy.placeholder_for(unreadable, redacted="<{category}>") == \
        policy.UNREADABLE_PLACEHOLDER


def test_the_refusal_names_the_categories_or_unreadable() -> None:
    config = cfg(refusal="No: {categories}.")
    assert policy.refusal_text(config, ["gun", "knife"]) == "No: gun, knife."
    assert policy.refusal_text(config, []) == f"No: {UNREADABLE}."


def test_error_verdict_applies_on_error_and_keeps_the_errors_source() -> None:
    exc = ImageInputError("truncated", source="block 4")
    blocked = policy.error_verdict(exc, cfg())
    assert blocked.flagged and blocked.category == UNREADABLE and blocked.error == "truncated"
    assert blocked.source == "block 4"
    assert policy.error_verdict(exc, cfg(), source="metadata['image']").source == "metadata['image']"
    allowed = policy.error_verdict(exc, cfg(on_error="allow"))
    assert not allowed.flagged and allowed.category is None and allowed.error == "truncated"
    with pytest.raises(ImageInputError, match="truncated"):
        policy.error_verdict(exc, cfg(on_error="raise"))
