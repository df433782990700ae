"""ChatLlava: a local LLaVA-1.5 / LLaVA-NeXT chat model for LangChain, with a fused guard.

::

    llm = ChatLlava.from_pretrained("llava-hf/llava-1.5-7b-hf", guard="auto")
    llm.invoke([HumanMessage(content=[{"type": "image", "base64": b64, "mime_type": "image/png"},
                                      {"type": "text", "text": "What is this?"}])])

With a guard, each image is checked on LLaVA's own vision pass (see ``_fused``); the
verdicts go into ``response_metadata["safeclip"]``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr

from safeclip_guardrail import policy
from safeclip_guardrail.config import GuardConfig, ImageOptions
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.guard import SafeCLIPGuard
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.langchain._messages import METADATA_KEY
from safeclip_guardrail.langchain._metadata import as_metadata
from safeclip_guardrail.langchain.chat_models import _fused
from safeclip_guardrail.langchain.chat_models._loading import LoadedLlava, load_llava
from safeclip_guardrail.langchain.chat_models._plan import Plan, plan
from safeclip_guardrail.langchain.chat_models._prompt import Conversation, parse_messages
from safeclip_guardrail.langchain.chat_models._streaming import StopTrimmer, TokenStreamer, cut_at_stop
from safeclip_guardrail.result import ImageVerdict

__all__ = ["ChatLlava"]

_GEN_ONLY = frozenset({"max_new_tokens", "max_tokens", "temperature", "top_p"})


class _Prepared:
    """What one request becomes: model inputs and the guard's decision."""

    def __init__(self, inputs: dict[str, Any], decision: Plan | None) -> None:
        self.inputs = inputs
        self.decision = decision

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


class ChatLlava(BaseChatModel):
    """A local LLaVA chat model (transformers), optionally guarded by SafeCLIP.

    ``guard``: a :class:`SafeCLIPGuard`, ``"auto"`` (CLIP's projection and text tower for
    this LLaVA's tower, no second vision tower) or None. A guard whose CLIP projection fits
    the tower is *fused*: it reads the CLS of LLaVA's own vision pass. Any other guard (a
    planted test encoder, ``fuse_guard=False``) checks the images with its own encoder first.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str
    """Hub id (``llava-hf/llava-1.5-7b-hf``) or a local ``save_pretrained`` directory."""
    device: str | None = None
    """``cuda``, ``cpu``...; None picks a GPU when there is one."""
    dtype: str | None = None
    """``float32`` / ``float16`` / ``bfloat16``; None: float16 on GPU, float32 on CPU."""
    revision: str | None = None
    max_new_tokens: int = Field(default=256, ge=1,
                                validation_alias=AliasChoices("max_new_tokens", "max_tokens"))
    """Most tokens generated per answer (``max_tokens`` is accepted as an alias)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 is greedy decoding (deterministic); above 0 samples."""
    top_p: float | None = None
    stop: list[str] | None = None
    """Stop sequences: generation ends at the first one, which is not part of the answer."""
    timeout: float | None = None
    """Seconds a stream waits for the next token before giving up (None: no limit)."""
    max_retries: int = 0
    """Accepted for interface compatibility; a local model has nothing to retry."""
    streaming: bool = False
    """Make ``invoke`` stream internally (callbacks get every token)."""
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for ``model.generate`` (e.g. ``repetition_penalty``)."""
    guard: Any = Field(default=None, exclude=True)
    """``SafeCLIPGuard``, ``"auto"`` or None."""
    guard_model: str | None = None
    """For ``guard="auto"``: the CLIP checkpoint of the tower (hub id or directory)."""
    guard_config: GuardConfig | None = None
    """For ``guard="auto"``: modes, thresholds, concept bank (GuardConfig)."""
    fuse_guard: bool = True
    """Read the CLS from LLaVA's own vision pass when the guard allows it."""

    _loaded: LoadedLlava = PrivateAttr()
    _guard: SafeCLIPGuard | None = PrivateAttr(default=None)
    _fused: bool = PrivateAttr(default=False)

    # ------------------------------------------------------------------ construction
    def __init__(self, **kwargs: Any) -> None:
        # Loading happens after validation, outside pydantic validators, so load errors reach
        # the caller as ModelLoadError / ConfigurationError rather than a ValidationError.
        super().__init__(**kwargs)
        self._loaded = load_llava(self.model, device=self.device, dtype=self.dtype,
                                  revision=self.revision)
        self._guard = self._resolve_guard()
        self._fused = bool(self._guard is not None and self.fuse_guard
                           and _fused.can_fuse(self._guard, self._loaded))

    @classmethod
    def from_pretrained(cls, model_id_or_dir: str, *, device: str | None = None,
                        dtype: str | None = None, guard: SafeCLIPGuard | str | None = None,
                        **generation_kwargs: Any) -> ChatLlava:
        """Load a LLaVA checkpoint. Keyword options that are fields of ChatLlava
        (``max_new_tokens``, ``temperature``, ``stop``, ``guard_model``, ``guard_config``...)
        set them; any other keyword goes to ``model.generate``."""
        names = set(cls.model_fields) | {"max_tokens", "callbacks", "tags", "metadata"}
        fields = {k: v for k, v in generation_kwargs.items() if k in names}
        extra = {k: v for k, v in generation_kwargs.items() if k not in names}
        fields.setdefault("generation_kwargs", {})
        fields["generation_kwargs"] = {**fields["generation_kwargs"], **extra}
        return cls(model=str(model_id_or_dir), device=device, dtype=dtype, guard=guard, **fields)

    @classmethod
    def from_model(cls, model: Any, processor: Any, *, name: str = "llava-in-memory",
                   guard: SafeCLIPGuard | str | None = None, **options: Any) -> ChatLlava:
        """Wrap a LLaVA model you already loaded (quantised, sharded, built in memory).

        ``name`` is how the model is reported (``response_metadata["model_name"]``, traces);
        ``options`` are the same as for :meth:`from_pretrained`.
        """
        from safeclip_guardrail.langchain.chat_models._loading import register_loaded

        loaded = register_loaded(model, processor, name=name)
        dtype = str(loaded.dtype).removeprefix("torch.")
        llm = cls.from_pretrained(name, device=str(loaded.device), dtype=dtype, guard=guard,
                                  **options)
        return llm

    def _resolve_guard(self) -> SafeCLIPGuard | None:
        g = self.guard
        if g is None:
            if self.guard_config is not None or self.guard_model is not None:
                msg = "guard_config/guard_model need guard='auto'"
                raise ConfigurationError(msg)
            return None
        if isinstance(g, SafeCLIPGuard):
            if self.guard_config is not None:
                msg = ("pass guard_config only with guard='auto'; to change a guard's options use "
                       "guard.with_options(...)")
                raise ConfigurationError(msg)
            return g
        if g == "auto":
            return _fused.auto_guard(self._loaded, guard_model=self.guard_model,
                                     config=self.guard_config, device=self.device,
                                     dtype=self.dtype)
        msg = (f"guard must be a SafeCLIPGuard, 'auto' or None, got {g!r}; to name the CLIP "
               "checkpoint use guard='auto', guard_model=...")
        raise ConfigurationError(msg)

    # ------------------------------------------------------------------ properties
    @property
    def _llm_type(self) -> str:
        return "chat-llava"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "guard": self.guard_name}

    @property
    def guard_name(self) -> str | None:
        return None if self._guard is None else self._guard.model_name

    @property
    def safeclip_guard(self) -> SafeCLIPGuard | None:
        """The guard in force (loaded for ``guard="auto"``)."""
        return self._guard

    @property
    def guard_is_fused(self) -> bool:
        """True when the guard reads LLaVA's own vision pass (no second tower)."""
        return self._fused

    @property
    def hf_model(self) -> Any:
        """The transformers model (for hooks, benchmarks, advanced use)."""
        return self._loaded.model

    @property
    def processor(self) -> Any:
        return self._loaded.processor

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="transformers", ls_model_name=str(kwargs.get("model") or self.model),
            ls_model_type="chat", ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_new_tokens", kwargs.get("max_tokens",
                                                                  self.max_new_tokens)),
        )
        stops = stop or self.stop
        if stops:
            params["ls_stop"] = stops
        return params

    # ------------------------------------------------------------------ preparation
    def render_prompt(self, messages: list[BaseMessage]) -> str:
        """The prompt text the model would see for ``messages`` (after the guard's rewrite),
        with each image token once (before the processor expands it)."""
        conv, decision, _ = self._guarded(messages)
        keep = decision.keep if decision else frozenset(range(len(conv.images)))
        return self._prompt_text(conv, keep, decision)

    def _prompt_text(self, conv: Conversation, keep: frozenset[int], decision: Plan | None) -> str:
        chat = conv.render(keep=keep, placeholders=decision.placeholders if decision else None,
                           instructions=decision.instructions if decision else None,
                           image_token=self._image_token)
        return str(self.processor.apply_chat_template(chat, add_generation_prompt=True,
                                                      tokenize=False))

    @property
    def _image_token(self) -> str:
        return str(getattr(self.processor, "image_token", "<image>"))

    def _tokenize(self, conv: Conversation, keep: frozenset[int],
                  decision: Plan | None) -> dict[str, Any]:
        prompt = self._prompt_text(conv, keep, decision)
        images = conv.images_for(keep)
        if images:
            out = self.processor(images=images, text=prompt, return_tensors="pt")
        else:
            out = self.processor(text=prompt, return_tensors="pt")
        return {k: v.to(self._loaded.device) if isinstance(v, torch.Tensor) else v
                for k, v in dict(out).items()}

    def _read(self, conv: Conversation) -> None:
        """Decode every readable slot with the guard's own decode (same limits, same pixels).

        The bytes are the part's :class:`EncodedImage` only: a string in message content
        is never opened as a path, with or without a guard."""
        guard = self._guard
        for slot in conv.images:
            if slot.error is not None or slot.part.image is None:
                continue
            try:
                slot.decoded = (guard.decode(slot.part.image) if guard is not None
                                else decode_image(slot.part.image, ImageOptions()))
            except ImageInputError as exc:
                slot.error = ImageInputError(f"{slot.source}: {exc}", source=exc.source)

    def _guarded(self, messages: list[BaseMessage]
                 ) -> tuple[Conversation, Plan | None, Any]:
        """Find, read, judge and decide; returns the vision pass to reuse when fused."""
        guard = self._guard
        conv = parse_messages(messages, guard.config.images if guard is not None
                              else ImageOptions(),
                              fetcher=guard.fetcher if guard is not None else None)
        self._read(conv)
        if guard is None:
            for slot in conv.images:
                if slot.error is not None:
                    raise slot.error  # no guard, no on_error: an unreadable image is an error
            return conv, None, None
        cfg = guard.config
        verdicts: dict[int, ImageVerdict] = {}
        for i, slot in enumerate(conv.images):
            if slot.error is not None:
                verdicts[i] = policy.verdict_for(slot.error, cfg, source=slot.source)
        readable = [i for i, s in enumerate(conv.images) if s.decoded is not None]
        vision: Any = None
        if readable and self._fused:
            inputs = self._tokenize(conv, frozenset(readable), None)
            enc = _fused.encode_images(self._loaded, inputs)
            cls = _fused.image_cls(self._loaded, enc, inputs, n_images=len(readable),
                                   source=cfg.cls_source)
            fresh = _fused.score_fused(guard, cls, [conv.images[i] for i in readable])
            verdicts.update(zip(readable, fresh))
            vision = (inputs, enc, readable)
        elif readable:
            judged = guard.judge_batch([img for i in readable
                                        if (img := conv.images[i].part.image) is not None])
            for i, j in zip(readable, judged, strict=True):
                verdicts[i] = policy.verdict_for(j, cfg, source=conv.images[i].source)
        return conv, plan(conv, verdicts, cfg), vision

    def _prepare(self, messages: list[BaseMessage]) -> _Prepared:
        conv, decision, vision = self._guarded(messages)
        if decision is None:
            return _Prepared(self._tokenize(conv, frozenset(range(len(conv.images))), None), None)
        if decision.action == "block":
            return _Prepared({}, decision)
        if vision is None:
            return _Prepared(self._tokenize(conv, decision.keep, decision), decision)
        first_inputs, enc, readable = vision
        inputs = first_inputs if not decision.changes_prompt and decision.keep == set(readable) \
            else self._tokenize(conv, decision.keep, decision)
        inputs = {k: v for k, v in inputs.items() if k not in ("pixel_values", "image_sizes")}
        kept = [pos for pos, i in enumerate(readable) if i in decision.keep]
        if kept:
            inputs["mm_encoder_outputs"] = {"image": _fused.keep_images(enc, kept)}
        return _Prepared(inputs, decision)

    def _generate_kwargs(self, stop: list[str] | None, kwargs: dict[str, Any]
                         ) -> tuple[dict[str, Any], list[str] | None]:
        max_new = kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens))
        temperature = float(kwargs.get("temperature", self.temperature))
        top_p = kwargs.get("top_p", self.top_p)
        extra = {k: v for k, v in kwargs.items()
                 if k not in _GEN_ONLY and k != "model" and not k.startswith("ls_")}
        gen: dict[str, Any] = {**self.generation_kwargs, **extra, "max_new_tokens": int(max_new)}
        if temperature > 0:
            gen.update(do_sample=True, temperature=temperature)
            if top_p is not None:
                gen["top_p"] = top_p
        else:
            gen["do_sample"] = False
        stops = [s for s in (stop or self.stop or []) if s]
        if stops:
            gen.update(stop_strings=stops, tokenizer=self._loaded.tokenizer)
        return gen, stops or None

    def _metadata(self, decision: Plan | None, finish_reason: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"model_name": self.model, "model_provider": "transformers",
                                "finish_reason": finish_reason}
        if decision is not None:
            meta[METADATA_KEY] = as_metadata(decision.result)
        return meta

    @staticmethod
    def _refusal(decision: Plan) -> str:
        return decision.refusal or ""

    # ------------------------------------------------------------------ generation
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        prepared = self._prepare(messages)
        decision = prepared.decision
        if decision is not None and decision.action == "block":
            message = AIMessage(content=self._refusal(decision),
                                response_metadata=self._metadata(decision, "guardrail"),
                                usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0,
                                                             total_tokens=0))
            return ChatResult(generations=[ChatGeneration(message=message)])
        gen, stops = self._generate_kwargs(stop, kwargs)
        with torch.inference_mode():
            out = self.hf_model.generate(**prepared.inputs, **gen)
        new = out[0, prepared.prompt_tokens:]
        text = str(self._loaded.tokenizer.decode(new, skip_special_tokens=True))
        text, hit = cut_at_stop(text, stops)
        finish = "length" if (len(new) >= gen["max_new_tokens"] and not hit) else "stop"
        n_in, n_out = prepared.prompt_tokens, len(new)
        message = AIMessage(
            content=text, response_metadata=self._metadata(decision, finish),
            usage_metadata=UsageMetadata(input_tokens=n_in, output_tokens=n_out,
                                         total_tokens=n_in + n_out),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        prepared = self._prepare(messages)
        decision = prepared.decision
        if decision is not None and decision.action == "block":
            text = self._refusal(decision)
            chunk = ChatGenerationChunk(message=AIMessageChunk(
                content=text, response_metadata=self._metadata(decision, "guardrail"),
                usage_metadata=UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0),
                chunk_position="last"))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
            return
        gen, stops = self._generate_kwargs(stop, kwargs)
        streamer = TokenStreamer(self._loaded.tokenizer, timeout=self.timeout,
                                 skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.hf_model.generate(**prepared.inputs, **gen, streamer=streamer)
            except BaseException as exc:
                errors.append(exc)
                streamer.end()  # type: ignore[no-untyped-call]

        thread = threading.Thread(target=run, name="chat-llava-generate", daemon=True)
        thread.start()
        trimmer = StopTrimmer(stops)
        for piece in streamer:
            out = trimmer.feed(piece)
            if out:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=out))
                if run_manager:
                    run_manager.on_llm_new_token(out, chunk=chunk)
                yield chunk
            if trimmer.stopped:
                break
        thread.join()
        if errors:
            raise errors[0]
        tail = trimmer.flush()
        n_in, n_out = prepared.prompt_tokens, streamer.generated_tokens
        finish = "length" if (n_out >= gen["max_new_tokens"] and not trimmer.stopped) else "stop"
        last = ChatGenerationChunk(message=AIMessageChunk(
            content=tail, response_metadata=self._metadata(decision, finish),
            usage_metadata=UsageMetadata(input_tokens=n_in, output_tokens=n_out,
                                         total_tokens=n_in + n_out),
            chunk_position="last"))
        if run_manager and tail:
            run_manager.on_llm_new_token(tail, chunk=last)
        yield last

