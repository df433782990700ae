"""An engine-free batch scorer: a batch of columns in, a batch of verdict columns out.

Batch-inference engines (Ray Data actor pools, Spark, a plain loop) all want the same thing:
a callable built once per worker, which loads the model in its constructor and then maps
``dict[str, np.ndarray]`` batches to ``dict[str, np.ndarray]`` batches. :class:`BatchScorer`
is that callable for the guard. It imports no engine, so the core stays free of Ray; the
``safeclip_guardrail.scale`` package runs it locally or on Ray.

Input columns (names configurable):

- ``path``: file paths (read by the guard, with its limits), or
- ``image``: encoded bytes, or decoded ``H x W x C`` uint8 arrays;
- ``id`` (optional): carried through to the output;
- ``error`` (optional): a non-empty cell makes the row an error row with that message and
  nothing is read for it (a corpus reader's verdict on a row it could not, or must not,
  read: an unusable manifest record, a path outside the scan root).

A row with a non-empty ``path`` is read from that path, otherwise from ``image``. Output
columns, one row per input row, in order: ``id``, ``path``, ``image_sha256``, ``flagged``,
``category``, ``top_category``, ``toxic_score``, ``threshold``, ``score_<class>`` for every
class of the bank, ``error``, and with ``embeddings=True`` ``embedding_final`` and
``embedding_penultimate`` (``(n, d)`` float32, NaN rows where the image was unreadable).

A bad image is an *error row* (``error`` set, ``flagged`` as ``on_error`` says: True and
category ``unreadable`` by default), never a failed batch: one corrupt file in a million
must not stop a corpus scan. ``on_error="raise"`` is treated as ``"block"`` here for the
same reason. Decoding runs in a thread pool ahead of the encoder, so reading the next images
overlaps the forward over the current ones (PIL and torch both release the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from safeclip_guardrail import policy
from safeclip_guardrail.errors import ConfigurationError, ImageInputError
from safeclip_guardrail.images._paths import utf8_text
from safeclip_guardrail.images.decode import DecodedImage, ImageSource
from safeclip_guardrail.result import UNREADABLE, ImageVerdict

if TYPE_CHECKING:
    from safeclip_guardrail.config import GuardConfig
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["SCORE_PREFIX", "BatchScorer", "score_column"]

SCORE_PREFIX = "score_"
"""Prefix of the per-class probability-mass columns (``score_gun``, ``score_neutral``...)."""


def score_column(class_name: str) -> str:
    """The output column holding ``class_name``'s probability mass."""
    return f"{SCORE_PREFIX}{class_name}"


@dataclass(frozen=True)
class _Unread:
    """A row the reader already judged unreadable (its ``error`` cell)."""

    error: str


@dataclass(frozen=True)
class _Read:
    """One input row after decoding: the image, or why it could not be read."""

    image: DecodedImage | None
    error: str | None


class BatchScorer:
    """Callable class mapping a column batch to verdict columns; build once per worker.

    ``BatchScorer(model, **guard_options)`` loads the guard exactly like
    ``SafeCLIPGuard.from_pretrained(model, **guard_options)`` (pass ``config=GuardConfig``
    or a config file for everything at once); :meth:`from_guard` wraps a guard you already
    have. The constructor arguments are plain data, so an engine can ship them to workers.
    """

    def __init__(self, model: str | None = None, *, embeddings: bool = False,
                 id_column: str = "id", path_column: str = "path", image_column: str = "image",
                 decode_threads: int = 2, guard: SafeCLIPGuard | None = None,
                 **guard_options: Any) -> None:
        if guard is None:
            from safeclip_guardrail.guard import SafeCLIPGuard

            guard = SafeCLIPGuard.from_pretrained(model, **guard_options)
        elif model is not None or guard_options:
            msg = "pass either a guard or model/guard options, not both"
            raise ConfigurationError(msg)
        if decode_threads < 1:
            msg = f"decode_threads must be >= 1, got {decode_threads}"
            raise ConfigurationError(msg)
        self.guard = guard
        # a non-finite embedding is an error row here too, never an exception out of a batch
        self._scoring = (guard.with_options(on_error="block")
                         if guard.config.on_error == "raise" else guard)
        self.embeddings = embeddings
        self.id_column = id_column
        self.path_column = path_column
        self.image_column = image_column
        self.decode_threads = decode_threads
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_guard(cls, guard: SafeCLIPGuard, *, embeddings: bool = False,
                   **columns: Any) -> BatchScorer:
        """A scorer over an existing guard (shares its encoder and descriptor embeddings)."""
        return cls(guard=guard, embeddings=embeddings, **columns)

    @property
    def config(self) -> GuardConfig:
        return self.guard.config

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.guard.bank.class_names

    @property
    def embed_dim(self) -> int:
        return int(self.guard.encoder.embed_dim)

    # ------------------------------------------------------------------ the call
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Verdict columns for ``batch``, one output row per input row, in order."""
        sources, ids, paths = self._inputs(batch)
        reads: list[_Read] = []
        first_frame: dict[str, np.ndarray] = {}
        penultimate: dict[str, np.ndarray] = {}
        done: dict[str, ImageVerdict] = {}
        chunk: list[DecodedImage] = []
        views = 0
        bs = self.config.batch_size
        for read in self._decode_ahead(sources):  # later rows decode while this chunk encodes
            reads.append(read)
            if read.image is None:
                continue
            chunk.append(read.image)
            views += self.guard.views_of(read.image).views  # batch_size counts views
            if views >= bs:
                self._score_chunk(chunk, done, first_frame, penultimate)
                chunk, views = [], 0
        if chunk:
            self._score_chunk(chunk, done, first_frame, penultimate)
        verdicts = [done[r.image.sha256] if r.image is not None else None for r in reads]
        return self._columns(ids, paths, reads, verdicts, first_frame, penultimate)

    def close(self) -> None:
        """Stop the decoding threads (they also stop with the process)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    # ------------------------------------------------------------------ inputs
    def _inputs(self, batch: dict[str, np.ndarray]) -> tuple[list[Any], list[str], list[str | None]]:
        n = _batch_length(batch)
        path_col = batch.get(self.path_column)
        image_col = batch.get(self.image_column)
        if path_col is None and image_col is None:
            msg = (f"batch has neither a {self.path_column!r} nor an {self.image_column!r} column "
                   f"(columns: {', '.join(sorted(batch)) or 'none'}); name the image column with "
                   "image_column= or path_column=")
            raise ConfigurationError(msg)
        id_col = batch.get(self.id_column)
        error_col = batch.get("error")
        sources: list[Any] = []
        ids: list[str] = []
        paths: list[str | None] = []
        for i in range(n):
            path = _text(path_col[i]) if path_col is not None else ""
            error = _text(error_col[i]) if error_col is not None else ""
            if error:
                sources.append(_Unread(error))
            elif path:
                sources.append(Path(path))
            else:
                sources.append(_image_value(image_col[i]) if image_col is not None else b"")
            shown = utf8_text(path)  # a file name that is not UTF-8, escaped for the output
            paths.append(shown or None)
            ident = utf8_text(_text(id_col[i])) if id_col is not None else ""
            ids.append(ident or shown or str(i))
        return sources, ids, paths

    def _decode_ahead(self, sources: Sequence[Any]) -> Iterator[_Read]:
        """Decoded rows in order; with threads, every decode is submitted at once and the
        caller gets each row as soon as it (and the rows before it) are ready."""
        if len(sources) < 2 or self.decode_threads < 2:
            return (self._read(s) for s in sources)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.decode_threads,
                                            thread_name_prefix="safeclip-decode")
        return self._pool.map(self._read, sources)

    def _read(self, source: ImageSource | _Unread) -> _Read:
        if isinstance(source, _Unread):
            return _Read(None, source.error)
        try:
            return _Read(self.guard.decode(source), None)
        except ImageInputError as exc:
            return _Read(None, str(exc))

    # ------------------------------------------------------------------ scoring
    def _score_chunk(self, chunk: list[DecodedImage], done: dict[str, ImageVerdict],
                     first_frame: dict[str, np.ndarray],
                     penultimate: dict[str, np.ndarray]) -> None:
        """Encode every view of every frame of the chunk's new images in one call; the worst
        view decides (``SafeCLIPGuard.score_decoded``, as in ``check_batch``). Duplicates
        (same SHA-256) are encoded once; the embedding columns hold each image's whole-picture
        view of its first frame."""
        fresh = [img for img in chunk if img.sha256 not in done]
        if not fresh:
            return
        scored = self.guard.score_decoded(fresh)
        emb = scored.embeddings
        for digest, result in scored.results.items():
            done[digest] = (result if isinstance(result, ImageVerdict)
                            else policy.verdict_for(result, self._scoring.config, source=result.source))
            row = scored.whole_rows[digest]
            first_frame[digest] = emb.final[row]
            if emb.penultimate is not None:
                penultimate[digest] = emb.penultimate[row]

    # ------------------------------------------------------------------ outputs
    def _columns(self, ids: list[str], paths: list[str | None], reads: list[_Read],
                 verdicts: list[ImageVerdict | None], first_frame: dict[str, np.ndarray],
                 penultimate: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(ids)
        names = self.class_names
        blocked = self.config.on_error != "allow"
        # a verdict with an error (e.g. a non-finite embedding) is an error row like a read error
        scored = [v if v is not None and v.error is None else None for v in verdicts]
        errors = [r.error or (v.error if v is not None else None) for r, v in zip(reads, verdicts)]
        out: dict[str, np.ndarray] = {
            "id": _objects(ids),
            "path": _objects(paths),
            "image_sha256": _objects([r.image.sha256 if r.image else None for r in reads]),
            "flagged": np.array([v.flagged if v else blocked for v in scored], bool),
            "category": _objects([v.category if v else (UNREADABLE if blocked else None)
                                  for v in scored]),
            "top_category": _objects([v.top_category if v else None for v in scored]),
            "toxic_score": _floats([v.toxic_score if v else None for v in scored]),
            "threshold": _floats([v.threshold if v else None for v in scored]),
        }
        for name in names:
            out[score_column(name)] = _floats([v.scores.get(name) if v else None for v in scored])
        out["error"] = _objects(errors)
        if self.embeddings:
            d = self.embed_dim
            final = np.full((n, d), np.nan, np.float32)
            pen = np.full((n, d), np.nan, np.float32)
            for i, r in enumerate(reads):
                if r.image is not None:
                    final[i] = first_frame[r.image.sha256]
                    if r.image.sha256 in penultimate:
                        pen[i] = penultimate[r.image.sha256]
            out["embedding_final"] = final
            out["embedding_penultimate"] = pen
        return out


# ---------------------------------------------------------------------- helpers
def _batch_length(batch: dict[str, np.ndarray]) -> int:
    lengths = {len(col) for col in batch.values()}
    if len(lengths) > 1:
        msg = f"batch columns have different lengths: {sorted(lengths)}"
        raise ConfigurationError(msg)
    return lengths.pop() if lengths else 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return ""  # a missing cell, as pandas or Ray hand it over (also as float32)
    return str(value)


def _image_value(value: Any) -> Any:
    """bytes / memoryview as bytes; a decoded array as a PIL image; anything else as is."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        if value.dtype == object:  # a binary cell Ray handed over as a 0-d object array
            return _image_value(value.item()) if value.ndim == 0 else value
        from PIL import Image

        if value.dtype != np.uint8 or value.ndim not in (2, 3):
            return value  # decode() turns it into a typed ImageInputError
        return Image.fromarray(value)
    return value


def _objects(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)
