"""CLIP image preprocessing shared by the torch backends.

Resize the shortest side (bicubic), centre-crop, scale to [0, 1], normalise with the
model's mean/std: the transform both Hugging Face's and open_clip's CLIP use for
evaluation. Done with PIL + numpy so it runs anywhere; one code path for both backends
keeps their embeddings comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "ClipPreprocess"]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipPreprocess:
    """Shortest-side resize to ``size``, centre crop to ``crop``, normalise."""

    size: int
    crop: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """(crop, crop, 3) uint8 array of one RGB image."""
        img = image if image.mode == "RGB" else image.convert("RGB")
        if hasattr(img, "draft") and img.format == "JPEG":
            img.draft("RGB", (self.size, self.size))
        w, h = img.size
        scale = self.size / min(w, h)
        nw, nh = max(self.crop, round(w * scale)), max(self.crop, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left = (nw - self.crop) // 2
        top = (nh - self.crop) // 2
        img = img.crop((left, top, left + self.crop, top + self.crop))
        return np.asarray(img, dtype=np.uint8)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(n, 3, crop, crop) float32 tensor."""
        batch = np.stack([self.to_uint8(im) for im in images])
        return self.normalize(torch.from_numpy(batch))

    def normalize(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, 3, H, W) normalised float32 (on the tensor's device)."""
        x = batch_uint8.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)
