"""NeMo Guardrails with the SafeCLIP input rail keeps the guard's promise: the trust contract.

The rails call the registered SafeCLIP action on the conversation as NeMo hands it over;
the model behind them is langchain-core's recording fake (through NeMo's LangChain
adapter). NeMo's prompt to the model is text, so no picture may arrive at all; what NeMo
itself cannot represent is left out (``supports``).
"""

from __future__ import annotations

from nemoguardrails import LLMRails
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
from safeclip_guardrail_nemo import example_rails_config, register_safeclip

from safeclip_guardrail.langchain.testing import ANSWER, RecordingChatModel
from safeclip_guardrail.testing.trust import Conversation, Outcome, TrustContract, as_dicts


class TestNeMoRails(TrustContract):
    name = "nemo"
    styles = ("invoke", "ainvoke")
    forwards_images = False  # NeMo's prompt to the model is text
    answers_a_raising_guard = True  # a failing action is answered by NeMo itself

    def start(self) -> None:
        self.model = RecordingChatModel()
        self.rails = LLMRails(example_rails_config(), llm=LangChainLLMAdapter(self.model))
        register_safeclip(self.rails, self.images.guard)

    def supports(self, conversation: Conversation) -> bool:
        # NeMo's own limits, not the guard's: bot turns must be strings (it asserts); roles
        # other than these and fields other than role/content are dropped by NeMo before any
        # rail or model sees them; bare strings inside a content list crash its history cache.
        for m in as_dicts(conversation):
            content = m.get("content")
            if m["role"] not in ("user", "assistant", "system", "developer") or set(m) - {
                    "role", "content"}:
                return False
            if m["role"] == "assistant" and not isinstance(content, str):
                return False
            if isinstance(content, list) and not all(isinstance(c, dict) for c in content):
                return False
        return True

    def run(self, conversation: Conversation, style: str) -> Outcome:
        import asyncio

        self.model.requests.clear()
        messages = as_dicts(conversation)
        out = (self.rails.generate(messages=messages) if style == "invoke"
               else asyncio.run(self.rails.generate_async(messages=messages)))
        blocked = not self.model.requests
        assert blocked == (out["content"] != ANSWER), out
        return Outcome(blocked, self.model.received(), bool(self.model.requests))
