"""Concept banks: the classes a guard tells apart, each described by a few short texts.

The default bank is the SafeCLIP paper's: 8 classes (``neutral`` benign, seven toxic), five
descriptors each, shipped as package data. Users edit categories as text: add a toxic class,
drop one, or add *benign context* classes ("a chef slicing vegetables") that pull
context-dependent images (knives, wine) away from the toxic classes. Benign classes never flag.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from safeclip_guardrail._validation import ValidatedModel, first_error, read_data_file
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["ConceptBank", "ConceptClass", "ConceptKind"]

ConceptKind = Literal["toxic", "benign"]


class ConceptClass(ValidatedModel):
    """One class of the bank: a name, whether it is toxic, and its descriptor texts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """Identifier used in verdicts, thresholds and policies (e.g. ``"gun"``)."""
    kind: ConceptKind
    """``toxic`` classes can flag; ``benign`` classes only absorb probability mass."""
    descriptors: tuple[str, ...]
    """Short texts embedded by CLIP's text tower (the paper uses five per class)."""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        v = v.strip()
        if not v:
            msg = "class name must not be empty"
            raise ConfigurationError(msg)
        return v

    @field_validator("descriptors", mode="before")
    @classmethod
    def _descriptors_ok(cls, v: Any) -> Any:
        if isinstance(v, str):
            msg = "descriptors must be a list of strings, not one string"
            raise ConfigurationError(msg)
        return v

    @model_validator(mode="after")
    def _non_empty(self) -> ConceptClass:
        cleaned = tuple(d.strip() for d in self.descriptors)
        if not cleaned:
            msg = f"class {self.name!r} has no descriptors; give it at least one text"
            raise ConfigurationError(msg)
        if any(not d for d in cleaned):
            msg = f"class {self.name!r} has an empty descriptor"
            raise ConfigurationError(msg)
        object.__setattr__(self, "descriptors", cleaned)
        return self


class ConceptBank(ValidatedModel):
    """An ordered set of classes; at least one benign and one toxic, names unique.

    The JSON/YAML format is the one of the shipped paper bank::

        {"classes": [{"name": "neutral", "kind": "benign", "descriptors": ["...", ...]}, ...]}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[ConceptClass, ...] = Field(min_length=1)
    source: str | None = None
    """Free text naming where the bank came from (kept in reports)."""

    @model_validator(mode="after")
    def _consistent(self) -> ConceptBank:
        names = [c.name for c in self.classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"duplicate class names: {', '.join(dupes)}"
            raise ConfigurationError(msg)
        if not any(c.kind == "benign" for c in self.classes):
            msg = ("the bank has no benign class; add one (e.g. the paper's 'neutral' with "
                   "descriptors like 'Safe for work image'), otherwise every image is toxic")
            raise ConfigurationError(msg)
        if not any(c.kind == "toxic" for c in self.classes):
            msg = "the bank has no toxic class, so nothing could ever be flagged"
            raise ConfigurationError(msg)
        return self

    # ----------------------------------------------------------------- construction
    @classmethod
    def default(cls) -> ConceptBank:
        """The SafeCLIP paper's bank: 8 classes x 5 descriptors, ``neutral`` benign."""
        text = resources.files("safeclip_guardrail").joinpath("data/paper_concept_bank.json")
        return cls.from_dict(json.loads(text.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConceptBank:
        """Build from the JSON/YAML structure; raises ConfigurationError naming the problem."""
        if not isinstance(data, Mapping) or "classes" not in data:
            msg = ("a concept bank must be a mapping with a 'classes' list, e.g. "
                   '{"classes": [{"name": "neutral", "kind": "benign", "descriptors": ["..."]}]}')
            raise ConfigurationError(msg)
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            msg = f"invalid concept bank: {first_error(exc)}"
            raise ConfigurationError(msg) from None

    @classmethod
    def from_file(cls, path: str | Path) -> ConceptBank:
        """Load a bank from ``.json``, ``.yaml`` or ``.yml``."""
        p = Path(path)
        data = read_data_file(p, what="concept bank", hint=_FORMAT_HINT, max_bytes=_MAX_BANK_BYTES)
        bank = cls.from_dict(data)
        return bank if bank.source else bank.model_copy(update={"source": str(p)})

    # ----------------------------------------------------------------- export
    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML structure (round-trips through :meth:`from_dict`)."""
        out: dict[str, Any] = {}
        if self.source:
            out["source"] = self.source
        out["classes"] = [
            {"name": c.name, "kind": c.kind, "descriptors": list(c.descriptors)}
            for c in self.classes
        ]
        return out

    def to_file(self, path: str | Path) -> Path:
        """Write JSON or YAML, chosen by the suffix."""
        p = Path(path)
        if p.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            p.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        else:
            p.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return p

    # ----------------------------------------------------------------- editing
    def with_class(
        self, name: str, descriptors: Sequence[str], *, kind: ConceptKind = "toxic"
    ) -> ConceptBank:
        """A new bank with one class added (or replaced, when the name exists)."""
        new = ConceptClass(name=name, kind=kind, descriptors=tuple(descriptors))
        kept = [c for c in self.classes if c.name != name]
        return ConceptBank.from_dict({"classes": [*map(_as_dict, kept), _as_dict(new)]})

    def without(self, *names: str) -> ConceptBank:
        """A new bank without the named classes."""
        unknown = set(names) - set(self.class_names)
        if unknown:
            msg = f"unknown classes: {', '.join(sorted(unknown))}"
            raise ConfigurationError(msg)
        kept = [_as_dict(c) for c in self.classes if c.name not in names]
        return ConceptBank.from_dict({"classes": kept})

    def truncated(self, k: int) -> ConceptBank:
        """A new bank keeping the first ``k`` descriptors of every class (ablations)."""
        if k < 1:
            msg = f"k must be >= 1, got {k}"
            raise ConfigurationError(msg)
        classes = [{**_as_dict(c), "descriptors": list(c.descriptors[:k])} for c in self.classes]
        return ConceptBank.from_dict({"classes": classes, "source": self.source})

    # ----------------------------------------------------------------- views
    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def toxic_classes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if c.kind == "toxic")

    @property
    def benign_classes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if c.kind == "benign")

    def is_toxic(self, name: str) -> bool:
        return name in self.toxic_classes

    @property
    def descriptors(self) -> tuple[str, ...]:
        """All descriptors, class by class, in bank order (rows of the text matrix)."""
        return tuple(d for c in self.classes for d in c.descriptors)

    @property
    def descriptor_class_index(self) -> tuple[int, ...]:
        """For every descriptor, the index of its class."""
        return tuple(i for i, c in enumerate(self.classes) for _ in c.descriptors)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the classes (names, kinds, descriptors): the text-embedding cache key."""
        payload = json.dumps(
            [[c.name, c.kind, list(c.descriptors)] for c in self.classes], ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.classes)


_MAX_BANK_BYTES = 16 * 1024 * 1024
_FORMAT_HINT = ('a concept bank is a UTF-8 JSON or YAML text file such as {"classes": '
                '[{"name": "neutral", "kind": "benign", "descriptors": ["..."]}]} '
                "(write one with `safeclip bank export bank.yaml`)")


def _as_dict(c: ConceptClass) -> dict[str, Any]:
    return {"name": c.name, "kind": c.kind, "descriptors": list(c.descriptors)}

