"""SafeCLIPGuard through its public API."""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import (
    ConceptBank,
    GuardConfig,
    ImageInputError,
    ImageOptions,
    ImageVerdict,
    SafeCLIPGuard,
)
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import encode, noise


def test_planted_toxic_images_flag_with_their_class(planted_guard: SafeCLIPGuard,
                                                    planted: PlantedEncoder) -> None:
    for cls in planted_guard.bank.toxic_classes:
        v = planted_guard.check(planted.plant(cls))
        assert v.flagged and v.category == cls and v.top_category == cls
        assert v.scores[cls] > 0.99 and v.threshold == 0.6
    benign = planted_guard.check(planted.plant("neutral"))
    assert not benign.flagged and benign.category is None and benign.top_category == "neutral"
    mixed = planted_guard.check(planted.plant({"knife": 0.55, "neutral": 0.45}))
    assert not mixed.flagged and mixed.top_category == "knife"  # 0.55 is below 0.6
    assert mixed.scores["knife"] == pytest.approx(0.55, abs=1e-4)


def test_benign_context_class_absorbs_mass() -> None:
    bank = ConceptBank.default().with_class("chef", ["a chef slicing vegetables"], kind="benign")
    planted = PlantedEncoder(bank)
    guard = SafeCLIPGuard(planted, config=GuardConfig(concepts=bank))
    v = guard.check(planted.plant({"chef": 0.5, "knife": 0.45, "neutral": 0.05}))
    assert not v.flagged and v.top_category == "chef"
    assert v.toxic_score == pytest.approx(0.45, abs=1e-3)


def test_every_input_form(planted_guard: SafeCLIPGuard, planted: PlantedEncoder,
                          tmp_path: Path) -> None:
    import base64

    data = planted.plant_bytes("gun")
    path = tmp_path / "gun.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    forms = [data, path, str(path), b64, f"data:image/png;base64,{b64}"]
    verdicts = planted_guard.check_batch(forms)
    assert all(v.flagged and v.category == "gun" for v in verdicts)
    assert len({v.image_sha256 for v in verdicts}) == 1


def test_check_batch_forward_count_and_equality(tiny_clip_dir: Path) -> None:
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32",
                                          batch_size=4, cache_size=0)
    calls = []
    guard.encoder.vision.register_forward_hook(lambda *a: calls.append(1))  # type: ignore[attr-defined]
    images = [encode(noise(30 + i, 30, seed=i)) for i in range(10)]
    batch = guard.check_batch(images)
    assert len(calls) == math.ceil(10 / 4)
    singles = [guard.check(img) for img in images]
    assert len(calls) == 3 + 10
    for a, b in zip(batch, singles):
        assert a.flagged == b.flagged and a.top_category == b.top_category
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_threads_give_serial_results(tiny_clip_dir: Path) -> None:
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32",
                                          cache_size=0)
    images = [encode(noise(32, 32, seed=i)) for i in range(16)]
    serial = [guard.check(img) for img in images]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(guard.check, images))
    for a, b in zip(serial, parallel):
        assert a.scores == pytest.approx(b.scores, abs=1e-6)
        assert a.image_sha256 == b.image_sha256


def test_cache_by_sha256(planted_guard: SafeCLIPGuard, planted: PlantedEncoder) -> None:
    data = planted.plant_bytes("blood")
    before = planted.forward_counter.count
    first = planted_guard.check(data)
    again = planted_guard.check_batch([data, data, data])
    assert planted.forward_counter.count == before + 1
    assert all(v == first.model_copy(update={"source": v.source}) for v in again)
    info = planted_guard.cache_info()
    assert info.hits == 3 and info.misses == 1 and info.size == 1


def test_cache_is_bounded(planted: PlantedEncoder) -> None:
    guard = SafeCLIPGuard(planted, config=GuardConfig(cache_size=2))
    for _ in range(5):
        guard.check(planted.plant_bytes("neutral"))
    assert guard.cache_info().size == 2


def test_duplicates_in_one_batch_are_encoded_once(planted_guard: SafeCLIPGuard,
                                                  planted: PlantedEncoder) -> None:
    a, b = planted.plant_bytes("gun"), planted.plant_bytes("neutral")
    verdicts = planted_guard.check_batch([a, b, a, b, a])
    assert [v.flagged for v in verdicts] == [True, False, True, False, True]
    assert planted.forward_counter.count == 1


@pytest.mark.parametrize("on_error", ["block", "allow", "raise"])
def test_on_error(planted: PlantedEncoder, on_error: str) -> None:
    guard = SafeCLIPGuard(planted, config=GuardConfig(on_error=on_error))  # type: ignore[arg-type]
    good = planted.plant_bytes("neutral")
    if on_error == "raise":
        with pytest.raises(ImageInputError, match="not in a format"):
            guard.check_batch([good, b"corrupt"])
        return
    ok, bad = guard.check_batch([good, b"corrupt"])
    assert ok.error is None and not ok.flagged
    assert bad.error and "not in a format" in bad.error
    if on_error == "block":
        assert bad.flagged and bad.category == "unreadable"
    else:
        assert not bad.flagged and bad.category is None


def test_animated_image_flags_on_any_checked_frame(planted: PlantedEncoder) -> None:
    frames = [noise(12, 12, seed=1), noise(12, 12, seed=2)]
    buf = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    from safeclip_guardrail.images.decode import decode_image

    decoded = decode_image(buf, ImageOptions(frames=2)).frames
    planted.register(decoded[0], planted.embedding_for("neutral"))
    planted.register(decoded[1], planted.embedding_for("porn"))
    first_only = SafeCLIPGuard(planted).check(buf)
    assert not first_only.flagged and first_only.frames_checked == 1
    both = SafeCLIPGuard(planted, config=GuardConfig(images=ImageOptions(frames=2))).check(buf)
    assert both.flagged and both.category == "porn" and both.frames_checked == 2


def test_async(planted_guard: SafeCLIPGuard, planted: PlantedEncoder) -> None:
    async def run() -> tuple[ImageVerdict, list[ImageVerdict]]:
        one = await planted_guard.acheck(planted.plant("gun"))
        many = await planted_guard.acheck_batch([planted.plant("neutral"), planted.plant("knife")])
        return one, many

    one, many = asyncio.run(run())
    assert one.category == "gun"
    assert [v.flagged for v in many] == [False, True]


def test_embed_then_score_equals_check(planted_guard: SafeCLIPGuard,
                                       planted: PlantedEncoder) -> None:
    imgs = [planted.plant("gun"), planted.plant("neutral")]
    emb = planted_guard.embed_images(imgs)
    assert emb.shape == (2, planted.embed_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    scored = planted_guard.score_embeddings(emb)
    checked = planted_guard.check_batch(imgs)
    assert [v.flagged for v in scored] == [v.flagged for v in checked]
    assert planted_guard.score_embeddings(emb[0])[0].category == "gun"
    with pytest.raises(ImageInputError):
        planted_guard.embed_images([b"corrupt"])


def test_second_construction_runs_no_text_tower(tiny_clip_dir: Path, text_calls: list[int],
                                                _isolated_cache: Path) -> None:
    calls = text_calls
    first = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    assert calls == [40]
    second = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    assert calls == [40]
    np.testing.assert_array_equal(first.text_embeddings, second.text_embeddings)
    assert list((_isolated_cache / "text_embeddings").glob("*.npy"))
    # a different bank is a different cache entry
    bank = ConceptBank.default().without("porn")
    SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32",
                                  concepts=bank)
    assert calls == [40, 35]
    # a corrupt cache file is ignored and rewritten, not trusted
    for f in (_isolated_cache / "text_embeddings").glob("*.npy"):
        f.write_bytes(b"garbage")
    SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    assert calls == [40, 35, 40]


def test_with_options_shares_encoder_and_embeddings(planted_guard: SafeCLIPGuard) -> None:
    planted = planted_guard.encoder
    calls = planted.text_calls  # type: ignore[attr-defined]
    other = planted_guard.with_options(threshold=0.9)
    assert other.encoder is planted
    assert planted.text_calls == calls  # type: ignore[attr-defined]
    np.testing.assert_array_equal(other.text_embeddings, planted_guard.text_embeddings)
    assert other.config.threshold == 0.9
    planted_guard.with_options(concepts=ConceptBank.default().without("porn"))
    assert planted.text_calls == calls + 1  # type: ignore[attr-defined]


def test_repr_and_config_file(tmp_path: Path, tiny_clip_dir: Path) -> None:
    cfg_path = GuardConfig(model=str(tiny_clip_dir), threshold=0.75, device="cpu").to_file(
        tmp_path / "guard.yaml")
    guard = SafeCLIPGuard.from_pretrained(config=cfg_path)
    assert guard.config.threshold == 0.75
    override = SafeCLIPGuard.from_pretrained(config=cfg_path, threshold=0.5)
    assert override.config.threshold == 0.5
    assert "SafeCLIPGuard(" in repr(guard)


def _whole(image: Image.Image) -> Image.Image:
    from safeclip_guardrail.images.views import picture_views

    return picture_views(image, input_size=32)[0]


def test_guard_decodes_big_jpegs_in_draft_mode_unless_disabled(tiny_clip_dir: Path) -> None:
    from safeclip_guardrail.images.decode import decode_image

    photo = encode(noise(160, 120, seed=7).resize((320, 240)), "JPEG", quality=95)
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    full_guard = guard.with_options(images=ImageOptions(jpeg_draft=False))
    full = decode_image(photo).image
    draft = decode_image(photo, draft_size=32).image
    assert draft.size == (80, 60)  # 1/4 scale keeps both sides >= the tiny model's 32 px
    # the embedding is the whole-picture view (padded to a square) of what was decoded
    np.testing.assert_allclose(guard.embed_images([photo]),
                               guard.encoder.encode_images([_whole(draft)]).final, atol=1e-6)
    np.testing.assert_allclose(full_guard.embed_images([photo]),
                               guard.encoder.encode_images([_whole(full)]).final, atol=1e-6)
    assert guard.check(photo).image_sha256 == full_guard.check(photo).image_sha256


def test_evaluation_reads_images_exactly_as_the_guard(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """Metrics and calibrated thresholds must describe what check() sees at run time,
    draft-decoded JPEGs included."""
    from safeclip_guardrail.eval.datasets import load_dataset
    from safeclip_guardrail.eval.embed import embed_dataset

    for cls, seed in (("neutral", 1), ("gun", 2)):
        (tmp_path / cls).mkdir()
        photo = noise(160, 120, seed=seed).resize((320, 240))
        (tmp_path / cls / "photo.jpg").write_bytes(encode(photo, "JPEG", quality=95))
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    data = embed_dataset(guard, load_dataset(tmp_path, bank=guard.bank), show_progress=False)
    paths = [s.path for s in data.samples]
    direct = guard.embed_images_all(paths)
    np.testing.assert_allclose(data.embeddings.final, direct.final, atol=1e-6)
    np.testing.assert_allclose(data.embeddings.penultimate, direct.penultimate, atol=1e-6)
    assert list(data.sha256) == [guard.check(p).image_sha256 for p in paths]


def test_on_encode_reports_each_encoder_call(planted: PlantedEncoder) -> None:
    """A service counts encoder work through the guard's callback, not an encoder wrapper."""
    from safeclip_guardrail.guard import EncodeStats

    seen: list[EncodeStats] = []
    guard = SafeCLIPGuard(planted).with_options(batch_size=2, on_encode=seen.append)
    images = [planted.plant_bytes("neutral") for _ in range(5)]
    guard.check_batch(images)
    assert sum(s.views for s in seen) == 5  # square pictures: one view each
    assert sum(s.forwards for s in seen) == planted.forward_counter.count == 3
    guard.check_batch(images)  # all cached: no encoder call, no report
    assert sum(s.views for s in seen) == 5
