"""Recipe: a SafeCLIP guardrail in front of a vision-language chat model.

    python cookbook/guarded_chain.py --model llava-1.5 photo1.jpg photo2.png --mode block

The chain is ``prompt | guardrail.wrap(llm)``: each image is checked before the model is
called; with ``--mode block`` a flagged image is answered with a refusal and the model is
never called, with ``--mode rewrite`` (the paper's intervention) the safety instruction is
prepended to the question so the model refuses with a reason. All requests of a batch share
one encoder pass. Replace the fake chat model with your own (``ChatLlava``, ``ChatOpenAI``…).
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from safeclip_guardrail import SafeCLIPGuard, SafeCLIPGuardrail

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You are a helpful assistant that describes images."),
    ("user", [{"type": "text", "text": "{question}"},
              {"type": "image_url", "image_url": {"url": "{image}"}}]),
])


def image_data_url(path: str | Path) -> str:
    """The image file as a data URL (what multimodal chat models take inline)."""
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def build_chain(guardrail: SafeCLIPGuardrail, llm: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``prompt | guardrail.wrap(llm)``: the model only sees what the guardrail lets through."""
    return PROMPT | guardrail.wrap(llm)


def main(model: str = "llava-1.5", images: Sequence[str | Path] = (), *,
         question: str = "What is in this picture?", mode: str = "block",
         guard: SafeCLIPGuard | None = None, llm: BaseChatModel | None = None) -> list[str]:
    """Ask ``question`` about every image; print and return the answers."""
    guardrail = (SafeCLIPGuardrail(guard=guard, mode=mode) if guard is not None  # type: ignore[arg-type]
                 else SafeCLIPGuardrail.from_pretrained(model, mode=mode))  # type: ignore[arg-type]
    llm = llm or FakeListChatModel(responses=["(the model's description of the image)"])
    chain = build_chain(guardrail, llm)
    answers = chain.batch([{"question": question, "image": image_data_url(p)} for p in images])
    texts = [str(a.content) for a in answers]
    for path, text in zip(images, texts, strict=True):
        print(f"{path}: {text}")
    return texts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", default="llava-1.5")
    parser.add_argument("--mode", default="block",
                        choices=["rewrite", "annotate", "redact", "block"])
    parser.add_argument("--question", default="What is in this picture?")
    args = parser.parse_args()
    main(args.model, args.images, question=args.question, mode=args.mode)
