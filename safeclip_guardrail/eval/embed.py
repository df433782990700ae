"""One encoder pass over a dataset; every metric and ablation reuses these embeddings.

Images are decoded lazily, ``batch_size`` at a time, and each chunk goes through ONE
vision forward (``SafeCLIPGuard.embed_images_all`` gives both CLS sources at once), so an
evaluation with ablations over K and ``cls_source`` costs exactly one encoder pass per image.
Files that cannot be read are collected, not raised.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from safeclip_guardrail.encoders.base import ImageEmbeddings
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.eval.datasets import EvalDataset, Sample, UnreadableFile
from safeclip_guardrail.images.decode import DecodedImage

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["EmbeddedDataset", "embed_dataset"]


@dataclass(frozen=True)
class EmbeddedDataset:
    """The readable samples, their embeddings (rows aligned) and the unreadable files."""

    samples: tuple[Sample, ...]
    embeddings: ImageEmbeddings
    sha256: tuple[str, ...]
    unreadable: tuple[UnreadableFile, ...]

    def __len__(self) -> int:
        return len(self.samples)


def embed_dataset(guard: SafeCLIPGuard, dataset: EvalDataset, *,
                  show_progress: bool = True) -> EmbeddedDataset:
    """Decode and encode every sample, one encoder forward per ``batch_size`` chunk."""
    batch = guard.config.batch_size
    samples: list[Sample] = []
    hashes: list[str] = []
    parts: list[ImageEmbeddings] = []
    unreadable: list[UnreadableFile] = list(dataset.unreadable)  # found, never to be read
    bar = _progress(len(dataset), enabled=show_progress)
    items = dataset.samples
    for start in range(0, len(items), batch):
        decoded: list[DecodedImage] = []
        for sample in items[start:start + batch]:
            try:
                img = guard.decode(sample.path)  # as the guard reads it at run time
            except ImageInputError as exc:
                unreadable.append(UnreadableFile(path=str(sample.path), label=sample.label,
                                                 error=str(exc)))
                continue
            decoded.append(img)
            samples.append(sample)
            hashes.append(img.sha256)
        if decoded:
            parts.append(guard.embed_decoded(decoded))
        bar.update(min(batch, len(items) - start))
    bar.close()
    emb = ImageEmbeddings.concat(parts, guard.encoder.embed_dim)
    return EmbeddedDataset(tuple(samples), emb, tuple(hashes), tuple(unreadable))


def subset(data: EmbeddedDataset, keep: np.ndarray) -> EmbeddedDataset:
    """The rows where ``keep`` is True (e.g. the benign images of a dataset)."""
    idx = np.flatnonzero(keep)
    pen = data.embeddings.penultimate
    return EmbeddedDataset(
        tuple(data.samples[i] for i in idx),
        ImageEmbeddings(final=data.embeddings.final[idx],
                        penultimate=None if pen is None else pen[idx]),
        tuple(data.sha256[i] for i in idx),
        data.unreadable,
    )


def _progress(total: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="embedding", unit="img", file=sys.stderr, leave=False,
                disable=None if enabled and total > 1 else True)
