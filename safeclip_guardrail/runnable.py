"""Deprecated path: the LangChain layer lives in :mod:`safeclip_guardrail.langchain`."""

from safeclip_guardrail._deprecated import moved

__getattr__ = moved(
    "safeclip_guardrail.runnable",
    "safeclip_guardrail.langchain",
    [
        "SafeCLIPGuardrail",
        "VERDICT_EVENT",
        "CombinedOutcome",
        "GuardedOutput",
        "GuardrailDecision",
        "combined_outcome",
        "guard_result_of",
        "guardrail_gate",
        "merge_guardrails",
        "text_guardrail",
    ],
)
