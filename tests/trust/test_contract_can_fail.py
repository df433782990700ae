"""The trust contract can fail: planted breakages, each caught by a subclass.

:class:`~safeclip_guardrail.testing.trust.TrustContract` is only worth subclassing if a
surface that breaks the promise fails it. Each class below is the dict surface of
tests/_trust_service.py with one planted fault, and the test says which contract test
catches it: forwarding the original bytes after judging them, no guard at all, refusing
everything, reading a path from message content, swallowing the guard's error.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import ClassVar

import pytest

from safeclip_guardrail.messages.conversation import guard_dict_messages
from safeclip_guardrail.testing.trust import (
    Conversation,
    Outcome,
    Received,
    TrustContract,
    as_dicts,
    scan,
)
from tests._trust_service import DictsSurface

STYLE = "guard_dict_messages"


class ForwardsTheOriginal(DictsSurface):
    """Judges every picture, then sends the request as it came (the classic hole)."""

    def run(self, conversation: Conversation, style: str) -> Outcome:
        dicts = as_dicts(conversation)
        outcome = guard_dict_messages(self.images.guard, dicts,
                                      config=self.images.guard.config.replace(mode="block"))
        received = Received()
        if not outcome.blocked:
            scan(dicts, received)  # the original, not outcome.as_dicts(dicts)
        return Outcome(outcome.blocked, received, not outcome.blocked)


class NoGuard(TrustContract):
    def run(self, conversation: Conversation, style: str) -> Outcome:
        received = Received()
        scan(as_dicts(conversation), received)
        return Outcome(False, received, True)


class RefusesEverything(TrustContract):
    def run(self, conversation: Conversation, style: str) -> Outcome:
        return Outcome(True, Received(), False)


class ReadsPaths(DictsSurface):
    """Looks at strings that name files before guarding (an oracle, and a read)."""

    def run(self, conversation: Conversation, style: str) -> Outcome:
        found = Received()
        scan(as_dicts(conversation), found)
        for s in found.strings:
            if s.startswith("/"):
                with contextlib.suppress(OSError):
                    Path(s).open("rb").close()
        return super().run(conversation, style)


class SwallowsErrors(DictsSurface):
    """Turns the guard's error (``on_error="raise"``) into a refusal."""

    def run(self, conversation: Conversation, style: str) -> Outcome:
        try:
            return super().run(conversation, style)
        except Exception:
            return Outcome(True, Received(), False)


def test_forwarding_the_original_bytes_fails_the_placement_matrix() -> None:
    with pytest.raises(AssertionError) as err:
        ForwardsTheOriginal().test_every_placement_blocks_or_forwards_only_judged_bytes(STYLE)
    text = str(err.value)
    # the animation's unjudged later frame and the pixels under transparency got through
    assert "animation_flagged_later_frame/flagged: the model received a forbidden image" in text
    assert "animation_flagged_later_frame/benign: the model received 1 frames nobody judged" in text
    assert "alpha_hides_pixels/benign: the model received a forbidden image" in text


def test_the_same_surface_done_right_passes() -> None:
    DictsSurface().test_every_placement_blocks_or_forwards_only_judged_bytes(STYLE)


def test_no_guard_fails_on_the_first_flagged_placement() -> None:
    with pytest.raises(AssertionError) as err:
        NoGuard().test_every_placement_blocks_or_forwards_only_judged_bytes("invoke")
    assert "a URL reached the model" in str(err.value)
    assert "ai_message/flagged: the model received a forbidden image" in str(err.value)
    with pytest.raises(AssertionError, match=r"forbidden|URL|path|nobody judged"):
        NoGuard().test_nested_conversations_never_forward_an_unjudged_payload()


def test_refusing_everything_fails_the_benign_tests() -> None:
    with pytest.raises(AssertionError, match="refused"):
        RefusesEverything().test_benign_conversations_pass("invoke")
    with pytest.raises(AssertionError, match="blocked, expected to go through"):
        RefusesEverything().test_every_placement_blocks_or_forwards_only_judged_bytes("invoke")


def test_reading_a_path_from_content_fails_the_paths_test() -> None:
    with pytest.raises(AssertionError, match="open"):
        ReadsPaths().test_no_path_inside_a_message_is_ever_opened()


def test_swallowing_the_guards_error_fails_the_on_error_test() -> None:
    SwallowsErrors().test_an_unreadable_image_follows_on_error("block")  # the same there
    with pytest.raises(AssertionError):
        SwallowsErrors().test_an_unreadable_image_follows_on_error("raise")


def test_a_known_hole_must_still_fail() -> None:
    """``known_holes`` is strict: an entry whose placement passes fails the test."""

    class Claims(DictsSurface):
        known_holes: ClassVar[dict[str, str]] = {"ai_message": "pretend another branch fixes it"}

    with pytest.raises(AssertionError, match="ai_message: a known hole now holds"):
        Claims().test_every_placement_blocks_or_forwards_only_judged_bytes(STYLE)

    class Excused(ForwardsTheOriginal):
        known_holes: ClassVar[dict[str, str]] = {"animation_flagged_later_frame": "planted",
                                                 "alpha_hides_pixels": "planted"}

    Excused().test_every_placement_blocks_or_forwards_only_judged_bytes(STYLE)
