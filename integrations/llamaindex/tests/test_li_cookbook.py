"""cookbook/llamaindex_rag.py runs end to end on the planted encoder and on a tiny real CLIP."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPE = Path(__file__).resolve().parents[3] / "cookbook" / "llamaindex_rag.py"


def _recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cookbook_llamaindex_rag", RECIPE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_recipe_keeps_the_flagged_image_out(planted, planted_guard, tmp_path, recorder):
    (tmp_path / "gun.png").write_bytes(gun := planted.plant_bytes("gun"))
    (tmp_path / "cat.png").write_bytes(cat := planted.plant_bytes("neutral"))
    (tmp_path / "notes.txt").write_text("not an image")
    run = _recipe().main(tmp_path, guard=planted_guard, llm=recorder.llm)
    assert run.indexed == ["cat.png"]
    assert run.kept_out == {"gun.png": "gun"}
    assert run.sources == ["cat.png"]
    assert hashlib.sha256(cat).hexdigest() in recorder.image_hashes
    assert hashlib.sha256(gun).hexdigest() not in recorder.image_hashes


def test_recipe_loads_a_model_directory(tiny_clip_dir, planted, tmp_path):
    (tmp_path / "a.png").write_bytes(planted.plant_bytes("neutral"))
    run = _recipe().main(tmp_path, model=str(tiny_clip_dir))
    assert len(run.indexed) + len(run.kept_out) == 1
    assert run.answer
