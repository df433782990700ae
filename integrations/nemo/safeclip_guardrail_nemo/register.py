"""Wire the SafeCLIP image rail into an ``LLMRails`` and find the shipped example config."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail_nemo.action import SafeCLIPImageRail

if TYPE_CHECKING:
    from nemoguardrails import LLMRails, RailsConfig

__all__ = ["ACTION_NAME", "FLOW_NAME", "example_config_dir", "example_rails_config",
           "register_safeclip"]

ACTION_NAME = "safeclip_check_image"
"""Name the Colang flow executes (``$safeclip = execute safeclip_check_image``)."""
FLOW_NAME = "safeclip check input image"
"""The input-rail flow shipped in the example config."""


def register_safeclip(rails: LLMRails, guard: SafeCLIPGuard, *, skip_roles: Collection[str] = (),
                      action_name: str = ACTION_NAME) -> SafeCLIPImageRail:
    """Register the image check on ``rails`` under ``action_name`` and return the rail.

    Every role and the whole history are judged unless ``skip_roles`` names roles.
    """
    rail = SafeCLIPImageRail(guard, skip_roles=skip_roles)
    rails.register_action(rail.check, action_name)
    return rail


def example_config_dir() -> Path:
    """The directory of the shipped ``config.yml`` + ``safeclip.co`` (input rail only)."""
    return Path(__file__).resolve().parent / "config"


def example_rails_config(**overrides: Any) -> RailsConfig:
    """The example config as a ``RailsConfig``; ``overrides`` update its fields
    (e.g. ``models=[...]``)."""
    from nemoguardrails import RailsConfig

    config = RailsConfig.from_path(str(example_config_dir()))
    return config.model_copy(update=overrides) if overrides else config
