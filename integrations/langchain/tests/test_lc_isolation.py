"""Importing the LangChain adapter pulls in neither LlamaIndex nor NeMo Guardrails."""

from __future__ import annotations

import json
import subprocess
import sys

import safeclip_guardrail_langchain


def _top_level_modules_after(statement: str) -> set[str]:
    code = (f"import sys, json\n{statement}\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_adapter_import_pulls_in_no_other_framework():
    loaded = _top_level_modules_after("import safeclip_guardrail_langchain")
    assert {"langchain", "langgraph"} <= loaded  # the probe sees real imports
    assert not loaded & {"llama_index", "nemoguardrails"}


def test_core_engine_imports_no_framework():
    loaded = _top_level_modules_after("import safeclip_guardrail")
    banned = {"langchain", "langchain_core", "langgraph", "llama_index", "nemoguardrails"}
    assert not loaded & banned, sorted(loaded & banned)


def test_public_names_are_pinned():
    assert sorted(safeclip_guardrail_langchain.__all__) == [
        "AgentAction", "SafeCLIPMiddleware", "__version__", "is_blocked", "safeclip_node",
        "safeclip_router",
    ]
