"""The trust contract, shipped: a test suite every surface of the guard subclasses.

The guard's promise is that what is judged is what is sent: every payload of every message
is judged or its part refused, and the model receives only judged pixels. This package
holds the reusable part of the project's own proof, framework-free (importing it imports no
framework; the generated-conversation test needs ``hypothesis``):

- :class:`TrustContract`: subclass it, say how your surface runs a conversation
  (``run``) and its call styles (``styles``), and inherit the placement matrix (every
  :data:`PLACEMENTS` entry with a flagged and a benign picture), the benign-passes test,
  the paths-are-never-opened test, the ``on_error`` test and a small nested fuzz;
  :class:`RetrievalTrustContract` is the same for retrieved documents and nodes.
- The referee: :func:`scan` finds every picture, URL, path and PDF in what a model
  received; :func:`assert_only_judged` says whether each was judged and allowed.
- :mod:`.fuzz`: generated nested conversations (needs ``hypothesis``).
- :func:`make_images`: planted pictures (benign, flagged, non-finite) and a guard whose
  encoder remembers every frame it judged.

LangChain's recording model and converters: :mod:`safeclip_guardrail.langchain.testing`.
"""

from safeclip_guardrail.testing.trust._audit import watch_paths
from safeclip_guardrail.testing.trust._contract import (
    ItemPlacement,
    Outcome,
    RetrievalTrustContract,
    TrustContract,
)
from safeclip_guardrail.testing.trust._images import (
    JudgedEncoder,
    TrustImages,
    frames_of,
    make_images,
    pixel_key,
)
from safeclip_guardrail.testing.trust._messages import (
    Conversation,
    Message,
    as_dicts,
    ask,
    human,
    image_url_block,
    json_safe,
    tool_conversation,
)
from safeclip_guardrail.testing.trust._placements import PLACEMENTS, Placement, alpha_hidden
from safeclip_guardrail.testing.trust._received import (
    Received,
    assert_only_judged,
    scan,
    scan_bytes,
)

__all__ = [
    "PLACEMENTS",
    "Conversation",
    "ItemPlacement",
    "JudgedEncoder",
    "Message",
    "Outcome",
    "Placement",
    "Received",
    "RetrievalTrustContract",
    "TrustContract",
    "TrustImages",
    "alpha_hidden",
    "as_dicts",
    "ask",
    "assert_only_judged",
    "frames_of",
    "human",
    "image_url_block",
    "json_safe",
    "make_images",
    "pixel_key",
    "scan",
    "scan_bytes",
    "tool_conversation",
    "watch_paths",
]
