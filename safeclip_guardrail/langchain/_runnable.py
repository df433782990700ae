"""SafeCLIPGuardrail: the SafeCLIP guard as a LangChain Runnable over messages.

Put it in front of any vision-language chat model::

    guardrail = SafeCLIPGuardrail.from_pretrained("llava-1.5", mode="rewrite")
    chain = prompt | guardrail | llm            # rewrite / annotate / redact; block raises
    safe_llm = guardrail.wrap(llm)              # block: a refusal, the model is not called

Input and output have the same shape: a ``str``, a message, a list of messages, a
``PromptValue`` or a dict with ``"messages"``. ``batch``/``abatch`` check the images of
all inputs in one guard batch. Every decision is emitted as the custom event
``safeclip_verdict`` (``astream_events``) and traced as a child run of that name whose
metadata (key ``safeclip``) and outputs hold it (LangSmith and any other tracer).

Text guardrails combine with it through the decisions left on the messages
(:func:`text_guardrail`, :func:`merge_guardrails`, :func:`guardrail_gate`; any block wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from safeclip_guardrail._validation import first_error
from safeclip_guardrail.config import GuardConfig, Mode, OnError, build_config
from safeclip_guardrail.errors import ConfigurationError, GuardrailViolation
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.langchain._batch import OneBatchRunnable
from safeclip_guardrail.langchain._guarded_chat import GuardedChatModel, wrap_model
from safeclip_guardrail.langchain._intervention import GuardOutcome, assemble
from safeclip_guardrail.langchain._messages import METADATA_KEY, view_of_message
from safeclip_guardrail.langchain._shape import Shaped, try_shape
from safeclip_guardrail.messages.conversation import aguard_conversations, guard_conversations
from safeclip_guardrail.messages.extraction import MessageView

__all__ = ["VERDICT_EVENT", "SafeCLIPGuardrail"]

VERDICT_EVENT = "safeclip_verdict"
"""Name of the custom event dispatched for every guarded input."""


class SafeCLIPGuardrail(OneBatchRunnable, RunnableSerializable[Any, Any]):
    """Checks every image of the conversation and applies the configured intervention.

    Build it from a guard (``SafeCLIPGuardrail(guard=guard, mode="redact")``) or with
    :meth:`from_pretrained`. The options below override the guard's config for this
    guardrail only; None keeps the guard's value.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    guard: SafeCLIPGuard = Field(exclude=True)
    """The engine; several guardrails can share one (and its verdict cache)."""
    mode: Mode | None = None
    """``rewrite`` (default), ``annotate``, ``redact``, ``block`` or ``raise``."""
    policy: dict[str, Mode] | None = None
    """Per-class overrides of ``mode``, e.g. ``{"alcohol": "annotate", "porn": "block"}``."""
    safe_instruction: str | None = None
    """Text prepended to the user's message on ``rewrite``."""
    refusal: str | None = None
    """Answer on ``block``; ``{categories}`` is replaced by the flagged categories."""
    on_error: OnError | None = None
    """Unreadable or unknown image blocks: ``block`` (fail closed), ``raise``, ``allow``.
    Whatever it says, an image that could not be judged is never forwarded."""
    skip_roles: tuple[str, ...] = ()
    """Roles whose images are NOT judged (``"tool"``, ``"system"``...). Empty by default: a
    client that sends a whole conversation controls every role, so every role is judged."""
    on_block: Literal["raise", "defer"] = "raise"
    """``block`` in a plain chain: ``raise`` :class:`GuardrailViolation` (carrying the result
    and the refusal) so the model is never called; ``defer`` leaves the decision on the
    messages for a downstream :func:`guardrail_gate`. :meth:`wrap` always answers with the
    refusal instead."""

    _config: GuardConfig = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            msg = f"invalid SafeCLIPGuardrail option: {first_error(exc)}"
            raise ConfigurationError(msg) from None
        # Outside pydantic validation so a bad policy raises ConfigurationError as is.
        self._config = build_config(
            self.guard.config, mode=self.mode, policy=self.policy,
            safe_instruction=self.safe_instruction, refusal=self.refusal, on_error=self.on_error,
        )

    @classmethod
    def from_pretrained(
        cls, model: str | None = None, *, mode: Mode | None = None,
        policy: dict[str, Mode] | None = None, safe_instruction: str | None = None,
        refusal: str | None = None, skip_roles: tuple[str, ...] = (),
        on_block: Literal["raise", "defer"] = "raise",
        config: GuardConfig | str | Path | None = None, **guard_options: Any,
    ) -> SafeCLIPGuardrail:
        """Load a guard (same arguments as ``SafeCLIPGuard.from_pretrained``) and wrap it."""
        guard = SafeCLIPGuard.from_pretrained(
            model, config=config, mode=mode, policy=policy, safe_instruction=safe_instruction,
            refusal=refusal, **guard_options,
        )
        return cls(guard=guard, skip_roles=skip_roles, on_block=on_block)

    @property
    def config(self) -> GuardConfig:
        """The configuration in force (the guard's, with this guardrail's overrides)."""
        return self._config

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False  # holds a loaded model

    # ------------------------------------------------------------------ Runnable API
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None,
                      **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    @overload
    def wrap(self, model: BaseChatModel) -> GuardedChatModel: ...

    @overload
    def wrap(self, model: Runnable[Any, Any]) -> Runnable[Any, Any]: ...

    def wrap(self, model: Runnable[Any, Any]) -> Runnable[Any, Any]:
        """``model`` behind this guardrail; a blocked request gets the refusal instead.

        The returned Runnable guards its input, answers a refusal ``AIMessage`` without
        calling ``model`` when the input is blocked, and otherwise calls ``model`` with the
        guarded messages (invoke, ainvoke, batch, abatch, stream, astream). A chat model
        stays a chat model (:class:`GuardedChatModel`: ``bind_tools``,
        ``with_structured_output`` and the rest keep the guard in front); a chat model
        with bound arguments (``llm.bind_tools(tools)``) keeps them.
        """
        return wrap_model(self, model)

    # ------------------------------------------------------------------ internals
    def _invoke(self, input: Any, run_manager: CallbackManagerForChainRun,
                config: RunnableConfig) -> Any:
        return self._output(self.guard_inputs([input], [config])[0], raise_=True)

    async def _ainvoke(self, input: Any, run_manager: AsyncCallbackManagerForChainRun,
                       config: RunnableConfig) -> Any:
        results = await self.aguard_inputs([input], [config])
        return self._output(results[0], raise_=True)

    def _batch(self, inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
        return [self._output(r) for r in self.guard_inputs(inputs, config)]

    async def _abatch(self, inputs: list[Any], config: list[RunnableConfig]) -> list[Any]:
        results = await self.aguard_inputs(inputs, config)
        return [self._output(r) for r in results]

    def _output(self, result: GuardOutcome | Exception, *, raise_: bool = False) -> Any:
        """The guarded output; a blocked input becomes GuardrailViolation unless deferred."""
        if isinstance(result, GuardOutcome) and result.blocked and self.on_block == "raise":
            refusal = result.refusal
            result = GuardrailViolation(result.result,
                                        refusal=str(refusal.content) if refusal else None)
        if isinstance(result, Exception):
            if raise_:
                raise result
            return result
        return result.output

    def guard_inputs(self, inputs: Sequence[Any], configs: Sequence[RunnableConfig],
                     ) -> list[GuardOutcome | Exception]:
        """Guard many inputs with one guard batch, reporting each to its own run.

        For Runnables built on this one (``wrap``); errors come back in place.
        """
        shaped = [try_shape(x) for x in inputs]
        guarded = guard_conversations(self.guard, _views(shaped), config=self._config,
                                      skip_roles=self.skip_roles)
        out = assemble(shaped, guarded)
        for result, cfg in zip(out, configs, strict=True):
            if isinstance(result, GuardOutcome):
                data = _event_data(result)
                dispatch_custom_event(VERDICT_EVENT, data, config=cfg)
                _trace_verdict(cfg, data)
        return out

    async def aguard_inputs(self, inputs: Sequence[Any], configs: Sequence[RunnableConfig],
                            ) -> list[GuardOutcome | Exception]:
        """Async :meth:`guard_inputs`."""
        shaped = [try_shape(x) for x in inputs]
        guarded = await aguard_conversations(self.guard, _views(shaped), config=self._config,
                                             skip_roles=self.skip_roles)
        out = assemble(shaped, guarded)
        for result, cfg in zip(out, configs, strict=True):
            if isinstance(result, GuardOutcome):
                data = _event_data(result)
                await adispatch_custom_event(VERDICT_EVENT, data, config=cfg)
                await _atrace_verdict(cfg, data)
        return out


# ---------------------------------------------------------------------- helpers
def _views(shaped: list[Shaped | Exception]) -> list[list[MessageView]]:
    return [[view_of_message(m) for m in s.messages] for s in shaped if isinstance(s, Shaped)]


def _event_data(outcome: GuardOutcome) -> dict[str, Any]:
    r = outcome.result
    return {"action": r.action, "blocked": outcome.blocked, "flagged": r.flagged,
            "categories": r.categories, "result": r.model_dump(mode="json")}


def _verdict_config(config: RunnableConfig, data: dict[str, Any]) -> RunnableConfig:
    """The config of the child run that carries the verdict to tracers.

    A run's metadata is fixed when it starts and the verdict is known only after judging,
    so the verdict is traced as a child run named ``safeclip_verdict`` (under the
    guardrail's run, or the wrapped model's) whose metadata (key ``safeclip``) and outputs
    hold the decision. It is started from ``config`` the way a nested Runnable is, so every
    tracer sees it (LangSmith, ``collect_runs``, a custom ``BaseTracer``); no tracer's
    internals are touched.
    """
    traced = ensure_config(config)
    traced["metadata"] = {**traced.get("metadata", {}), METADATA_KEY: data}
    return traced


def _trace_verdict(config: RunnableConfig, data: dict[str, Any]) -> None:
    manager = get_callback_manager_for_config(_verdict_config(config, data))
    run = manager.on_chain_start(None, {"images": len(data["result"]["verdicts"])},
                                 name=VERDICT_EVENT)
    run.on_chain_end(data)


async def _atrace_verdict(config: RunnableConfig, data: dict[str, Any]) -> None:
    manager = get_async_callback_manager_for_config(_verdict_config(config, data))
    run = await manager.on_chain_start(None, {"images": len(data["result"]["verdicts"])},
                                       name=VERDICT_EVENT)
    await run.on_chain_end(data)
