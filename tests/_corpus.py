"""Small corpora for the scan tests: a folder, a Parquet file, a WebDataset shard, manifests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def png(seed: int, size: int = 30) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def folder(root: Path, images: list[bytes]) -> Path:
    """``images`` as PNG files (every third one in a subfolder, one without an extension), a
    corrupt JPEG, a text file and a hidden file."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(images):
        name = f"img{i:02d}" if i == 1 else f"img{i:02d}.png"
        (root / ("sub" if i % 3 == 2 else "") / name).write_bytes(data)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(images[0])
    return root


def parquet(path: Path, images: list[bytes], *, ids: bool = True, row_group_size: int = 4) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"image": pa.array([*images, b""], pa.binary()),
            "caption": pa.array([f"c{i}" for i in range(len(images) + 1)])}
    if ids:
        cols["id"] = pa.array([f"row-{i}" for i in range(len(images) + 1)])
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def shard(path: Path, images: list[bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for i, data in enumerate(images):
            for ext, payload in ((".jpg" if i % 2 else ".png", data), (".txt", b"caption")):
                info = tarfile.TarInfo(f"s/{i:04d}{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        info = tarfile.TarInfo("s/9999.json")  # a sample without an image
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    return path
