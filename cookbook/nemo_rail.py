"""A NeMo Guardrails input rail that refuses toxic images before the LLM runs.

The shipped example config (``safeclip_guardrail_nemo.example_config_dir()``) holds a
``config.yml`` with one input-rail flow and the Colang file that executes
``safeclip_check_image``; ``register_safeclip`` registers that action on the rails.

Needs ``pip install . ./integrations/nemo`` (from a checkout). Run it on your own images::

    python cookbook/nemo_rail.py photo1.jpg photo2.png --model llava-1.5

Without ``llm=`` the recipe uses langchain-core's ``FakeListChatModel`` so it runs offline;
pass your own LangChain chat model (or configure ``models:`` in the config) in real use.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemoguardrails import LLMRails
from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter
from safeclip_guardrail_nemo import example_rails_config, register_safeclip

from safeclip_guardrail import SafeCLIPGuard


@dataclass
class RailAnswer:
    image: str
    answer: str


def user_turn(question: str, image: Path) -> dict[str, Any]:
    """An OpenAI-style user message with the image inline as a data URL."""
    mime = mimetypes.guess_type(image.name)[0] or "image/png"
    url = f"data:{mime};base64,{base64.b64encode(image.read_bytes()).decode()}"
    return {"role": "user", "content": [{"type": "text", "text": question},
                                        {"type": "image_url", "image_url": {"url": url}}]}


def main(images: list[str | Path], *, model: str = "llava-1.5",
         guard: SafeCLIPGuard | None = None, llm: Any = None,
         question: str = "What is in this picture?") -> list[RailAnswer]:
    guard = guard or SafeCLIPGuard.from_pretrained(model)
    if llm is None:
        from langchain_core.language_models.fake_chat_models import FakeListChatModel

        llm = FakeListChatModel(responses=["(the model's answer)"])
    rails = LLMRails(example_rails_config(), llm=LangChainLLMAdapter(llm))
    register_safeclip(rails, guard)
    answers = []
    for image in map(Path, images):
        out = rails.generate(messages=[user_turn(question, image)])
        answers.append(RailAnswer(image=image.name, answer=str(out["content"])))
    return answers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="llava-1.5")
    args = parser.parse_args()
    for a in main(args.images, model=args.model):
        print(f"{a.image}: {a.answer}")
