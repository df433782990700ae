"""A standard fake chat model that supports tool calling (langchain-core ships none).

Built like LangChain's own fakes (``GenericFakeChatModel``): ``_generate`` answers from its
fields, ``_stream`` splits that answer into chunks, ``bind_tools`` formats tools the OpenAI
way and binds them. It answers deterministically from the conversation, so it drives agents
with no script:

- tools bound and the last message is not a tool result: a call to the first tool, with
  ``tool_args``;
- otherwise: ``answer`` (after a tool result, followed by that result in parentheses).

Every request is recorded (``requests``: the messages, the call's keyword arguments and stop
sequences), so a test can say exactly what reached the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field


@dataclass(frozen=True)
class Request:
    messages: list[BaseMessage]
    kwargs: dict[str, Any]
    stop: list[str] | None = None


class ToolCallingFakeChatModel(BaseChatModel):
    """A fake chat model with tool calling and structured output; records every request."""

    model: str = "fake-tool-model"
    answer: str = "It is a picture."
    tool_args: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    requests: list[Request] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "fake"
        return params

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type, *,
                               include_raw: bool = False, method: str = "function_calling",
                               strict: bool | None = None, **kwargs: Any) -> Runnable[Any, Any]:
        # like partner models it takes method= and strict=; the fake answers every method
        # with a tool call
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any],
               stop: list[str] | None) -> AIMessage:
        self.requests.append(Request(list(messages), dict(kwargs), stop))
        n = len(self.requests)
        usage = UsageMetadata(input_tokens=len(messages), output_tokens=n, total_tokens=len(messages) + n)
        tools = kwargs.get("tools") or []
        last = messages[-1] if messages else None
        if tools and not isinstance(last, ToolMessage):
            name = tools[0]["function"]["name"]
            call = {"name": name, "args": dict(self.tool_args), "id": f"call_{n}"}
            return AIMessage(content="", tool_calls=[call], usage_metadata=usage,
                             response_metadata={"model_name": self.model})
        text = self.answer if not isinstance(last, ToolMessage) else f"{self.answer} ({last.text})"
        return AIMessage(content=text, usage_metadata=usage,
                         response_metadata={"model_name": self.model})

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs,
                                                                          stop))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages, kwargs, stop)
        words = str(reply.content).split(" ")
        for word in words[:-1]:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        calls = [{"name": c["name"], "args": _json(c["args"]), "id": c["id"], "index": i}
                 for i, c in enumerate(reply.tool_calls)]
        last = ChatGenerationChunk(message=AIMessageChunk(
            content=words[-1], tool_call_chunks=calls, usage_metadata=reply.usage_metadata,
            response_metadata=reply.response_metadata, chunk_position="last"))
        if run_manager:
            run_manager.on_llm_new_token(last.text, chunk=last)
        yield last


def _json(args: dict[str, Any]) -> str:
    import json

    return json.dumps(args)
