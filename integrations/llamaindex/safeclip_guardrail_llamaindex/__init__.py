"""SafeCLIP toxic-image guard for LlamaIndex.

- :class:`SafeCLIPImagePostprocessor`: drop or annotate retrieved image nodes the guard
  flags, before a multimodal LLM sees them (``node_postprocessors=[...]``).
- :class:`SafeCLIPImageFilter`: an ingestion-pipeline transform that keeps flagged images
  out of the index.

Importing this package imports LlamaIndex and the SafeCLIP engine, nothing else.
"""

from safeclip_guardrail_llamaindex._nodes import (
    NodeDecision,
    acheck_nodes,
    adecide_nodes,
    check_nodes,
    decide_nodes,
    node_image_source,
)
from safeclip_guardrail_llamaindex.postprocessor import SafeCLIPImagePostprocessor
from safeclip_guardrail_llamaindex.transform import SafeCLIPImageFilter

__version__ = "0.1.0"

__all__ = [
    "NodeDecision",
    "SafeCLIPImageFilter",
    "SafeCLIPImagePostprocessor",
    "__version__",
    "acheck_nodes",
    "adecide_nodes",
    "check_nodes",
    "decide_nodes",
    "node_image_source",
]
