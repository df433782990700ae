"""The guard's embeddings are CLIP's own, for both backends, loaded the way a user loads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from safeclip_guardrail import ConfigurationError, ModelLoadError, SafeCLIPGuard
from safeclip_guardrail.encoders import load_encoder, resolve_model_id
from safeclip_guardrail.encoders.openclip import parse_open_clip_spec
from safeclip_guardrail.images.views import picture_views
from safeclip_guardrail.testing.pictures import noise

IMAGES = [noise(40, 30, seed=s) for s in range(3)] + [noise(64, 64, seed=9)]


def _clip_reference(model_dir: Path, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """CLIP's own image embedding and the projected layer -2 CLS, straight from transformers."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        final = model.get_image_features(pixel_values=pixels)
        final = getattr(final, "pooler_output", final)
        hidden = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
        pen = model.visual_projection(hidden[-2][:, 0])
    norm = lambda t: (t / t.norm(dim=-1, keepdim=True)).numpy()  # noqa: E731
    return norm(final), norm(pen)


def test_final_and_penultimate_equal_clip_reference(tiny_clip_dir: Path) -> None:
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    # one row per image: its whole-picture view (a 40x30 picture padded to a square)
    wholes = [picture_views(im, input_size=guard.encoder.input_size)[0]  # type: ignore[attr-defined]
              for im in IMAGES]
    assert [w.size for w in wholes] == [(32, 32)] * 3 + [(64, 64)]
    pixels = guard.encoder.preprocess(wholes)  # type: ignore[attr-defined]
    ref_final, ref_pen = _clip_reference(tiny_clip_dir, pixels)
    np.testing.assert_allclose(guard.embed_images(IMAGES), ref_final, atol=1e-5)
    pen_guard = guard.with_options(cls_source="penultimate")
    np.testing.assert_allclose(pen_guard.embed_images(IMAGES), ref_pen, atol=1e-5)
    both = guard.embed_images_all(IMAGES)
    assert not np.allclose(both.final, both.penultimate, atol=1e-3)  # they really differ


def test_open_clip_backend_equals_transformers_backend(tiny_clip_dir: Path,
                                                       tiny_open_clip_dir: Path) -> None:
    hf = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    oc = SafeCLIPGuard.from_pretrained(str(tiny_open_clip_dir), device="cpu", dtype="float32")
    assert oc.encoder.name.startswith("open_clip:local-dir:")
    a, b = hf.embed_images_all(IMAGES), oc.embed_images_all(IMAGES)
    np.testing.assert_allclose(a.final, b.final, atol=1e-5)
    np.testing.assert_allclose(a.penultimate, b.penultimate, atol=1e-5)
    assert hf.encoder.logit_scale == pytest.approx(oc.encoder.logit_scale, rel=1e-5)
    # the explicit open_clip spec reaches the same checkpoint
    spec = SafeCLIPGuard.from_pretrained(f"open_clip:local-dir:{tiny_open_clip_dir}",
                                         device="cpu", dtype="float32")
    np.testing.assert_allclose(spec.embed_images(IMAGES), a.final, atol=1e-5)


def test_preprocessing_matches_clip_image_processor(tiny_clip_dir: Path) -> None:
    from transformers import CLIPImageProcessorPil

    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    ours = guard.encoder.preprocess(IMAGES)  # type: ignore[attr-defined]
    proc = CLIPImageProcessorPil.from_pretrained(tiny_clip_dir)
    theirs = proc(images=IMAGES, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    assert float((ours - theirs).abs().mean()) < 0.02  # resampling filters differ by a hair


def test_descriptors_get_distinct_tokens(tiny_clip_dir: Path) -> None:
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu")
    tok = guard.encoder.tokenizer  # type: ignore[attr-defined]
    ids = {tuple(tok(d).input_ids) for d in guard.bank.descriptors}
    assert len(ids) == len(guard.bank.descriptors)
    assert len(set(map(tuple, guard.text_embeddings.round(5).tolist()))) == 40


def test_aliases() -> None:
    assert resolve_model_id("llava-1.5") == "openai/clip-vit-large-patch14-336"
    assert resolve_model_id("LLaVA-NeXT") == "openai/clip-vit-large-patch14-336"
    assert resolve_model_id("vit-b-32") == "openai/clip-vit-base-patch32"
    assert resolve_model_id("/some/dir") == "/some/dir"


def test_open_clip_spec_parsing() -> None:
    s = parse_open_clip_spec("open_clip:ViT-L-14-336-quickgelu/openai")
    assert (s.model_name, s.pretrained) == ("ViT-L-14-336-quickgelu", "openai")
    s = parse_open_clip_spec("open_clip:ViT-B-32//weights/w.safetensors")
    assert (s.model_name, s.pretrained) == ("ViT-B-32", "/weights/w.safetensors")
    assert parse_open_clip_spec("open_clip:local-dir:/a/b").model_name == "local-dir:/a/b"
    with pytest.raises(ConfigurationError):
        parse_open_clip_spec("open_clip:")


def test_missing_models_explain_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="hf download openai/clip-vit-large-patch14-336"):
        load_encoder("llava-1.5", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="local directory"):
        load_encoder(str(empty), device="cpu")
    with pytest.raises(ModelLoadError, match="open_clip model"):
        load_encoder("open_clip:ViT-B-32/openai", device="cpu")  # weights not downloadable
    with pytest.raises(ConfigurationError):
        load_encoder("  ")


def test_cuda_requested_without_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigurationError, match="CUDA is not available"):
        load_encoder("llava-1.5", device="cuda")


def test_encoders_declare_their_capabilities(tiny_guard, planted) -> None:  # type: ignore[no-untyped-def]
    """Optional abilities are protocols the guard checks with isinstance, not getattr probes."""
    from safeclip_guardrail.encoders.base import (
        EncodesFrames,
        ImageTextEncoder,
        ProjectsCLS,
        ResizesTo,
    )

    torch_encoder = tiny_guard.encoder
    for capability in (ImageTextEncoder, ProjectsCLS, EncodesFrames, ResizesTo):
        assert isinstance(torch_encoder, capability), capability
    assert torch_encoder.input_size == torch_encoder.preprocess.size
    assert isinstance(planted, ImageTextEncoder)
    assert not isinstance(planted, ProjectsCLS) and not isinstance(planted, ResizesTo)
    from safeclip_guardrail import ConfigurationError, SafeCLIPGuard

    with pytest.raises(ConfigurationError, match="cannot project CLS"):
        SafeCLIPGuard(planted).embed_cls([[0.0]])
