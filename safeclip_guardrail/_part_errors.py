"""Why an image part is unreadable: the errors the extraction layer attaches to parts.

Each message says where the part sits (message index, path in the content) and what to
send instead, so a refusal or a log line is actionable.
"""

from __future__ import annotations

from collections.abc import Sequence

from safeclip_guardrail.errors import ImageInputError

__all__ = ["conflict", "file_id_error", "located"]


def conflict(message: int, path: tuple[str | int, ...], present: Sequence[str]) -> ImageInputError:
    where = "/".join(str(p) for p in path)
    if not present:
        reason = "image block has no image data (expected base64, a data URL or an http(s) URL)"
    else:
        reason = (f"image block has {len(present)} sources ({', '.join(present)}); a block must "
                  "carry exactly one, or a provider could send another image than the one judged")
    return ImageInputError(f"message {message}, {where}: {reason}", source=f"<message {message} {where}>")


def file_id_error(message: int, path: tuple[str | int, ...]) -> ImageInputError:
    where = "/".join(str(p) for p in path)
    return ImageInputError(
        f"message {message}, {where}: the image is a provider file id whose bytes are not "
        "available here; send the image inline (base64 or a data URL) so it can be checked",
        source=f"<message {message} {where}>")


def located(exc: ImageInputError, message: int, path: tuple[str | int, ...]) -> ImageInputError:
    where = "/".join(str(p) for p in path)
    return ImageInputError(f"message {message}, {where}: {exc}", source=exc.source)
