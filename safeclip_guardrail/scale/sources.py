"""Corpus sources: what ``scan-corpus`` reads, cut into units a worker can read on its own.

A source is

- a **folder**: every file under it (recursively, hidden files left out) whose first bytes
  are an image signature, or whose name ends in an image extension (so a broken ``.jpg``
  becomes an error row instead of vanishing); other files are skipped and counted;
- a **Parquet** file with a binary column (encoded images) or a path column;
- a **WebDataset** tar shard (``.tar``, ``.tar.gz``): samples grouped by key, the image
  member chosen by extension, else by content;
- a **manifest**: ``.csv`` with a header or ``.jsonl``, with a ``path`` column (relative
  paths resolve against the manifest's folder) and an optional ``id``.

Every row gets a stable ``id`` (the path, the id column, ``<parquet>#<row>`` or
``<shard>:<key>``) that the output keeps and ``--resume`` skips on. A :class:`Unit` is a
small picklable description (a list of paths, a Parquet row group, a tar shard);
:func:`read_unit` turns it into column batches ``{"id", "path", "image"}`` for the scorer.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from safeclip_guardrail.errors import ConfigurationError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Corpus",
    "Unit",
    "discover",
    "read_unit",
    "sniff_image",
]

IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif",
})
_PATH_COLUMNS = ("path", "image_path", "file_path", "filepath", "file", "filename")
_ID_COLUMNS = ("id", "key", "__key__")
_MANIFESTS = {".csv", ".jsonl", ".ndjson"}


def sniff_image(head: bytes) -> str | None:
    """The image format that ``head`` (a file's first 16+ bytes) starts like, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 14:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "heif"
    return None


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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Unit:
        data = json.loads(text)
        data["paths"] = tuple(data["paths"])
        data["ids"] = tuple(data["ids"])
        return cls(**data)


@dataclass(frozen=True)
class Corpus:
    """The units of every source, in order, and what discovery left out."""

    units: tuple[Unit, ...]
    skipped: tuple[str, ...] = field(default=())
    """Files in folders that are not images (by content and by name)."""

    @property
    def rows(self) -> int | None:
        """Total rows when every unit knows its size (None when a tar shard is involved)."""
        sizes = [u.rows for u in self.units]
        return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


def discover(sources: Sequence[str | Path], *, image_column: str | None = None,
             path_column: str | None = None, id_column: str | None = None,
             files_per_unit: int = 256) -> Corpus:
    """Cut ``sources`` into units; raises :class:`ConfigurationError` for a bad source."""
    if not sources:
        raise ConfigurationError("no corpus source given; pass folders, .parquet, .tar, "
                                 ".csv or .jsonl files")
    units: list[Unit] = []
    skipped: list[str] = []
    for raw in sources:
        p = Path(raw)
        if p.is_dir():
            files, left_out = _folder_images(p)
            skipped.extend(left_out)
            units.extend(_file_units(str(p), files, [str(f) for f in files], files_per_unit))
        elif not p.exists():
            raise ConfigurationError(f"corpus source not found: {p}")
        elif p.suffix.lower() == ".parquet":
            units.extend(_parquet_units(p, image_column, path_column, id_column))
        elif p.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
            units.append(Unit(kind="tar", source=str(p)))
        elif p.suffix.lower() in _MANIFESTS:
            paths, ids = _manifest_rows(p, path_column or "path", id_column)
            units.extend(_file_units(str(p), paths, ids, files_per_unit))
        else:
            raise ConfigurationError(
                f"cannot tell what {p} is: pass a folder, a .parquet file, a WebDataset .tar "
                "shard, or a .csv/.jsonl manifest with a 'path' column"
            )
    if not units:
        raise ConfigurationError(
            "no images found in " + ", ".join(str(s) for s in sources)
            + (f" ({len(skipped)} non-image file(s) skipped)" if skipped else "")
        )
    return Corpus(tuple(units), tuple(skipped))


def read_unit(unit: Unit, *, skip: frozenset[str] = frozenset(),
              max_rows: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """Column batches ``{"id", "path", "image"}`` of at most ``max_rows`` rows, rows whose
    id is in ``skip`` left out. ``path`` is "" for rows given as bytes, ``image`` is b""
    for rows given as paths (the scorer reads those itself, with the guard's limits)."""
    if unit.kind == "files":
        rows: Iterable[tuple[str, str, bytes]] = (
            (i, p, b"") for i, p in zip(unit.ids, unit.paths))
    elif unit.kind == "parquet":
        rows = _parquet_rows(unit)
    else:
        rows = _tar_rows(unit)
    batch: list[tuple[str, str, bytes]] = []
    for row in rows:
        if row[0] in skip:
            continue
        batch.append(row)
        if len(batch) >= max_rows:
            yield _columns(batch)
            batch = []
    if batch:
        yield _columns(batch)


# ---------------------------------------------------------------------- folders, manifests
def _folder_images(root: Path) -> tuple[list[Path], list[str]]:
    images: list[Path] = []
    skipped: list[str] = []
    for f in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in f.relative_to(root).parts) or not f.is_file():
            continue
        if f.suffix.lower() in IMAGE_EXTENSIONS or _sniff_file(f):
            images.append(f)
        else:
            skipped.append(str(f))
    return images, skipped


def _sniff_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return sniff_image(fh.read(16)) is not None
    except OSError:
        return True  # unreadable: keep it, so the scan reports it as an error row


def _file_units(source: str, paths: Sequence[Path | str], ids: Sequence[str],
                per_unit: int) -> list[Unit]:
    out = []
    for start in range(0, len(paths), per_unit):
        chunk = tuple(str(p) for p in paths[start:start + per_unit])
        out.append(Unit(kind="files", source=source, paths=chunk,
                        ids=tuple(ids[start:start + per_unit]), rows=len(chunk)))
    return out


def _manifest_rows(path: Path, path_column: str,
                   id_column: str | None) -> tuple[list[str], list[str]]:
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or path_column not in reader.fieldnames:
                raise ConfigurationError(
                    f"manifest {path} needs a header row with a {path_column!r} column "
                    f"(got {reader.fieldnames}); name another one with --path-column"
                )
            records: list[dict[str, Any]] = list(reader)
    else:
        records = []
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ConfigurationError(f"{path}, line {n}: expected an object with a "
                                         f"{path_column!r} field")
            records.append(obj)
    paths, ids = [], []
    for n, rec in enumerate(records, start=1):
        raw = str(rec.get(path_column) or "").strip()
        if not raw:
            raise ConfigurationError(f"{path}, row {n}: empty {path_column!r}")
        image = Path(raw)
        image = image if image.is_absolute() else path.parent / image
        paths.append(str(image))
        ident = str(rec.get(id_column or "id") or "").strip()
        ids.append(ident or str(image))
    if not paths:
        raise ConfigurationError(f"manifest {path} has no rows")
    return paths, ids


def _columns(rows: list[tuple[str, str, bytes]]) -> dict[str, np.ndarray]:
    ids = np.empty(len(rows), dtype=object)
    paths = np.empty(len(rows), dtype=object)
    images = np.empty(len(rows), dtype=object)
    for k, (i, p, b) in enumerate(rows):
        ids[k], paths[k], images[k] = i, p, b
    return {"id": ids, "path": paths, "image": images}


# ---------------------------------------------------------------------- parquet
def _parquet_units(path: Path, image_column: str | None, path_column: str | None,
                   id_column: str | None) -> list[Unit]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigurationError(f"cannot read Parquet file {path}: {exc}") from None
    schema = meta.schema_arrow
    names = schema.names
    image_col = path_col = ""
    if image_column:
        if image_column not in names:
            raise ConfigurationError(f"{path} has no column {image_column!r} "
                                     f"(columns: {', '.join(names)})")
        kind = schema.field(image_column).type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            image_col = image_column
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            path_col = image_column
        else:
            raise ConfigurationError(f"column {image_column!r} of {path} is {kind}; it must "
                                     "hold encoded image bytes (binary) or paths (string)")
    elif path_column:
        if path_column not in names:
            raise ConfigurationError(f"{path} has no column {path_column!r}")
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
            raise ConfigurationError(
                f"{path} has no binary column of image bytes and no path column "
                f"({', '.join(_PATH_COLUMNS)}); columns: {', '.join(names)}. "
                "Name it with --image-column"
            )
    id_col = id_column or next((n for n in _ID_COLUMNS if n in names), "")
    if id_col and id_col not in names:
        raise ConfigurationError(f"{path} has no id column {id_col!r}")
    units, first = [], 0
    for g in range(meta.num_row_groups):
        rows = meta.metadata.row_group(g).num_rows
        units.append(Unit(kind="parquet", source=str(path), row_group=g, first_row=first,
                          image_column=image_col, path_column=path_col, id_column=id_col,
                          rows=rows))
        first += rows
    return units


def _parquet_rows(unit: Unit) -> Iterator[tuple[str, str, bytes]]:
    import pyarrow.parquet as pq

    columns = [c for c in (unit.image_column, unit.path_column, unit.id_column) if c]
    table = pq.ParquetFile(unit.source).read_row_group(unit.row_group, columns=columns)
    base = Path(unit.source).parent
    images = table.column(unit.image_column).to_pylist() if unit.image_column else None
    paths = table.column(unit.path_column).to_pylist() if unit.path_column else None
    ids = table.column(unit.id_column).to_pylist() if unit.id_column else None
    for k in range(table.num_rows):
        ident = "" if ids is None or ids[k] is None else str(ids[k])
        if paths is not None:
            raw = str(paths[k] or "")
            p = "" if not raw else str(raw if Path(raw).is_absolute() else base / raw)
            yield ident or p or f"{unit.source}#{unit.first_row + k}", p, b""
        else:
            data = images[k] if images is not None else None
            yield ident or f"{unit.source}#{unit.first_row + k}", "", bytes(data or b"")


# ---------------------------------------------------------------------- webdataset
def _tar_rows(unit: Unit) -> Iterator[tuple[str, str, bytes]]:
    """Samples of a WebDataset shard: members sharing a key (the name up to the first dot
    of its last component) form a sample; the image is the member with an image extension,
    else the first whose bytes sniff as an image. A sample without an image is an error row
    (empty bytes), so a broken shard shows up in the output instead of shrinking it."""
    try:
        tar = tarfile.open(unit.source, mode="r:*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise ConfigurationError(f"cannot read tar shard {unit.source}: {exc}") from None
    with tar:
        current: str | None = None
        members: dict[str, bytes] = {}
        for info in tar:
            if not info.isfile():
                continue
            head, _, name = info.name.rpartition("/")
            stem, dot, ext = name.partition(".")
            key = f"{head}/{stem}" if head else stem
            if current is not None and key != current:
                yield _tar_sample(unit.source, current, members)
                members = {}
            current = key
            fh = tar.extractfile(info)
            members[f".{ext}" if dot else ""] = fh.read() if fh is not None else b""
        if current is not None:
            yield _tar_sample(unit.source, current, members)


def _tar_sample(shard: str, key: str, members: dict[str, bytes]) -> tuple[str, str, bytes]:
    ident = f"{shard}:{key}"
    for ext, data in members.items():
        if ext.lower().rsplit(".", 1)[-1] in {e[1:] for e in IMAGE_EXTENSIONS}:
            return ident, "", data
    for data in members.values():
        if sniff_image(data[:16]):
            return ident, "", data
    return ident, "", b""
