"""Keep transformers' loading bars and warnings out of the user's terminal while we load.

A guard is a library component: ``SafeCLIPGuard.from_pretrained`` printing a "Loading
weights" bar and a load report into a server log or a CLI's output is noise, and the load
report in particular is replaced by our own check (a checkpoint with missing weights is a
:class:`~safeclip_guardrail.errors.ModelLoadError`, not a warning). So our load calls run
inside :func:`quiet_transformers`, which silences transformers only for their duration and
restores the previous state afterwards.

It stays out of the way when the user asked for transformers' output: a ``transformers``
logger set to INFO or DEBUG (``transformers.logging.set_verbosity_info()``, or
``TRANSFORMERS_VERBOSITY``), or ``HF_HUB_DISABLE_PROGRESS_BARS=0`` for the bars.

The switches are process-global (they belong to transformers), so concurrent loads share one
silenced period: the first load in saves the state, the last one out restores it.

This is the package's one silencer. A process the package owns (a ``safeclip`` command, a
Ray Data actor, a Ray Serve replica) calls :func:`silence_transformers` once instead: the
same silenced state, with the same exceptions for a user who asked for the output, held for
the rest of the process, so that warnings transformers logs after loading (during
generation, say) stay out of its output too. Library code never does that to its caller's
process: it uses the block.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["quiet_transformers", "silence_transformers"]

_lock = threading.Lock()
_depth = 0


@dataclass
class _Saved:
    level: int | None = None
    """The ``transformers`` logger's own level before we raised it (None: not touched)."""
    bars: bool | None = None
    """Whether transformers' progress bars were on (None: not touched)."""
    hub_bars_disabled: bool = False


_saved = _Saved()


def _user_wants_logs(logger: logging.Logger) -> bool:
    if os.environ.get("TRANSFORMERS_VERBOSITY"):
        return True
    return logger.getEffectiveLevel() < logging.WARNING


def _user_wants_bars() -> bool:
    value = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    return value is not None and value.strip().lower() in {"0", "false", "no", "off"}


def _enter() -> None:
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    hf_logging.get_verbosity()  # configures transformers' root logger if not done yet
    logger = logging.getLogger("transformers")
    wants_logs = _user_wants_logs(logger)
    if not wants_logs:
        _saved.level = logger.level
        logger.setLevel(logging.ERROR)
    if not wants_logs and not _user_wants_bars() and hf_logging.is_progress_bar_enabled():
        _saved.bars = True
        _saved.hub_bars_disabled = are_progress_bars_disabled()
        hf_logging.disable_progress_bar()


def _exit() -> None:
    from huggingface_hub.utils.tqdm import disable_progress_bars
    from transformers.utils import logging as hf_logging

    if _saved.level is not None:
        logging.getLogger("transformers").setLevel(_saved.level)
    if _saved.bars:
        hf_logging.enable_progress_bar()
        if _saved.hub_bars_disabled:
            disable_progress_bars()
    _saved.level, _saved.bars, _saved.hub_bars_disabled = None, None, False


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging (below ERROR) and progress bars inside the block."""
    global _depth
    with _lock:
        if _depth == 0:
            _enter()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _exit()


def silence_transformers() -> None:
    """Put transformers in the silenced state of :func:`quiet_transformers` for good.

    For processes the package owns (commands, workers). Nothing is saved for restoring, so
    a block that is open now, or opens later, leaves the process silenced when it closes.
    The user's own request for output (``TRANSFORMERS_VERBOSITY``, an INFO-level
    ``transformers`` logger, ``HF_HUB_DISABLE_PROGRESS_BARS=0``) is honoured as in the block.
    """
    with _lock:
        if _depth == 0:
            _enter()
        _saved.level, _saved.bars, _saved.hub_bars_disabled = None, None, False
