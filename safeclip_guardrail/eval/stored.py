"""Embeddings stored by a corpus scan, read back for evaluation and calibration.

``safeclip scan-corpus DATA --out SCAN --embeddings`` keeps both CLS-source embeddings of
every image. Re-evaluating a new threshold, per-class thresholds or a new concept bank then
needs no image-encoder pass at all (a new bank costs one text-tower pass):
:func:`load_scan_embeddings` matches the dataset's files to the scan's rows by path and
returns the same :class:`EmbeddedDataset` that :func:`embed_dataset` would have computed,
so ``report_from_embeddings`` and ``calibrate`` give the report they give on the images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.errors import ConfigurationError, require
from safeclip_guardrail.eval.datasets import EvalDataset, Sample, UnreadableFile
from safeclip_guardrail.eval.embed import EmbeddedDataset

if TYPE_CHECKING:
    from safeclip_guardrail.config import GuardConfig
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["check_scan", "load_scan_embeddings"]

_SIDECAR = "_safeclip_scan.json"  # written by safeclip_guardrail.scale (not imported: no pyarrow)
_COLUMNS = ["id", "path", "image_sha256", "error", "embedding_final", "embedding_penultimate"]


def load_scan_embeddings(scan: str | Path, dataset: EvalDataset,
                         guard: SafeCLIPGuard) -> EmbeddedDataset:
    """The dataset's embeddings as stored in ``scan`` (a scan's output folder or one of its
    Parquet files), in the dataset's order; the scan's error rows become ``unreadable``.

    Raises :class:`ConfigurationError` when the scan has no embeddings, was made with
    another model, or lacks some of the dataset's files.
    """
    import pyarrow.parquet as pq

    files = check_scan(scan, guard.config)
    root = Path(scan)
    try:
        table = pq.read_table(files, columns=_COLUMNS)
    except Exception as exc:  # pyarrow raises several types for a missing column / bad file
        msg = (f"cannot read embeddings from {root} ({type(exc).__name__}: {exc}); the scan must "
               "be written by 'safeclip scan-corpus --embeddings'")
        raise ConfigurationError(msg) from None
    rows = _index(table)
    dim = int(guard.encoder.embed_dim)
    width = table.schema.field("embedding_final").type.list_size
    if width != dim:
        msg = (f"the embeddings in {root} have {width} dimensions, the model "
               f"{guard.model_name} has {dim}; use the scan's model")
        raise ConfigurationError(msg)
    final = _vectors(table.column("embedding_final"), dim)
    pen = _vectors(table.column("embedding_penultimate"), dim)
    errors = table.column("error").to_pylist()
    hashes = table.column("image_sha256").to_pylist()
    samples: list[Sample] = []
    found: list[int] = []
    unreadable: list[UnreadableFile] = list(dataset.unreadable)  # found, never read
    missing: list[str] = []
    for sample in dataset.samples:
        k = rows.get(_key(sample.path))
        if k is None:
            missing.append(str(sample.path))
        elif errors[k] is not None:
            unreadable.append(UnreadableFile(path=str(sample.path), label=sample.label,
                                             error=str(errors[k])))
        else:
            samples.append(sample)
            found.append(k)
    if missing:
        msg = (f"{len(missing)} of {len(dataset)} images of {dataset.source} are not in the scan "
               f"{root} (e.g. {missing[0]}); scan them first: safeclip scan-corpus "
               f"{dataset.source} --out {root} --embeddings --resume")
        raise ConfigurationError(msg)
    idx = np.asarray(found, np.int64)
    pen_rows = pen[idx]
    embeddings = ImageEmbeddings(final=final[idx],
                                 penultimate=None if np.isnan(pen_rows).any() else pen_rows)
    return EmbeddedDataset(tuple(samples), embeddings, tuple(str(hashes[k]) for k in found),
                           tuple(unreadable))


def check_scan(scan: str | Path, config: GuardConfig) -> list[Path]:
    """The scan's Parquet files, after checking (before any model is loaded) that the scan
    has embeddings and comes from ``config.model``."""
    require("pyarrow", package="pyarrow", extra="parquet",
            feature="--from-embeddings (reads Parquet)")
    root = Path(scan)
    files = sorted(root.glob("*.parquet")) if root.is_dir() else [root]
    if not root.exists() or not files:
        msg = (f"no scan found at {root}: pass the --out folder of "
               "'safeclip scan-corpus ... --embeddings'")
        raise ConfigurationError(msg)
    folder = root if root.is_dir() else root.parent
    sidecar = folder / _SIDECAR
    if not sidecar.is_file():
        return files  # a bare Parquet file: only the dimension check applies
    meta: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
    if not meta.get("embeddings"):
        msg = (f"the scan in {folder} has no embeddings; rerun it with "
               "'safeclip scan-corpus ... --embeddings' into a new folder")
        raise ConfigurationError(msg)
    if meta.get("model") != config.model:
        msg = (f"the embeddings in {folder} come from the model {meta.get('model')!r}, this guard "
               f"uses {config.model!r}; pass --model {meta.get('model')}")
        raise ConfigurationError(msg)
    return files


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


def _index(table: Any) -> dict[str, int]:
    """Row of each image, by resolved path (the ``path`` column, else the ``id``)."""
    out: dict[str, int] = {}
    for k, (ident, path) in enumerate(zip(table.column("id").to_pylist(),
                                          table.column("path").to_pylist())):
        out[_key(path or ident)] = k
    return out


def _vectors(column: Any, dim: int) -> np.ndarray:
    """(n, dim) float32 from a fixed-size-list column; null rows (error rows) are NaN."""
    arr = column.combine_chunks()
    n = len(arr)
    values = arr.values.slice(arr.offset * dim, n * dim).to_numpy(zero_copy_only=False)
    out = np.asarray(values, np.float32).reshape(n, dim).copy()
    if arr.null_count:
        out[np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)] = np.nan
    return out
