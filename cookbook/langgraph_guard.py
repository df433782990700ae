"""A hand-built LangGraph graph with a SafeCLIP guard node and a refusal branch.

``safeclip_node(guard)`` checks the images of the messages state; ``safeclip_router``
sends a blocked request to a refusal node (here: one that records the incident) and
everything else to the model node::

    START -> safeclip -> (blocked) refusal -> END
                      -> (passed)  model   -> END

Needs ``pip install ".[langchain]" ./integrations/langchain`` (from a checkout). Run it on your own images::

    python cookbook/langgraph_guard.py photo1.jpg photo2.png --model llava-1.5

Without ``chat_model=`` a langchain-core fake answers, so the recipe runs offline.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from safeclip_guardrail_langchain import safeclip_node, safeclip_router

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.langchain import guard_result_of


@dataclass
class GraphRun:
    image: str
    route: str
    """``model`` or ``refusal``: the branch the router took."""
    answer: str


def build_graph(guard: SafeCLIPGuard, chat_model: Any, incidents: list[dict[str, Any]]) -> Any:
    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [chat_model.invoke(state["messages"])]}

    def refusal(state: MessagesState) -> dict[str, Any]:
        result = guard_result_of(state["messages"][-1])
        incidents.append({"categories": result.categories if result else []})
        return {}  # the guard node already appended the refusal message

    builder = StateGraph(MessagesState)
    builder.add_node("safeclip", safeclip_node(guard))
    builder.add_node("model", model)
    builder.add_node("refusal", refusal)
    builder.add_edge(START, "safeclip")
    builder.add_conditional_edges("safeclip", safeclip_router(blocked="refusal", passed="model"),
                                  ["refusal", "model"])
    builder.add_edge("model", END)
    builder.add_edge("refusal", END)
    return builder.compile()


def main(images: list[str | Path], *, model: str = "llava-1.5",
         guard: SafeCLIPGuard | None = None, chat_model: Any = None,
         question: str = "What is in this picture?") -> list[GraphRun]:
    guard = guard or SafeCLIPGuard.from_pretrained(model)
    if chat_model is None:
        from langchain_core.language_models.fake_chat_models import FakeListChatModel

        chat_model = FakeListChatModel(responses=["(the model's answer)"])
    incidents: list[dict[str, Any]] = []
    graph = build_graph(guard, chat_model, incidents)
    runs = []
    for image in map(Path, images):
        mime = mimetypes.guess_type(image.name)[0] or "image/png"
        data = base64.b64encode(image.read_bytes()).decode()
        message = HumanMessage(content_blocks=[
            {"type": "text", "text": question},
            {"type": "image", "base64": data, "mime_type": mime},
        ])
        before = len(incidents)
        state = graph.invoke({"messages": [message]})
        runs.append(GraphRun(image=image.name,
                             route="refusal" if len(incidents) > before else "model",
                             answer=state["messages"][-1].text))
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", default="llava-1.5")
    args = parser.parse_args()
    for run in main(args.images, model=args.model):
        print(f"{run.image}: {run.route}: {run.answer}")
