"""Recipe: a standalone SafeCLIP guardrail in front of a local LLaVA (``guard | ChatLlava``).

The guard runs its own CLIP tower, then the chat model runs LLaVA (with its own tower).
Works in front of *any* LangChain chat model; for a local LLaVA the fused recipe
(``llava_fused_guard.py``) saves the second vision pass.

Run on real models:
    python cookbook/llava_standalone_guard.py --llava llava-hf/llava-1.5-7b-hf \\
        --clip llava-1.5 photo.jpg "What is in this picture?"
The test suite runs ``main`` on a tiny LLaVA whose tower is a tiny CLIP.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.langchain import ChatLlava, SafeCLIPGuardrail


def ask(image_path: str | Path, question: str) -> list[HumanMessage]:
    data = base64.b64encode(Path(image_path).read_bytes()).decode()
    return [HumanMessage(content=[
        {"type": "image", "base64": data, "mime_type": "image/png"},
        {"type": "text", "text": question},
    ])]


def main(image_path: str | Path, question: str = "What is in this picture?", *,
         llava: str, clip: str = "llava-1.5", mode: str = "rewrite",
         device: str | None = None, max_new_tokens: int = 64,
         guard: SafeCLIPGuard | None = None) -> AIMessage:
    """Answer ``question`` about the image behind a standalone guardrail.

    ``guard`` replaces the CLIP named by ``clip`` (tests pass one with a chosen concept bank).
    """
    guard = guard or SafeCLIPGuard.from_pretrained(clip, device=device)
    guardrail = SafeCLIPGuardrail(guard=guard, mode=mode)  # type: ignore[arg-type]
    llm = ChatLlava.from_pretrained(llava, device=device, max_new_tokens=max_new_tokens)
    chain: Any = guardrail.wrap(llm)  # rewrite/redact/annotate pass on; block answers a refusal
    answer: AIMessage = chain.invoke(ask(image_path, question))
    print(answer.content)
    return answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("question", nargs="?", default="What is in this picture?")
    parser.add_argument("--llava", default="llava-hf/llava-1.5-7b-hf")
    parser.add_argument("--clip", default="llava-1.5")
    parser.add_argument("--mode", default="rewrite")
    parser.add_argument("--device", default=None)
    ns = parser.parse_args()
    main(ns.image, ns.question, llava=ns.llava, clip=ns.clip, mode=ns.mode, device=ns.device)
