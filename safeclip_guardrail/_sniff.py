"""Magic bytes: what kind of file some bytes start like (a leaf module, nothing decoded)."""

from __future__ import annotations

__all__ = ["describe_binary", "sniff_format"]

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"), (b"\xff\x0a", "JXL"), (b"\x00\x00\x00\x0cJXL ", "JXL"),
    (b"8BPS", "PSD"), (b"icns", "ICNS"), (b"qoif", "QOI"),
)
_BMFF_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc",
                          b"hevx", b"mif1", b"msf1"})
"""ISO-BMFF ``ftyp`` brands of still and sequence AVIF / HEIF images."""
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_OTHER_BINARY = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
                 (b"\x93NUMPY", "a NumPy array"))


def sniff_format(head: bytes) -> str | None:
    """The image format ``head`` (a file's first 32 bytes or more) starts like, else None.

    Magic bytes only, nothing is decoded. This one function decides "is this an image?"
    for the extraction layer (a file block or an extra field whose bytes are an image is
    judged, whatever MIME type it declares), for folder scans (an extensionless upload is
    scanned) and for corpus sources. Names are Pillow's (``PNG``, ``JPEG``...).
    """
    head = bytes(head[:32])
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if head[4:8] == b"ftyp" and (head[8:12] in _BMFF_BRANDS
                                 or any(head[k:k + 4] in _BMFF_BRANDS for k in range(16, 32, 4))):
        return "AVIF" if b"avi" in head[8:32] else "HEIF"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] not in (b"", b"\x00\x00"):
        return "ICO"
    return None


def describe_binary(head: bytes) -> str | None:
    """``a PNG image``, ``a PDF document``... for a file that should have been text, else None."""
    name = sniff_format(head)
    if name is not None:
        article = "an" if name[0] in "AEIOU" else "a"
        return f"{article} {name} image"
    for magic, kind in _OTHER_BINARY:
        if head.startswith(magic):
            return kind
    return None
