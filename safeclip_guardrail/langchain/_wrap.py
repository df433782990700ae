"""Any Runnable behind a SafeCLIPGuardrail (private; built by ``SafeCLIPGuardrail.wrap``).

A blocked input is answered with the refusal ``AIMessage`` (or, for a runnable whose output
is not a message, with :class:`GuardrailViolation`) and the model is never called; anything
else reaches the model as the guardrail left it (rewritten, redacted, annotated), with the
caller's keyword arguments (``stop``, bound ``tools``...). A chat model is wrapped by
:class:`~safeclip_guardrail.langchain.GuardedChatModel`, which runs through this class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

from safeclip_guardrail.errors import GuardrailViolation
from safeclip_guardrail.langchain._batch import OneBatchRunnable
from safeclip_guardrail.langchain._intervention import GuardOutcome, InputGuard

__all__ = ["BlockedAnswer", "GuardedModel"]

BlockedAnswer = Literal["refusal", "raise", "raw"]
"""What a blocked input gets: the refusal ``AIMessage``; :class:`GuardrailViolation`
(a structured-output runnable, whose output cannot be a refusal); or, for
``with_structured_output(include_raw=True)``, ``{"raw": refusal, "parsed": None,
"parsing_error": GuardrailViolation}``."""


class GuardedModel(OneBatchRunnable, RunnableSerializable[Any, Any]):
    """``model`` that only runs on inputs the guardrail lets through."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guardrail: InputGuard
    """Decides, and rewrites/redacts/annotates what reaches the model."""
    model: Runnable[Any, Any]
    """The chat model (or any Runnable taking messages) to protect."""
    blocked_answer: BlockedAnswer = "refusal"
    """What a blocked input gets instead of the model's output (see :data:`BlockedAnswer`)."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return name or self.name or f"SafeCLIPGuarded[{self.model.get_name()}]"

    # ------------------------------------------------------------------ invoke
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def _invoke(self, input: Any, run_manager: CallbackManagerForChainRun,
                config: RunnableConfig, **kwargs: Any) -> Any:
        guarded = _ok(self.guardrail.guard_inputs([input], [config])[0])
        if guarded.blocked:
            return self._blocked(guarded)
        return self.model.invoke(_model_input(guarded), config, **kwargs)

    async def _ainvoke(self, input: Any, run_manager: AsyncCallbackManagerForChainRun,
                       config: RunnableConfig, **kwargs: Any) -> Any:
        results = await self.guardrail.aguard_inputs([input], [config])
        guarded = _ok(results[0])
        if guarded.blocked:
            return self._blocked(guarded)
        return await self.model.ainvoke(_model_input(guarded), config, **kwargs)

    # ------------------------------------------------------------------ batch
    def _batch(self, inputs: list[Any], config: list[RunnableConfig], **kwargs: Any) -> list[Any]:
        guarded = self.guardrail.guard_inputs(inputs, config)
        todo = [i for i, g in enumerate(guarded) if _passes(g)]
        answers = self.model.batch([_model_input(_ok(guarded[i])) for i in todo],
                                   [config[i] for i in todo], return_exceptions=True,
                                   **kwargs) if todo else []
        return self._merge(guarded, todo, answers)

    async def _abatch(self, inputs: list[Any], config: list[RunnableConfig],
                      **kwargs: Any) -> list[Any]:
        guarded = await self.guardrail.aguard_inputs(inputs, config)
        todo = [i for i, g in enumerate(guarded) if _passes(g)]
        answers = await self.model.abatch([_model_input(_ok(guarded[i])) for i in todo],
                                          [config[i] for i in todo], return_exceptions=True,
                                          **kwargs) if todo else []
        return self._merge(guarded, todo, answers)

    # ------------------------------------------------------------------ stream
    def stream(self, input: Any, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[Any]:
        yield from self._transform_stream_with_config(iter([input]), self._stream, config,
                                                      **kwargs)

    async def astream(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        async def once() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(once(), self._astream, config,
                                                               **kwargs):
            yield chunk

    def _stream(self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun,
                config: RunnableConfig, **kwargs: Any) -> Iterator[Any]:
        guarded = _ok(self.guardrail.guard_inputs([next(inputs)], [config])[0])
        if guarded.blocked:
            yield self._blocked_chunk(guarded)
            return
        yield from self.model.stream(_model_input(guarded), config, **kwargs)

    async def _astream(self, inputs: AsyncIterator[Any],
                       run_manager: AsyncCallbackManagerForChainRun,
                       config: RunnableConfig, **kwargs: Any) -> AsyncIterator[Any]:
        first = await inputs.__anext__()
        results = await self.guardrail.aguard_inputs([first], [config])
        guarded = _ok(results[0])
        if guarded.blocked:
            yield self._blocked_chunk(guarded)
            return
        async for chunk in self.model.astream(_model_input(guarded), config, **kwargs):
            yield chunk

    # ------------------------------------------------------------------ blocked
    def _blocked(self, guarded: GuardOutcome) -> Any:
        refusal = _refusal(guarded)
        if self.blocked_answer == "refusal":
            return refusal
        violation = GuardrailViolation(guarded.result, refusal=str(refusal.content))
        if self.blocked_answer == "raise":
            raise violation
        return {"raw": refusal, "parsed": None, "parsing_error": violation}

    def _blocked_chunk(self, guarded: GuardOutcome) -> Any:
        answer = self._blocked(guarded)
        if not isinstance(answer, AIMessage):
            return answer
        return AIMessageChunk(content=answer.content, response_metadata=answer.response_metadata,
                              chunk_position="last")

    def _merge(self, guarded: list[GuardOutcome | Exception], todo: list[int],
               answers: list[Any]) -> list[Any]:
        out: list[Any] = []
        for g in guarded:
            if isinstance(g, Exception) or not g.blocked:
                out.append(g)
                continue
            try:
                out.append(self._blocked(g))
            except GuardrailViolation as exc:  # returned in place, like any batch error
                out.append(exc)
        for i, answer in zip(todo, answers, strict=True):
            out[i] = answer
        return out


def _ok(result: GuardOutcome | Exception) -> GuardOutcome:
    if isinstance(result, Exception):
        raise result
    return result


def _passes(result: GuardOutcome | Exception) -> bool:
    return isinstance(result, GuardOutcome) and not result.blocked


def _model_input(guarded: GuardOutcome) -> Any:
    """The guarded output, or the guarded messages of a dict or single-message input (chat
    models take neither)."""
    if isinstance(guarded.output, (Mapping, BaseMessage)):
        return guarded.messages
    return guarded.output


def _refusal(guarded: GuardOutcome) -> AIMessage:
    refusal = guarded.refusal
    if refusal is None:  # a blocked outcome always carries one; never pass on instead
        return AIMessage(content="I cannot fulfill this request.")
    return refusal
