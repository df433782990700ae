"""What one image may cost its parsers, and the errors that say which limit it broke."""

from __future__ import annotations

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["Budget"]


class Budget:
    """Counters of one walk over ``data``; each ``charge`` raises once its limit is passed."""

    def __init__(self, data: bytes, opts: ImageOptions, desc: str) -> None:
        self.data = data
        self.opts = opts
        self.desc = desc
        self.records = 0
        self.record_limit = opts.max_chunks + len(data) // 256
        self.metadata = 0

    def records_used(self, kind: str, n: int = 1) -> None:
        """Count ``n`` container records of a ``kind`` file (chunks, markers, entries...)."""
        self.records += n
        if self.records > self.record_limit:
            msg = (f"image {self.desc} is a {kind} with over {self.record_limit} records (limit: "
                   f"max_chunks={self.opts.max_chunks} plus one per 256 bytes); files made of many "
                   "tiny records are refused because parsing them costs seconds. Re-encode the "
                   "image, or raise ImageOptions.max_chunks if it is genuine")
            raise ImageInputError(msg, source=self.desc)

    def metadata_used(self, kind: str, what: str, n: int) -> None:
        """Count ``n`` bytes of metadata as the decoder will hold (or copy) them."""
        self.metadata += n
        if self.metadata > self.opts.max_metadata_bytes:
            msg = (f"{kind} image {self.desc} carries over {self.opts.max_metadata_bytes} bytes of "
                   f"metadata ({what}; limit: max_metadata_bytes); strip its metadata (EXIF, XMP, "
                   "ICC, text) or raise ImageOptions.max_metadata_bytes if it is genuine")
            raise ImageInputError(msg, source=self.desc)

    def scans(self, kind: str, count: int, where: str = "") -> None:
        """Refuse a JPEG picture (or TIFF strip) of more than ``max_jpeg_scans`` scans."""
        limit = self.opts.max_jpeg_scans
        if count > limit:
            msg = (f"{kind} image {self.desc}{where} has over {limit} scans (limit: max_jpeg_scans="
                   f"{limit}); every scan is one more pass over all the picture's coefficients, so "
                   "a repeated-scan JPEG costs minutes to decode. Encoders write at most about 12: "
                   "re-encode the image, or raise ImageOptions.max_jpeg_scans if it is genuine")
            raise ImageInputError(msg, source=self.desc)

    def pixels(self, kind: str, w: int, h: int, what: str) -> None:
        """Refuse a declared picture over ``max_pixels`` before a decoder allocates it."""
        if w * h > self.opts.max_pixels:
            msg = (f"{kind} image {self.desc} declares a {w}x{h} {what}, over the limit of "
                   f"{self.opts.max_pixels} pixels (possible decompression bomb); raise "
                   "ImageOptions.max_pixels if it is genuine")
            raise ImageInputError(msg, source=self.desc)

    def refuse(self, kind: str, message: str) -> ImageInputError:
        """An error for a structure that would multiply the decoder's work."""
        return ImageInputError(f"{kind} image {self.desc} {message}", source=self.desc)
