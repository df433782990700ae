"""Which machine, card, driver and libraries ran the suite: named next to every figure."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _version(dist: str) -> str | None:
    """The installed version (the first on ``sys.path``: a carried wheel in /tmp/site wins)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _run(cmd: list[str], timeout: float = 15.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    return done.stdout.strip() or done.stderr.strip() or None


def _gpu(torch: Any) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    info: dict[str, Any] = {
        "name": torch.cuda.get_device_name(0),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "l2_mb": round(getattr(props, "L2_cache_size", 0) / 2**20, 1) or None,
        "device_count": torch.cuda.device_count(),
    }
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                "power.limit", "--format=csv,noheader"])
    if smi:
        info["nvidia_smi"] = smi
        parts = [p.strip() for p in smi.splitlines()[0].split(",")]
        if len(parts) > 1:
            info["driver"] = parts[1]
    return info


def environment(out: dict[str, Any], *, device: str) -> None:
    """Fill ``out`` with the card, driver, CUDA, torch, transformers and the checkout."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from _clip_fixtures import machine

    out["device"] = device
    out["python"] = platform.python_version()
    out["torch"] = torch.__version__
    out["torch_cuda"] = torch.version.cuda
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    out["packages"] = {d: _version(d) for d in (
        "transformers", "tokenizers", "huggingface-hub", "safetensors", "pillow", "numpy",
        "pydantic", "langchain-core", "pypdfium2", "triton")}
    import transformers

    out["transformers_path"] = str(Path(transformers.__file__).parent)
    out["machine"] = machine()
    out["cuda_available"] = torch.cuda.is_available()
    if device == "cuda" and not out["cuda_available"]:
        try:
            torch.cuda.init()  # why not: the driver's own words
        except Exception as exc:
            out["cuda_error"] = f"{type(exc).__name__}: {exc}"
        out["nvidia_smi"] = _run(["nvidia-smi"])
    out["gpu"] = _gpu(torch) if device == "cuda" and out["cuda_available"] else None
    root = Path(__file__).resolve().parents[2]
    out["commit"] = _run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    out["kernel"] = platform.release()
