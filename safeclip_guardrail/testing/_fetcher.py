"""A test double for :class:`~safeclip_guardrail.images.sources.ImageFetcher`: no sockets, no DNS."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["FakeFetcher"]


class FakeFetcher:
    """Serves fixed bytes per URL and records every URL it was asked for.

    Build the guard with it (``SafeCLIPGuard(encoder, fetcher=FakeFetcher({url: png}))``)
    and every surface on that guard fetches through it; the URL policy of the guard's
    :class:`~safeclip_guardrail.config.ImageOptions` still runs first, so ``calls`` shows
    exactly which URLs were allowed through, and how many times each was fetched.
    An unknown URL raises :class:`~safeclip_guardrail.errors.ImageInputError`, as a 404 would.
    ``images`` is a copy: change it to serve other bytes at the same URL.
    """

    def __init__(self, images: Mapping[str, bytes] | None = None) -> None:
        self.images: dict[str, bytes] = dict(images or {})
        self.calls: list[str] = []
        """Every URL passed to :meth:`fetch`, in order (thread-safe appends)."""
        self._lock = threading.Lock()

    def fetch(self, url: str, options: ImageOptions) -> bytes:
        with self._lock:
            self.calls.append(url)
            data = self.images.get(url)
        if data is None:
            msg = (f"FakeFetcher has no image for {url!r}; known URLs: "
                   f"{sorted(self.images)}")
            raise ImageInputError(msg, source=url[:120])
        return data

    def __repr__(self) -> str:
        return f"FakeFetcher({len(self.images)} URLs, {len(self.calls)} calls)"
