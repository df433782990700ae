"""Evaluation datasets: labelled image paths, read lazily.

Two layouts are accepted:

- **a folder with one subfolder per class** (``DATA/gun/*.jpg``, ``DATA/neutral/*.png``...):
  images are found recursively inside each class folder, so HOD-style trees such as
  ``DATA/gun/normal_cases/*.jpg`` and ``DATA/gun/hard_cases/*.jpg`` both count as ``gun``.
  Folder names must be classes of the concept bank, or be mapped onto one with
  ``label_map`` (``{"insulting_gesture": "gesture", "benign": "neutral"}``).
- **a manifest** (``.csv`` with a header, or ``.jsonl``) with ``path`` and ``label`` and an
  optional ``query`` (used by the end-to-end evaluation); relative paths are resolved
  against the manifest's folder.

In folders, images are recognised by their content (an extensionless upload or an AVIF
counts); other files are listed in :attr:`EvalDataset.skipped`, which ``safeclip eval`` and
``calibrate`` report. Hidden files and folders are ignored.

Images of a benign class (the paper's ``neutral``, or any benign-context class of the
bank) are the negatives; images of a toxic class are the positives. Nothing is decoded
here: a :class:`Sample` is a path, and files that cannot be read turn up later in the
report's ``unreadable`` list instead of stopping the run.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from safeclip_guardrail._discover import SkippedFile, discover_images
from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.errors import ConfigurationError

__all__ = [
    "HOD_LABEL_MAP",
    "EvalDataset",
    "Sample",
    "UnreadableFile",
    "label_hint",
    "load_dataset",
    "parse_label_map",
]

HOD_LABEL_MAP: dict[str, str] = {
    "insulting_gesture": "gesture",
    "insulting-gesture": "gesture",
    "insulting gesture": "gesture",
    "benign": "neutral",
    "safe": "neutral",
}
"""Folder names of the HOD harmful-object benchmark (and common names for a benign set)
mapped onto the paper's concept bank; the other HOD classes (alcohol, blood, cigarette,
gun, knife) already carry the bank's names."""


@dataclass(frozen=True)
class Sample:
    """One labelled image of a dataset."""

    path: Path
    label: str
    """A class of the concept bank (after ``label_map``)."""
    query: str | None = None
    """The question sent with the image in the end-to-end evaluation (None: a default one)."""


class UnreadableFile(BaseModel):
    """A dataset file that could not be read; listed in the report, never fatal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    label: str
    error: str


@dataclass(frozen=True)
class EvalDataset:
    """The samples of a dataset, in a stable order, plus where they came from."""

    source: str
    kind: Literal["folder", "manifest", "files"]
    samples: tuple[Sample, ...]
    label_map: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[SkippedFile, ...] = ()
    """Files found in the folders that are not images (not evaluated; reported)."""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))


def parse_label_map(items: list[str] | None) -> dict[str, str]:
    """``["insulting_gesture=gesture", ...]`` (CLI form) -> ``{"insulting_gesture": "gesture"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, label = item.partition("=")
        if not sep or not name.strip() or not label.strip():
            raise ConfigurationError(
                f"label map entry {item!r} must look like FOLDER=CLASS, "
                "e.g. insulting_gesture=gesture"
            )
        out[name.strip()] = label.strip()
    return out


def load_dataset(path: str | Path, *, bank: ConceptBank,
                 label_map: Mapping[str, str] | None = None,
                 all_label: str | None = None) -> EvalDataset:
    """Read a folder-per-class dataset or a CSV/JSONL manifest.

    ``all_label`` labels every image of a plain folder (searched recursively) with one
    class, ignoring subfolder names; ``calibrate`` uses it for a benign set.
    """
    p = Path(path)
    mapping = dict(label_map or {})
    if p.is_dir():
        if all_label is not None:
            label = _checked_label(all_label, bank, mapping, where=str(p))
            found = discover_images([p], skip_hidden=True)
            return EvalDataset(str(p), "files", tuple(Sample(f, label) for f in found.images),
                               mapping, tuple(found.skipped))
        return _from_folder(p, bank, mapping)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".csv":
            rows = _csv_rows(p)
        elif suffix in {".jsonl", ".ndjson"}:
            rows = _jsonl_rows(p)
        else:
            raise ConfigurationError(
                f"{p} is not a dataset: pass a folder with one subfolder per class, or a "
                ".csv / .jsonl manifest with 'path' and 'label' columns"
            )
        samples = []
        for line, row in rows:
            raw_path, label = row.get("path", ""), row.get("label", "")
            if not raw_path or not label:
                raise ConfigurationError(
                    f"{p}, line {line}: every row needs a 'path' and a 'label' (got {row!r})"
                )
            image = Path(raw_path)
            image = image if image.is_absolute() else p.parent / image
            checked = _checked_label(label, bank, mapping, where=f"{p}, line {line}")
            query = row.get("query") or None
            samples.append(Sample(image, checked, query))
        if not samples:
            raise ConfigurationError(f"manifest {p} has no rows")
        return EvalDataset(str(p), "manifest", tuple(samples), mapping)
    raise ConfigurationError(f"dataset not found: {p}")


# ---------------------------------------------------------------------- internals
def _from_folder(root: Path, bank: ConceptBank, mapping: dict[str, str]) -> EvalDataset:
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    known = set(bank.class_names)
    unknown = [d.name for d in folders if mapping.get(d.name, d.name) not in known]
    if unknown:
        raise ConfigurationError(
            f"folder(s) {', '.join(unknown)} in {root} are not classes of the concept bank "
            f"({', '.join(bank.class_names)}); {label_hint(unknown, bank)}"
        )
    samples: list[Sample] = []
    skipped: list[SkippedFile] = []
    for d in folders:
        found = discover_images([d], skip_hidden=True)
        samples += [Sample(f, mapping.get(d.name, d.name)) for f in found.images]
        skipped += found.skipped
    if not samples:
        loose = [f.name for f in root.iterdir() if f.is_file()][:3]
        hint = (f" (found loose files such as {', '.join(loose)}: put them into class "
                "subfolders)") if loose else ""
        raise ConfigurationError(
            f"no images found in class subfolders of {root}; expected e.g. {root}/gun/*.jpg "
            f"and {root}/neutral/*.jpg{hint}"
        )
    return EvalDataset(str(root), "folder", tuple(samples), mapping, tuple(skipped))


def _checked_label(label: str, bank: ConceptBank, mapping: Mapping[str, str], *,
                   where: str) -> str:
    mapped = mapping.get(label.strip(), label.strip())
    if mapped not in bank.class_names:
        raise ConfigurationError(
            f"{where}: label {label!r} is not a class of the concept bank "
            f"({', '.join(bank.class_names)}); {label_hint([label.strip()], bank)}"
        )
    return mapped


def label_hint(names: list[str], bank: ConceptBank) -> str:
    """How to map unknown folder/label names onto the bank, never guessing a benign class.

    A name the HOD map knows points to ``--hod``; a name close to a toxic class (``guns``,
    ``Knife``) gets that class; anything else gets a ``--label-map NAME=CLASS`` template
    with the class left for the user to choose: mapping an unknown, possibly toxic folder
    onto a benign class would turn its images into false-positive "evidence".
    """
    import difflib

    by_lower = {c.lower(): c for c in bank.class_names if bank.is_toxic(c)}
    suggestions: list[str] = []
    for name in names:
        key = name.strip()
        if key in HOD_LABEL_MAP and HOD_LABEL_MAP[key] in bank.class_names:
            suggestions.append(f"--label-map {key}={HOD_LABEL_MAP[key]}")
            continue
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.75)
        if close:
            suggestions.append(f"--label-map {key}={by_lower[close[0]]}")
    hod = any(n.strip() in HOD_LABEL_MAP for n in names)
    parts = []
    if suggestions:
        parts.append("perhaps " + " ".join(suggestions))
    parts.append(f"map each with --label-map {names[0].strip()}=CLASS, choosing the class "
                 "that matches its content (a toxic class for harmful images)")
    parts.append("--hod maps the HOD benchmark's folder names"
                 + (" (it knows " + ", ".join(n for n in names if n.strip() in HOD_LABEL_MAP)
                    + ")" if hod else ""))
    return "; ".join(parts)


def _csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ConfigurationError(
                f"{path} needs a header row with 'path' and 'label' (and optionally 'query'); "
                f"got {reader.fieldnames}"
            )
        return [(i + 2, {k: (v or "").strip() for k, v in row.items() if k})
                for i, row in enumerate(reader)]


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}, line {i}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ConfigurationError(f"{path}, line {i}: expected an object with path and label")
        rows.append((i, {str(k): str(v) for k, v in obj.items() if v is not None}))
    return rows
