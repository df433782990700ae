"""Ingestion-pipeline transform that keeps flagged images out of an index.

Put it before the embedding step of an ``IngestionPipeline`` (or call it on nodes before
``VectorStoreIndex(nodes)``): a flagged image node never gets embedded or stored, so no
retriever can return it later. Checking at ingestion costs one guard pass per image once,
instead of once per query.

Verdicts become actions through :mod:`safeclip_guardrail.policy` (the guard's config, as on
every surface): ``pass`` and ``annotate`` keep the node, ``rewrite``/``redact``/``block``
keep it out, ``raise`` raises. An unreadable image goes through ``on_error``; with
``allow`` its node is indexed without the image (never with an image nobody judged).
Kept nodes are stored as they came (an ``image_path`` stays a path); what finally reaches
an LLM is judged again, and forwarded as judged bytes, by
:class:`~safeclip_guardrail_llamaindex.SafeCLIPImagePostprocessor`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, TransformComponent

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
    without_image,
)

__all__ = ["SafeCLIPImageFilter"]

logger = logging.getLogger(__name__)

OnFlagged = Callable[[BaseNode, ImageVerdict], None]


class SafeCLIPImageFilter(TransformComponent):
    """Drop nodes whose image the guard flags; pass every other node through.

    ``on_flagged(node, verdict)`` is called for each dropped node (e.g. to log it or move
    the file to quarantine); by default a warning is logged with the node id and category.
    """

    guard_fingerprint: str = Field(
        default="", description="Model and options of the guard; part of the pipeline cache key."
    )
    _guard: SafeCLIPGuard = PrivateAttr()
    _on_flagged: OnFlagged | None = PrivateAttr(default=None)

    def __init__(self, guard: SafeCLIPGuard, *, on_flagged: OnFlagged | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(guard, SafeCLIPGuard):
            msg = (f"SafeCLIPImageFilter needs a SafeCLIPGuard, got {type(guard).__name__}; "
                   "build one with SafeCLIPGuard.from_pretrained(...)")
            raise ConfigurationError(msg)
        super().__init__(guard_fingerprint=_fingerprint(guard), **kwargs)
        self._guard = guard
        self._on_flagged = on_flagged

    @classmethod
    def class_name(cls) -> str:
        return "SafeCLIPImageFilter"

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        return self._keep(nodes, decide_nodes(self._guard, nodes))

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        return self._keep(nodes, await adecide_nodes(self._guard, nodes))

    def _keep(self, nodes: Sequence[BaseNode],
              decisions: Sequence[NodeDecision | None]) -> list[BaseNode]:
        raised = [d.verdict for d in decisions if d is not None and d.action == "raise"]
        if raised:
            raise GuardrailViolation(GuardResult(verdicts=raised, action="raise"))
        kept: list[BaseNode] = []
        for node, d in zip(nodes, decisions, strict=True):
            if d is None or d.forwardable:
                kept.append(node)
                continue
            verdict = d.verdict
            if not verdict.flagged:  # unreadable under on_error="allow": indexed without it
                kept.append(without_image(node))
            elif self._on_flagged is not None:
                self._on_flagged(node, verdict)
            else:
                logger.warning("SafeCLIP kept node %s out of the index: flagged as %s",
                               node.node_id, verdict.category)
        return kept


def _fingerprint(guard: SafeCLIPGuard) -> str:
    cfg = guard.config.model_dump_json(exclude={"concepts"})
    raw = f"{guard.model_name}|{guard.bank.fingerprint}|{cfg}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
