"""Node postprocessor that keeps flagged images away from a multimodal LLM.

In a ``RetrieverQueryEngine`` the postprocessors run between retrieval and synthesis, so a
node dropped here is never turned into an ``ImageBlock`` for the LLM. Every image of one
retrieval is checked in one ``check_batch`` call (one encoder forward per batch chunk);
images seen before are answered from the guard's hash cache.
"""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from safeclip_guardrail import ConfigurationError, ImageVerdict, SafeCLIPGuard
from safeclip_guardrail_llamaindex._nodes import acheck_nodes, check_nodes

__all__ = ["SafeCLIPImagePostprocessor"]

Action = Literal["drop", "annotate"]


class SafeCLIPImagePostprocessor(BaseNodePostprocessor):
    """Drop (default) or annotate retrieved nodes whose image the guard flags.

    ``annotate`` keeps every node and writes the verdict (as JSON) into
    ``node.metadata[metadata_key]`` of a copy of the node; the key is added to the node's
    excluded LLM and embedding metadata keys so the verdict never lands in a prompt. Use it
    to audit a corpus before switching to ``drop``. Nodes without an image pass unchanged.
    """

    action: Action = Field(default="drop", description="'drop' or 'annotate' flagged nodes.")
    metadata_key: str = Field(default="safeclip", description="Metadata key for verdicts.")
    _guard: SafeCLIPGuard = PrivateAttr()

    def __init__(self, guard: SafeCLIPGuard, *, action: Action = "drop",
                 metadata_key: str = "safeclip", **kwargs: Any) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            raise ConfigurationError(
                f"SafeCLIPImagePostprocessor needs a SafeCLIPGuard, got {type(guard).__name__}; "
                "build one with SafeCLIPGuard.from_pretrained(...)"
            )
        if action not in ("drop", "annotate"):
            raise ConfigurationError(f"action must be 'drop' or 'annotate', got {action!r}")
        super().__init__(action=action, metadata_key=metadata_key, **kwargs)
        self._guard = guard

    @classmethod
    def class_name(cls) -> str:
        return "SafeCLIPImagePostprocessor"

    @property
    def guard(self) -> SafeCLIPGuard:
        return self._guard

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        return self._apply(nodes, check_nodes(self._guard, [n.node for n in nodes]))

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None
                                  ) -> list[NodeWithScore]:
        verdicts = await acheck_nodes(self._guard, [n.node for n in nodes])
        return self._apply(nodes, verdicts)

    def _apply(self, nodes: list[NodeWithScore],
               verdicts: list[ImageVerdict | None]) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        for item, verdict in zip(nodes, verdicts, strict=True):
            if verdict is None:
                out.append(item)
            elif self.action == "drop":
                if not verdict.flagged:
                    out.append(item)
            else:
                out.append(NodeWithScore(node=self._annotated(item, verdict), score=item.score))
        return out

    def _annotated(self, item: NodeWithScore, verdict: ImageVerdict) -> Any:
        node = item.node
        key = self.metadata_key
        return node.model_copy(update={
            "metadata": {**node.metadata, key: verdict.model_dump(mode="json")},
            "excluded_llm_metadata_keys": _with(node.excluded_llm_metadata_keys, key),
            "excluded_embed_metadata_keys": _with(node.excluded_embed_metadata_keys, key),
        })


def _with(keys: list[str], key: str) -> list[str]:
    return keys if key in keys else [*keys, key]
