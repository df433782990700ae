"""Bank classes -> OpenAI moderation categories, and verdicts -> one moderation result.

OpenAI's omni-moderation schema has 13 fixed category keys. A concept bank has its own
classes, so a map says which standard key each toxic class counts towards (several classes
may share a key: ``gun`` and ``knife`` are both ``violence``; the key's score is their summed
mass). Toxic classes with no standard key are reported under ``safeclip/<class>``, and an
image that could not be judged under ``safeclip/unreadable``, so nothing the guard decided is
hidden from a client that reads the extra keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.result import UNREADABLE, ImageVerdict

__all__ = [
    "DEFAULT_CATEGORY_MAP",
    "STANDARD_CATEGORIES",
    "UNREADABLE_KEY",
    "CategoryMap",
    "ModerationScores",
]

STANDARD_CATEGORIES: tuple[str, ...] = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)
"""The 13 keys of OpenAI's omni-moderation result; every one is present in every result."""

DEFAULT_CATEGORY_MAP: Mapping[str, str] = {
    "porn": "sexual", "blood": "violence/graphic", "gun": "violence", "knife": "violence",
}
"""Default map for the paper's bank; other toxic classes become ``safeclip/<class>``."""

UNREADABLE_KEY = "safeclip/unreadable"
"""Extra key flagged for an image that could not be judged (``on_error="block"``)."""


@dataclass(frozen=True)
class ModerationScores:
    """One moderation result's four maps (keys in a stable order)."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class CategoryMap:
    """Which moderation key each toxic class of ``bank`` reports under."""

    def __init__(self, bank: ConceptBank, mapping: Mapping[str, str] | None = None) -> None:
        chosen = dict(DEFAULT_CATEGORY_MAP if mapping is None else mapping)
        names = {c.name: c for c in bank.classes}
        for cls, key in chosen.items():
            if key not in STANDARD_CATEGORIES and not key.startswith("safeclip/"):
                msg = (f"category map sends class {cls!r} to {key!r}, which is neither one of the "
                       f"13 standard keys ({', '.join(STANDARD_CATEGORIES)}) nor 'safeclip/<name>'")
                raise ConfigurationError(msg)
        self.key_of: dict[str, str] = {}
        """Toxic class -> moderation key (classes of a map not in the bank are ignored)."""
        for c in bank.classes:
            if c.kind != "toxic":
                continue
            self.key_of[c.name] = chosen.get(c.name, f"safeclip/{c.name}")
        unknown = sorted(set(chosen) - set(names))
        self.ignored = unknown
        """Classes named in the map that the bank does not have (reported at start-up)."""
        extras = sorted({k for k in self.key_of.values() if k not in STANDARD_CATEGORIES})
        self.keys: tuple[str, ...] = (*STANDARD_CATEGORIES, *extras, UNREADABLE_KEY)
        """Every key a result carries, standard keys first."""
        self.judged_keys = frozenset({*self.key_of.values(), UNREADABLE_KEY})
        """Keys images are judged for (their applied input types say ``image``)."""

    def key_for(self, verdict: ImageVerdict) -> str | None:
        """The key a flagged verdict is flagged under (None when not flagged)."""
        if not verdict.flagged:
            return None
        if verdict.error is not None or verdict.category in (None, UNREADABLE):
            return UNREADABLE_KEY
        return self.key_of.get(verdict.category or "", f"safeclip/{verdict.category}")

    def scores(self, verdicts: Sequence[ImageVerdict]) -> ModerationScores:
        """One result over ``verdicts`` (the images of one input; none for plain text)."""
        flags = dict.fromkeys(self.keys, False)
        scores = dict.fromkeys(self.keys, 0.0)
        for v in verdicts:
            per_key: dict[str, float] = {}
            for cls, mass in v.scores.items():
                key = self.key_of.get(cls)
                if key is not None:
                    per_key[key] = per_key.get(key, 0.0) + float(mass)
            if v.error is not None:
                per_key[UNREADABLE_KEY] = 1.0 if v.flagged else 0.0
            for key, value in per_key.items():
                scores[key] = max(scores[key], min(1.0, value))
            flagged_key = self.key_for(v)
            if flagged_key is not None:
                flags[flagged_key] = True
                scores[flagged_key] = max(scores[flagged_key], float(v.scores.get(
                    v.category or "", 1.0 if flagged_key == UNREADABLE_KEY else 0.0)))
        applied = ["image"] if verdicts else []
        types = {k: (list(applied) if k in self.judged_keys else []) for k in self.keys}
        return ModerationScores(flagged=any(flags.values()), categories=flags,
                                category_scores=scores, category_applied_input_types=types)
