"""Guard a LangChain agent: images are checked before every model call.

``SafeCLIPMiddleware`` plugs into ``langchain.agents.create_agent``. With ``action="end"``
a flagged image ends the run with a refusal and the model is never called; ``rewrite``
(the SafeCLIP paper's method) lets a vision-language model refuse with a reason;
``redact`` removes the image; ``error`` raises ``GuardrailViolation``.

Needs ``pip install ".[langchain]" ./integrations/langchain`` (from a checkout). Run it on your own images::

    python cookbook/agent_middleware.py photo1.jpg photo2.png --model llava-1.5

Without ``chat_model=`` the recipe uses langchain-core's ``FakeListChatModel`` so it runs
offline; pass any LangChain chat model that takes images (e.g. ``ChatLlava``) in real use.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from safeclip_guardrail_langchain import AgentAction, SafeCLIPMiddleware

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.langchain import guard_result_of


@dataclass
class AgentAnswer:
    image: str
    answer: str
    flagged: list[str]
    """Categories the guard flagged in this turn (empty when the image passed)."""


def image_turn(image: Path, question: str) -> HumanMessage:
    mime = mimetypes.guess_type(image.name)[0] or "image/png"
    return HumanMessage(content_blocks=[
        {"type": "text", "text": question},
        {"type": "image", "base64": base64.b64encode(image.read_bytes()).decode(),
         "mime_type": mime},
    ])


def main(images: list[str | Path], *, model: str = "llava-1.5",
         guard: SafeCLIPGuard | None = None, chat_model: Any = None,
         action: AgentAction = "end",
         question: str = "What is in this picture?") -> list[AgentAnswer]:
    guard = guard or SafeCLIPGuard.from_pretrained(model)
    if chat_model is None:
        from langchain_core.language_models.fake_chat_models import FakeListChatModel

        chat_model = FakeListChatModel(responses=["(the model's answer)"])
    agent = create_agent(chat_model, tools=[],
                         middleware=[SafeCLIPMiddleware(guard, action=action)])
    answers = []
    for image in map(Path, images):
        state = agent.invoke({"messages": [image_turn(image, question)]})
        result = guard_result_of(state["messages"][0])
        answers.append(AgentAnswer(image=image.name, answer=state["messages"][-1].text,
                                   flagged=result.categories if result else []))
    return answers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="llava-1.5")
    parser.add_argument("--action", default="end",
                        choices=["end", "rewrite", "redact", "error", "annotate"])
    args = parser.parse_args()
    for a in main(args.images, model=args.model, action=args.action):
        print(f"{a.image}: {a.answer}  (flagged: {', '.join(a.flagged) or 'no'})")
