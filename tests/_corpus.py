"""Small corpora for the scan tests: a folder, a Parquet file, a WebDataset shard, manifests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from safeclip_guardrail.testing.pictures import encode, noise


def png(seed: int, size: int = 30) -> bytes:
    """A PNG of seeded noise, ``size`` pixels square."""
    return encode(noise(size, size, seed))


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


def hostile(base: Path, images: list[bytes]) -> dict[str, Path]:
    """A corpus whose rows go wrong in every way a scan must survive (``images``: 3 PNGs).

    ``outside/`` holds a picture, a text file and a folder; ``scan/`` (the root) holds
    ``a.png``, symlinks to it and out of the root (to an existing picture, to a missing
    file, to a text file, to a folder), and manifests ``m.csv``/``m.jsonl`` naming good,
    empty, missing and outside paths, with broken records and duplicate ids; ``shard.tar``
    holds a sample with a ``.png`` and a ``.jpg``, a key that comes back later, and a sample
    without an image.
    """
    import json
    import os

    outside, scan = base / "outside", base / "scan"
    (outside / "d").mkdir(parents=True)
    scan.mkdir()
    (outside / "secret.png").write_bytes(images[0])
    (outside / "notes.txt").write_text("not an image")
    (outside / "d" / "x.png").write_bytes(images[0])
    (scan / "a.png").write_bytes(images[1])
    os.symlink(scan / "a.png", scan / "inside-link.png")
    os.symlink(outside / "secret.png", scan / "leak.png")
    os.symlink(outside / "missing.png", scan / "dangling.png")
    os.symlink(outside / "notes.txt", scan / "notes-link")
    os.symlink(outside / "d", scan / "outdir")
    (scan / "m.csv").write_bytes(
        b"path,id\n"
        b"a.png,\n"
        b",empty-path\n"
        b"a.png\n"                            # a short record: id missing, path fine
        b"../outside/secret.png,\n"
        b"../outside/missing.png,\n"
        b"../outside/notes.txt,\n"
        b"\xff.png,\n"                        # not UTF-8
        b"a.png,\n"                           # the same path again: a second id
    )
    lines = [json.dumps({"path": "a.png", "id": "j1"}), "not json", "[1, 2]",
             json.dumps({"path": 5}), json.dumps({"other": "x"}),
             json.dumps({"path": "a\u0000.png"}), "[" * 100_000,
             json.dumps({"path": "a.png", "id": "j1"})]
    (scan / "m.jsonl").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe{}\n")
    with tarfile.open(base / "shard.tar", "w") as tar:
        for name, payload in [("s/0000.png", images[0]), ("s/0000.jpg", images[1]),
                              ("s/0000.txt", b"caption"), ("s/0001.png", images[2]),
                              ("s/0000.png", images[2]), ("s/0002.txt", b"no image")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {"outside": outside, "scan": scan, "csv": scan / "m.csv",
            "jsonl": scan / "m.jsonl", "shard": base / "shard.tar"}


def every_entry(base: Path) -> Path:
    """A class-folder dataset ``base/data`` holding one of every kind of entry the folder walk
    sorts (see tests/unit/images/test_discover.py for what each becomes); ``base/outside`` lies beside it.

    Files to check: ``gun/a.png``, ``gun/upload`` (PNG bytes, no extension),
    ``gun/broken.heic`` (an image name, garbage bytes), ``gun/sub/b.jpg``, ``neutral/c.png``,
    ``neutral/inside.png`` (a symlink to ``gun/a.png``). Unreadable without being read:
    ``gun/leak.png`` and ``gun/away.png`` (symlinks out of the root, to a picture and to
    nothing), ``outdir`` (a symlink to a folder outside), ``gun/loop`` (a symlink to itself:
    cannot be opened). Skipped: ``.cache/`` and ``gun/.hidden.png`` (hidden),
    ``gun/linkdir`` (a symlink to a folder inside), ``gun/notes.txt`` (not an image),
    ``neutral/empty`` (empty), ``neutral/fifo`` and ``neutral/gone.png`` (a FIFO, a dangling
    symlink inside: not regular files).
    """
    import os

    outside, data = base / "outside", base / "data"
    for d in (outside / "d", data / ".cache", data / "gun" / "sub", data / "neutral"):
        d.mkdir(parents=True)
    (outside / "secret.png").write_bytes(png(7))
    (outside / "d" / "x.png").write_bytes(png(8))
    (data / ".cache" / "thumb.png").write_bytes(png(9))
    gun, neutral = data / "gun", data / "neutral"
    (gun / "a.png").write_bytes(png(1))
    (gun / "upload").write_bytes(png(2))
    (gun / "broken.heic").write_bytes(b"\x00\x00\x00\x18ftypheic but nothing after")
    (gun / "sub" / "b.jpg").write_bytes(_jpeg(3))
    (gun / "notes.txt").write_text("not an image")
    (gun / ".hidden.png").write_bytes(png(4))
    os.symlink(outside / "secret.png", gun / "leak.png")
    os.symlink(outside / "missing.png", gun / "away.png")
    os.symlink(gun / "loop", gun / "loop")
    os.symlink(neutral, gun / "linkdir")
    (neutral / "c.png").write_bytes(png(5))
    (neutral / "empty").write_bytes(b"")
    os.mkfifo(neutral / "fifo")
    os.symlink(gun / "a.png", neutral / "inside.png")
    os.symlink(neutral / "missing.png", neutral / "gone.png")
    os.symlink(outside / "d", data / "outdir")
    return data


def _jpeg(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (30, 30, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()
