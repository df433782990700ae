"""The public names are a contract: pinned here, and the engine imports no LangChain."""

from __future__ import annotations

import subprocess
import sys

import safeclip_guardrail


def test_all_is_sorted_and_pinned() -> None:
    names = safeclip_guardrail.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n.startswith("_"), n))
    for required in ("SafeCLIPGuard", "GuardConfig", "ConceptBank", "ImageVerdict", "GuardResult",
                     "SafeCLIPGuardrail", "ChatLlava", "GuardrailViolation", "ImageInputError",
                     "ModelLoadError", "ConfigurationError", "MissingDependencyError",
                     "SafeCLIPError"):
        assert required in names


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
