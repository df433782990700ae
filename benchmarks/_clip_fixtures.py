"""Shared pieces of the benchmarks: real-architecture CLIPs with random weights, test photos.

Random weights of the real architecture give honest timings (the FLOPs and memory traffic
are those of the real model) and say nothing about detection quality. Everything is built
offline and loaded through ``SafeCLIPGuard.from_pretrained(<dir>)``, the user's path.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARCHS: dict[str, dict[str, Any]] = {
    # openai/clip-vit-base-patch32
    "vit-b-32": {
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
        "text": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8},
        "projection_dim": 512,
    },
    # openai/clip-vit-large-patch14-336 (LLaVA-1.5 / LLaVA-NeXT's tower)
    "vit-l-14-336": {
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                   "num_attention_heads": 16, "image_size": 336, "patch_size": 14},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                 "num_attention_heads": 12},
        "projection_dim": 768,
    },
}
"""Real sizes of the CLIP checkpoints the guard is used with; ``tiny`` is the test model."""


def build_model(name: str, workdir: Path) -> Path:
    """A checkpoint directory for ``name`` (built once per ``workdir``, then reused)."""
    out = workdir / name
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    if name == "tiny":
        from safeclip_guardrail.testing import build_tiny_clip

        return build_tiny_clip(out)
    if name not in ARCHS:
        raise SystemExit(f"unknown --model {name!r}; choose from {', '.join([*ARCHS, 'tiny'])}")
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from safeclip_guardrail.testing._clip import _tiny_tokenizer

    arch = ARCHS[name]
    tokenizer = _tiny_tokenizer()  # real CLIP BPE, truncated vocabulary: ids fit the model
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bos = tokenizer.convert_tokens_to_ids("<|startoftext|>")
    config = CLIPConfig(
        vision_config={**arch["vision"], "hidden_act": "quick_gelu"},
        text_config={**arch["text"], "hidden_act": "quick_gelu", "vocab_size": 49408,
                     "max_position_embeddings": 77, "eos_token_id": eos, "bos_token_id": bos,
                     "pad_token_id": eos},
        projection_dim=arch["projection_dim"],
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(100.0)))
    tmp = workdir / f".{name}.partial"
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    size = int(arch["vision"]["image_size"])
    CLIPImageProcessorPil(size={"shortest_edge": size},
                          crop_size={"height": size, "width": size}).save_pretrained(tmp)
    tmp.rename(out)
    return out


def photo_jpegs(n: int, *, width: int = 640, height: int = 480, seed: int = 0,
                quality: int = 90) -> list[bytes]:
    """``n`` photo-like JPEGs: smooth gradients, shapes, mild sensor noise (~60-90 KB each)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        base = c0 * (1 - t[..., None]) + c1 * t[..., None]
        img = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
            w, h = rng.uniform(20, width / 2), rng.uniform(20, height / 2)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            box = (x0, y0, x0 + w, y0 + h)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        img = img.filter(ImageFilter.GaussianBlur(1.5))
        arr = np.asarray(img, np.float32) + rng.normal(0, 6, (height, width, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summary(times_s: list[float], images_per_call: int) -> dict[str, float]:
    """p50 / p95 per call (ms) and images/s over all calls."""
    ms = sorted(t * 1000 for t in times_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * (len(ms) - 1))))]
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(p95, 3),
            "images_per_s": round(images_per_call * len(ms) / (sum(ms) / 1000), 2)}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says; torch-free."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synthetic_pdf(pages: int) -> bytes:
    """An A4 PDF of ``pages`` pages, one 400x300 noise picture on each (needs pypdfium2)."""
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument.new()
    rng = np.random.default_rng(0)
    for _ in range(pages):
        page = pdf.new_page(595, 842)  # A4 in points
        obj = pdfium.PdfImage.new(pdf)
        pic = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
        obj.set_bitmap(pdfium.PdfBitmap.from_pil(pic))
        obj.set_matrix(pdfium.PdfMatrix().scale(400, 300).translate(90, 400))
        page.insert_obj(obj)
        page.gen_content()
    buf = io.BytesIO()
    pdf.save(buf)
    return buf.getvalue()


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model and cores (and the GPU, when one was used)."""
    import torch

    cpu = cpu_model()
    from safeclip_guardrail.encoders._cpu import available_cores, cpu_has_native_bf16

    info: dict[str, Any] = {
        "cpu": cpu, "cores": available_cores(), "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2), flush=True)
