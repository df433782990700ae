"""Content fingerprints of the weights that decide descriptor embeddings (the cache key).

Descriptor embeddings depend on the text tower, the text projection, the tokenizer and the
dtype, and on nothing else (not the vision tower, not the logit scale, not where the files
lie). The key is therefore a SHA-256 over exactly those: every text-side tensor's name,
dtype, shape and bytes, plus the tokenizer's serialised vocabulary and rules.

Why a hash and not file metadata or a canary: path, sizes and mtimes do not change when
weights are swapped by ``tar``, ``rsync -a`` or a container layer, so such a key reused stale
embeddings for a different model. A canary text embedding checked at load would cost a
text-tower pass per start and still miss changes to tokens the canary does not use (a
swapped embedding row of one descriptor word). Hashing the tensors is exact and costs one
read of the text side in memory: SHA-256 runs at ~1.2 GB/s on an idle core with SHA-NI
(ViT-L/14-336's text side in fp32, 494 MB: ~0.4 s; measured 1.3 s on a heavily loaded 2-core
machine, 7 % of that warm start; see ``benchmarks/bench_cold_start.py``), far below a
text-tower pass over a bank, which a cache hit never runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["tensors_fingerprint"]


def _digest(item: tuple[str, torch.Tensor]) -> bytes:
    name, tensor = item
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    h = hashlib.sha256(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # hashlib releases the GIL
    return h.digest()


def tensors_fingerprint(tensors: Iterable[tuple[str, torch.Tensor]], *extra: str) -> str:
    """SHA-256 (hex) over named tensors (name, dtype, shape, bytes) in name order, and ``extra``.

    Each tensor is hashed on its own, in a few threads (hashlib releases the GIL on large
    buffers), and the per-tensor digests are hashed in name order: the result does not
    depend on the thread count.
    """
    items = sorted(tensors, key=lambda item: item[0])
    workers = max(1, min(4, os.cpu_count() or 1))
    if workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safeclip-hash") as pool:
            digests = list(pool.map(_digest, items))
    else:
        digests = [_digest(item) for item in items]
    h = hashlib.sha256()
    for digest in digests:
        h.update(digest)
    for part in extra:
        h.update(b"\x00")
        h.update(part.encode("utf-8"))
    return h.hexdigest()
