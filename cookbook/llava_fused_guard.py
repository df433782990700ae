"""Recipe: the fused guard inside a local LLaVA (``ChatLlava(guard="auto")``).

The guard reads the CLS token of LLaVA's own vision pass: only CLIP's visual projection
and text tower are loaded besides LLaVA, the tower runs once per image, and a blocked
request never reaches the language model. The verdicts are in
``answer.response_metadata["safeclip"]``.

Run on a real model (the CLIP for LLaVA-1.5 / NeXT is found automatically):
    python cookbook/llava_fused_guard.py --llava llava-hf/llava-1.5-7b-hf photo.jpg "Describe it."
or on a local directory (the CLIP it records in ``mm_vision_tower`` is found, else pass
``--clip DIR``). The test suite runs it on a tiny LLaVA from ``build_tiny_llava``, whose
config records the tiny CLIP its tower came from.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage

from safeclip_guardrail import GuardConfig, SafeCLIPGuard
from safeclip_guardrail.langchain import ChatLlava, guard_result_of


def ask(image_path: str | Path, question: str) -> list[HumanMessage]:
    data = base64.b64encode(Path(image_path).read_bytes()).decode()
    return [HumanMessage(content=[
        {"type": "image", "base64": data, "mime_type": "image/png"},
        {"type": "text", "text": question},
    ])]


def main(image_path: str | Path, question: str = "What is in this picture?", *,
         llava: str, clip: str | None = None, mode: str = "rewrite",
         device: str | None = None, max_new_tokens: int = 64, stream: bool = False,
         guard: SafeCLIPGuard | None = None) -> AIMessage:
    """Answer ``question`` with the fused guard; ``clip`` names the tower's CLIP when the
    LLaVA is not a known one (e.g. a local directory); ``guard`` replaces "auto"."""
    llm = ChatLlava.from_pretrained(
        llava, device=device, max_new_tokens=max_new_tokens,
        guard=guard or "auto", guard_model=None if guard else clip,
        guard_config=None if guard else GuardConfig(mode=mode),  # type: ignore[arg-type]
    )
    messages = ask(image_path, question)
    if stream:
        merged = None
        for chunk in llm.stream(messages):
            print(chunk.content, end="", flush=True)
            merged = chunk if merged is None else merged + chunk
        print()
        assert merged is not None
        answer = AIMessage(content=merged.content, response_metadata=merged.response_metadata,
                           usage_metadata=merged.usage_metadata)
    else:
        answer = llm.invoke(messages)
        print(answer.content)
    result = guard_result_of(answer)  # the GuardResult in response_metadata["safeclip"]
    if result is not None:
        print(json.dumps({"action": result.action, "categories": result.categories}))
    return answer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    parser.add_argument("question", nargs="?", default="What is in this picture?")
    parser.add_argument("--llava", default="llava-hf/llava-1.5-7b-hf")
    parser.add_argument("--clip", default=None, help="the tower's CLIP, if not known")
    parser.add_argument("--mode", default="rewrite")
    parser.add_argument("--device", default=None)
    parser.add_argument("--stream", action="store_true")
    ns = parser.parse_args()
    main(ns.image, ns.question, llava=ns.llava, clip=ns.clip, mode=ns.mode, device=ns.device,
         stream=ns.stream)
