"""The public names are a contract: pinned here, and the engine imports no LangChain."""

from __future__ import annotations

import subprocess
import sys

import pytest

import safeclip_guardrail

PUBLIC = [
    "DEFAULT_REFUSAL", "DEFAULT_SAFE_INSTRUCTION", "ChatLlava", "ConceptBank", "ConceptClass",
    "ConfigurationError", "DocumentOptions", "EncoderOutputError", "GuardConfig", "GuardResult",
    "GuardRuntimeError", "GuardrailViolation", "ImageInputError", "ImageOptions", "ImageVerdict",
    "MissingDependencyError", "ModelLoadError", "SafeCLIPDocumentGuard", "SafeCLIPError",
    "SafeCLIPGuard", "SafeCLIPGuardrail", "UsageError", "__version__",
]


def test_all_is_sorted_and_pinned_exactly() -> None:
    names = safeclip_guardrail.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.startswith("_"), n))
    assert names == PUBLIC  # a public name added or removed is a deliberate, reviewed change
    for name in names:
        assert getattr(safeclip_guardrail, name) is not None


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    assert safeclip_guardrail.__version__ == version("safeclip-guardrail")


def test_engine_imports_no_langchain() -> None:
    code = ("import sys, safeclip_guardrail, safeclip_guardrail.cli, safeclip_guardrail.testing; "
            "from safeclip_guardrail import SafeCLIPGuard; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('langchain', 'langchain_core', 'langgraph', 'llama_index', 'nemoguardrails')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_result_json_round_trip() -> None:
    from safeclip_guardrail import GuardResult, ImageVerdict

    r = GuardResult(verdicts=[ImageVerdict(flagged=True, category="gun", top_category="gun",
                                           scores={"gun": 0.9, "neutral": 0.1}, threshold=0.6),
                              ImageVerdict(flagged=False, top_category="neutral")],
                    action="rewrite")
    data = r.model_dump_json()
    assert '"flagged":true' in data and '"categories":["gun"]' in data
    assert GuardResult.model_validate_json(data) == r


INTEGRATIONS_ALL = {
    "safeclip_guardrail_langchain": [
        "AgentAction", "SafeCLIPMiddleware", "__version__", "is_blocked", "safeclip_node",
        "safeclip_router"],
    "safeclip_guardrail_litellm": ["GuardServiceError", "RemoteGuard", "SafeCLIPLiteLLMGuardrail"],
    "safeclip_guardrail_llamaindex": [
        "NodeDecision", "SafeCLIPImageFilter", "SafeCLIPImagePostprocessor", "__version__",
        "acheck_nodes", "adecide_nodes", "check_nodes", "decide_nodes", "node_image_source"],
    "safeclip_guardrail_nemo": [
        "ACTION_NAME", "FLOW_NAME", "ImageRailDecision", "SafeCLIPImageRail", "__version__",
        "example_config_dir", "example_rails_config", "image_parts", "messages_from_events",
        "register_safeclip"],
}

LANGCHAIN_ALL = [
    "DECISIONS_KEY", "DEFAULT_IMAGE_KEYS", "DEFAULT_PATH_KEYS", "METADATA_KEY", "VERDICT_EVENT",
    "ChatLlava", "CombinedOutcome", "DocumentAction", "DocumentImage", "GuardOutcome",
    "GuardedChatModel", "GuardedModel", "GuardrailDecision", "SafeCLIPDocumentGuard",
    "SafeCLIPGuardrail", "aguard_messages", "combined_outcome", "guard_messages",
    "guard_result_of", "guardrail_gate", "merge_guardrails", "message_of_view",
    "text_guardrail", "view_of_message",
]


def test_langchain_layer_all_is_pinned_exactly() -> None:
    import safeclip_guardrail.langchain as lc

    assert lc.__all__ == LANGCHAIN_ALL
    for name in lc.__all__:
        assert getattr(lc, name) is not None


def test_each_integration_all_is_pinned_exactly() -> None:
    import os

    names = sorted(INTEGRATIONS_ALL)
    code = ("import importlib, json, sys; "
            f"print(json.dumps({{m: importlib.import_module(m).__all__ for m in {names!r}}}))")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    assert json.loads(proc.stdout.strip().splitlines()[-1]) == INTEGRATIONS_ALL


@pytest.mark.parametrize("old", [
    "safeclip_guardrail.runnable", "safeclip_guardrail.intervention", "safeclip_guardrail.rag",
    "safeclip_guardrail.chat_models", "safeclip_guardrail.blocks",
])
def test_pre_release_paths_are_gone(old: str) -> None:
    """No shims for a package that was never released (CHANGELOG lists the homes)."""
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
