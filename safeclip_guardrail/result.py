"""Typed results: one :class:`ImageVerdict` per image, one :class:`GuardResult` per message.

Both are frozen pydantic models so they serialise to JSON (for logs, run metadata and
reports) and round-trip back.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

__all__ = ["UNREADABLE", "GuardResult", "ImageVerdict"]

UNREADABLE = "unreadable"
"""Category of a fail-closed verdict for an image that could not be read."""


class ImageVerdict(BaseModel):
    """The guard's decision about one image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flagged: bool
    """True when the image should not reach the model (toxic, or unreadable and failing closed)."""
    category: str | None = None
    """The toxic class that triggered the flag (``"unreadable"`` when failing closed), else None."""
    top_category: str | None = None
    """The class with the largest probability mass, toxic or benign."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Class -> probability mass; sums to 1 over the concept bank's classes."""
    toxic_score: float = 0.0
    """Total mass of the toxic classes (1 - benign mass); the score ROC curves are drawn on.

    For an image that could not be read (``error`` set) it is 1.0 whatever ``on_error``
    says: nothing is known about that image, so a list sorted by ``toxic_score`` puts it
    with the most suspicious images, never among the safest."""
    threshold: float | None = None
    """The threshold that applied to the deciding class."""
    image_sha256: str | None = None
    """SHA-256 of the encoded image bytes (or of the pixels for in-memory images)."""
    error: str | None = None
    """Why the image could not be read; None when it was read."""
    frames_checked: int = 1
    """How many frames of an animated image were scored (the worst one is reported)."""
    views_checked: int = 1
    """How many views were scored over all frames: the whole picture plus any tiles of each
    frame (see :mod:`safeclip_guardrail.images.views`); the worst view is reported."""
    decided_by: str | None = None
    """The view whose scores this verdict reports, e.g. ``"tile 2 of 3"`` or ``"frame 2,
    whole picture"``; None where no view is known (an error, bare embeddings)."""
    source: str | None = None
    """A short description of where the image came from (path, URL host, block index)."""

    @model_validator(mode="before")
    @classmethod
    def _unreadable_is_not_safe(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("error") is not None and "toxic_score" not in data:
            return {**data, "toxic_score": 1.0}
        return data

    @property
    def ok(self) -> bool:
        """True when the image was read and not flagged."""
        return not self.flagged and self.error is None


class GuardResult(BaseModel):
    """The verdicts for every image of one input (a message, a conversation, a document)."""

    # "ignore": the computed fields below appear in dumps and are dropped when parsed back.
    model_config = ConfigDict(frozen=True, extra="ignore")

    verdicts: list[ImageVerdict] = Field(default_factory=list)
    """One verdict per image found, in the order the images appear."""
    action: str | None = None
    """What the guardrail did: ``pass``, ``rewrite``, ``annotate``, ``redact``, ``block``, ``raise``."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def flagged(self) -> bool:
        """True when any image was flagged."""
        return any(v.flagged for v in self.verdicts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def categories(self) -> list[str]:
        """The distinct flagged categories, in order of first appearance."""
        seen: list[str] = []
        for v in self.verdicts:
            if v.flagged and v.category and v.category not in seen:
                seen.append(v.category)
        return seen
