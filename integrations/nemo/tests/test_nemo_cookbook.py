"""cookbook/nemo_rail.py runs end to end on the planted encoder and on a tiny real CLIP."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from langchain_core.language_models.fake_chat_models import FakeListChatModel

RECIPE = Path(__file__).resolve().parents[3] / "cookbook" / "nemo_rail.py"


def _recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cookbook_nemo_rail", RECIPE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_recipe_refuses_the_flagged_image_only(planted, planted_guard, tmp_path):
    (tmp_path / "gun.png").write_bytes(planted.plant_bytes("gun"))
    (tmp_path / "cat.png").write_bytes(planted.plant_bytes("neutral"))
    fake = FakeListChatModel(responses=["a cat on a sofa", "unused"])
    answers = _recipe().main([tmp_path / "gun.png", tmp_path / "cat.png"], guard=planted_guard,
                             llm=fake)
    assert answers[0].image == "gun.png" and "flagged as unsafe (gun)" in answers[0].answer
    assert answers[1].answer == "a cat on a sofa"
    assert fake.i == 1


def test_recipe_loads_a_model_directory(tiny_clip_dir, planted, tmp_path):
    (tmp_path / "a.png").write_bytes(planted.plant_bytes("neutral"))
    answers = _recipe().main([tmp_path / "a.png"], model=str(tiny_clip_dir))
    assert len(answers) == 1 and answers[0].answer
