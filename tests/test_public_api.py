"""The public names are a contract: pinned here, and the engine imports no LangChain."""

from __future__ import annotations

import subprocess
import sys

import safeclip_guardrail

PUBLIC = [
    "DEFAULT_REFUSAL", "DEFAULT_SAFE_INSTRUCTION", "ChatLlava", "ConceptBank", "ConceptClass",
    "ConfigurationError", "EncoderOutputError", "GuardConfig", "GuardResult", "GuardRuntimeError",
    "GuardrailViolation", "ImageInputError", "ImageOptions", "ImageVerdict",
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
