"""Pydantic models whose direct construction raises our ConfigurationError.

``GuardConfig(threshold=2)`` is a usage mistake like any other, so it must be catchable as
:class:`~safeclip_guardrail.errors.UsageError` with a one-line message, not as pydantic's
``ValidationError`` with a page of context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from safeclip_guardrail._sniff import describe_binary
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["ValidatedModel", "first_error", "read_data_file", "read_text_file"]


def first_error(exc: ValidationError) -> str:
    """The first problem pydantic found, as ``message (at field.path)``."""
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{msg} (at {loc})" if loc else msg


class ValidatedModel(BaseModel):
    """A BaseModel whose constructor raises ConfigurationError on invalid input."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            msg = f"invalid {type(self).__name__}: {first_error(exc)}"
            raise ConfigurationError(msg) from None


def read_text_file(path: str | Path, *, what: str, hint: str, max_bytes: int = 16 * 1024 * 1024,
                   ) -> str:
    """A UTF-8 text file the user named (a concept bank, a guard config), or a one-line
    ConfigurationError saying what it is instead: missing, unreadable, too large, an image
    or another binary file, not UTF-8."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigurationError(f"{what} file not found: {p}" if not p.exists()
                                     else f"{what} {p} is not a regular file")
        size = p.stat().st_size
        if size > max_bytes:
            msg = f"{what} {p} is {size:,} bytes, too large (limit {max_bytes:,}); {hint}"
            raise ConfigurationError(msg)
        data = p.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        msg = f"cannot read {what} {p}: {reason}; check the path and its permissions"
        raise ConfigurationError(msg) from None
    kind = describe_binary(data[:32])
    if kind is not None or b"\x00" in data[:4096]:
        msg = f"{what} {p} is {kind or 'a binary file'}, not a text file; {hint}"
        raise ConfigurationError(msg)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = (f"{what} {p} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
               f"{exc.start}); save it as UTF-8. {hint[0].upper()}{hint[1:]}")
        raise ConfigurationError(msg) from None


def read_data_file(path: str | Path, *, what: str, hint: str,
                   max_bytes: int = 16 * 1024 * 1024) -> Any:
    """The parsed contents of a JSON file, or of YAML for ``.yaml``/``.yml`` (safe loader: no
    Python objects), with the checks of :func:`read_text_file`; a parse failure is a one-line
    ConfigurationError naming the file. The one reader of user data files (concept banks,
    guard configs)."""
    p = Path(path)
    text = read_text_file(p, what=what, hint=hint, max_bytes=max_bytes)
    try:
        if p.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # yaml and json raise several kinds; all mean "not parseable"
        detail = " ".join(str(exc).split())
        msg = f"cannot parse {what} {p}: {detail[:300]}"
        raise ConfigurationError(msg) from None
