"""Deprecated path: the LangChain layer lives in :mod:`safeclip_guardrail.langchain`."""

from safeclip_guardrail._deprecated import moved

__getattr__ = moved(
    "safeclip_guardrail.intervention",
    "safeclip_guardrail.langchain",
    [
        "GuardOutcome",
        "aguard_message_batches",
        "aguard_messages",
        "aoutcomes_or_errors",
        "guard_message_batches",
        "guard_messages",
        "guard_result_of",
        "outcomes_or_errors",
        "METADATA_KEY",
    ],
    elsewhere={
        n: "safeclip_guardrail.policy" for n in ("ACTION_STRENGTH", "REDACTED", "Action", "strongest_action")
    },
)
