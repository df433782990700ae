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

Folders are walked by the package's one folder walk
(:func:`safeclip_guardrail.images.discover.discover_images`), with the dataset folder as the
root: the same files, skipped files and unreadable files as ``safeclip scan`` and
``scan-corpus`` on that folder. Images are recognised by their content (an extensionless
upload or an AVIF counts); what is not checked (not an image, hidden, a symlinked folder,
not a regular file, and a file directly in the dataset folder, outside every class folder)
is listed in :attr:`EvalDataset.skipped`, which ``safeclip eval`` and ``calibrate`` report.
A symlink leading out of the dataset folder is never read: it is listed in
:attr:`EvalDataset.unreadable`.

Manifests are read by the package's one manifest reader
(:func:`safeclip_guardrail.images._manifests.manifest_rows`), as corpus scans read them. A record
that cannot be used (not JSON, not an object, an empty or non-text path or label) does not
stop the run: it is listed in :attr:`EvalDataset.unreadable` with its line, like an image
that cannot be decoded, and left out of every metric. A label that is not a class of the
bank (after ``label_map``) does stop it, with a :class:`ConfigurationError` naming the
record: that is a mapping to fix (usually for the whole dataset), and leaving those rows
out would silently change what the metrics measure. Manifest paths are not confined to a
root: the person who wrote the manifest chose them.

Images of a benign class (the paper's ``neutral``, or any benign-context class of the
bank) are the negatives; images of a toxic class are the positives. Nothing is decoded
here: a :class:`Sample` is a path, and files that cannot be read turn up later in the
report's ``unreadable`` list (with those listed here) instead of stopping the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images._manifests import Listed, manifest_rows
from safeclip_guardrail.images.discover import Discovery, SkippedFile, discover_images

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
    """Entries of the folders that are not checked, with the reason (not evaluated;
    reported)."""
    unreadable: tuple[UnreadableFile, ...] = ()
    """Files found, or manifest records, that are never read (a symlink out of the dataset
    folder, a file that cannot be opened, an unusable record); reported as unreadable."""

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_files(self) -> int:
        """Samples plus the unreadable entries found with them."""
        return len(self.samples) + len(self.unreadable)

    @property
    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))


def parse_label_map(items: list[str] | None) -> dict[str, str]:
    """``["insulting_gesture=gesture", ...]`` (CLI form) -> ``{"insulting_gesture": "gesture"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, label = item.partition("=")
        if not sep or not name.strip() or not label.strip():
            msg = (f"label map entry {item!r} must look like FOLDER=CLASS, "
                   "e.g. insulting_gesture=gesture")
            raise ConfigurationError(msg)
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
            return _walked(p, "files", discover_images([p]), lambda _: label, mapping)
        return _from_folder(p, bank, mapping)
    if p.is_file():
        if p.suffix.lower() not in {".csv", ".jsonl", ".ndjson"}:
            msg = (f"{p} is not a dataset: pass a folder with one subfolder per class, or a "
                   ".csv / .jsonl manifest with 'path' and 'label' columns")
            raise ConfigurationError(msg)
        return _from_manifest(p, bank, mapping)
    msg = f"dataset not found: {p}"
    raise ConfigurationError(msg)


# ---------------------------------------------------------------------- internals
def _from_folder(root: Path, bank: ConceptBank, mapping: dict[str, str]) -> EvalDataset:
    """Class folders: every real, visible subfolder must name a class; one walk of ``root``."""
    folders = sorted(d for d in root.iterdir()
                     if not d.name.startswith(".") and not d.is_symlink() and d.is_dir())
    known = set(bank.class_names)
    unknown = [d.name for d in folders if mapping.get(d.name, d.name) not in known]
    if unknown:
        msg = (f"folder(s) {', '.join(unknown)} in {root} are not classes of the concept bank "
               f"({', '.join(bank.class_names)}); {label_hint(unknown, bank)}")
        raise ConfigurationError(msg)
    found = discover_images([root])
    loose = [f for f in found.files if f.path.parent == root and not f.error]  # no class
    found.files = [f for f in found.files if f.path.parent != root or f.error]
    found.skipped = sorted([*found.skipped, *(SkippedFile(f.path, _LOOSE) for f in loose)],
                           key=lambda f: f.path)
    dataset = _walked(root, "folder", found, lambda f: _class_of(f, root, mapping), mapping)
    if not dataset.samples:
        names = [f.path.name for f in loose][:3]
        hint = (f" (found loose files such as {', '.join(names)}: put them into class "
                "subfolders)") if names else ""
        msg = (f"no images found in class subfolders of {root}; expected e.g. {root}/gun/*.jpg "
               f"and {root}/neutral/*.jpg{hint}")
        raise ConfigurationError(msg)
    return dataset


_LOOSE = "not in a class folder"


def _class_of(path: Path, root: Path, mapping: Mapping[str, str]) -> str:
    """The class of the folder ``path`` lies in ("" directly in the dataset folder: an
    unreadable entry there, such as a symlink out of it, has no label)."""
    parts = path.relative_to(root).parts
    return mapping.get(parts[0], parts[0]) if len(parts) > 1 else ""


def _walked(source: Path, kind: Literal["folder", "files"], found: Discovery,
            label_of: Callable[[Path], str], mapping: dict[str, str]) -> EvalDataset:
    """The dataset of a walk, each file labelled by ``label_of``."""
    return EvalDataset(
        str(source), kind,
        samples=tuple(Sample(f.path, label_of(f.path)) for f in found.files if not f.error),
        label_map=mapping, skipped=tuple(found.skipped),
        unreadable=tuple(UnreadableFile(path=str(f.path), label=label_of(f.path), error=f.error)
                         for f in found.files if f.error),
    )


def _from_manifest(p: Path, bank: ConceptBank, mapping: dict[str, str]) -> EvalDataset:
    listed = manifest_rows(p, "path", None, columns=("label",),
                           hint="add them (and optionally 'query')")
    samples: list[Sample] = []
    unreadable: list[UnreadableFile] = []
    for rec in listed:
        label = _text(rec, "label")
        problem = rec.error or ("" if label else _unusable(p, rec, "label"))
        if label:
            label = _checked_label(label, bank, mapping, where=f"{p}, {rec.at}")
        if problem:
            unreadable.append(UnreadableFile(path=rec.path or rec.where, label=label,
                                             error=problem))
        else:
            samples.append(Sample(Path(rec.path), label, _text(rec, "query") or None))
    return EvalDataset(str(p), "manifest", tuple(samples), mapping,
                       unreadable=tuple(unreadable))


def _text(rec: Listed, name: str) -> str:
    """Field ``name`` of a record as stripped text ("" when absent, empty or not text)."""
    value = rec.record.get(name)
    return value.strip() if isinstance(value, str) else ""


def _unusable(manifest: Path, rec: Listed, name: str) -> str:
    """Why field ``name`` of a record gives no text."""
    value = rec.record.get(name)
    if value is None or isinstance(value, str):
        return f"{manifest}, {rec.at}: empty {name!r}"
    return f"{manifest}, {rec.at}: {name!r} is {type(value).__name__}, not text"


def _checked_label(label: str, bank: ConceptBank, mapping: Mapping[str, str], *,
                   where: str) -> str:
    mapped = mapping.get(label.strip(), label.strip())
    if mapped not in bank.class_names:
        msg = (f"{where}: label {label!r} is not a class of the concept bank "
               f"({', '.join(bank.class_names)}); {label_hint([label.strip()], bank)}")
        raise ConfigurationError(msg)
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
