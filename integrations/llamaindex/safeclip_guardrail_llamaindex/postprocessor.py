"""Node postprocessor that keeps flagged images away from a multimodal LLM.

In a ``RetrieverQueryEngine`` the postprocessors run between retrieval and synthesis, so a
node dropped here is never turned into an ``ImageBlock`` for the LLM. Every image of one
retrieval is judged in one guard batch (one encoder forward per batch chunk); images seen
before are answered from the guard's hash cache. A node that is kept holds only the judged
bytes, inline, so the LLM gets exactly what was judged (nothing is re-read from a path or
re-fetched from a URL). What a verdict means is the guard's config, through
:mod:`safeclip_guardrail.policy`: the same ``GuardConfig`` gives the same action here as in
the Runnable, the agent middleware or NeMo.
"""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from safeclip_guardrail import (
    ConfigurationError,
    GuardrailViolation,
    GuardResult,
    ImageVerdict,
    SafeCLIPGuard,
)
from safeclip_guardrail_llamaindex._nodes import (
    NodeDecision,
    adecide_nodes,
    decide_nodes,
    with_judged_image,
    without_image,
)

__all__ = ["SafeCLIPImagePostprocessor"]

Action = Literal["drop", "annotate"]


class SafeCLIPImagePostprocessor(BaseNodePostprocessor):
    """Drop (default) or annotate retrieved nodes whose image the guard flags.

    With ``drop``, the guard's config decides per node (``policy.action_for``): ``pass``
    keeps the node, ``annotate`` keeps it with the verdict in its metadata, ``rewrite`` /
    ``redact`` / ``block`` drop it, ``raise`` raises :class:`GuardrailViolation`. An
    unreadable image (missing file, bad data, a URL that may not be fetched, a path in
    ``image_url``) goes through ``on_error``: ``block`` drops the node, ``raise`` raises,
    ``allow`` keeps the node without its image — an image that could not be judged is
    never forwarded.

    ``annotate`` (audit) keeps every node and writes the verdict (as JSON) into
    ``node.metadata[metadata_key]`` of a copy of the node; the key is added to the node's
    excluded LLM and embedding metadata keys so the verdict never lands in a prompt. Use it
    to audit a corpus before switching to ``drop``. Unreadable images are removed from
    their node even then. Nodes without an image pass unchanged.
    """

    action: Action = Field(default="drop", description="'drop' or 'annotate' flagged nodes.")
    metadata_key: str = Field(default="safeclip", description="Metadata key for verdicts.")
    _guard: SafeCLIPGuard = PrivateAttr()

    def __init__(self, guard: SafeCLIPGuard, *, action: Action = "drop",
                 metadata_key: str = "safeclip", **kwargs: Any) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            msg = (f"SafeCLIPImagePostprocessor needs a SafeCLIPGuard, got {type(guard).__name__}; "
                   "build one with SafeCLIPGuard.from_pretrained(...)")
            raise ConfigurationError(msg)
        if action not in ("drop", "annotate"):
            msg = f"action must be 'drop' or 'annotate', got {action!r}"
            raise ConfigurationError(msg)
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
        return self._apply(nodes, decide_nodes(self._guard, [n.node for n in nodes]))

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None
                                  ) -> list[NodeWithScore]:
        decisions = await adecide_nodes(self._guard, [n.node for n in nodes])
        return self._apply(nodes, decisions)

    def _apply(self, nodes: list[NodeWithScore],
               decisions: list[NodeDecision | None]) -> list[NodeWithScore]:
        raised = [d.verdict for d in decisions if d is not None and d.action == "raise"]
        if raised:
            raise GuardrailViolation(GuardResult(verdicts=raised, action="raise"))
        out: list[NodeWithScore] = []
        for item, d in zip(nodes, decisions, strict=True):
            if d is None:
                out.append(item)
                continue
            audit = self.action == "annotate"
            if d.judged is not None and d.verdict.error is None and (audit or d.forwardable):
                node = with_judged_image(item.node, d.judged)
            elif audit or not d.verdict.flagged:  # unreadable: on without its image
                node = without_image(item.node)
            else:
                continue  # dropped
            if audit or d.action == "annotate":
                node = self._annotated(node, d.verdict)
            out.append(NodeWithScore(node=node, score=item.score))
        return out

    def _annotated(self, node: Any, verdict: ImageVerdict) -> Any:
        key = self.metadata_key
        return node.model_copy(update={
            "metadata": {**node.metadata, key: verdict.model_dump(mode="json")},
            "excluded_llm_metadata_keys": _with(node.excluded_llm_metadata_keys, key),
            "excluded_embed_metadata_keys": _with(node.excluded_embed_metadata_keys, key),
        })


def _with(keys: list[str], key: str) -> list[str]:
    return keys if key in keys else [*keys, key]
