"""Why a part is unreadable: the errors the extraction layer attaches to parts.

Each message says where the part sits (message index, path in the content) and what to
send instead, so a refusal or a log line is actionable.
"""

from __future__ import annotations

from collections.abc import Sequence

from safeclip_guardrail.errors import ImageInputError

__all__ = ["conflict", "file_id_error", "located", "where"]


def where(path: Sequence[str | int]) -> str:
    """``content/2/source/content/0``: a part's path as its messages show it."""
    return "/".join(str(p) for p in path)


def conflict(message: int, path: tuple[str | int, ...], present: Sequence[str], *,
             what: str = "image block") -> ImageInputError:
    here = where(path)
    if not present:
        noun = "image data" if what == "image block" else "data"
        reason = f"{what} has no {noun} (expected base64, a data URL or an http(s) URL)"
    else:
        reason = (f"{what} has {len(present)} sources ({', '.join(present)}); a block must "
                  "carry exactly one, or a provider could send another payload than the one judged")
    return ImageInputError(f"message {message}, {here}: {reason}", source=f"<message {message} {here}>")


def file_id_error(message: int, path: tuple[str | int, ...]) -> ImageInputError:
    here = where(path)
    return ImageInputError(
        f"message {message}, {here}: the payload is a provider file id whose bytes are not "
        "available here; send it inline (base64 or a data URL) so it can be checked",
        source=f"<message {message} {here}>")


def located(exc: ImageInputError, message: int, path: tuple[str | int, ...]) -> ImageInputError:
    return ImageInputError(f"message {message}, {where(path)}: {exc}", source=exc.source)
