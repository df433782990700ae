"""Every fast path agrees with the float32 reference path, on tiny real CLIPs.

Agreement means: embedding cosine >= 0.999, and identical verdicts for every image whose
reference decision is not within ``margin`` of a boundary (its class mass vs the threshold,
and the top class vs the runner-up). The margin is 0.01 for paths that change only the
arithmetic order or the resampler implementation, and 0.05 for bf16 (its 8-bit mantissa)
and JPEG draft decoding (DCT-domain downscaling), which move class masses by a few
hundredths after CLIP's x100 logit scale on these tiny, very peaky models; that is why
both are opt-in.
GPU-only checks run where CUDA is present and are skipped elsewhere.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from safeclip_guardrail import (
    ConfigurationError,
    ImageInputError,
    ImageOptions,
    ImageVerdict,
    SafeCLIPGuard,
)
from safeclip_guardrail.encoders import _cpu
from safeclip_guardrail.encoders._cuda_graphs import CudaGraphRunner, bucket_for
from safeclip_guardrail.encoders._torch import resolve_dtype
from safeclip_guardrail.images.decode import decode_image


def _photo(seed: int, w: int = 160, h: int = 120) -> bytes:
    """A small photo-like JPEG: gradient, a few shapes, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    arr = rng.uniform(0, 255, 3) * (1 - t[..., None]) + rng.uniform(0, 255, 3) * t[..., None]
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        arr[y0:y0 + int(rng.integers(10, h // 2)), x0:x0 + int(rng.integers(10, w // 2))] = (
            rng.uniform(0, 255, 3))
    arr = np.clip(arr + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


PHOTOS = [_photo(s) for s in range(24)]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def _margin(v: ImageVerdict) -> float:
    """Distance of a reference decision from its boundaries (threshold, runner-up class)."""
    masses = sorted(v.scores.values(), reverse=True)
    assert v.threshold is not None
    return min(abs(masses[0] - v.threshold), masses[0] - masses[1])


def _assert_same_verdicts(ref: Sequence[ImageVerdict], fast: Sequence[ImageVerdict],
                          margin: float) -> int:
    compared = 0
    for r, f in zip(ref, fast, strict=True):
        if _margin(r) <= margin:
            continue
        compared += 1
        assert (f.flagged, f.category, f.top_category) == (r.flagged, r.category, r.top_category)
    return compared


def _guard(model_dir: Path, **kw: Any) -> SafeCLIPGuard:
    kw.setdefault("dtype", "float32")
    return SafeCLIPGuard.from_pretrained(str(model_dir), device="cpu", cache_size=0, **kw)


@pytest.fixture(params=["transformers", "open_clip"])
def model_dir(request: pytest.FixtureRequest, tiny_clip_dir: Path,
              tiny_open_clip_dir: Path) -> Path:
    return tiny_clip_dir if request.param == "transformers" else tiny_open_clip_dir


# ---------------------------------------------------------------------- CPU: bf16
def test_bf16_agrees_with_fp32_reference(model_dir: Path) -> None:
    ref, fast = _guard(model_dir), _guard(model_dir, dtype="bfloat16")
    assert str(fast.encoder.dtype) == "torch.bfloat16"  # type: ignore[attr-defined]
    a, b = ref.embed_images_all(PHOTOS), fast.embed_images_all(PHOTOS)
    assert _cos(a.final, b.final).min() >= 0.999
    assert a.penultimate is not None and b.penultimate is not None
    assert _cos(a.penultimate, b.penultimate).min() >= 0.999
    assert _cos(ref.text_embeddings, fast.text_embeddings).min() >= 0.999
    # bf16 moves a class mass of the tiny random model by up to ~0.1 (0.69 -> 0.80 on these
    # photos' padded whole-picture views): compare the decisions farther than that from a boundary
    compared = _assert_same_verdicts(ref.check_batch(PHOTOS), fast.check_batch(PHOTOS), 0.12)
    assert compared >= len(PHOTOS) // 2  # the comparison is not vacuous


def test_cpu_default_dtype_stays_float32() -> None:
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_native_bf16_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = "processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n"
    assert {"amx_bf16", "avx512f"} <= _cpu._cpuinfo_flags(flags)
    assert _cpu._cpuinfo_flags("no flags here") == set()
    for value, expected in [("0", False), ("1", True)]:
        monkeypatch.setenv("SAFECLIP_CPU_BF16", value)
        _cpu.cpu_has_native_bf16.cache_clear()
        assert _cpu.cpu_has_native_bf16() is expected
    _cpu.cpu_has_native_bf16.cache_clear()


def test_threads_never_exceed_available_cores(tiny_clip_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(_cpu.available_cores() + 3)
        _guard(tiny_clip_dir).check(PHOTOS[0])
        assert torch.get_num_threads() <= _cpu.available_cores()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- CPU: overlap
def test_pipelined_chunks_equal_one_by_one(model_dir: Path) -> None:
    piped = _guard(model_dir, batch_size=3)
    enc = piped.encoder
    threads: set[str] = set()
    real_prepare = enc.prepare  # type: ignore[attr-defined]

    def spy(images: Sequence[Image.Image]) -> torch.Tensor:
        threads.add(threading.current_thread().name)
        return real_prepare(images)  # type: ignore[no-any-return]

    enc.prepare = spy  # type: ignore[attr-defined]
    got = piped.embed_images_all(PHOTOS[:8])
    assert enc.forward_counter.count == 3  # type: ignore[attr-defined]  # 3 + 3 + 2
    assert any(name.startswith("safeclip-preprocess") for name in threads)
    single = _guard(model_dir)
    one_by_one = [single.embed_images_all([p]) for p in PHOTOS[:8]]
    np.testing.assert_allclose(got.final, np.concatenate([e.final for e in one_by_one]),
                               atol=1e-5)


def test_next_chunk_is_prepared_while_the_tower_runs(tiny_clip_dir: Path) -> None:
    guard = _guard(tiny_clip_dir, batch_size=2)
    enc: Any = guard.encoder
    second_ready = threading.Event()
    prepared: list[int] = []
    real_prepare, real_forward = enc.prepare, enc._vision_forward

    def prepare(images: Sequence[Image.Image]) -> torch.Tensor:
        out = real_prepare(images)
        prepared.append(len(images))
        if len(prepared) == 2:
            second_ready.set()
        return out  # type: ignore[no-any-return]

    waited: list[bool] = []

    def forward(pixels: torch.Tensor) -> Any:
        if not waited:  # the first forward holds the encoder lock until chunk 2 is ready
            waited.append(second_ready.wait(timeout=30))
        return real_forward(pixels)

    enc.prepare, enc._vision_forward = prepare, forward
    guard.embed_images_all(PHOTOS[:4])
    assert waited == [True] and prepared == [2, 2]


def test_parallel_resize_equals_sequential(tiny_clip_dir: Path) -> None:
    enc = _guard(tiny_clip_dir).encoder
    frames = [decode_image(p).image for p in PHOTOS[:6]]
    parallel = enc.prepare(frames)  # type: ignore[attr-defined]
    sequential = enc.preprocess(frames)  # type: ignore[attr-defined]
    assert torch.equal(parallel, sequential)


# ---------------------------------------------------------------------- CPU: JPEG draft
def test_draft_decode_agrees_with_full_decode(model_dir: Path) -> None:
    guard = _guard(model_dir)
    size = guard.encoder.preprocess.size  # type: ignore[attr-defined]
    full = [decode_image(p) for p in PHOTOS]
    draft = [decode_image(p, draft_size=size) for p in PHOTOS]
    assert draft[0].image.size == (80, 60)  # 160x120 decoded at half scale (>= 32 each side)
    assert [d.sha256 for d in draft] == [d.sha256 for d in full]
    a = guard.encoder.encode_images([d.image for d in full]).final
    b = guard.encoder.encode_images([d.image for d in draft]).final
    assert _cos(a, b).min() >= 0.999
    compared = _assert_same_verdicts(guard.score_embeddings(a), guard.score_embeddings(b), 0.05)
    assert compared >= len(PHOTOS) // 2


def test_draft_decode_keeps_every_limit_and_error() -> None:
    photo = _photo(1, 640, 480)
    assert decode_image(photo).image.size == (640, 480)  # default: full size
    assert decode_image(photo, draft_size=224).image.size == (320, 240)
    assert decode_image(photo, draft_size=1000).image.size == (640, 480)
    with pytest.raises(ImageInputError, match="over the limit"):
        decode_image(photo, ImageOptions(max_pixels=1000), draft_size=32)
    with pytest.raises(ImageInputError):
        decode_image(photo[: len(photo) // 3], draft_size=32)
    png = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(png, "PNG")
    assert decode_image(png.getvalue(), draft_size=32).image.size == (640, 480)  # JPEG only


# ---------------------------------------------------------------------- GPU logic on CPU
def test_device_preprocessing_agrees_with_pil(model_dir: Path) -> None:
    guard = _guard(model_dir)
    enc = guard.encoder
    frames = [decode_image(p).image for p in PHOTOS]
    pil = enc.preprocess(frames)  # type: ignore[attr-defined]
    dev = enc.preprocess.on_device(frames, "cpu")  # type: ignore[attr-defined]
    assert dev.shape == pil.shape and dev.dtype == torch.float32
    assert float((dev - pil).abs().mean()) < 0.01
    a = enc.encode_pixels(pil).final  # type: ignore[attr-defined]
    b = enc.encode_pixels(dev).final  # type: ignore[attr-defined]
    assert _cos(a, b).min() >= 0.999
    compared = _assert_same_verdicts(guard.score_embeddings(a), guard.score_embeddings(b), 0.01)
    assert compared >= len(PHOTOS) // 2


def test_bucket_choice() -> None:
    assert [bucket_for(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, None]
    assert bucket_for(3, (8, 4)) == 4
    with pytest.raises(ConfigurationError, match="at least one image"):
        bucket_for(0, (1,))
    with pytest.raises(ConfigurationError, match="positive batch sizes"):
        CudaGraphRunner(lambda x: (x, None), buckets=())


def test_cuda_graph_runner_is_eager_for_cpu_tensors(tiny_clip_dir: Path) -> None:
    guard = _guard(tiny_clip_dir)
    before = guard.embed_images(PHOTOS[:3])
    guard.encoder.enable_cuda_graphs()  # type: ignore[attr-defined]
    after = guard.embed_images(PHOTOS[:3])
    np.testing.assert_array_equal(before, after)
    assert guard.encoder.cuda_graphs.captured == []  # type: ignore[attr-defined]


class _FakeOOM:
    """Make the vision forward run out of memory above ``limit`` images."""

    def __init__(self, encoder: Any, limit: int) -> None:
        self.real, self.limit = encoder._vision_forward, limit
        self.sizes: list[int] = []
        encoder._vision_forward = self

    def __call__(self, pixels: torch.Tensor) -> Any:
        self.sizes.append(int(pixels.shape[0]))
        if pixels.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.real(pixels)


def test_out_of_memory_halves_the_batch(tiny_clip_dir: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    ref = _guard(tiny_clip_dir, batch_size=7).check_batch(PHOTOS[:7])
    guard = _guard(tiny_clip_dir, batch_size=7)
    fake = _FakeOOM(guard.encoder, limit=2)
    got = guard.check_batch(PHOTOS[:7])
    for g, r in zip(got, ref, strict=True):
        assert g.scores == pytest.approx(r.scores, abs=1e-5)
    assert fake.sizes[0] == 7 and max(s for s in fake.sizes if s <= 2) == 2
    assert guard.encoder.max_batch == 2  # type: ignore[attr-defined]  # remembered
    assert "retrying in batches" in caplog.text
    fake.sizes.clear()
    guard.check_batch(PHOTOS[7:12])
    assert fake.sizes == [2, 2, 1]  # later calls start at the remembered size


def test_out_of_memory_on_one_image_is_raised(tiny_clip_dir: Path) -> None:
    guard = _guard(tiny_clip_dir)
    _FakeOOM(guard.encoder, limit=0)
    with pytest.raises(torch.OutOfMemoryError):
        guard.check(PHOTOS[0])


# ---------------------------------------------------------------------- GPU (when present)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_gpu_half_precision_path_agrees_with_cpu_fp32(tiny_clip_dir: Path) -> None:
    ref = _guard(tiny_clip_dir)
    gpu = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cuda", cache_size=0)
    assert str(gpu.encoder.dtype) == "torch.float16"  # type: ignore[attr-defined]
    a, b = ref.embed_images_all(PHOTOS), gpu.embed_images_all(PHOTOS)
    assert _cos(a.final, b.final).min() >= 0.999
    _assert_same_verdicts(ref.check_batch(PHOTOS), gpu.check_batch(PHOTOS), 0.01)


@needs_cuda
def test_cuda_graphs_agree_with_eager(tiny_clip_dir: Path) -> None:
    gpu = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cuda", cache_size=0)
    eager = gpu.embed_images_all(PHOTOS[:5])
    gpu.encoder.enable_cuda_graphs(buckets=(1, 2, 8))  # type: ignore[attr-defined]
    graphed = np.concatenate([gpu.embed_images([p]) for p in PHOTOS[:5]])
    batched = gpu.embed_images_all(PHOTOS[:5])  # padded to the bucket of 8
    assert gpu.encoder.cuda_graphs.captured == [1, 8]  # type: ignore[attr-defined]
    assert _cos(eager.final, graphed).min() >= 0.999
    assert _cos(eager.final, batched.final).min() >= 0.999
