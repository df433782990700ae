"""The core cookbook recipe, executed on a planted encoder and on a tiny real CLIP."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from safeclip_guardrail import ConceptBank
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import encode, noise

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"


def load_recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cookbook_{name}", COOKBOOK / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_concepts_recipe_semantics(tmp_path: Path) -> None:
    recipe = load_recipe("custom_concepts")
    bank = recipe.kitchen_bank()
    planted = PlantedEncoder(bank)
    images = [
        planted.plant({"kitchen": 0.6, "knife": 0.35, "neutral": 0.05}),  # chef at work
        planted.plant("knife"),
        planted.plant({"alcohol": 0.7, "neutral": 0.3}),  # under alcohol's 0.8 threshold
    ]
    verdicts = recipe.main(images, encoder=planted, out_dir=tmp_path)
    assert [v.flagged for v in verdicts] == [False, True, False]
    assert verdicts[1].category == "knife"
    assert ConceptBank.from_file(tmp_path / "bank.yaml").classes == bank.classes


def test_custom_concepts_recipe_on_tiny_clip(tiny_clip_dir: Path) -> None:
    recipe = load_recipe("custom_concepts")
    verdicts = recipe.main([encode(noise(seed=4))], model=str(tiny_clip_dir))
    assert len(verdicts) == 1 and verdicts[0].error is None
    assert set(verdicts[0].scores) == set(recipe.kitchen_bank().class_names)
