"""Importing the LlamaIndex adapter pulls in no other agent framework."""

from __future__ import annotations

import json
import subprocess
import sys

import safeclip_guardrail_llamaindex

OTHERS = ("langchain", "langchain_core", "langgraph", "nemoguardrails")


def _top_level_modules_after(statement: str) -> set[str]:
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_adapter_import_pulls_in_no_other_framework():
    loaded = _top_level_modules_after("import safeclip_guardrail_llamaindex")
    assert "llama_index" in loaded  # the probe sees real imports
    assert not loaded & set(OTHERS), sorted(loaded & set(OTHERS))


def test_core_engine_imports_no_framework():
    loaded = _top_level_modules_after("import safeclip_guardrail")
    assert not loaded & {*OTHERS, "llama_index"}, sorted(loaded & {*OTHERS, "llama_index"})


def test_public_names_are_pinned():
    assert sorted(safeclip_guardrail_llamaindex.__all__) == [
        "NodeDecision", "SafeCLIPImageFilter", "SafeCLIPImagePostprocessor", "__version__",
        "acheck_nodes", "adecide_nodes", "check_nodes", "decide_nodes", "node_image_source",
    ]
