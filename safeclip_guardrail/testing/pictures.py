"""Pictures a test makes: real encoded bytes, seeded noise, base64 and data URLs.

One home for what every test file used to write for itself (a ``save`` into a buffer, a
``b64encode``, an f-string data URL): nothing binary is committed, so tests generate their
pictures, and a helper that differs between files is a test that differs without saying so.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

__all__ = ["animated_png", "b64", "data_url", "encode", "noise", "png_of"]


def noise(w: int = 40, h: int = 30, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A ``w`` x ``h`` picture of seeded uniform noise (the same seed, the same pixels)."""
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    """``img`` saved in ``fmt`` (Pillow's writer; ``kw`` are its save options)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_of(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (8, 8)) -> bytes:
    """A PNG of one flat colour."""
    return encode(Image.new("RGB", size, color))


def b64(data: bytes) -> str:
    """Standard base64 of ``data``, as text."""
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` of ``data`` (the MIME type is written as given)."""
    return f"data:{mime};base64,{b64(data)}"


def animated_png(*frames: bytes) -> bytes:
    """An APNG whose frames are the pictures ``frames`` (encoded bytes), in order."""
    images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:], duration=100, loop=0)
