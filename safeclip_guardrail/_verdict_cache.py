"""The verdict cache: an LRU keyed on the image's SHA-256, safe from many threads.

An image re-sent in every turn of a conversation is judged once; a verdict depends only on
the bytes (the key) and the guard's scoring options, which are fixed for one guard.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from safeclip_guardrail.result import ImageVerdict

__all__ = ["CacheInfo", "VerdictCache"]


@dataclass(frozen=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    max_size: int


class VerdictCache:
    """Verdicts by SHA-256, least recently used evicted first; ``max_size=0`` disables it."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, ImageVerdict] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, digest: str) -> ImageVerdict | None:
        if self.max_size == 0:
            return None
        with self._lock:
            verdict = self._items.get(digest)
            if verdict is None:
                self._misses += 1
                return None
            self._items.move_to_end(digest)
            self._hits += 1
            return verdict

    def put(self, digest: str, verdict: ImageVerdict) -> None:
        if self.max_size == 0:
            return
        with self._lock:
            self._items[digest] = verdict
            self._items.move_to_end(digest)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._items), self.max_size)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._hits = self._misses = 0
