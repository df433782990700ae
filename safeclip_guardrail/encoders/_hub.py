"""One quick look at the Hugging Face hub before loading a hub id, so offline fails in seconds.

Without network and without ``HF_HUB_OFFLINE``, huggingface_hub answers a failed metadata
request for a file that is not cached by retrying with exponential backoff (2 + 4 + 8 + 8 s)
for every file transformers asks for: a guard that cannot load waited about 30 s before
saying so. We instead send one metadata request for ``config.json`` with no retry and a short
timeout. If the hub answers (even with 404 or 401), transformers loads as usual, with its
retries, since the network is there. If it does not, the load runs with
``local_files_only=True``: a cached model still loads, and a missing one fails at once with
the fix (download it elsewhere and pass the directory, or set ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HubAccess", "is_hub_id", "probe_hub"]

PROBE_TIMEOUT_S = 5.0
"""Seconds the one metadata request may take (``HF_HUB_ETAG_TIMEOUT`` lowers it)."""


@dataclass(frozen=True)
class HubAccess:
    """How to load a hub id: with the network, or from the local cache only, and why."""

    local_files_only: bool
    reason: str | None = None
    """Why the network is not used (``HF_HUB_OFFLINE`` set, or the hub did not answer)."""


def is_hub_id(model_id: str) -> bool:
    """``org/name`` or ``name`` that is not an existing local path."""
    if Path(model_id).exists() or model_id.startswith((".", "/", "~")):
        return False
    return model_id.count("/") <= 1 and "\\" not in model_id


def _timeout() -> float:
    raw = os.environ.get("HF_HUB_ETAG_TIMEOUT", "").strip()
    try:
        return min(PROBE_TIMEOUT_S, float(raw)) if raw else PROBE_TIMEOUT_S
    except ValueError:
        return PROBE_TIMEOUT_S


def probe_hub(model_id: str, *, revision: str | None = None,
              filename: str = "config.json") -> HubAccess:
    """One request for ``filename``'s metadata, no retry: can the hub be reached?"""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    if constants.HF_HUB_OFFLINE:
        return HubAccess(local_files_only=True, reason="HF_HUB_OFFLINE is set")
    import httpx
    from huggingface_hub.errors import HfHubHTTPError

    try:
        url = hf_hub_url(model_id, filename, revision=revision)
        get_hf_file_metadata(url, timeout=_timeout(), retry_on_errors=False)
    except HfHubHTTPError:
        return HubAccess(local_files_only=False)  # the hub answered: let transformers report it
    except (httpx.HTTPError, OSError, RuntimeError, ValueError) as exc:
        # connection refused / DNS failure / timeout (httpx), a socket guard (RuntimeError)
        first = str(exc).splitlines()[0] if str(exc) else ""
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        return HubAccess(local_files_only=True,
                         reason=f"the Hugging Face hub could not be reached ({detail})")
    return HubAccess(local_files_only=False)
