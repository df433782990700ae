"""Descriptor embeddings, computed once per (encoder weights, concept bank) and kept on disk.

A warm start therefore runs no text-tower pass. Files are plain ``.npy`` (read with
``allow_pickle=False``), written atomically; a cache that cannot be written is a warning,
not an error.
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
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == expected and np.isfinite(arr).all():
                return np.asarray(arr, np.float32)
            log.warning("ignoring descriptor cache %s with shape %s", path, arr.shape)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable descriptor cache %s: %s", path, exc)
    emb = l2_normalize(encoder.encode_texts(bank.descriptors))
    if path is not None:
        _write_atomic(path, emb)
    return emb


def _write_atomic(path: Path, arr: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write descriptor cache %s: %s", path, exc)
