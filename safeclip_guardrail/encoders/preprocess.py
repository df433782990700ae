"""CLIP image preprocessing shared by the torch backends.

Resize the shortest side (bicubic), centre-crop, scale to [0, 1], normalise with the
model's mean/std: the transform both Hugging Face's and open_clip's CLIP use for
evaluation. One code path for both backends keeps their embeddings comparable.

The guard hands the encoder square views (:mod:`safeclip_guardrail.images.views`): a square is
resized straight to the crop size, so the centre crop never cuts a view's edges (a no-op
when ``size == crop``, as for every OpenAI CLIP). Other shapes keep the exact transform of
transformers' ``CLIPImageProcessor``.

Two implementations of the same transform:

- CPU (:meth:`ClipPreprocess.__call__`): PIL + numpy, pixel for pixel what transformers'
  ``CLIPImageProcessor`` produces (so a guard fused into LLaVA sees the same pixels). JPEGs
  not yet decoded are decoded in draft mode (DCT scaling) straight to >= ``size``.
- Device (:meth:`ClipPreprocess.on_device`, the GPU path): uint8 pixels are copied through
  pinned memory with non-blocking copies and resized / cropped / normalised on the device
  (antialiased bicubic, the PIL filter), so the CPU only decodes.
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
    """Shortest-side resize to ``size``, centre crop to ``crop``, normalise (a square is
    resized to ``crop`` whole)."""

    size: int
    crop: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def resized_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the shortest-side resize (never below the crop).

        The long side is truncated, not rounded, as in transformers' CLIP processor and
        torchvision's ``Resize`` (open_clip), so the crops line up pixel for pixel. A square
        (a view) goes to ``crop`` x ``crop``: the crop that follows takes nothing off.
        """
        if width == height:
            return self.crop, self.crop
        if width <= height:
            nw, nh = self.size, int(self.size * height / width)
        else:
            nw, nh = int(self.size * width / height), self.size
        return max(self.crop, nw), max(self.crop, nh)

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """(crop, crop, 3) uint8 array of one RGB image."""
        if image.mode == "RGB" and getattr(image, "format", None) == "JPEG":
            image.draft("RGB", (self.size, self.size))  # no-op unless not yet decoded
        img = image if image.mode == "RGB" else image.convert("RGB")
        w, h = img.size
        nw, nh = self.resized_shape(w, h)
        left = (nw - self.crop) // 2
        top = (nh - self.crop) // 2
        if (nw, nh) != (w, h):
            # Whole-image resize then crop, as transformers does: resizing only the crop box
            # is ~25% cheaper but differs by 1 level in a few pixels, and the fused guard in
            # ChatLlava must see exactly the pixels LLaVA's own processor produces.
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
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

    # ------------------------------------------------------------------ device path
    def on_device(self, images: Sequence[Image.Image], device: torch.device | str,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(n, 3, crop, crop) normalised pixels computed on ``device`` from uint8 uploads.

        Each image travels as uint8 (a quarter of the float32 bytes) through pinned host
        memory with a non-blocking copy; resize, crop and normalisation run on the device.
        Works on any device (the CPU too, which is how it is tested without a GPU).
        """
        dev = torch.device(device)
        pin = dev.type == "cuda"
        crops = []
        for image in images:
            img = image if image.mode == "RGB" else image.convert("RGB")
            host = torch.from_numpy(np.array(img, dtype=np.uint8))
            if pin:
                host = host.pin_memory()
            pixels = host.to(dev, non_blocking=True)
            crops.append(self._resize_crop(pixels))
        return self.normalize(torch.stack(crops)).to(dtype)

    def _resize_crop(self, hwc_uint8: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) uint8 -> (crop, crop, 3) uint8, on the tensor's device."""
        h, w = int(hwc_uint8.shape[0]), int(hwc_uint8.shape[1])
        nw, nh = self.resized_shape(w, h)
        x = hwc_uint8.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        if (nw, nh) != (w, h):
            x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bicubic",
                                                align_corners=False, antialias=True)
            x = x.round_().clamp_(0.0, 255.0)  # PIL rounds to uint8 after resampling
        left = (nw - self.crop) // 2
        top = (nh - self.crop) // 2
        x = x[0, :, top:top + self.crop, left:left + self.crop]
        return x.permute(1, 2, 0).to(torch.uint8)
