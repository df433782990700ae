"""WebDataset tar shards: samples grouped by key, one row per image, ids unique per shard.

Members sharing a key (the member name up to the first dot of its last component) form a
sample. Its images are the members with an image extension, else those whose first bytes
sniff as an image. One image: the row's id is ``<shard>:<key>``; several (``.png`` next to
``.jpg``): one row each, ``<shard>:<key>.<ext>``, so every picture is judged and no two
rows share an id (a key repeated later in the shard, or a duplicate member name, gets a
``#2`` suffix). A sample without an image, an image member over ``max_bytes`` (never read
into memory), and a shard that cannot be opened or breaks off are error rows: the rest of
the corpus is still scanned. Non-image members are read no further than their first bytes.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from safeclip_guardrail.images._paths import utf8_text as display
from safeclip_guardrail.images.discover import IMAGE_EXTENSIONS
from safeclip_guardrail.images.sources import sniff_format
from safeclip_guardrail.scale._rows import Row, UniqueIds

__all__ = ["tar_rows"]

_BROKEN = (OSError, EOFError, tarfile.TarError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class _Member:
    ext: str
    data: bytes
    by_name: bool
    """An image by its extension (else by its first bytes)."""
    size: int
    over: bool = False
    """Larger than ``max_bytes``: not read."""


def tar_rows(shard: str, *, max_bytes: int) -> Iterator[Row]:
    """The rows of one shard, in member order."""
    ids = UniqueIds()
    try:
        tar = tarfile.open(shard, mode="r:*")  # noqa: SIM115 - closed below
    except _BROKEN as exc:
        yield Row(ids.take(f"{shard}#error"), error=f"cannot read tar shard {display(shard)}: "
                                                     f"{display(str(exc))}")
        return
    samples = 0
    with tar:
        try:
            key: str | None = None
            members: list[_Member] = []
            exts: list[str] = []
            for info in tar:
                if not info.isfile():
                    continue
                head, _, name = info.name.rpartition("/")
                stem, _, ext = name.partition(".")
                member_key = f"{head}/{stem}" if head else stem
                if key is not None and member_key != key:
                    yield from _sample(shard, key, members, exts, ids, max_bytes)
                    samples, members, exts = samples + 1, [], []
                key = member_key
                exts.append(ext)
                member = _read(tar, info, ext, max_bytes)
                if member is not None:
                    members.append(member)
            if key is not None:
                yield from _sample(shard, key, members, exts, ids, max_bytes)
        except _BROKEN as exc:
            yield Row(ids.take(f"{shard}#error"),
                      error=f"tar shard {display(shard)} breaks off after {samples} sample(s): "
                            f"{display(str(exc))}")


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo, ext: str,
          max_bytes: int) -> _Member | None:
    """An image member (at most ``max_bytes`` read), or None for any other member."""
    by_name = "." + ext.lower().rpartition(".")[2] in IMAGE_EXTENSIONS
    if by_name and info.size > max_bytes:
        return _Member(ext, b"", by_name, info.size, over=True)
    fh = tar.extractfile(info)
    if fh is None:
        return None
    first = fh.read(16)
    if not by_name and sniff_format(first) is None:
        return None
    if info.size > max_bytes:
        return _Member(ext, b"", by_name, info.size, over=True)
    return _Member(ext, first + fh.read(max_bytes + 1 - len(first)), by_name, info.size)


def _sample(shard: str, key: str, members: list[_Member], exts: list[str], ids: UniqueIds,
            max_bytes: int) -> Iterator[Row]:
    images = [m for m in members if m.by_name] or members
    if not images:
        listed = ", ".join(f".{e}" if e else "(no extension)" for e in exts)
        yield Row(ids.take(f"{shard}:{key}"),
                  error=f"sample {display(key)} of {display(shard)} has no image member "
                        f"({listed})")
        return
    for m in images:
        name = key if len(images) == 1 else (f"{key}.{m.ext}" if m.ext else key)
        ident = ids.take(f"{shard}:{name}")
        if m.over:
            yield Row(ident, error=f"{display(name)} in {display(shard)} is {m.size} bytes, over "
                                   f"the limit of {max_bytes} bytes; raise max_bytes if expected")
        else:
            yield Row(ident, data=m.data)
