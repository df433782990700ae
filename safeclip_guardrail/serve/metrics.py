"""Prometheus metrics of one app, and the encoder wrapper that counts real forwards.

Every app owns its own ``CollectorRegistry`` (no module-level state), so several apps in
one process (tests, Ray Serve replicas) never share or clash over counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from safeclip_guardrail.encoders.base import EncodesFrames, ImageEmbeddings, ImageTextEncoder

if TYPE_CHECKING:
    from safeclip_guardrail.serve.decode_pool import DecodePoolStats

__all__ = ["CountingEncoder", "ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The counters and histograms ``/metrics`` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.images = Counter("safeclip_images", "Images judged (readable or not).", registry=r)
        self.forwards = Counter("safeclip_encoder_forwards",
                                "Vision-encoder forward passes (one per encoded chunk).",
                                registry=r)
        self.encoded_frames = Counter("safeclip_encoded_frames",
                                      "Frames sent through the vision encoder (cache misses).",
                                      registry=r)
        self.flagged = Counter("safeclip_flagged", "Flagged images by category.", ["category"],
                               registry=r)
        self.unreadable = Counter("safeclip_unreadable_images",
                                  "Images that could not be judged.", registry=r)
        self.requests = Counter("safeclip_requests", "HTTP requests by route and status.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("safeclip_request_latency_seconds",
                                 "Request latency from first byte to response.", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("safeclip_batch_size", "Images per micro-batch.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.decode_seconds = Histogram("safeclip_decode_seconds",
                                        "Seconds per image in a decode process.",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.decode_killed = Gauge("safeclip_decode_workers_killed",
                                   "Decode processes killed, by reason (since start).",
                                   ["reason"], registry=r)
        self.decode_lowered = Gauge("safeclip_decode_workers_lowered",
                                    "Decode processes moved to the lowest CPU priority.",
                                    registry=r)

    def watch_pool(self, stats: DecodePoolStats) -> None:
        """Expose a decode pool's kill counts (read when ``/metrics`` is scraped)."""
        def reader(attr: str) -> Callable[[], float]:
            return lambda: float(getattr(stats, attr))

        for reason, attr in (("timeout", "killed_timeout"), ("cancelled", "killed_cancelled"),
                             ("crashed", "crashed")):
            self.decode_killed.labels(reason).set_function(reader(attr))
        self.decode_lowered.set_function(reader("reniced"))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (tests, benchmarks); 0 when absent."""
        v = self.registry.get_sample_value(name, labels or None)
        return float(v) if v is not None else 0.0


class CountingEncoder:
    """Wraps an :class:`ImageTextEncoder` and counts its vision forwards; delegates the rest.

    ``encode_frames`` (the torch backends) is counted as one forward per chunk of
    ``min(batch_size, max_batch)`` frames, which is how it runs them.
    """

    def __init__(self, inner: ImageTextEncoder, metrics: ServiceMetrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self.name: str = inner.name
        self.cache_key: str | None = inner.cache_key
        self.logit_scale: float = inner.logit_scale
        self.embed_dim: int = inner.embed_dim
        if isinstance(inner, EncodesFrames):
            self.encode_frames = self._encode_frames

    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        self._metrics.forwards.inc()
        self._metrics.encoded_frames.inc(len(images))
        return self._inner.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._inner.encode_texts(texts)

    def _encode_frames(self, frames: Sequence[Image.Image], *, batch_size: int) -> ImageEmbeddings:
        cap = getattr(self._inner, "max_batch", None) or batch_size
        size = max(1, min(batch_size, int(cap)))
        self._metrics.forwards.inc(math.ceil(len(frames) / size))
        self._metrics.encoded_frames.inc(len(frames))
        inner = cast(EncodesFrames, self._inner)  # bound in __init__ only for such encoders
        return inner.encode_frames(frames, batch_size=batch_size)

    def __getattr__(self, name: str) -> Any:  # preprocess, project_cls, device, ...
        return getattr(self._inner, name)
