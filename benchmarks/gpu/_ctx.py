"""What every section shares: the device, the sizes (real or ``--smoke``), timing helpers."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Ctx:
    device: str
    """``cuda`` or ``cpu`` (``--smoke --device cpu`` checks the script here, in seconds)."""
    smoke: bool
    quick: bool
    workdir: Path
    model_name: str
    """``vit-l-14-336`` (LLaVA-1.5 / NeXT's tower), or ``tiny`` with ``--smoke``."""
    model_dir: Path | None = None
    """Set by the ``build_model`` section."""
    cache_root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="safeclip_gpu_")))
    """Descriptor-embedding cache (keyed on the text tower's content): one text pass."""
    _guards: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def iters(self) -> int:
        """Timed repetitions of a step: few in a smoke run, more on the GPU."""
        return 2 if self.smoke else 8 if self.quick else 20

    def pick(self, real: Any, smoke: Any) -> Any:
        return smoke if self.smoke else real

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any]) -> float:
        """Seconds of ``fn`` with the GPU's queue drained before and after."""
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0

    def median_ms(self, fn: Callable[[], Any], repeats: int, *, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        return round(statistics.median(self.timed(fn) for _ in range(max(1, repeats))) * 1000, 3)

    def guard(self, dtype: str | None, batch: int = 32) -> Any:
        """A guard on the suite's CLIP, loaded the user's way once per dtype (``None``: the
        library's default for the device), verdict cache off; ``batch`` via ``with_options``
        (same encoder). A section that switches CUDA graphs on switches them off again."""
        from safeclip_guardrail import SafeCLIPGuard

        if self.model_dir is None:
            raise RuntimeError("the model was not built (see the build_model section)")
        key = dtype or ("float16" if self.cuda else "float32")
        if key not in self._guards:
            self._guards[key] = SafeCLIPGuard.from_pretrained(
                str(self.model_dir), device=self.device, dtype=key, batch_size=32,
                cache_size=0, cache_dir=self.cache_root)
        return self._guards[key].with_options(batch_size=batch)

    def drop_guard(self, dtype: str) -> None:
        self._guards.pop(dtype, None)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """Picture sizes: as given on the GPU, a quarter in a smoke run (same aspect)."""
        return (width // 4, height // 4) if self.smoke else (width, height)

    def pixels(self, enc: Any, n: int) -> Any:
        """``n`` random encoder inputs already on the device, in the encoder's dtype."""
        import torch

        size = enc.preprocess.crop
        g = torch.Generator(device=self.device).manual_seed(0)
        return torch.randn((n, 3, size, size), generator=g, device=self.device).to(enc.dtype)


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of per-round time ratios: each pair ran back to back, so a burst of load from
    elsewhere skews one pair, not the figure."""
    return round(float(np.median([a / b for a, b in zip(num, den)])), 3)


def alternate(ways: Mapping[str, Callable[..., Any]], rounds: int,
              timed: Callable[[Callable[[], Any]], float]) -> dict[str, list[float]]:
    """Time every way once per round, the order reversed every other round."""
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(rounds):
        for k in (list(ways) if r % 2 == 0 else list(reversed(ways))):
            times[k].append(timed(ways[k]))
    return times
