"""Importing the NeMo adapter pulls in no other agent framework (and not even NeMo itself)."""

from __future__ import annotations

import json
import subprocess
import sys

import safeclip_guardrail_nemo

OTHERS = {"langchain", "langchain_core", "langgraph", "llama_index"}


def _top_level_modules_after(statement: str) -> set[str]:
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_adapter_import_pulls_in_no_other_framework():
    loaded = _top_level_modules_after("import safeclip_guardrail_nemo")
    assert "safeclip_guardrail" in loaded
    assert not loaded & (OTHERS | {"nemoguardrails"}), sorted(loaded & OTHERS)


def test_example_config_imports_nemo_but_no_langchain():
    loaded = _top_level_modules_after(
        "import safeclip_guardrail_nemo as m; m.example_rails_config()")
    assert "nemoguardrails" in loaded
    assert not loaded & OTHERS, sorted(loaded & OTHERS)


def test_public_names_are_pinned():
    assert sorted(safeclip_guardrail_nemo.__all__) == [
        "ACTION_NAME", "FLOW_NAME", "ImageRailDecision", "SafeCLIPImageRail", "__version__",
        "example_config_dir", "example_rails_config", "image_parts", "messages_from_events",
        "register_safeclip",
    ]
