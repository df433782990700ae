"""CPU fast path: native bf16 detection and intra-op thread settings.

On CPUs with AMX-BF16 or AVX512-BF16 (Sapphire Rapids and later Xeons, Zen 4+), oneDNN runs
bf16 matrix products natively and a CLIP vision tower whose weights are *cast* to bf16 runs
2-4x faster than in fp32 (autocast is much slower than casting: it converts the weights on
every call). Elsewhere bf16 is emulated and slower than fp32. bf16 is opt-in
(``dtype="bfloat16"``): embeddings agree with fp32 to a cosine >= 0.9999, but class masses
move by up to a few hundredths, so verdicts close to a threshold can differ
(docs/performance.md, tests/unit/encoders/test_fast_paths.py).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

__all__ = ["BF16_CPU_FLAGS", "available_cores", "configure_cpu_threads", "cpu_has_native_bf16"]

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags meaning native bf16 matrix arithmetic."""


def _cpuinfo_flags(text: str) -> set[str]:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return set(value.split())
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 matrix products natively (AMX-BF16 / AVX512-BF16).

    ``SAFECLIP_CPU_BF16=0`` / ``=1`` overrides the detection (e.g. to pin fp32 everywhere).
    """
    forced = os.environ.get("SAFECLIP_CPU_BF16", "").strip().lower()
    if forced in {"0", "false", "no", "off"}:
        return False
    if forced in {"1", "true", "yes", "on"}:
        return True
    try:
        flags = _cpuinfo_flags(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        flags = set()
    if flags:
        return bool(flags & set(BF16_CPU_FLAGS))
    # No /proc/cpuinfo (macOS, Windows): ask oneDNN, which knows the ISA it dispatches to.
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask / cgroup slice, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_cpu_threads() -> int:
    """Cap torch's intra-op threads at the cores this process may use; return the count.

    torch sizes its pool from the host's cores; inside a container limited to fewer cores
    the extra threads oversubscribe and the forward gets slower. An explicit user choice
    (``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads``) below that cap is kept.
    """
    cores = available_cores()
    if torch.get_num_threads() > cores and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cores)
    return torch.get_num_threads()
