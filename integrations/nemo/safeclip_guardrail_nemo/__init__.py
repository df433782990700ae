"""SafeCLIP toxic-image input rail for NVIDIA NeMo Guardrails.

``register_safeclip(rails, guard)`` registers the ``safeclip_check_image`` action; the
shipped example config (:func:`example_config_dir`) runs it as an input rail that answers
with the guard's refusal and stops when an image of the user's turn is flagged.

Importing this package imports neither NeMo Guardrails nor LangChain; only
:func:`example_rails_config` imports ``nemoguardrails`` when called.
"""

from safeclip_guardrail_nemo.action import (
    ImageRailDecision,
    SafeCLIPImageRail,
    image_parts,
    messages_from_events,
)
from safeclip_guardrail_nemo.register import (
    ACTION_NAME,
    FLOW_NAME,
    example_config_dir,
    example_rails_config,
    register_safeclip,
)

__version__ = "0.1.0"

__all__ = [
    "ACTION_NAME",
    "FLOW_NAME",
    "ImageRailDecision",
    "SafeCLIPImageRail",
    "__version__",
    "example_config_dir",
    "example_rails_config",
    "image_parts",
    "messages_from_events",
    "register_safeclip",
]
