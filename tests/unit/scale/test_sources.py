"""Corpus discovery and reading: folders by content, Parquet, WebDataset shards, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.scale import discover, sniff_image
from safeclip_guardrail.scale.sources import read_unit
from tests._corpus import folder, parquet, png, shard


def _rows(sources: list[Path], **kw: object) -> list[tuple[str, str, bytes]]:
    corpus = discover(sources, **kw)  # type: ignore[arg-type]
    out = []
    for unit in corpus.units:
        for batch in read_unit(unit, max_rows=3):
            out += list(zip(batch["id"], batch["path"], batch["image"]))
    return out


def test_folder_is_sniffed_by_content(tmp_path: Path) -> None:
    root = folder(tmp_path / "f", [png(i) for i in range(5)])
    corpus = discover([root], files_per_unit=2)
    rows = _rows([root])
    names = sorted(Path(r[1]).name for r in rows)
    # img01 has no extension but PNG bytes; broken.jpg has a JPEG name: both are rows
    assert names == ["broken.jpg", "img00.png", "img01", "img02.png", "img03.png", "img04.png"]
    assert [(f.path, f.reason) for f in corpus.skipped] == [  # the one walk's reasons
        (root / ".hidden.png", "hidden"), (root / "notes.txt", "not an image")]
    assert corpus.rows == 6 and len(corpus.units) == 3
    assert all(r[0] == r[1] and r[2] == b"" for r in rows)  # id = path; scorer reads it


def test_sniff_signatures() -> None:
    assert sniff_image(png(0)[:16]) == "png"
    assert sniff_image(b"\xff\xd8\xff\xe0" + b"\0" * 12) == "jpeg"
    assert sniff_image(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_image(b"GIF89a" + b"\0" * 10) == "gif"
    assert sniff_image(b"hello world, text") is None


def test_parquet_binary_column_ids_and_row_groups(tmp_path: Path) -> None:
    images = [png(i) for i in range(6)]
    p = parquet(tmp_path / "c.parquet", images, row_group_size=4)
    corpus = discover([p])
    assert [u.row_group for u in corpus.units] == [0, 1] and corpus.rows == 7
    rows = _rows([p])
    assert [r[0] for r in rows] == [f"row-{i}" for i in range(7)]
    assert [r[2] for r in rows] == [*images, b""]  # an empty cell becomes an error row later
    no_ids = parquet(tmp_path / "n.parquet", images[:2], ids=False)
    assert [r[0] for r in _rows([no_ids])] == [f"{no_ids}#0", f"{no_ids}#1", f"{no_ids}#2"]


def test_parquet_path_column_resolves_relative_paths(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.png").write_bytes(png(1))
    pq.write_table(pa.table({"file_path": ["a.png", str(tmp_path / "b.png")]}), tmp_path / "p.parquet")
    rows = _rows([tmp_path / "p.parquet"])
    assert [r[1] for r in rows] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    with pytest.raises(ConfigurationError, match="no binary column"):
        pq.write_table(pa.table({"n": [1]}), tmp_path / "bad.parquet")
        discover([tmp_path / "bad.parquet"])
    with pytest.raises(ConfigurationError, match="must hold encoded image bytes"):
        discover([tmp_path / "bad.parquet"], image_column="n")


def test_webdataset_shard(tmp_path: Path) -> None:
    images = [png(i) for i in range(3)]
    p = shard(tmp_path / "shard-000.tar", images)
    rows = _rows([p])
    assert [r[0] for r in rows] == [f"{p}:s/{i:04d}" for i in (0, 1, 2, 9999)]
    assert [r[2] for r in rows] == [*images, b""]
    assert discover([p]).rows is None  # unknown until read


def test_manifests(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(png(0))
    (tmp_path / "m.csv").write_text("path,label\nx.png,gun\nmissing.png,neutral\n")
    assert [r[1] for r in _rows([tmp_path / "m.csv"])] == [str(tmp_path / "x.png"),
                                                          str(tmp_path / "missing.png")]
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "x.png", "id": "first"}) + "\n\n")
    assert _rows([tmp_path / "m.jsonl"])[0][:2] == ("first", str(tmp_path / "x.png"))
    (tmp_path / "bad.csv").write_text("file\nx.png\n")
    with pytest.raises(ConfigurationError, match="'path' column"):
        discover([tmp_path / "bad.csv"])


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        discover([tmp_path / "nope"])
    (tmp_path / "model.bin").write_bytes(b"\0")
    with pytest.raises(ConfigurationError, match="cannot tell what"):
        discover([tmp_path / "model.bin"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(ConfigurationError,
                       match=r"no images found .*1 file\(s\) skipped, e\.g\. .*readme\.md: not an image"):
        discover([tmp_path / "empty"])
    (tmp_path / "x.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ConfigurationError, match="cannot read Parquet"):
        discover([tmp_path / "x.parquet"])
