"""Recipe: an image guardrail and a text guardrail together; any block wins.

    python cookbook/image_and_text_guardrails.py --model llava-1.5 photo.jpg "How do I..."

Each guardrail leaves its decision on the message (in ``response_metadata``, never in the
provider payload) and ``guardrail_gate(llm)`` answers with one refusal naming every
guardrail that blocked, without calling the model. Two layouts:

- sequence: ``image_guardrail | text_guardrail | guardrail_gate(llm)``
- parallel: ``RunnableParallel(image=..., text=...) | merge_guardrails | guardrail_gate(llm)``

The keyword check stands in for any text guardrail (a moderation model, NeMo Guardrails…):
anything that maps the user's text to "blocked, because …" or None plugs in.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import Runnable, RunnableParallel

from safeclip_guardrail import SafeCLIPGuard, SafeCLIPGuardrail
from safeclip_guardrail.runnable import guardrail_gate, merge_guardrails, text_guardrail

BLOCKED_WORDS = ("bomb", "explosive", "poison")


def keyword_check(text: str) -> str | None:
    """A minimal text guardrail: the reason to block, or None."""
    hits = [w for w in BLOCKED_WORDS if w in text.lower()]
    return f"mentions {', '.join(hits)}" if hits else None


def build(guardrail: SafeCLIPGuardrail, llm: Runnable[Any, Any], *,
          parallel: bool = False) -> Runnable[Any, Any]:
    text = text_guardrail(keyword_check, name="keywords")
    if parallel:
        both = RunnableParallel(image=guardrail, text=text)
        return both | merge_guardrails | guardrail_gate(llm)
    return guardrail | text | guardrail_gate(llm)


def main(model: str = "llava-1.5", image: str | Path = "", text: str = "What is this?", *,
         parallel: bool = False, mode: str = "block", guard: SafeCLIPGuard | None = None,
         llm: BaseChatModel | None = None) -> str:
    """Ask ``text`` about ``image`` behind both guardrails; print and return the answer."""
    # on_block="defer": the image guardrail leaves its block on the messages, so the gate
    # answers one refusal naming every guardrail that blocked (any block wins)
    guardrail = (SafeCLIPGuardrail(guard=guard, mode=mode, on_block="defer")  # type: ignore[arg-type]
                 if guard is not None
                 else SafeCLIPGuardrail.from_pretrained(model, mode=mode, on_block="defer"))  # type: ignore[arg-type]
    llm = llm or FakeListChatModel(responses=["(the model's answer)"])
    data = base64.b64encode(Path(image).read_bytes()).decode()
    message = HumanMessage(content=[{"type": "text", "text": text},
                                    {"type": "image", "base64": data, "mime_type": "image/png"}])
    answer = build(guardrail, llm, parallel=parallel).invoke([message])
    print(answer.content)
    return str(answer.content)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("text")
    parser.add_argument("--model", default="llava-1.5")
    parser.add_argument("--parallel", action="store_true")
    args = parser.parse_args()
    main(args.model, args.image, args.text, parallel=args.parallel)
