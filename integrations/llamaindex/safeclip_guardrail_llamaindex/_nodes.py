"""Read the image a LlamaIndex node carries, judge many nodes at once, decide per node.

LlamaIndex keeps images in two places: the legacy ``ImageNode`` (``image`` base64 string,
``image_path``, ``image_url``) and ``Node.image_resource`` (a ``MediaResource`` with base64
``data``, ``path`` or ``url``). Each field is read with the trust rule of where it comes
from (:mod:`safeclip_guardrail.images.sources`):

- ``image_path`` / ``image_resource.path``: set by the application's ingestion pipeline
  (a reader), so a path is accepted and read from disk (:func:`~safeclip_guardrail.images.sources.from_path`).
- ``image`` / ``image_resource.data``: data, an untrusted string: base64 or a data URL,
  never a path.
- ``image_url`` / ``image_resource.url``: an ``http(s)`` URL (fetched once, and only when
  the guard's ``ImageOptions`` allow the host) or a data URL; a local path or a ``file:``
  URL there is never opened.

When a node has several fields set, the one LlamaIndex itself would use is judged (``image``
before ``image_path`` before ``image_url``), and a node that passes is forwarded holding
only those judged bytes, inline: nothing is read again, from disk or from the network,
after the verdict. Verdicts become actions through :mod:`safeclip_guardrail.policy`, the
same functions every other surface calls.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass

from llama_index.core.schema import BaseNode, ImageNode, MediaResource, TextNode

from safeclip_guardrail import GuardConfig, ImageVerdict, SafeCLIPGuard, policy
from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images.sources import (
    EncodedImage,
    ImageFetcher,
    from_path,
    from_untrusted_string,
)

__all__ = [
    "NodeDecision",
    "acheck_nodes",
    "adecide_nodes",
    "check_nodes",
    "decide_nodes",
    "node_image_source",
    "with_judged_image",
    "without_image",
]


@dataclass(frozen=True)
class NodeDecision:
    """What the guard decided about one node's image."""

    verdict: ImageVerdict
    """The verdict (``on_error`` already applied: an unreadable image has ``error`` set)."""
    action: policy.Action
    """The action the guard's config asks for (``policy.action_for``)."""
    judged: EncodedImage | None
    """The judged bytes to forward when the node is kept; None when the image was unreadable."""

    @property
    def forwardable(self) -> bool:
        """Whether the node may keep its image: judged, and passed or only annotated.

        ``rewrite``, ``redact`` and ``block`` all keep a flagged retrieved image away from the
        model (a retrieved node has no user text to rewrite); ``raise`` raises.
        """
        return self.judged is not None and self.verdict.error is None \
            and self.action in ("pass", "annotate")


def node_image_source(node: BaseNode, *, options: ImageOptions | None = None,
                      fetcher: ImageFetcher | None = None) -> EncodedImage | None:
    """The encoded image ``node`` carries, read by the trust rules above; None without one.

    Raises :class:`~safeclip_guardrail.ImageInputError` when the node names an image that
    cannot be read (a path in ``image_url``, a URL that may not be fetched, bad base64...).
    Allowed image URLs are fetched with ``fetcher`` (pass ``guard.fetcher``).
    """
    opts = options or ImageOptions()
    if isinstance(node, ImageNode):
        if node.image:
            return from_untrusted_string(node.image, options=opts, fetcher=fetcher)
        if node.image_path:
            return from_path(node.image_path, options=opts)
        if node.image_url:
            return from_untrusted_string(str(node.image_url), options=opts, fetcher=fetcher)
        return None
    resource = getattr(node, "image_resource", None)
    if isinstance(resource, MediaResource):
        if resource.data:
            try:
                text = resource.data.decode("ascii")
            except UnicodeDecodeError:
                msg = "image_resource.data is not base64 text"
                raise ImageInputError(msg, source="<image_resource.data>") from None
            return from_untrusted_string(text, options=opts, fetcher=fetcher)
        if resource.path is not None:
            return from_path(resource.path, options=opts)
        if resource.url is not None:
            return from_untrusted_string(str(resource.url), options=opts,
                                         fetcher=fetcher)
    return None


def decide_nodes(guard: SafeCLIPGuard, nodes: Sequence[BaseNode], *,
                 config: GuardConfig | None = None) -> list[NodeDecision | None]:
    """One decision per node (None for nodes without an image), from ONE guard batch.

    A bad image in one node gives that node an unreadable verdict and leaves the others'
    verdicts intact; ``on_error="raise"`` raises the first such error.
    """
    cfg = config or guard.config
    found: list[EncodedImage | ImageInputError | None] = []
    for node in nodes:
        try:
            found.append(node_image_source(node, options=guard.config.images,
                                           fetcher=guard.fetcher))
        except ImageInputError as exc:
            found.append(exc)
    readable = [f for f in found if isinstance(f, EncodedImage)]
    judgements = iter(guard.judge_batch(readable, forward=True) if readable else [])
    out: list[NodeDecision | None] = []
    for item in found:
        if item is None:
            out.append(None)
            continue
        judged: EncodedImage | None = None
        if isinstance(item, ImageInputError):
            verdict = policy.verdict_for(item, cfg)
        else:
            j = next(judgements)
            verdict = policy.verdict_for(j, cfg, source=j.source)
            judged = j.forward if verdict.error is None else None
        out.append(NodeDecision(verdict, policy.action_for(verdict, cfg), judged))
    return out


async def adecide_nodes(guard: SafeCLIPGuard, nodes: Sequence[BaseNode], *,
                        config: GuardConfig | None = None) -> list[NodeDecision | None]:
    """Async :func:`decide_nodes` (files, fetches and the encoder run in a worker thread)."""
    return await asyncio.to_thread(decide_nodes, guard, nodes, config=config)


def check_nodes(guard: SafeCLIPGuard, nodes: Sequence[BaseNode]) -> list[ImageVerdict | None]:
    """One verdict per node (None for nodes without an image), from one guard batch."""
    return [None if d is None else d.verdict for d in decide_nodes(guard, nodes)]


async def acheck_nodes(guard: SafeCLIPGuard,
                       nodes: Sequence[BaseNode]) -> list[ImageVerdict | None]:
    """Async :func:`check_nodes`."""
    return [None if d is None else d.verdict for d in await adecide_nodes(guard, nodes)]


def with_judged_image(node: BaseNode, image: EncodedImage) -> BaseNode:
    """A copy of ``node`` whose only image source is ``image`` (inline base64)."""
    b64 = base64.b64encode(image.data).decode("ascii")
    if isinstance(node, ImageNode):
        return node.model_copy(update={"image": b64, "image_path": None, "image_url": None,
                                       "image_mimetype": image.mime_type})
    resource = getattr(node, "image_resource", None)
    if isinstance(resource, MediaResource):
        judged = MediaResource(data=b64.encode("ascii"), mimetype=image.mime_type,
                               text=resource.text, embeddings=resource.embeddings)
        return node.model_copy(update={"image_resource": judged})
    return node


def without_image(node: BaseNode) -> BaseNode:
    """A copy of ``node`` that keeps its text and metadata and carries no image."""
    if isinstance(node, ImageNode):
        return TextNode(id_=node.id_, text=node.text, metadata=dict(node.metadata),
                        excluded_llm_metadata_keys=list(node.excluded_llm_metadata_keys),
                        excluded_embed_metadata_keys=list(node.excluded_embed_metadata_keys),
                        relationships=dict(node.relationships))
    if isinstance(getattr(node, "image_resource", None), MediaResource):
        return node.model_copy(update={"image_resource": None})
    return node
