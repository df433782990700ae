"""Descriptor embeddings, computed once per (encoder weights, concept bank) and kept on disk.

A warm start therefore runs no text-tower pass. The file name is a hash of the encoder's
``cache_key`` and the bank's fingerprint. The torch backends key on *content*: a SHA-256 of
the text tower, text projection and tokenizer as loaded (see
:mod:`safeclip_guardrail.encoders._fingerprint`), never on paths, sizes or mtimes, which
survive a weights swap by ``tar``, ``rsync -a`` or a container layer. A hash was chosen over
a canary text embedding because it is exact (a canary misses changes to tokens it does not
use) and cheaper on a warm start (one read of the text weights, no text-tower pass at all).

Files are plain ``.npy`` read with ``allow_pickle=False`` and validated before use: a float
array of exactly (descriptors, embedding dim), all finite. Anything else (structured or
integer dtype, wrong shape, truncated, not a ``.npy``) is logged and recomputed. Writes are
atomic; a cache that cannot be written is a warning, not an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.encoders.base import ImageTextEncoder, l2_normalize

__all__ = ["default_cache_dir", "text_embeddings"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SAFECLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/safeclip_guardrail``, else ``~/.cache/...``."""
    env = os.environ.get("SAFECLIP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "safeclip_guardrail"


def cache_path(encoder: ImageTextEncoder, bank: ConceptBank, cache_dir: Path) -> Path | None:
    if not encoder.cache_key:
        return None
    key = hashlib.sha256(f"{encoder.cache_key}|{bank.fingerprint}".encode()).hexdigest()[:40]
    return cache_dir / "text_embeddings" / f"{key}.npy"


def text_embeddings(encoder: ImageTextEncoder, bank: ConceptBank, *,
                    cache_dir: str | Path | None = None, use_cache: bool = True) -> np.ndarray:
    """(m, d) normalised descriptor embeddings, from the cache when possible."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_path(encoder, bank, directory) if use_cache else None
    expected = (len(bank.descriptors), encoder.embed_dim)
    if path is not None and path.is_file():
        cached = _read_valid(path, expected)
        if cached is not None:
            return cached
    emb = l2_normalize(encoder.encode_texts(bank.descriptors))
    if path is not None:
        _write_atomic(path, emb)
    return emb


def _read_valid(path: Path, expected: tuple[int, int]) -> np.ndarray | None:
    """The cached (m, d) float32 matrix, or None (logged) when the file is not one.

    The ``.npy`` header (dtype, shape) is checked before any data is read, so a file that
    declares a huge or structured array costs nothing.
    """
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            version = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) \
                else fmt.read_array_header_2_0
            shape, _fortran, dtype = read_header(fh)
            if dtype.fields is not None or dtype.kind != "f" or dtype.hasobject:
                log.warning("ignoring descriptor cache %s with dtype %s (expected float)",
                            path, dtype)
                return None
            if tuple(shape) != expected:
                log.warning("ignoring descriptor cache %s with shape %s (expected %s)", path,
                            tuple(shape), expected)
                return None
            fh.seek(0)
            arr = fmt.read_array(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError, TypeError) as exc:
        log.warning("ignoring unreadable descriptor cache %s: %s", path, exc)
        return None
    arr = np.asarray(arr, np.float32)
    if arr.shape != expected or not np.isfinite(arr).all():
        log.warning("ignoring descriptor cache %s holding non-finite or misshapen data", path)
        return None
    return arr


def _write_atomic(path: Path, arr: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write descriptor cache %s: %s", path, exc)
