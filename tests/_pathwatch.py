"""Did anything touch a path? An audit hook (``open``, ``os.listdir``, ``os.scandir``) plus
a pass-through recorder on ``os.stat`` (``Path.exists`` raises no audit event)."""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar

import pytest


class PathWatch:
    """Audit hook (``open``...) plus a recorder on ``os.stat``: was ``needle`` ever touched?"""

    hits: ClassVar[list[str]] = []
    needle: ClassVar[str | None] = None
    _installed: ClassVar[bool] = False

    @classmethod
    def arm(cls, needle: str, monkeypatch: pytest.MonkeyPatch) -> None:
        if not cls._installed:
            sys.addaudithook(cls._audit)
            cls._installed = True
        cls.needle, cls.hits = needle, []
        real_stat = os.stat

        def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
            cls._seen("os.stat", path)
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)

    @classmethod
    def _audit(cls, event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.listdir", "os.scandir") and args:
            cls._seen(event, args[0])

    @classmethod
    def _seen(cls, event: str, path: Any) -> None:
        if cls.needle is not None and cls.needle in str(path):
            cls.hits.append(f"{event} {path}")

    @classmethod
    def disarm(cls) -> list[str]:
        cls.needle = None
        return cls.hits
