"""Whole-picture views: the geometry, what the vision tower receives, planted panoramas whose
flagged third flags the picture, and views counted against the batch and pixel budgets."""

from __future__ import annotations

import io
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
    SafeCLIPGuard,
)
from safeclip_guardrail.encoders.preprocess import ClipPreprocess
from safeclip_guardrail.images.views import NATIVE_MAX, PAD_RGB, WHOLE, picture_views, plan_views
from safeclip_guardrail.scale.scorer import BatchScorer
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import encode, noise


# ---------------------------------------------------------------------- geometry
def test_a_square_is_one_view_the_frame_itself() -> None:
    plan = plan_views(512, 512, input_size=224)
    assert plan.identity and len(plan) == 1 and plan.pixels == 0
    img = noise(50, 50)
    assert picture_views(img, input_size=224)[0] is img  # no copy: costs what it always did


@pytest.mark.parametrize(("size", "tiles"), [
    ((960, 320), 3), ((320, 960), 3), ((1920, 1080), 2), ((2100, 1000), 2),
    ((640, 480), 0), ((600, 400), 0), ((3000, 300), 6), ((70, 40), 2),
])
def test_tiles_follow_the_aspect_ratio(size: tuple[int, int], tiles: int) -> None:
    plan = plan_views(*size, input_size=224)
    assert len(plan) == 1 + tiles and plan.views[0].label == WHOLE
    assert [v.label for v in plan.views[1:]] == [f"tile {k} of {tiles}" for k in
                                                 range(1, tiles + 1)]


def test_a_panoramas_tiles_are_its_thirds() -> None:
    plan = plan_views(960, 320, input_size=224)
    assert [v.box for v in plan.views[1:]] == [(0, 0, 320, 320), (320, 0, 640, 320),
                                               (640, 0, 960, 320)]


def test_views_cover_every_pixel() -> None:
    rng = np.random.default_rng(0)
    options = [ImageOptions(), ImageOptions(max_tiles=2), ImageOptions(tile_downscale=2.0),
               ImageOptions(tile_aspect=1.0, max_tiles=64)]
    for _ in range(300):
        w, h = (int(x) for x in rng.integers(1, 2000, 2))
        opts = options[int(rng.integers(len(options)))]
        plan = plan_views(w, h, opts, input_size=int(rng.choice([32, 224, 336])))
        assert plan.views[0].box == (0, 0, w, h)
        tiles = plan.views[1:]
        assert len(tiles) <= opts.max_tiles
        if not tiles:
            continue
        covered = np.zeros((h, w), bool)
        for v in tiles:
            left, top, right, bottom = v.box
            assert 0 <= left < right <= w and 0 <= top < bottom <= h
            covered[top:bottom, left:right] = True
        assert covered.all(), (w, h, opts)


def test_views_are_squares_at_the_encoder_size_or_the_pictures_own_scale() -> None:
    pano = noise(960, 320, seed=1)
    made = picture_views(pano, input_size=224)
    assert [v.size for v in made] == [(224, 224)] * 4
    whole = np.asarray(made[0])
    assert tuple(whole[0, 0]) == PAD_RGB and tuple(whole[-1, -1]) == PAD_RGB  # padded, not cut
    assert tuple(whole[112, 0]) != PAD_RGB  # the picture spans the full width
    native = picture_views(pano)
    assert [v.size for v in native] == [(960, 960)] + [(320, 320)] * 3
    assert np.array_equal(np.asarray(native[2]), np.asarray(pano)[:, 320:640])  # exact pixels
    huge = plan_views(6000, 2000)  # no input size: the own scale, capped
    assert huge.pixels == 4 * NATIVE_MAX**2


def test_options_shape_the_views() -> None:
    assert len(plan_views(960, 320, ImageOptions(tiles=False))) == 1
    two = plan_views(960, 320, ImageOptions(max_tiles=2), input_size=224)
    assert [v.box for v in two.views[1:]] == [(0, 0, 480, 320), (480, 0, 960, 320)]
    assert all(v.size == (224, 224) for v in two.render(noise(960, 320)))  # padded squares
    square = plan_views(1024, 1024, ImageOptions(tile_downscale=3.0), input_size=224)
    assert len(square) == 5 and not square.identity  # opted in: a big square gets 2x2 tiles
    assert plan_views(512, 512, ImageOptions(tile_downscale=3.0), input_size=224).identity


@pytest.mark.parametrize("bad", [{"max_tiles": 0}, {"max_tiles": 65}, {"tile_aspect": 0.9},
                                 {"tile_downscale": 0.5}, {"tiles": "sometimes"}])
def test_bad_view_options_are_configuration_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ImageOptions(**bad)


def test_bad_sizes_are_image_errors() -> None:
    with pytest.raises(ImageInputError, match="nothing to judge"):
        plan_views(0, 10)
    with pytest.raises(ImageInputError, match="does not match the view plan"):
        plan_views(96, 32).render(noise(32, 96))


# ---------------------------------------------------------------------- preprocessing
def test_a_square_view_is_never_cropped_on_the_cpu_or_the_device() -> None:
    pre = ClipPreprocess(size=40, crop=32)  # a checkpoint whose crop is smaller than its resize
    view = noise(40, 40, seed=2)
    expected = pre.normalize(torch.from_numpy(
        np.array(view.resize((32, 32), Image.Resampling.BICUBIC))[None]))
    cpu = pre([view])
    torch.testing.assert_close(cpu, expected)
    device = pre.on_device([view], "cpu")
    assert device.shape == (1, 3, 32, 32)
    assert float((device - cpu).abs().mean()) < 0.02  # antialiased bicubic vs PIL's
    assert pre.resized_shape(48, 40) == (48, 40)  # other shapes: the processor's transform


# ---------------------------------------------------------------------- the tower
def _tower_inputs(module: torch.nn.Module, backend: str) -> bool:
    if backend == "transformers":
        from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

        return isinstance(module, CLIPVisionEmbeddings)
    from open_clip.transformer import VisionTransformer

    return isinstance(module, VisionTransformer)


@pytest.mark.parametrize("backend", ["transformers", "open_clip"])
def test_the_tower_sees_every_third_of_a_panorama(backend: str, tiny_clip_dir: Path,
                                                  tiny_open_clip_dir: Path) -> None:
    model_dir = tiny_clip_dir if backend == "transformers" else tiny_open_clip_dir
    guard = SafeCLIPGuard.from_pretrained(str(model_dir), device="cpu", dtype="float32")
    thirds = [noise(320, 320, seed=10 + k) for k in range(3)]
    pano = Image.new("RGB", (960, 320))
    for k, third in enumerate(thirds):
        pano.paste(third, (320 * k, 0))
    seen: list[torch.Tensor] = []

    def capture(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if _tower_inputs(module, backend):
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(capture)
    try:
        verdict = guard.check(encode(pano))
    finally:
        handle.remove()
    pixels = torch.cat(seen)
    assert pixels.shape == (4, 3, 32, 32) and verdict.views_checked == 4
    pre = guard.encoder.preprocess  # type: ignore[attr-defined]
    for k, third in enumerate(thirds):  # each third as CLIP sees a square picture of its own
        alone = pre([third])[0]
        gaps = [float((p - alone).abs().mean()) for p in pixels]
        # equal but for the resampling filter reading a few pixels past the third's edge
        assert int(np.argmin(gaps)) == k + 1 and gaps[k + 1] < 0.01 < 0.05 < min(
            g for i, g in enumerate(gaps) if i != k + 1), gaps
    centre = pre([pano])[0]  # what the centre crop judged: the middle third only
    assert float((centre - pre([thirds[1]])[0]).abs().mean()) < 0.01
    assert all(float((centre - pre([t])[0]).abs().mean()) > 0.05 for t in (thirds[0], thirds[2]))


# ---------------------------------------------------------------------- planted panoramas
def _panorama(enc: PlantedEncoder, targets: Sequence[str], *, tall: bool = False,
              side: int = 32) -> Image.Image:
    n = len(targets)
    pano = Image.new("RGB", (side, side * n) if tall else (side * n, side))
    for k, target in enumerate(targets):
        pano.paste(enc.plant(target, size=(side, side)), (0, side * k) if tall else (side * k, 0))
    return pano


@pytest.mark.parametrize("tall", [False, True])
@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_flagged_third_flags_the_picture_and_is_named(where: int, tall: bool) -> None:
    enc = PlantedEncoder(unplanted="neutral")
    targets = ["neutral"] * 3
    targets[where] = "gun"
    verdict = SafeCLIPGuard(enc).check(encode(_panorama(enc, targets, tall=tall)))
    assert verdict.flagged and verdict.category == "gun" and verdict.error is None
    assert verdict.views_checked == 4 and verdict.frames_checked == 1
    assert verdict.decided_by == f"tile {where + 1} of 3"


def test_a_clean_panorama_passes() -> None:
    enc = PlantedEncoder(unplanted="neutral")
    verdict = SafeCLIPGuard(enc).check(encode(_panorama(enc, ["neutral"] * 3)))
    assert verdict.ok and verdict.views_checked == 4 and verdict.decided_by is not None


def test_the_whole_picture_view_decides_what_no_tile_shows() -> None:
    enc = PlantedEncoder(unplanted="porn")  # only the padded whole-picture view is unplanted
    verdict = SafeCLIPGuard(enc).check(encode(_panorama(enc, ["neutral"] * 3)))
    assert verdict.flagged and verdict.category == "porn" and verdict.decided_by == WHOLE


def test_unplanted_views_are_refused_unless_asked_for() -> None:
    enc = PlantedEncoder()
    with pytest.raises(ConfigurationError, match="unplanted="):
        SafeCLIPGuard(enc).check(encode(_panorama(enc, ["neutral"] * 3)))
    square = enc.plant("gun")  # a square planted picture still reaches it as itself
    assert SafeCLIPGuard(enc).check(encode(square)).category == "gun"


def test_the_verdict_names_the_frame_and_the_tile() -> None:
    enc = PlantedEncoder(unplanted="neutral")
    first = _panorama(enc, ["neutral"] * 3)
    second = _panorama(enc, ["neutral", "neutral", "blood"])
    buf = io.BytesIO()
    first.save(buf, format="PNG", save_all=True, append_images=[second], duration=100)
    guard = SafeCLIPGuard(enc).with_options(images={"frames": 2})
    verdict = guard.check(buf.getvalue())
    assert verdict.category == "blood" and verdict.decided_by == "frame 2, tile 3 of 3"
    assert verdict.frames_checked == 2 and verdict.views_checked == 8


# ---------------------------------------------------------------------- budgets
class _Sizes(PlantedEncoder):
    """Records how many views each encoder call received."""

    def __init__(self) -> None:
        super().__init__(unplanted="neutral")
        self.calls: list[int] = []

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        self.calls.append(len(images))
        return super().encode_images(images)


def test_batch_size_counts_views() -> None:
    enc = _Sizes()
    guard = SafeCLIPGuard(enc).with_options(batch_size=4)
    panoramas = [encode(_panorama(enc, ["neutral"] * 3)) for _ in range(3)]
    assert all(v.ok for v in guard.check_batch(panoramas))
    assert enc.calls == [4, 4, 4]  # one panorama (4 views) per forward, never more
    enc.calls.clear()
    squares = [enc.plant_bytes("neutral") for _ in range(4)]
    guard.check_batch(squares)
    assert enc.calls == [4]  # squares: one view each, as before


def test_views_count_against_the_pixel_budgets() -> None:
    enc = _Sizes()
    pano = encode(_panorama(enc, ["neutral"] * 3))  # 3,072 decoded + 12,288 view pixels
    tight = SafeCLIPGuard(enc).with_options(images={"max_request_pixels": 10_000})
    [refused] = tight.check_batch([pano])
    assert refused.flagged and refused.error is not None and "views" in refused.error
    roomy = SafeCLIPGuard(enc).with_options(images={"max_request_pixels": 20_000})
    assert roomy.check(pano).ok
    chunked = SafeCLIPGuard(enc).with_options(batch_size=64, cache_size=0,
                                               images={"chunk_pixels": 10_000})
    enc.calls.clear()
    chunked.check_batch([encode(_panorama(enc, ["neutral"] * 3)) for _ in range(3)])
    assert enc.calls == [4, 4, 4]  # each panorama's views fill a chunk's pixels


def test_batch_scorer_judges_views_and_embeds_the_whole_picture() -> None:
    enc = PlantedEncoder(unplanted="neutral")
    guard = SafeCLIPGuard(enc).with_options(batch_size=4)
    bad, good = (encode(_panorama(enc, t)) for t in (["neutral", "gun", "neutral"],
                                                     ["neutral"] * 3))
    column = np.empty(2, dtype=object)
    column[:] = [bad, good]
    out = BatchScorer.from_guard(guard, embeddings=True)({"image": column})
    assert list(out["flagged"]) == [True, False] and out["category"][0] == "gun"
    np.testing.assert_allclose(out["embedding_final"], guard.embed_images([bad, good]))


def test_the_views_of_a_chunk_are_made_in_parallel_and_in_order() -> None:
    from safeclip_guardrail._viewed import render_views, viewed
    from safeclip_guardrail.images.decode import decode_image

    images = [decode_image(encode(noise(96 + 16 * k, 32, seed=k))) for k in range(6)]
    batch = render_views([viewed(i, ImageOptions(), input_size=32) for i in images])
    expected = [(k, v) for k, i in enumerate(images) for v in picture_views(i.image, input_size=32)]
    assert batch.owners == [k for k, _ in expected]
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, (_, b) in zip(batch.pictures, expected, strict=True))
