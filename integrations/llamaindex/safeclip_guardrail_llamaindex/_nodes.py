"""Find the image a LlamaIndex node carries and check many nodes in one guard call.

LlamaIndex keeps images in two places: the legacy ``ImageNode`` (``image`` base64 string,
``image_path``, ``image_url``) and the newer ``Node.image_resource`` (a ``MediaResource``
with base64 ``data``, ``path`` or ``url``). Both are mapped to a source the core guard reads
(data URL, path or URL), so the guard's limits and fail-closed handling apply unchanged: a
URL the guard is not allowed to fetch, a missing file or corrupt bytes give a flagged
``unreadable`` verdict under the default ``on_error="block"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llama_index.core.schema import BaseNode, ImageNode, MediaResource

from safeclip_guardrail import ImageVerdict, SafeCLIPGuard
from safeclip_guardrail.images import ImageSource

__all__ = ["acheck_nodes", "check_nodes", "node_image_source"]


def node_image_source(node: BaseNode) -> ImageSource | None:
    """The image of ``node`` as something :meth:`SafeCLIPGuard.check` reads, or None."""
    if isinstance(node, ImageNode):
        if node.image:
            return _data_url(node.image, node.image_mimetype)
        if node.image_path:
            return Path(node.image_path)
        if node.image_url:
            return str(node.image_url)
        return None
    resource = getattr(node, "image_resource", None)
    if isinstance(resource, MediaResource):
        if resource.data:
            return _data_url(resource.data.decode("ascii"), resource.mimetype)
        if resource.path is not None:
            return Path(resource.path)
        if resource.url is not None:
            return str(resource.url)
    return None


def check_nodes(guard: SafeCLIPGuard, nodes: Sequence[BaseNode]) -> list[ImageVerdict | None]:
    """One verdict per node (None for nodes without an image), from one ``check_batch``."""
    sources = [node_image_source(n) for n in nodes]
    return _spread(sources, guard.check_batch([s for s in sources if s is not None]))


async def acheck_nodes(guard: SafeCLIPGuard,
                       nodes: Sequence[BaseNode]) -> list[ImageVerdict | None]:
    """Async :func:`check_nodes` (the encoder runs in a worker thread)."""
    sources = [node_image_source(n) for n in nodes]
    verdicts = await guard.acheck_batch([s for s in sources if s is not None])
    return _spread(sources, verdicts)


def _spread(sources: Sequence[ImageSource | None],
            verdicts: Sequence[ImageVerdict]) -> list[ImageVerdict | None]:
    it = iter(verdicts)
    return [None if s is None else next(it) for s in sources]


def _data_url(b64: str, mimetype: str | None) -> str:
    if b64.startswith("data:"):
        return b64
    return f"data:{mimetype or 'image/*'};base64,{b64}"
