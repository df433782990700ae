"""The GuardResult that rides in ``message.response_metadata["safeclip"]`` (private).

Every LangChain surface (the guardrail's annotations and refusals, ``wrap``, ChatLlava) puts
the same type there: a :class:`~safeclip_guardrail.result.GuardResult`, so
``answer.response_metadata["safeclip"].flagged`` works wherever the message came from.

``response_metadata`` must stay serialisable: tracers (``dumpd`` of a chat model's input
messages), LangSmith, LLM caches and checkpointers write messages out. A plain pydantic
model would come out of LangChain's ``dumps`` as a "not implemented" stub, so the value is a
``GuardResult`` that LangChain's serialiser writes as the result's plain JSON: the same
dict any JSON consumer of the message saw before. After a round trip (``loads``, a
checkpointer, ``messages_from_dict``) the value is that dict;
:func:`~safeclip_guardrail.langchain.guard_result_of` returns a GuardResult either way.
"""

from __future__ import annotations

from typing import Any

from langchain_core.load import dumpd
from langchain_core.load.serializable import Serializable

from safeclip_guardrail.result import GuardResult

__all__ = ["SerializableGuardResult", "as_metadata"]


class SerializableGuardResult(GuardResult, Serializable):
    """A :class:`GuardResult` that LangChain's ``dumps``/``dumpd`` write as its plain JSON."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    def to_json(self) -> Any:  # the plain JSON, not a constructor nobody may load
        # dumpd escapes any dict with an "lc" key, so loads() can never mistake this data
        # for a serialised LangChain object, whatever fields a result gains later.
        return dumpd(self.model_dump(mode="json"))


def as_metadata(result: GuardResult) -> SerializableGuardResult:
    """``result`` as the value to store under ``response_metadata["safeclip"]``."""
    if isinstance(result, SerializableGuardResult):
        return result
    return SerializableGuardResult(verdicts=result.verdicts, action=result.action)
