"""The LLaVA cookbook recipes, run on a tiny LLaVA whose vision tower is the tiny CLIP's."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder, build_tiny_llava
from tests._two_class import two_class_guard

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"


def _recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, COOKBOOK / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def llava_dir(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("cookbook_llava"), clip_dir=tiny_clip_dir)


def _png(img: Image.Image, path: Path) -> Path:
    img.save(path, format="PNG")
    return path


def test_standalone_recipe_blocks_and_passes(llava_dir: Path, tmp_path: Path) -> None:
    planted = PlantedEncoder(ConceptBank.default())
    guard = SafeCLIPGuard(planted)
    recipe = _recipe("llava_standalone_guard")
    bad = _png(planted.plant("gun", size=(32, 32)), tmp_path / "bad.png")
    blocked = recipe.main(bad, llava=str(llava_dir), mode="block", device="cpu", guard=guard,
                          max_new_tokens=4)
    assert "gun" in str(blocked.content)
    assert blocked.usage_metadata is None or blocked.usage_metadata["output_tokens"] == 0
    good = _png(planted.plant("neutral", size=(32, 32)), tmp_path / "good.png")
    answered = recipe.main(good, llava=str(llava_dir), mode="block", device="cpu", guard=guard,
                           max_new_tokens=4)
    assert answered.usage_metadata is not None and answered.usage_metadata["output_tokens"] > 0


def test_fused_recipe_auto_guard(llava_dir: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8))
    path = _png(img, tmp_path / "photo.png")
    recipe = _recipe("llava_fused_guard")
    answer = recipe.main(path, llava=str(llava_dir), clip=str(tiny_clip_dir), mode="annotate",
                         device="cpu", max_new_tokens=6)
    result = answer.response_metadata["safeclip"]
    assert result.action in {"pass", "annotate"} and len(result.verdicts) == 1
    streamed = recipe.main(path, llava=str(llava_dir), clip=str(tiny_clip_dir),
                           mode="annotate", device="cpu", max_new_tokens=6, stream=True)
    assert streamed.content == answer.content


def test_fused_recipe_blocks_a_flagged_image(llava_dir: Path, tiny_clip_dir: Path,
                                             tmp_path: Path) -> None:
    """Real tower and projection; descriptor embeddings planted so ``flag`` is a gun."""
    rng = np.random.default_rng(7)
    flag, ok = (Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)) for _ in range(2))
    guard = two_class_guard(tiny_clip_dir, flag, ok, mode="block")
    recipe = _recipe("llava_fused_guard")
    blocked = recipe.main(_png(flag, tmp_path / "f.png"), llava=str(llava_dir), guard=guard,
                          device="cpu", max_new_tokens=4)
    assert blocked.response_metadata["safeclip"].categories == ["gun"]
    passed = recipe.main(_png(ok, tmp_path / "o.png"), llava=str(llava_dir), guard=guard,
                         device="cpu", max_new_tokens=4)
    assert passed.response_metadata["safeclip"].action == "pass"


def test_fused_recipe_runs_as_pasted_on_a_local_llava(tmp_path: Path) -> None:
    """The docstring's command on a local directory: no --clip, the recorded CLIP is found."""
    llava = build_tiny_llava(tmp_path / "llava")  # as a user builds the stand-in: no clip_dir
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), np.uint8))
    photo = _png(img, tmp_path / "photo.png")
    done = subprocess.run(
        [sys.executable, str(COOKBOOK / "llava_fused_guard.py"), "--llava", str(llava),
         "--device", "cpu", str(photo), "Describe it."],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading weights" not in done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["action"] in {"pass", "rewrite"} and isinstance(last["categories"], list)
