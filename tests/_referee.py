"""The referee: every picture any decoder could find in a payload, and whether each was judged.

A provider may decode what it receives with another decoder than the guard's: show every
frame, honour or ignore transparency and paint it over white or black, pull a JPEG out of
EXIF or out of bytes after the end of the file, render a PDF's pages or read its embedded
pictures. :func:`pictures_in` does all of that to a payload, independently of the library's
decoder (Pillow, torchvision's libjpeg/libpng/giflib/libwebp, PDFium, and carving every
JPEG/PNG/GIF/WebP signature at every offset). :func:`referee` then names each picture found
that no encoder judged, or that is flagged.

:class:`RefereeEncoder` is the judge the tests give the guard: planted pictures keep their
planted embeddings (exact pixels); any other picture is ``gun`` when a fifth of it is the
marker red (so a flagged picture stays flagged through JPEG coding, rendering and scaling),
else ``neutral``. It remembers every picture it judged.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageSequence

from safeclip_guardrail import ConceptBank
from safeclip_guardrail.images.views import picture_views
from safeclip_guardrail.testing import PlantedEncoder

_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
               (b"GIF89a", "GIF"), (b"RIFF", "WEBP"))
_MAX_FRAMES = 64
SAME_SIZE_MAE = 8.0
"""Mean absolute difference (0-255) under which a picture of the judged size is the judged
picture. A JPEG rebuilt with its source's tables differs from the judged pixels by 0 on
smooth pictures and by 5.9 on pure noise (the worst case: clipped samples leave the
quantisation lattice); two different pictures differ by tens of levels."""
RESIZED_MAE = 10.0
"""The same after the larger of the two is scaled down to the other's size (a PDF page
rendered at another resolution)."""


@dataclass(frozen=True)
class Found:
    """One reading of one picture in a payload."""

    pixels: np.ndarray
    """H x W x 3, uint8."""
    how: str
    """Where and how it was read: ``JPEG at 1234, frame 2, alpha over black (pillow)``."""


# ------------------------------------------------------------------ the judge
class RefereeEncoder(PlantedEncoder):
    """Planted pictures keep their embedding; others are judged by the marker rule."""

    def __init__(self) -> None:
        super().__init__(ConceptBank.default())
        self.judged: list[np.ndarray] = []
        self._planted: dict[bytes, str] = {}

    def plant_reading(self, image: Image.Image, category: str) -> None:
        """Plant ``category`` for exactly these pixels (a reading only some decoders show)."""
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        self._planted[_key(rgb)] = category
        self.register(Image.fromarray(rgb, "RGB"), self.embedding_for(category))

    def category_of(self, pixels: np.ndarray) -> str:
        planted = self._planted.get(_key(pixels))
        if planted is not None:
            return planted
        red = (pixels[..., 0] > 200) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)
        return "gun" if red.mean() >= 0.2 else "neutral"

    def encode_images(self, images: Sequence[Image.Image]) -> Any:
        for im in images:
            rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
            self.judged.append(rgb)
            if _key(rgb) not in self._planted:
                self.register(im, self.embedding_for(self.category_of(rgb)))
        return super().encode_images(images)


def _key(pixels: np.ndarray) -> bytes:
    return f"{pixels.shape}".encode() + pixels.tobytes()


# ------------------------------------------------------------------ finding pictures
def pictures_in(data: bytes, *, pdf_long_side: int = 1568) -> list[Found]:
    """Every reading of every picture any decoder could find in ``data``."""
    found: list[Found] = []
    for offset, kind in carve_offsets(data):
        blob = data[offset:]
        where = f"{kind} at {offset}"
        found += _pillow_readings(blob, where)
        found += _torchvision_readings(blob, where)
    if b"%PDF-" in data[:1024]:
        found += _pdf_readings(data, pdf_long_side)
    return found


def carve_offsets(data: bytes) -> list[tuple[int, str]]:
    """Every offset where a JPEG (SOI), PNG, GIF or WebP signature starts."""
    out = []
    for magic, kind in _SIGNATURES:
        at = data.find(magic)
        while at >= 0:
            if kind != "WEBP" or data[at + 8:at + 12] == b"WEBP":
                out.append((at, kind))
            at = data.find(magic, at + 1)
    return sorted(out)


def _readings(frame: Image.Image, where: str) -> Iterator[Found]:
    """Alpha and colour keys dropped, and honoured over white and over black."""
    yield Found(np.asarray(frame.convert("RGB")), f"{where} (alpha dropped)")
    if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
        rgba = frame.convert("RGBA")
        for name, colour in (("white", (255, 255, 255, 255)), ("black", (0, 0, 0, 255))):
            back = Image.new("RGBA", rgba.size, colour)
            yield Found(np.asarray(Image.alpha_composite(back, rgba).convert("RGB")),
                        f"{where} (alpha over {name})")


def _pillow_readings(blob: bytes, where: str) -> list[Found]:
    out: list[Found] = []
    try:
        with Image.open(io.BytesIO(blob)) as im:
            for k, frame in enumerate(ImageSequence.Iterator(im)):
                if k >= _MAX_FRAMES:
                    break
                out += _readings(frame.copy(), f"{where}, frame {k + 1}, pillow")
    except Exception:  # not a picture at this offset (or a truncated one): nothing seen
        pass
    return out


def _torchvision_readings(blob: bytes, where: str) -> list[Found]:
    import torch
    from torchvision.io import ImageReadMode, decode_image

    out: list[Found] = []
    tensor = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    for mode in (ImageReadMode.RGB, ImageReadMode.RGB_ALPHA):
        try:
            decoded = decode_image(tensor, mode=mode)
        except Exception:  # this decoder cannot read it: nothing seen
            continue
        frames = decoded if decoded.ndim == 4 else decoded[None]
        for k, chw in enumerate(frames[:_MAX_FRAMES]):
            arr = chw.permute(1, 2, 0).numpy()
            if arr.shape[2] == 4:
                alpha = arr[..., 3:4].astype(np.float32) / 255
                for name, colour in (("white", 255.0), ("black", 0.0)):
                    mixed = arr[..., :3] * alpha + colour * (1 - alpha)
                    out.append(Found(np.clip(np.rint(mixed), 0, 255).astype(np.uint8),
                                     f"{where}, frame {k + 1}, torchvision (alpha over {name})"))
            else:
                out.append(Found(np.ascontiguousarray(arr), f"{where}, frame {k + 1}, torchvision"))
    return out


def _pdf_readings(data: bytes, long_side: int) -> list[Found]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    out: list[Found] = []
    doc = pdfium.PdfDocument(data)
    try:
        for index in range(len(doc)):
            page = doc[index]
            where = f"PDF page {index + 1}"
            width, height = page.get_size()
            for scale, name in ((long_side / max(width, height), "guard's size"), (1.0, "72 dpi")):
                bitmap = page.render(scale=scale, draw_annots=True)
                out.append(Found(np.asarray(bitmap.to_pil().convert("RGB")),
                                 f"{where} rendered at the {name}"))
            for k, obj in enumerate(page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE],
                                                     max_depth=64)):
                for rendered in (False, True):
                    try:
                        pil = obj.get_bitmap(render=rendered).to_pil()
                    except Exception:  # PDFium cannot give this reading: nothing seen
                        continue
                    out += _readings(pil.copy(), f"{where}, picture {k + 1}"
                                     f"{' (masks applied)' if rendered else ''}")
            page.close()
    finally:
        doc.close()
    return out


# ------------------------------------------------------------------ the verdict
@dataclass
class Report:
    """What the referee found wrong in a payload."""

    found: int = 0
    unjudged: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.found > 0 and not self.unjudged and not self.flagged


def referee(data: bytes, encoder: RefereeEncoder) -> Report:
    """Every picture in ``data``: was it judged (the same picture, up to JPEG coding or
    resolution), and is it clean?"""
    report = Report()
    for item in pictures_in(data):
        report.found += 1
        if encoder.category_of(item.pixels) != "neutral":
            report.flagged.append(item.how)
        if not _was_judged(item.pixels, encoder.judged):
            report.unjudged.append(item.how)
    return report


def _was_judged(pixels: np.ndarray, judged: list[np.ndarray]) -> bool:
    """The picture itself was encoded, or every view the guard makes of it was (a picture
    that is not square is judged as its padded whole view and its tiles)."""
    if any(_same_picture(pixels, j) for j in judged):
        return True
    views = [np.asarray(v) for v in picture_views(Image.fromarray(pixels, "RGB"))]
    return all(any(_same_picture(v, j) for j in judged) for v in views)


def _same_picture(found: np.ndarray, judged: np.ndarray) -> bool:
    if found.shape == judged.shape:
        return float(np.abs(found.astype(np.int16) - judged).mean()) <= SAME_SIZE_MAE
    fh, fw = found.shape[:2]
    jh, jw = judged.shape[:2]
    if abs(fw / fh - jw / jh) > 0.02 * (jw / jh):
        return False
    small, large = (found, judged) if fw * fh <= jw * jh else (judged, found)
    shrunk = Image.fromarray(large).resize((small.shape[1], small.shape[0]), Image.Resampling.BOX)
    return float(np.abs(np.asarray(shrunk).astype(np.int16) - small).mean()) <= RESIZED_MAE
