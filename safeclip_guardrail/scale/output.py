"""The scan's output folder: Parquet part files, a sidecar describing the guard, resuming.

Every engine writes the same table (:func:`to_table` fixes the Arrow schema, so a class
that nobody flagged is still a ``string`` column and not Arrow's ``null`` type), into files
named ``part-<run>-...parquet``. ``_safeclip_scan.json`` records the guard that produced
them; ``--resume`` refuses to mix verdicts of another model, bank or threshold into the
same table, reads the ids already written and skips them. A file left half-written by a
crash cannot be read: it is renamed ``*.parquet.corrupt`` and its rows are scanned again,
so a resumed scan neither loses nor duplicates rows.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.scale.scorer import score_column

if TYPE_CHECKING:
    import pyarrow as pa

    from safeclip_guardrail.config import GuardConfig

__all__ = ["SIDECAR", "Counts", "ScanOutput", "output_schema", "to_table"]

SIDECAR = "_safeclip_scan.json"
_FORMAT = 1
# the options whose change would make old and new rows disagree
_DECISIVE = ("model", "bank_fingerprint", "threshold", "thresholds", "cls_source", "decision",
             "on_error", "frames", "embeddings")


def output_schema(class_names: tuple[str, ...], *, embed_dim: int | None) -> pa.Schema:
    """The Arrow schema of a scan table (``embed_dim`` None: no embedding columns)."""
    import pyarrow as pa

    fields = [
        pa.field("id", pa.string()), pa.field("path", pa.string()),
        pa.field("image_sha256", pa.string()), pa.field("flagged", pa.bool_()),
        pa.field("category", pa.string()), pa.field("top_category", pa.string()),
        pa.field("toxic_score", pa.float64()), pa.field("threshold", pa.float64()),
        *[pa.field(score_column(c), pa.float64()) for c in class_names],
        pa.field("error", pa.string()),
    ]
    if embed_dim is not None:
        vec = pa.list_(pa.float32(), embed_dim)
        fields += [pa.field("embedding_final", vec), pa.field("embedding_penultimate", vec)]
    return pa.schema(fields)


def to_table(columns: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """A scorer's numpy columns as an Arrow table of ``schema`` (NaN scores and embeddings
    of error rows become nulls)."""
    import pyarrow as pa

    arrays = []
    for f in schema:
        col = columns[f.name]
        if pa.types.is_fixed_size_list(f.type):
            flat = np.ascontiguousarray(col, np.float32)
            values = pa.array(flat.reshape(-1), pa.float32())
            missing = np.isnan(flat).all(axis=1) if flat.size else np.zeros(len(flat), bool)
            arrays.append(pa.FixedSizeListArray.from_arrays(
                values, f.type.list_size, mask=pa.array(missing)))
        elif pa.types.is_floating(f.type):
            arr = np.asarray(col, np.float64)
            arrays.append(pa.array(arr, f.type, mask=np.isnan(arr)))
        else:
            arrays.append(pa.array(col.tolist(), f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True)
class Counts:
    """Rows, flags and errors in a set of part files."""

    rows: int
    flagged: int
    errors: int
    flagged_by_class: dict[str, int]


class ScanOutput:
    """An output folder of one scan (possibly written by several resumed runs)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.run_id = uuid.uuid4().hex[:8]
        """Prefix of the files this run writes."""
        self._seq = 0

    @staticmethod
    def describe(config: GuardConfig, *, embeddings: bool) -> dict[str, Any]:
        """What the sidecar records about the guard behind a scan."""
        return {
            "format": _FORMAT, "model": config.model,
            "bank_fingerprint": config.bank.fingerprint, "classes": list(config.bank.class_names),
            "toxic_classes": list(config.bank.toxic_classes), "threshold": config.threshold,
            "thresholds": dict(config.thresholds), "cls_source": config.cls_source,
            "decision": config.decision, "on_error": config.on_error,
            "frames": config.images.frames, "embeddings": embeddings,
            "config": config.model_dump(mode="json"),
        }

    def prepare(self, meta: dict[str, Any], *, resume: bool) -> tuple[frozenset[str], list[str]]:
        """Check the folder and write the sidecar; return the ids already written (resume)
        and notes (e.g. corrupt files set aside)."""
        existing = self.part_files()
        if existing and not resume:
            msg = (f"output folder {self.folder} already holds a scan ({len(existing)} Parquet "
                   "file(s)); pass --resume to continue it, or choose an empty folder")
            raise ConfigurationError(msg)
        notes: list[str] = []
        sidecar = self.folder / SIDECAR
        if resume and sidecar.is_file():
            old = json.loads(sidecar.read_text(encoding="utf-8"))
            changed = [k for k in _DECISIVE if old.get(k) != meta.get(k)]
            if changed:
                what = ", ".join(f"{k} {old.get(k)!r} -> {meta.get(k)!r}" for k in changed)
                msg = (f"cannot resume the scan in {self.folder} with other guard options ({what}); "
                       "use the options of the first run, or scan into a new folder")
                raise ConfigurationError(msg)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".part-*.tmp"):  # a local write cut short
            stale.unlink()
        done: set[str] = set()
        for f in existing:
            try:
                ids = _read_ids(f)
            except Exception as exc:  # a file cut short by a crash: redo its rows
                f.rename(f.with_name(f.name + ".corrupt"))
                notes.append(f"{f.name} could not be read ({type(exc).__name__}); set aside as "
                             f"{f.name}.corrupt and its rows scanned again")
                continue
            done.update(ids)
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        os.replace(tmp, sidecar)
        return frozenset(done), notes

    def part_files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(f for f in self.folder.glob("*.parquet") if f.is_file())

    def run_files(self) -> list[Path]:
        """The files this run wrote."""
        return [f for f in self.part_files() if f.name.startswith(f"part-{self.run_id}-")]

    def write(self, table: pa.Table) -> Path:
        """Write one part file atomically (a reader never sees half a file)."""
        import pyarrow.parquet as pq

        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        self._seq += 1
        final = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        return final

    @staticmethod
    def count(files: list[Path]) -> Counts:
        import pyarrow.parquet as pq

        rows = flagged = errors = 0
        by_class: Counter[str] = Counter()
        for f in files:
            t = pq.read_table(f, columns=["flagged", "category", "error"])
            flags = t.column("flagged").to_pylist()
            cats = t.column("category").to_pylist()
            errs = t.column("error").to_pylist()
            rows += t.num_rows
            errors += sum(e is not None for e in errs)
            for fl, cat, err in zip(flags, cats, errs):
                if fl and err is None:
                    flagged += 1
                    by_class[str(cat)] += 1
        return Counts(rows, flagged, errors, dict(sorted(by_class.items())))


def _read_ids(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [str(x) for x in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
