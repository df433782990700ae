"""cookbook/agent_middleware.py and cookbook/langgraph_guard.py run end to end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

COOKBOOK = Path(__file__).resolve().parents[3] / "cookbook"


def _recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cookbook_{name}", COOKBOOK / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _images(planted, tmp_path: Path) -> list[Path]:
    (tmp_path / "gun.png").write_bytes(planted.plant_bytes("gun"))
    (tmp_path / "cat.png").write_bytes(planted.plant_bytes("neutral"))
    return [tmp_path / "gun.png", tmp_path / "cat.png"]


def test_agent_recipe(planted, planted_guard, tmp_path, make_model):
    model = make_model()
    answers = _recipe("agent_middleware").main(_images(planted, tmp_path), guard=planted_guard,
                                               chat_model=model)
    assert answers[0].flagged == ["gun"] and "flagged as unsafe" in answers[0].answer
    assert answers[1].flagged == [] and answers[1].answer == "a helpful answer"
    assert model.calls == 1


def test_agent_recipe_rewrite_mode(planted, planted_guard, tmp_path, make_model):
    model = make_model()
    answers = _recipe("agent_middleware").main(_images(planted, tmp_path)[:1],
                                               guard=planted_guard, chat_model=model,
                                               action="rewrite")
    assert answers[0].flagged == ["gun"] and model.calls == 1


def test_langgraph_recipe(planted, planted_guard, tmp_path, make_model):
    model = make_model()
    runs = _recipe("langgraph_guard").main(_images(planted, tmp_path), guard=planted_guard,
                                           chat_model=model)
    assert [r.route for r in runs] == ["refusal", "model"]
    assert model.calls == 1


def test_recipes_load_a_model_directory(tiny_clip_dir, planted, tmp_path):
    (tmp_path / "a.png").write_bytes(planted.plant_bytes("neutral"))
    for name in ("agent_middleware", "langgraph_guard"):
        out = _recipe(name).main([tmp_path / "a.png"], model=str(tiny_clip_dir))
        assert len(out) == 1 and out[0].answer
