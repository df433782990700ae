"""ChatLlava on a tiny real LLaVA-NeXT (any-resolution tiles) whose tower is the tiny CLIP's."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.messages import HumanMessage
from PIL import Image
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from safeclip_guardrail import GuardConfig, SafeCLIPGuard
from safeclip_guardrail.langchain import ChatLlava
from safeclip_guardrail.testing import build_tiny_llava


@pytest.fixture(scope="module")
def next_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_next"), clip_dir=tiny_clip_dir,
                            kind="llava_next")


def _block(img: Image.Image) -> dict[str, Any]:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"type": "image", "base64": base64.b64encode(buf.getvalue()).decode(),
            "mime_type": "image/png"}


def test_llava_next_fused_guard(next_dir: Path, tiny_clip_dir: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    wide = Image.fromarray(rng.integers(0, 256, (40, 70, 3), np.uint8))
    small = Image.fromarray(rng.integers(0, 256, (30, 30, 3), np.uint8))
    msgs = [HumanMessage(content=[_block(wide), _block(small),
                                  {"type": "text", "text": "Compare."}])]
    fused = ChatLlava.from_pretrained(str(next_dir), device="cpu", dtype="float32",
                                      max_new_tokens=8, guard="auto",
                                      guard_model=str(tiny_clip_dir),
                                      guard_config=GuardConfig(mode="annotate"))
    assert fused.guard_is_fused and fused.hf_model.config.model_type == "llava_next"
    guard = fused.safeclip_guard
    assert guard is not None
    seen: list[np.ndarray] = []
    real = guard.score_embeddings
    monkeypatch.setattr(guard, "score_embeddings", lambda e: (seen.append(e), real(e))[1])
    calls: list[int] = []
    handle = fused.hf_model.model.vision_tower.register_forward_hook(
        lambda _m, args, _o: calls.append(int(args[0].shape[0])))
    try:
        msg = fused.invoke(msgs)
    finally:
        handle.remove()
    assert len(calls) == 1  # one tower pass over every tile of both images
    verdicts = msg.response_metadata["safeclip"].verdicts
    assert len(verdicts) == 2
    # every view the tower encoded is judged (the whole-picture base view and each tile),
    # through the tiny CLIP's own tower, from that one pass
    inputs = fused.processor(images=[wide, small], text=fused.render_prompt(msgs),
                             return_tensors="pt")
    standalone = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu",
                                               dtype="float32")
    counts = [image_size_to_num_patches(
        image_size=size, grid_pinpoints=fused.hf_model.config.image_grid_pinpoints,
        patch_size=fused.hf_model.config.vision_config.image_size)
        for size in inputs["image_sizes"]]
    assert calls[0] == sum(counts) and counts[0] > 1  # the wide picture has tiles
    views = torch.cat([pv[:n] for pv, n in zip(inputs["pixel_values"], counts)])
    expected = standalone.encoder.encode_pixels(views).final  # type: ignore[attr-defined]
    np.testing.assert_allclose(seen[0], expected, atol=1e-5)
    per_view = standalone.score_embeddings(expected)
    for v, start, n in zip(verdicts, (0, counts[0]), counts):
        mine = per_view[start:start + n]
        worst = max(range(n), key=lambda k: (mine[k].flagged, mine[k].toxic_score))
        assert v.views_checked == n
        assert v.toxic_score == pytest.approx(mine[worst].toxic_score, abs=1e-5)
        assert v.decided_by == ("whole picture" if worst == 0 else f"tile {worst} of {n - 1}")
    with torch.inference_mode():
        out = fused.hf_model.generate(**inputs, max_new_tokens=8, do_sample=False)
    plain = fused.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:],
                                             skip_special_tokens=True)
    assert msg.content == plain
    unguarded = ChatLlava.from_pretrained(str(next_dir), device="cpu", dtype="float32",
                                          max_new_tokens=8)
    assert "".join(str(c.content) for c in unguarded.stream(msgs)) == plain
