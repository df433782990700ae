"""Agent-facing action names and how they map onto the engine's intervention modes.

An agent author thinks in terms of the run: ``end`` the run with a refusal, raise an
``error``; the engine (``safeclip_guardrail.langchain``) calls the same things ``block``
and ``raise``. Per-class ``policy`` overrides in the guard's config keep the engine names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from langchain_core.messages import BaseMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from safeclip_guardrail import ConfigurationError, GuardConfig, SafeCLIPGuard

__all__ = ["AgentAction", "config_for", "message_updates", "roles_to_skip"]

AgentAction = Literal["rewrite", "redact", "end", "error", "annotate"]

_MODES = {"rewrite": "rewrite", "redact": "redact", "end": "block", "error": "raise",
          "annotate": "annotate"}


def config_for(guard: SafeCLIPGuard, action: str) -> GuardConfig:
    """The guard's config with the intervention mode for ``action``."""
    if action not in _MODES:
        msg = (f"action must be one of {', '.join(_MODES)}, got {action!r} "
               "('end' stops the run with a refusal, 'error' raises GuardrailViolation)")
        raise ConfigurationError(msg)
    return guard.config.replace(mode=_MODES[action])


def roles_to_skip(skip_roles: Collection[str], *, owner: str) -> tuple[str, ...]:
    """The roles an adapter does not judge: ``skip_roles`` (empty by default: every role is
    judged), lower-cased; a lone string is a usage error caught at construction."""
    if isinstance(skip_roles, str):
        msg = (f"{owner}: skip_roles must be a collection of role names, got the string "
               f"{skip_roles!r}; write skip_roles=({skip_roles!r},)")
        raise ConfigurationError(msg)
    return tuple(r.lower() for r in skip_roles)


def message_updates(old: Sequence[BaseMessage],
                    new: Sequence[BaseMessage]) -> list[BaseMessage]:
    """State updates that turn ``old`` into ``new`` under LangGraph's ``add_messages``.

    Changed messages keep their ids, so ``add_messages`` replaces them in place. If one of
    them has no id (a state without the reducer's ids), the whole list is replaced.
    """
    changed = [n for o, n in zip(old, new, strict=True) if n is not o]
    if any(m.id is None for m in changed):
        return [RemoveMessage(id=REMOVE_ALL_MESSAGES), *new]
    return changed
