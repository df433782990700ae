"""Pydantic models whose direct construction raises our ConfigurationError.

``GuardConfig(threshold=2)`` is a usage mistake like any other, so it must be catchable as
:class:`~safeclip_guardrail.errors.UsageError` with a one-line message, not as pydantic's
``ValidationError`` with a page of context.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from safeclip_guardrail.errors import ConfigurationError

__all__ = ["ValidatedModel", "first_error"]


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
            raise ConfigurationError(
                f"invalid {type(self).__name__}: {first_error(exc)}") from None
