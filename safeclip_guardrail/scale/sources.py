"""Corpus sources: what ``scan-corpus`` reads, cut into units a worker can read on its own.

A source is

- a **folder**: walked by the package's one folder walk
  (:func:`safeclip_guardrail.images.discover.discover_images`, the same rules as ``safeclip scan``
  and the evaluation datasets): a file whose first bytes are an image signature, or whose
  name ends in an image extension, is a row (a broken ``.jpg`` an error row instead of
  vanishing); a symlink leading out of the root, or a file that cannot be opened, is an
  error row; files that are not images, hidden entries, symlinked folders and anything
  that is not a regular file are skipped and counted (:attr:`Corpus.skipped`);
- a **Parquet** file with a binary column (encoded images) or a path column;
- a **WebDataset** tar shard (``.tar``, ``.tar.gz``): one row per image of each sample
  (:mod:`~safeclip_guardrail.scale._webdataset`);
- a **manifest**: ``.csv`` with a header or ``.jsonl``, with a ``path`` column (relative
  paths resolve against the manifest's folder) and an optional ``id``
  (:mod:`safeclip_guardrail.images._manifests`, the reader the evaluation datasets use too).

Every row gets a stable, unique ``id`` (the path, the id column, ``<parquet>#<row>``,
``<shard>:<key>`` or ``<shard>:<key>.<ext>``; a repeat gets ``#2``) that the output keeps
and ``--resume`` skips on. A bad row (an unusable manifest record, a sample without an
image, a path outside the root) is an error row, never a failed run. Paths that the data
names are read only inside a **root** (``root=``; by default the folder itself, or the
folder holding the manifest or Parquet file): symlinks and listed paths that lead out of it
are error rows whose message is the same whether the target exists or not
(:mod:`safeclip_guardrail.images._paths`). A :class:`Unit` is a small picklable description
(a list of paths, a Parquet row group, a tar shard); :func:`read_unit` turns it into column
batches ``{"id", "path", "image", "error"}`` for the scorer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from safeclip_guardrail._sniff import sniff_format
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.images._manifests import manifest_rows
from safeclip_guardrail.images._paths import ROOT_HINT, confine, inside, real_root
from safeclip_guardrail.images._paths import utf8_text as display
from safeclip_guardrail.images.discover import SkippedFile, discover_images
from safeclip_guardrail.scale._rows import Row, UniqueIds
from safeclip_guardrail.scale._webdataset import tar_rows

__all__ = [
    "Corpus",
    "Unit",
    "discover",
    "read_unit",
    "sniff_image",
]

_PATH_COLUMNS = ("path", "image_path", "file_path", "filepath", "file", "filename")
_ID_COLUMNS = ("id", "key", "__key__")
_MANIFESTS = {".csv", ".jsonl", ".ndjson"}
_MAX_BYTES = ImageOptions().max_bytes


def sniff_image(head: bytes) -> str | None:
    """The image format that ``head`` (a file's first 16+ bytes) starts like, else None."""
    name = sniff_format(head)
    return name.lower() if name else None


@dataclass(frozen=True)
class Unit:
    """One independently readable piece of a corpus."""

    kind: Literal["files", "parquet", "tar"]
    source: str
    """The folder, manifest, Parquet file or shard it comes from."""
    paths: tuple[str, ...] = ()
    """``files``: the image paths."""
    ids: tuple[str, ...] = ()
    """``files``: their ids (same order)."""
    row_group: int = -1
    """``parquet``: the row group to read."""
    first_row: int = 0
    """``parquet``: index of the row group's first row in the file (for default ids)."""
    image_column: str = ""
    path_column: str = ""
    id_column: str = ""
    rows: int | None = None
    """Rows in the unit when known without reading it (None for tar shards)."""
    errors: tuple[str, ...] = ()
    """``files``: per path, why its row cannot be read ("" when it can); () when none."""
    root: str = ""
    """The real path of the folder that paths read for this unit must lie in."""
    max_bytes: int = _MAX_BYTES
    """``tar``: largest image member read into memory (larger ones are error rows)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Unit:
        data = json.loads(text)
        for name in ("paths", "ids", "errors"):
            data[name] = tuple(data.get(name, ()))
        return cls(**data)


@dataclass(frozen=True)
class Corpus:
    """The units of every source, in order, and what discovery left out."""

    units: tuple[Unit, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())
    """Entries of folders that are not checked, each with its reason (not an image, hidden,
    a symlinked folder, not a regular file)."""

    @property
    def rows(self) -> int | None:
        """Total rows when every unit knows its size (None when a tar shard is involved)."""
        sizes = [u.rows for u in self.units]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


def discover(sources: Sequence[str | Path], *, image_column: str | None = None,
             path_column: str | None = None, id_column: str | None = None,
             files_per_unit: int = 256, root: str | Path | None = None,
             max_bytes: int = _MAX_BYTES) -> Corpus:
    """Cut ``sources`` into units; raises :class:`ConfigurationError` for a bad source (a bad
    row is an error row instead). ``root``: the folder every path read must lie in (None: a
    folder source is its own root, a manifest's or Parquet file's folder is theirs)."""
    if not sources:
        msg = ("no corpus source given; pass folders, .parquet, .tar, "
               ".csv or .jsonl files")
        raise ConfigurationError(msg)
    fixed = real_root(root) if root is not None else None
    units: list[Unit] = []
    skipped: list[SkippedFile] = []
    ids = UniqueIds()  # over every folder and manifest row
    seen: set[str] = set()
    for raw in sources:
        p = Path(raw)
        if not p.exists():
            msg = f"corpus source not found: {p}"
            raise ConfigurationError(msg)
        real = os.path.realpath(p)
        if real in seen:
            msg = f"corpus source {p} is given twice"
            raise ConfigurationError(msg)
        seen.add(real)
        if p.is_dir():
            if fixed is not None and not inside(real, fixed):
                msg = f"folder {p} is outside the scan root {fixed}"
                raise ConfigurationError(msg)
            unit_root = fixed or real
            found = discover_images([p], root=unit_root, outside_hint=ROOT_HINT)
            skipped.extend(found.skipped)
            units.extend(_file_units(str(p), [f.path for f in found.files],
                                     [ids.take(str(f.path)) for f in found.files],
                                     [f.error for f in found.files], unit_root,
                                     files_per_unit))
        elif p.suffix.lower() == ".parquet":
            units.extend(_parquet_units(p, image_column, path_column, id_column,
                                        fixed or os.path.dirname(real)))
        elif p.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            units.append(Unit(kind="tar", source=str(p), max_bytes=max_bytes))
        elif p.suffix.lower() in _MANIFESTS:
            listed = manifest_rows(p, path_column or "path", id_column)
            units.extend(_file_units(
                str(p), [r.path for r in listed],
                [ids.take(r.ident or (r.path if not r.error else r.where)) for r in listed],
                [r.error for r in listed], fixed or os.path.dirname(real), files_per_unit))
        else:
            msg = (f"cannot tell what {p} is: pass a folder, a .parquet file, a WebDataset .tar "
                   "shard, or a .csv/.jsonl manifest with a 'path' column")
            raise ConfigurationError(msg)
    if not units:
        raise ConfigurationError(
            "no images found in " + ", ".join(str(s) for s in sources)
            + (f" ({len(skipped)} file(s) skipped, e.g. {display(str(skipped[0].path))}: "
               f"{skipped[0].reason})" if skipped else "")
        )
    return Corpus(tuple(units), tuple(skipped))


def read_unit(unit: Unit, *, skip: frozenset[str] = frozenset(),
              max_rows: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """Column batches ``{"id", "path", "image", "error"}`` of at most ``max_rows`` rows, rows
    whose id is in ``skip`` left out. ``path`` is "" for rows given as bytes, ``image`` is
    b"" for rows given as paths (the scorer reads those itself, with the guard's limits),
    ``error`` is "" unless the row is an error row (then the scorer reads nothing)."""
    rows: Iterable[Row]
    if unit.kind == "files":
        rows = _file_rows(unit)
    elif unit.kind == "parquet":
        rows = _parquet_rows(unit)
    else:
        rows = tar_rows(unit.source, max_bytes=unit.max_bytes)
    batch: list[Row] = []
    for row in rows:
        if row.id in skip:
            continue
        batch.append(row)
        if len(batch) >= max_rows:
            yield _columns(batch)
            batch = []
    if batch:
        yield _columns(batch)


# ---------------------------------------------------------------------- files
def _file_units(source: str, paths: Sequence[Path | str], ids: Sequence[str],
                errors: Sequence[str], root: str, per_unit: int) -> list[Unit]:
    out = []
    for start in range(0, len(paths), per_unit):
        chunk = tuple(str(p) for p in paths[start:start + per_unit])
        bad = tuple(errors[start:start + per_unit])
        out.append(Unit(kind="files", source=source, paths=chunk,
                        ids=tuple(ids[start:start + per_unit]), rows=len(chunk),
                        errors=bad if any(bad) else (), root=root))
    return out


def _file_rows(unit: Unit) -> Iterator[Row]:
    """Rows of a ``files`` unit; each path is confined to the unit's root here, where it is
    read (on a Ray worker too), and the scorer reads the resolved real path."""
    errors = unit.errors or ("",) * len(unit.paths)
    for ident, path, error in zip(unit.ids, unit.paths, errors):
        if error:
            yield Row(ident, display(path), error=error)
            continue
        checked = confine(path, unit.root) if unit.root else None
        if checked is not None and checked.error:
            yield Row(ident, display(path), error=checked.error)
        else:
            yield Row(ident, checked.path if checked is not None else path)


def _columns(rows: list[Row]) -> dict[str, np.ndarray]:
    ids = np.empty(len(rows), dtype=object)
    paths = np.empty(len(rows), dtype=object)
    images = np.empty(len(rows), dtype=object)
    errors = np.empty(len(rows), dtype=object)
    for k, row in enumerate(rows):
        ids[k], paths[k], images[k] = row.id, row.path, row.data
        errors[k] = row.error  # "" rather than None: an all-None column reaches a Ray
        # worker as float NaN
    return {"id": ids, "path": paths, "image": images, "error": errors}


# ---------------------------------------------------------------------- parquet
def _parquet_units(path: Path, image_column: str | None, path_column: str | None,
                   id_column: str | None, root: str) -> list[Unit]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        msg = f"cannot read Parquet file {path}: {exc}"
        raise ConfigurationError(msg) from None
    schema = meta.schema_arrow
    names = schema.names
    image_col = path_col = ""
    if image_column:
        if image_column not in names:
            msg = (f"{path} has no column {image_column!r} "
                   f"(columns: {', '.join(names)})")
            raise ConfigurationError(msg)
        kind = schema.field(image_column).type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            image_col = image_column
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            path_col = image_column
        else:
            msg = (f"column {image_column!r} of {path} is {kind}; it must "
                   "hold encoded image bytes (binary) or paths (string)")
            raise ConfigurationError(msg)
    elif path_column:
        if path_column not in names:
            msg = f"{path} has no column {path_column!r}"
            raise ConfigurationError(msg)
        path_col = path_column
    else:
        binary = [f.name for f in schema
                  if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
        paths = [n for n in _PATH_COLUMNS if n in names]
        if binary:
            image_col = binary[0]
        elif paths:
            path_col = paths[0]
        else:
            msg = (f"{path} has no binary column of image bytes and no path column "
                   f"({', '.join(_PATH_COLUMNS)}); columns: {', '.join(names)}. "
                   "Name it with --image-column")
            raise ConfigurationError(msg)
    id_col = id_column or next((n for n in _ID_COLUMNS if n in names), "")
    if id_col and id_col not in names:
        msg = f"{path} has no id column {id_col!r}"
        raise ConfigurationError(msg)
    units, first = [], 0
    for g in range(meta.num_row_groups):
        rows = meta.metadata.row_group(g).num_rows
        units.append(Unit(kind="parquet", source=str(path), row_group=g, first_row=first,
                          image_column=image_col, path_column=path_col, id_column=id_col,
                          rows=rows, root=root if path_col else ""))
        first += rows
    return units


def _parquet_rows(unit: Unit) -> Iterator[Row]:
    """Rows of one row group; a row group that cannot be read is one error row, and a path
    cell is confined to the unit's root like a manifest path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [c for c in (unit.image_column, unit.path_column, unit.id_column) if c]
    try:
        table = pq.ParquetFile(unit.source).read_row_group(unit.row_group, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        yield Row(display(f"{unit.source}#row-group-{unit.row_group}"),
                  error=f"cannot read row group {unit.row_group} of {display(unit.source)}: "
                        f"{display(str(exc))}")
        return
    base = Path(unit.source).parent
    images = table.column(unit.image_column).to_pylist() if unit.image_column else None
    paths = table.column(unit.path_column).to_pylist() if unit.path_column else None
    ids = table.column(unit.id_column).to_pylist() if unit.id_column else None
    unique = UniqueIds()
    for k in range(table.num_rows):
        ident = "" if ids is None or ids[k] is None else str(ids[k])
        fallback = f"{unit.source}#{unit.first_row + k}"
        if paths is None:
            data = images[k] if images is not None else None
            yield Row(unique.take(ident or fallback), data=bytes(data or b""))
            continue
        raw = str(paths[k] or "")
        p = "" if not raw else str(raw if Path(raw).is_absolute() else base / raw)
        row_id = unique.take(ident or p or fallback)
        checked = confine(p, unit.root) if p and unit.root else None
        if checked is not None and checked.error:
            yield Row(row_id, display(p), error=checked.error)
        else:
            yield Row(row_id, checked.path if checked is not None else p)
