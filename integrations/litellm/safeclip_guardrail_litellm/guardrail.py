"""SafeCLIP as a LiteLLM proxy guardrail, on LiteLLM's native lifecycle hooks.

Why native hooks: a guardrail class that defines ``apply_guardrail`` is routed through
LiteLLM's unified path, which only calls it when a request has text, so an image-only
request would reach the model unjudged. This class sets ``use_native_lifecycle_hooks`` and
reads ``data["messages"]`` itself, with the library's one extraction layer (OpenAI chat and
Anthropic messages formats, every role, every block shape).

- ``pre_call``: ``safeclip_action="block"`` (default) refuses a request with a flagged image
  (HTTP 400 naming the categories); ``"rewrite"`` forwards the judged images with the safe
  instruction prepended to the message that holds a flagged image. Unreadable images are
  never forwarded (and block by default).
- ``during_call``: judged while the model runs; a flagged image fails the request.

The guard runs in the proxy's process (``guard=`` or ``safeclip_model`` / ``safeclip_config``)
or behind a ``safeclip serve`` URL (``api_base``, ``api_key``): same extraction, same policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Literal, cast

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks

from safeclip_guardrail.config import GuardConfig
from safeclip_guardrail.errors import ConfigurationError, SafeCLIPError, UsageError
from safeclip_guardrail.messages.conversation import GuardedConversation, aguard_conversations
from safeclip_guardrail.messages.extraction import view_of_dict
from safeclip_guardrail_litellm.remote import RemoteGuard

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["SafeCLIPLiteLLMGuardrail"]

_log = logging.getLogger(__name__)

_MESSAGE_CALLS = frozenset({"completion", "acompletion", "anthropic_messages",
                            "text_completion", "responses", "aresponses"})


class SafeCLIPLiteLLMGuardrail(CustomGuardrail):
    """Judge every image of a chat request before (or while) the model sees it."""

    use_native_lifecycle_hooks = True

    def __init__(self, *, guard: SafeCLIPGuard | None = None, api_base: str | None = None,
                 api_key: str | None = None, safeclip_model: str | None = None,
                 safeclip_config: str | None = None,
                 safeclip_action: Literal["block", "rewrite"] = "block",
                 safeclip_timeout: float = 30.0, **kwargs: Any) -> None:
        """Configuration mistakes raise :class:`UsageError`, on purpose not
        ``ConfigurationError``: LiteLLM's proxy catches ``ValueError`` and ``TypeError`` from
        a guardrail's constructor, logs them and starts *without* that guardrail, so a typo
        in ``config.yaml`` would let every image through. Any other error stops the proxy."""
        kwargs.setdefault("supported_event_hooks", [GuardrailEventHooks.pre_call,
                                                    GuardrailEventHooks.during_call])
        kwargs.setdefault("guardrail_name", "safeclip")
        try:
            super().__init__(**kwargs)
            self._configure(guard=guard, api_base=api_base, api_key=api_key,
                            safeclip_model=safeclip_model, safeclip_config=safeclip_config,
                            safeclip_action=safeclip_action, safeclip_timeout=safeclip_timeout)
        except (ValueError, TypeError) as exc:
            msg = (f"SafeCLIP guardrail {kwargs['guardrail_name']!r} is misconfigured: "
                   f"{exc}; the proxy does not start without it")
            raise UsageError(msg) from None

    def _configure(self, *, guard: SafeCLIPGuard | None, api_base: str | None,
                   api_key: str | None, safeclip_model: str | None, safeclip_config: str | None,
                   safeclip_action: str, safeclip_timeout: float) -> None:
        if safeclip_action not in ("block", "rewrite"):
            msg = (f"safeclip_action must be 'block' or 'rewrite', got "
                   f"{safeclip_action!r}")
            raise ConfigurationError(msg)
        if isinstance(safeclip_timeout, bool) or not isinstance(safeclip_timeout, (int, float)) \
                or not safeclip_timeout > 0:
            msg = (f"safeclip_timeout must be a number of seconds > 0, got "
                   f"{safeclip_timeout!r}")
            raise ConfigurationError(msg)
        sources = [guard is not None, api_base is not None,
                   safeclip_model is not None or safeclip_config is not None]
        if sum(sources) != 1:
            msg = ("give the SafeCLIP guardrail exactly one of: guard= (in-process), api_base= (a "
                   "'safeclip serve' URL), safeclip_model= / safeclip_config= (load in-process)")
            raise ConfigurationError(msg)
        self.action = safeclip_action
        self._guard: Any = guard
        self._remote = api_base
        self._api_key = _secret(api_key)
        self._model = safeclip_model
        self._config_path = safeclip_config
        self._timeout = float(safeclip_timeout)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ LiteLLM hooks
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: str) -> dict[str, Any] | None:
        if call_type not in _MESSAGE_CALLS or not self.should_run_guardrail(
                data=data, event_type=GuardrailEventHooks.pre_call):
            return data
        key, messages = _conversation(data)
        if not messages:
            return data
        outcome = await self._judge(messages)
        self._record(data, outcome)
        if outcome.blocked:
            raise self._refusal(outcome)
        if any(outcome.changed):
            data[key] = outcome.as_dicts(messages)
        return data

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: Any,
                                    call_type: str) -> None:
        if call_type not in _MESSAGE_CALLS or not self.should_run_guardrail(
                data=data, event_type=GuardrailEventHooks.during_call):
            return
        _, messages = _conversation(data)
        if not messages:
            return
        outcome = await self._judge(messages)
        self._record(data, outcome)
        if outcome.result.action not in (None, "pass", "annotate"):
            raise self._refusal(outcome)  # the request is already on its way: only refusing is left

    # ------------------------------------------------------------------ internals
    async def _judge(self, messages: list[dict[str, Any]]) -> GuardedConversation:
        try:
            guard = await asyncio.to_thread(self._load)
        except SafeCLIPError as exc:  # no guard, no verdict: nothing passes
            # the details (a model directory, a config path) are the operator's, not the caller's
            _log.error("SafeCLIP guardrail %r could not load its guard: %s", self.guardrail_name, exc)
            raise HTTPException(status_code=503, detail={
                "error": "SafeCLIP guardrail could not load its guard; the proxy's log says why",
                "guardrail": self.guardrail_name}) from None
        config = self._config(guard.config)
        views = [view_of_dict(m) for m in messages]
        try:
            (outcome,) = await aguard_conversations(cast("SafeCLIPGuard", guard), [views],
                                                    config=config)
        except SafeCLIPError as exc:  # the service is down, ...: fail closed
            raise HTTPException(status_code=503, detail={
                "error": f"SafeCLIP guardrail could not judge the request's images: {exc}",
                "guardrail": self.guardrail_name}) from None
        if isinstance(outcome, SafeCLIPError):  # on_error="raise" and an unreadable image
            raise HTTPException(status_code=400, detail={
                "error": f"SafeCLIP guardrail: {outcome}", "guardrail": self.guardrail_name})
        return outcome

    def _config(self, base: GuardConfig) -> GuardConfig:
        mode = "block" if self.action == "block" else "rewrite"
        return base.replace(mode=mode)

    def _load(self) -> Any:
        with self._lock:
            if self._guard is not None:
                return self._guard
            if self._remote is not None:
                cfg = GuardConfig.from_file(self._config_path) if self._config_path else None
                self._guard = RemoteGuard(self._remote, api_key=self._api_key, config=cfg,
                                          timeout_s=self._timeout)
            else:
                from safeclip_guardrail.guard import SafeCLIPGuard

                self._guard = SafeCLIPGuard.from_pretrained(self._model,
                                                            config=self._config_path)
            return self._guard

    def _refusal(self, outcome: GuardedConversation) -> HTTPException:
        categories = outcome.result.categories
        text = outcome.refusal or self._load().config.refusal_for(categories,
                                                                  fallback="unreadable")
        return HTTPException(status_code=400, detail={
            "error": text, "guardrail": self.guardrail_name, "categories": categories,
            "flagged_images": sum(v.flagged for v in outcome.result.verdicts)})

    def _record(self, data: dict[str, Any], outcome: GuardedConversation) -> None:
        """Leave the result where LiteLLM's logging reads request metadata (no image data)."""
        meta = data.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["safeclip"] = {"flagged": outcome.result.flagged,
                                "categories": outcome.result.categories,
                                "action": outcome.result.action,
                                "images": len(outcome.result.verdicts)}


def _secret(value: str | None) -> str | None:
    """``os.environ/NAME`` (LiteLLM's convention in config.yaml) read from the environment."""
    if value is not None and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        found = os.environ.get(name)
        if not found:
            msg = (f"api_key names the environment variable {name}, which is "
                   "not set; export it before starting the proxy")
            raise ConfigurationError(msg)
        return found
    return value


def _conversation(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Where a request keeps its conversation: chat and Anthropic ``messages``, or the
    Responses API's ``input`` items (each item read as a message; its other fields too)."""
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        return "messages", messages
    items = data.get("input")
    if isinstance(items, list) and items:
        return "input", [i if isinstance(i, dict) else {"role": "user", "content": i}
                         for i in items]
    return "messages", []
