"""SafeCLIPGuard: images in, typed verdicts out.

The guard decodes images (with limits), judges each as views that cover all of it (the
whole picture, plus tiles where it is wide or tall: :mod:`safeclip_guardrail.images.views`; the
worst view decides), encodes the views in batches of ``batch_size`` (one vision forward per
chunk), scores the embeddings against the cached descriptor embeddings and keeps verdicts
in an LRU cache keyed by the image's SHA-256, so an image re-sent in every turn of a
conversation is encoded once. It is safe to call from many threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeclip_guardrail import policy, scoring
from safeclip_guardrail._stream import ChunkStream
from safeclip_guardrail._verdict_cache import CacheInfo, VerdictCache
from safeclip_guardrail._viewed import (
    ScoredViews,
    ViewedImage,
    render_views,
    viewed,
    worst_views,
)
from safeclip_guardrail.bank_cache import text_embeddings
from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.config import GuardConfig, ImageOptions, build_config
from safeclip_guardrail.encoders.base import (
    EncodesFrames,
    ImageEmbeddings,
    ImageTextEncoder,
    ProjectsCLS,
    ResizesTo,
    l2_normalize,
)
from safeclip_guardrail.encoders.registry import load_encoder
from safeclip_guardrail.errors import (
    ConfigurationError,
    EncoderOutputError,
    ImageInputError,
)
from safeclip_guardrail.images.decode import (
    DecodedImage,
    ImageSource,
    decode_image,
    describe_source,
    forward_image,
)
from safeclip_guardrail.images.sources import DEFAULT_FETCHER, EncodedImage, ImageFetcher
from safeclip_guardrail.result import ImageVerdict

__all__ = ["CacheInfo", "EncodeStats", "Judgement", "SafeCLIPGuard", "ScoredViews"]

ImageError = ImageInputError | EncoderOutputError
"""Why one image got no verdict: it could not be read, or the encoder output was not finite."""


@dataclass(frozen=True)
class EncodeStats:
    """What one encoder call cost: what :attr:`SafeCLIPGuard.on_encode` receives."""

    views: int
    """Views (pictures) sent through the vision encoder."""
    forwards: int
    """Vision forwards they took (one per chunk of ``batch_size``, or of the encoder's own
    ``max_batch`` when it is smaller)."""


@dataclass(frozen=True)
class Judgement:
    """What the guard made of one image, before any ``on_error`` policy.

    Exactly one of ``verdict`` and ``error`` is set. ``forward`` (when asked for) holds the
    bytes that may be sent on to a model: the judged image itself, never a second source.
    """

    verdict: ImageVerdict | None
    error: ImageError | None = None
    forward: EncodedImage | None = None
    source: str | None = None
    """Short description of the input (never a payload)."""


class SafeCLIPGuard:
    """Zero-shot toxic-image guard over a CLIP encoder and a concept bank.

    Build it with :meth:`from_pretrained` (a model name) or directly from an encoder (any
    :class:`~safeclip_guardrail.encoders.ImageTextEncoder`, e.g. a planted test encoder).
    """

    def __init__(self, encoder: ImageTextEncoder, *, config: GuardConfig | None = None,
                 text_embeddings: np.ndarray | None = None,
                 cache_dir: str | Path | None = None,
                 fetcher: ImageFetcher | None = None,
                 on_encode: Callable[[EncodeStats], None] | None = None) -> None:
        self.encoder = encoder
        self.on_encode = on_encode
        """Called after every encoder call with what it cost (views, forwards): how a service
        counts its encoder work without wrapping the encoder."""
        if fetcher is not None and not isinstance(fetcher, ImageFetcher):
            msg = f"fetcher needs .fetch(url, opts) -> bytes (an ImageFetcher), got {type(fetcher).__name__}"
            raise ConfigurationError(msg)
        self.fetcher: ImageFetcher = DEFAULT_FETCHER if fetcher is None else fetcher
        """Gets remote images (string URLs) once the URL policy of ``config.images`` allows
        them; every surface built on this guard fetches through it."""
        self.config = config or GuardConfig(model=encoder.name)
        self._cache_dir = cache_dir
        if text_embeddings is None:
            text_embeddings = _load_text_embeddings(encoder, self.config.bank, cache_dir)
        expected = (len(self.bank.descriptors), encoder.embed_dim)
        if text_embeddings.shape != expected:
            msg = f"text embeddings have shape {text_embeddings.shape}, expected {expected}"
            raise ConfigurationError(msg)
        self.text_embeddings = l2_normalize(text_embeddings)
        """(m, d) normalised descriptor embeddings, rows in ``bank.descriptors`` order."""
        self._cache = VerdictCache(self.config.cache_size)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        concepts: ConceptBank | str | Path | None = None,
        threshold: float | None = None,
        thresholds: dict[str, float] | None = None,
        cls_source: str | None = None,
        decision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int | None = None,
        on_error: str | None = None,
        images: ImageOptions | dict[str, Any] | None = None,
        config: GuardConfig | str | Path | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        fetcher: ImageFetcher | None = None,
        **options: Any,
    ) -> SafeCLIPGuard:
        """Load the encoder for ``model`` and build a guard.

        ``model`` is an alias (``"llava-1.5"``), a hub id, a local directory of a
        ``CLIPModel`` checkpoint, or ``"open_clip:<model>/<pretrained>"``. Keyword options
        override ``config`` (a :class:`GuardConfig` or a JSON/YAML file); options left as
        None keep the config's (default) values.
        """
        base = GuardConfig.from_file(config) if isinstance(config, (str, Path)) else config
        cfg = build_config(
            base, model=model, concepts=concepts, threshold=threshold, thresholds=thresholds,
            cls_source=cls_source, decision=decision, device=device, dtype=dtype,
            batch_size=batch_size, on_error=on_error, images=images, **options,
        )
        return cls.from_config(cfg, revision=revision, cache_dir=cache_dir, fetcher=fetcher)

    @classmethod
    def from_config(cls, config: GuardConfig, *, revision: str | None = None,
                    cache_dir: str | Path | None = None,
                    fetcher: ImageFetcher | None = None) -> SafeCLIPGuard:
        encoder = load_encoder(config.model, device=config.device, dtype=config.dtype,
                               revision=revision)
        return cls(encoder, config=config, cache_dir=cache_dir, fetcher=fetcher)

    def with_options(self, *, fetcher: ImageFetcher | None = None,
                     on_encode: Callable[[EncodeStats], None] | None = None,
                     **changes: Any) -> SafeCLIPGuard:
        """A guard with some options changed that shares this one's encoder (its own verdict
        cache). ``fetcher`` and ``on_encode`` replace this guard's when given.

        Descriptor embeddings are reused unless the concept bank changes.
        """
        if "model" in changes or "device" in changes or "dtype" in changes:
            msg = "with_options cannot change model/device/dtype; load anew"
            raise ConfigurationError(msg)
        cfg = self.config.replace(**changes)
        same_bank = cfg.bank.fingerprint == self.bank.fingerprint
        return SafeCLIPGuard(self.encoder, config=cfg, cache_dir=self._cache_dir,
                             fetcher=fetcher or self.fetcher,
                             on_encode=on_encode or self.on_encode,
                             text_embeddings=self.text_embeddings if same_bank else None)

    # ------------------------------------------------------------------ properties
    @property
    def bank(self) -> ConceptBank:
        return self.config.bank

    @property
    def model_name(self) -> str:
        return self.encoder.name

    # ------------------------------------------------------------------ checking
    def check(self, image: ImageSource) -> ImageVerdict:
        """Verdict for one image (PIL image, path, bytes, base64 or data URL)."""
        return self.check_batch([image])[0]

    def check_batch(self, images: Iterable[ImageSource]) -> list[ImageVerdict]:
        """Verdicts in input order; one encoder forward per ``batch_size`` views of new images.

        An image that cannot be judged gets the verdict ``on_error`` prescribes (or raises).
        """
        return [policy.verdict_for(j, self.config, source=j.source)
                for j in self.judge_batch(images)]

    def judge_batch(self, images: Iterable[ImageSource], *,
                    forward: bool = False) -> list[Judgement]:
        """One :class:`Judgement` per input, in order, with errors returned, not raised.

        This is what guardrails build on: they apply their own ``on_error`` exactly once,
        and with ``forward=True`` they receive the exact bytes to send on (the judged image,
        re-encoded losslessly when another decoder could see other pixels).
        """
        sources = _as_sources(images)
        opts = self.config.images

        def planned() -> Iterator[tuple[int, ViewedImage | ImageInputError, EncodedImage | None]]:
            spent = 0  # the batch shares one max_request_pixels budget: decodes and views
            for i, src in enumerate(sources):
                left = opts.max_request_pixels - spent
                try:
                    item = self.views_of(self._decode(src, budget=left, full=forward),
                                         budget=left)
                except ImageInputError as exc:
                    yield i, exc, None
                    continue
                spent += item.pixels
                yield i, item, forward_image(item.image) if forward else None

        return self._judge_stream(planned(), [describe_source(src) for src in sources],
                                  overlap=True)

    def judge_decoded(self, images: Sequence[DecodedImage], *,
                      forwards: Sequence[EncodedImage | None] | None = None) -> list[Judgement]:
        """:meth:`judge_batch` for images decoded elsewhere with :meth:`draft_for` (the
        service decodes in processes it can kill, each request within its own pixel budget);
        ``forwards`` fill ``Judgement.forward``. Views are planned here; their pixels are
        bounded per frame (``max_tiles`` views of the encoder's input size)."""
        fwd = list(forwards) if forwards is not None else [None] * len(images)
        if len(fwd) != len(images):
            msg = f"{len(fwd)} forwards for {len(images)} images"
            raise ConfigurationError(msg)

        def planned() -> Iterator[tuple[int, ViewedImage | ImageInputError, EncodedImage | None]]:
            for i, img in enumerate(images):
                try:
                    yield i, self.views_of(img), fwd[i]
                except ImageInputError as exc:
                    yield i, exc, None

        return self._judge_stream(planned(), [img.source for img in images], overlap=False)

    def _judge_stream(self, items: Iterable[tuple[int, ViewedImage | ImageInputError,
                                                  EncodedImage | None]],
                      descs: list[str], *, overlap: bool) -> list[Judgement]:
        out: list[Judgement] = [Judgement(None, None, None, d) for d in descs]
        opts = self.config.images

        def settle(digest: str, result: ImageVerdict | ImageError, indexes: list[int]) -> None:
            if isinstance(result, ImageVerdict):
                self._cache_put(digest, result)
            self._settle(out, indexes, result)

        stream: ChunkStream[ViewedImage, ImageVerdict | ImageError] = ChunkStream(
            self._score_decoded, settle, batch_size=self.config.batch_size,
            chunk_pixels=opts.chunk_pixels)
        try:
            for i, item, fwd in items:
                if isinstance(item, ImageInputError):
                    out[i] = Judgement(None, item, source=descs[i])
                    continue
                img = item.image
                out[i] = Judgement(None, None, fwd, descs[i])
                earlier = stream.done.get(img.sha256)
                known = earlier if earlier is not None else self._cache_get(img.sha256)
                if known is not None:
                    self._settle(out, [i], known)
                elif not stream.join(img.sha256, i):
                    stream.add(item, i, more=overlap and i + 1 < len(descs))
            stream.finish()
        finally:
            stream.close()
        return out

    @staticmethod
    def _settle(out: list[Judgement], indexes: list[int],
                result: ImageVerdict | ImageError) -> None:
        for i in indexes:
            j = out[i]
            if isinstance(result, ImageVerdict):
                out[i] = Judgement(result.model_copy(update={"source": j.source}), None,
                                   j.forward, j.source)
            else:
                out[i] = Judgement(None, result, None, j.source)

    async def acheck(self, image: ImageSource) -> ImageVerdict:
        """Async :meth:`check` (runs in a worker thread; the event loop stays free)."""
        return await asyncio.to_thread(self.check, image)

    async def acheck_batch(self, images: Iterable[ImageSource]) -> list[ImageVerdict]:
        """Async :meth:`check_batch`."""
        items = list(images)
        return await asyncio.to_thread(self.check_batch, items)

    # ------------------------------------------------------------------ embeddings
    def embed_images(self, images: Iterable[ImageSource]) -> np.ndarray:
        """(n, d) float32 L2-normalised embeddings for ``config.cls_source``.

        Unreadable images raise :class:`ImageInputError` (there is no embedding to return).
        """
        return self.embed_images_all(images).get(self.config.cls_source)

    def embed_images_all(self, images: Iterable[ImageSource]) -> ImageEmbeddings:
        """Both CLS sources for every image (the whole picture of its first frame), from one
        pass per chunk."""
        return self.embed_decoded([self.decode(src) for src in images])

    def embed_decoded(self, images: Sequence[DecodedImage]) -> ImageEmbeddings:
        """Both CLS sources for images already read with :meth:`decode`: one row per image,
        its whole-picture view (first frame; padded to a square unless it is one). Tiles
        are judged by :meth:`check_batch` and :meth:`score_decoded`, not embedded here."""
        wholes = [self.views_of(img).plans[0].render_view(img.image, 0) for img in images]
        return self._encode(wholes)

    def score_decoded(self, images: Sequence[DecodedImage]) -> ScoredViews:
        """Judge images already read with :meth:`decode` as their views, in one encoder call
        (``batch_size`` chunks): a result per image (the worst view's verdict, or an
        :class:`EncoderOutputError`; ``on_error`` is not applied) and every view's embeddings.
        Duplicates (same SHA-256) are judged once. This is what batch engines build on."""
        unique = {img.sha256: img for img in images}
        return self._score_views([self.views_of(img) for img in unique.values()])

    def score_embeddings(self, embeddings: np.ndarray) -> list[ImageVerdict]:
        """The decision alone, for embeddings computed elsewhere (e.g. inside LLaVA).

        A row that is not finite (NaN/inf) gets the ``on_error`` verdict, never a score."""
        return [r if isinstance(r, ImageVerdict) else policy.verdict_for(r, self.config)
                for r in self._score_rows(embeddings)]

    def _score_rows(self, embeddings: Any, *, sources: Sequence[str] | None = None
                    ) -> list[ImageVerdict | EncoderOutputError]:
        return scoring.score_rows(embeddings, self.text_embeddings,
                                  logit_scale=self.encoder.logit_scale, bank=self.bank,
                                  config=self.config, sources=sources)

    def embed_cls(self, cls_features: Any) -> np.ndarray:
        """Project CLS features from the LVLM's own vision pass into CLIP's joint space.

        Pass the post-layernorm CLS for ``cls_source="final"``, the raw layer -2 CLS for
        ``"penultimate"``. Needs an encoder with a visual projection (the torch backends).
        """
        if not isinstance(self.encoder, ProjectsCLS):
            msg = (f"encoder {self.encoder.name} cannot project CLS features (it does not "
                   "implement ProjectsCLS); use a transformers or open_clip CLIP checkpoint")
            raise ConfigurationError(msg)
        return np.asarray(self.encoder.project_cls(cls_features), np.float32)

    # ------------------------------------------------------------------ cache
    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    def clear_cache(self) -> None:
        self._cache.clear()

    def _cache_get(self, digest: str) -> ImageVerdict | None:
        return self._cache.get(digest)

    def _cache_put(self, digest: str, verdict: ImageVerdict) -> None:
        self._cache.put(digest, verdict)

    # ------------------------------------------------------------------ internals
    def decode(self, source: ImageSource) -> DecodedImage:
        """Read an image exactly as the guard does: the configured limits, big JPEGs in draft
        mode at the encoder's input size. Raises :class:`ImageInputError`."""
        return self._decode(source)

    def draft_for(self, *, forward: bool = False) -> int | None:
        """JPEG draft size of this guard's decodes (see :func:`~.images.decode_image`): the
        encoder's input size, or None (every pixel) when the picture is to be forwarded, since
        what is forwarded is rebuilt from what was judged. The service's decode processes use
        it too, so a picture is read the same way in and out of the service."""
        encoder = self.encoder
        if forward or not self.config.images.jpeg_draft or not isinstance(encoder, ResizesTo):
            return None
        return encoder.input_size

    def _decode(self, source: ImageSource, *, budget: int | None = None,
                full: bool = False) -> DecodedImage:
        return decode_image(source, self.config.images, draft_size=self.draft_for(forward=full),
                            pixel_budget=budget, fetcher=self.fetcher)

    def views_of(self, img: DecodedImage, *, budget: int | None = None) -> ViewedImage:
        """``img`` with the views it is judged as planned (sizes only), as this guard plans
        them; the views' pixels count against ``budget`` (an ImageInputError past it)."""
        size = self.encoder.input_size if isinstance(self.encoder, ResizesTo) else None
        item = viewed(img, self.config.images, input_size=size)
        if budget is not None and item.pixels > budget:
            msg = (f"image {img.source}: its {item.views} views take {item.view_pixels} pixels beyond its "
                   f"{img.pixels} decoded ones, over what is left of this request's budget ({budget} of "
                   "ImageOptions.max_request_pixels); send fewer or smaller images, or raise the limit")
            raise ImageInputError(msg, source=img.source)
        return item

    def _encode(self, frames: Sequence[Any]) -> ImageEmbeddings:
        bs = self.config.batch_size
        if isinstance(self.encoder, EncodesFrames):  # pipelined chunks, OOM batch halving
            out = self.encoder.encode_frames(frames, batch_size=bs)
            chunk = max(1, min(bs, int(getattr(self.encoder, "max_batch", None) or bs)))
        else:
            parts = [self.encoder.encode_images(frames[i:i + bs])
                     for i in range(0, len(frames), bs)]
            out, chunk = ImageEmbeddings.concat(parts, self.encoder.embed_dim), bs
        if self.on_encode is not None and frames:
            self.on_encode(EncodeStats(views=len(frames), forwards=-(-len(frames) // chunk)))
        return out

    def _score_decoded(self, items: Sequence[ViewedImage]
                       ) -> dict[str, ImageVerdict | EncoderOutputError]:
        return self._score_views(items).results

    def _score_views(self, items: Sequence[ViewedImage]) -> ScoredViews:
        """Make every view of ``items``, encode them together, and keep the worst per image."""
        batch = render_views(items)
        emb = self._encode(batch.pictures)
        sources = [f"{items[k].image.source} ({label})"
                   for k, label in zip(batch.owners, batch.labels)]
        rows = self._score_rows(emb.get(self.config.cls_source), sources=sources)
        return worst_views(items, batch, rows, emb)

    def __repr__(self) -> str:
        c = self.config
        return (f"SafeCLIPGuard(model={self.encoder.name!r}, classes={len(self.bank)}, "
                f"threshold={c.threshold}, cls_source={c.cls_source!r})")


def _as_sources(images: Iterable[ImageSource]) -> list[ImageSource]:
    """The inputs of a batch; a lone str/bytes is a usage error, not a sequence of images."""
    if isinstance(images, (str, bytes, bytearray, memoryview, Path, EncodedImage)):
        msg = (f"check_batch/judge_batch take an iterable of images, got a single "
               f"{type(images).__name__}; use check(image) or wrap it in a list: check_batch([image])")
        raise ConfigurationError(msg)
    return list(images)


def _load_text_embeddings(encoder: ImageTextEncoder, bank: ConceptBank,
                          cache_dir: str | Path | None) -> np.ndarray:
    return text_embeddings(encoder, bank, cache_dir=cache_dir)
