"""A chat model behind a SafeCLIPGuardrail that is still a whole chat model (private).

``SafeCLIPGuardrail.wrap(llm)`` returns :class:`GuardedChatModel` for any ``BaseChatModel``:
agent code calls ``bind_tools``, ``with_structured_output``, ``bind``, ``with_config``,
``stream``, ``batch``... on whatever model it is given, and each of them must keep the
guard in front. So:

- the Runnable entry points (``invoke``/``ainvoke``/``batch``/``abatch``/``stream``/
  ``astream``, and with them ``astream_events``, ``transform``, bindings) run a
  :class:`~safeclip_guardrail.langchain._wrap.GuardedModel`: one chain run that judges the
  input (the ``safeclip_verdict`` event, run metadata, one guard batch for a whole batch)
  and then calls the wrapped model's own ``invoke``/``stream``/``batch``, so its callbacks,
  cache, rate limiter and usage reporting work as if it were called directly, once;
- ``bind_tools`` asks the wrapped model to format the tools, and binds the result to the
  *guarded* model; ``with_structured_output`` puts the guard in front of the wrapped model's
  own structured runnable (a blocked input raises :class:`GuardrailViolation`: a refusal
  is not an instance of your schema; ``include_raw=True`` returns it as ``parsing_error``);
- ``generate``/``agenerate`` and the v3 event stream (``_generate``/``_stream``) go through
  the same guarded path, inside the chat-model run those APIs open (so a usage callback
  sees that run and the wrapped model's); token counting counts the messages the model
  would receive.

Metadata (``_llm_type``, ``_get_ls_params``, ``profile``, ``model_name``) is the wrapped
model's, so tracing, agents' capability checks and cost reports see the model they know.
The guarded model never answers from a cache before the guard (``cache=False``); the
wrapped model's own cache applies to what it receives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import merge_configs
from pydantic import ConfigDict, Field

from safeclip_guardrail.langchain._intervention import InputGuard
from safeclip_guardrail.langchain._wrap import GuardedModel

__all__ = ["GuardedChatModel", "wrap_model"]


class GuardedChatModel(BaseChatModel):
    """``chat_model`` behind a SafeCLIP guardrail, usable wherever a chat model is.

    Built by :meth:`SafeCLIPGuardrail.wrap`. A blocked input is answered with the refusal
    ``AIMessage`` (its ``response_metadata["safeclip"]`` is the GuardResult) and
    ``chat_model`` is never called; anything else reaches it as the guardrail left it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guardrail: InputGuard = Field(exclude=True)
    """Decides, and rewrites/redacts/annotates what reaches the model."""
    chat_model: BaseChatModel = Field(exclude=True)
    """The chat model to protect."""
    cache: BaseCache | bool | None = Field(default=False, exclude=True)
    """Never answer from a cache before the guard ran; ``chat_model``'s cache still works."""

    @property
    def _front(self) -> GuardedModel:
        """The guard-then-model Runnable, built from the current fields (so a
        ``model_copy(update=...)`` can never leave a stale model behind the guard)."""
        return GuardedModel(guardrail=self.guardrail, model=self.chat_model, name=self.name)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False  # holds a loaded guard

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return self._front.get_name(suffix, name=name)

    # ------------------------------------------------------------------ the wrapped model's face
    @property
    def _llm_type(self) -> str:
        return self.chat_model._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        guard = getattr(getattr(self.guardrail, "guard", None), "model_name", None)
        return {**self.chat_model._identifying_params, "safeclip_guard": guard}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.chat_model._get_ls_params(stop=stop, **kwargs)

    def _resolve_model_profile(self) -> Any:
        return self.chat_model.profile

    @property
    def model_name(self) -> str | None:
        """The wrapped model's name (``model_name``, ``model`` or ``model_id``)."""
        for attr in ("model_name", "model", "model_id"):
            value = getattr(self.chat_model, attr, None)
            if isinstance(value, str) and value:
                return value
        return None

    # ------------------------------------------------------------------ Runnable entry points
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return cast("AIMessage", self._front.invoke(input, self._config(config),
                                                    **_with_stop(stop, kwargs)))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        answer = await self._front.ainvoke(input, self._config(config), **_with_stop(stop, kwargs))
        return cast("AIMessage", answer)

    def batch(self, inputs: list[LanguageModelInput],
              config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        return self._front.batch(inputs, self._configs(config, len(inputs)),
                                 return_exceptions=return_exceptions, **kwargs)

    async def abatch(self, inputs: list[LanguageModelInput],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        return await self._front.abatch(inputs, self._configs(config, len(inputs)),
                                        return_exceptions=return_exceptions, **kwargs)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        yield from self._front.stream(input, self._config(config), **_with_stop(stop, kwargs))

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any,
                      ) -> AsyncIterator[AIMessageChunk]:
        async for chunk in self._front.astream(input, self._config(config),
                                               **_with_stop(stop, kwargs)):
            yield chunk

    def _config(self, config: RunnableConfig | None) -> RunnableConfig:
        """``config`` plus this model's own callbacks, tags and metadata, if any were set."""
        own: RunnableConfig = {}
        if self.callbacks:
            own["callbacks"] = self.callbacks
        if self.tags:
            own["tags"] = list(self.tags)
        if self.metadata:
            own["metadata"] = dict(self.metadata)
        return merge_configs(config, own) if own else (config or {})

    def _configs(self, config: RunnableConfig | list[RunnableConfig] | None,
                 n: int) -> list[RunnableConfig]:
        if isinstance(config, list):
            return [self._config(c) for c in config]
        return [self._config(config)] * n

    # ------------------------------------------------------------------ tools, structure
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Any], *,
                   tool_choice: str | None = None, **kwargs: Any,
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """The wrapped model's own ``bind_tools`` (its tool format), bound to the guarded model."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self._rebind(self.chat_model.bind_tools(tools, **kwargs))

    def with_structured_output(self, schema: dict[str, Any] | type, *,
                               include_raw: bool = False, **kwargs: Any,
                               ) -> Runnable[LanguageModelInput, Any]:
        """The guard, then the wrapped model's own ``with_structured_output`` runnable.

        A blocked input raises :class:`~safeclip_guardrail.errors.GuardrailViolation`
        (carrying the result and the refusal text); with ``include_raw=True`` it is returned
        instead: ``{"raw": refusal, "parsed": None, "parsing_error": violation}``.
        """
        structured = self.chat_model.with_structured_output(schema, include_raw=include_raw,
                                                            **kwargs)
        return GuardedModel(guardrail=self.guardrail, model=structured,
                            blocked_answer="raw" if include_raw else "raise")

    def _rebind(self, bound: Runnable[Any, Any]) -> Runnable[LanguageModelInput, AIMessage]:
        """What the wrapped model built around itself, built around the guarded model."""
        if bound is self.chat_model:
            return self
        if isinstance(bound, RunnableBinding) and bound.bound is self.chat_model:
            return cast("Runnable[LanguageModelInput, AIMessage]",
                        bound.model_copy(update={"bound": self}))
        return GuardedModel(guardrail=self.guardrail, model=bound)  # any other shape: guard first

    # ------------------------------------------------------------------ token counting
    def get_token_ids(self, text: str) -> list[int]:
        return self.chat_model.get_token_ids(text)

    def get_num_tokens(self, text: str) -> int:
        return self.chat_model.get_num_tokens(text)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage],
                                     tools: Sequence[Any] | None = None) -> int:
        """Tokens of what the model would receive: the guarded messages (a provider's token
        counter may upload or fetch the images, so it never sees one that was not judged)."""
        run = CallbackManagerForChainRun.get_noop_manager()  # counting is not a traced run
        guarded = self.guardrail.guard_inputs([messages], [{"callbacks": run.get_child()}])[0]
        if isinstance(guarded, Exception):
            raise guarded
        return self.chat_model.get_num_tokens_from_messages(guarded.messages, tools)

    # ------------------------------------------------------------------ BaseChatModel hooks
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        config = _child_config(run_manager)
        answer = self._front.invoke(messages, config, **_with_stop(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=answer)])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        config = _child_config(run_manager)
        answer = await self._front.ainvoke(messages, config, **_with_stop(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=answer)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        config = _child_config(run_manager)
        for chunk in self._front.stream(messages, config, **_with_stop(stop, kwargs)):
            out = ChatGenerationChunk(message=chunk)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=out)
            yield out

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        config = _child_config(run_manager)
        async for chunk in self._front.astream(messages, config, **_with_stop(stop, kwargs)):
            out = ChatGenerationChunk(message=chunk)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=out)
            yield out


def _child_config(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
                  ) -> RunnableConfig:
    """Callbacks for runs under a ``generate()`` run (what ``get_child`` does for chains)."""
    if run_manager is None:
        return {}
    manager = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
    manager.set_handlers(run_manager.inheritable_handlers)
    manager.add_tags(run_manager.inheritable_tags)
    manager.add_metadata(run_manager.inheritable_metadata)
    return {"callbacks": manager}


def _with_stop(stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs if stop is None else {**kwargs, "stop": stop}


def wrap_model(guardrail: InputGuard, model: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``model`` behind ``guardrail``: a chat model stays a chat model (:class:`GuardedChatModel`),
    a chat model with bound arguments (``llm.bind_tools(...)``) keeps them around the guarded
    model, and any other Runnable gets the guard in front (:class:`GuardedModel`)."""
    if isinstance(model, BaseChatModel):
        return GuardedChatModel(guardrail=guardrail, chat_model=model)
    if isinstance(model, RunnableBinding) and isinstance(model.bound, BaseChatModel):
        guarded = GuardedChatModel(guardrail=guardrail, chat_model=model.bound)
        return model.model_copy(update={"bound": guarded})
    return GuardedModel(guardrail=guardrail, model=model)
