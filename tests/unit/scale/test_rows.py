"""Issue 20.7: a corpus scan never fails on a row; ids are unique; reads stay inside a root.

Read at the source level (``discover`` + ``read_unit``, what both engines run); the scans
themselves are in test_scale_local.py and test_scale_ray.py.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.scale import discover
from safeclip_guardrail.scale.sources import read_unit
from tests._corpus import hostile, png

Rows = dict[str, tuple[str, str | None, bytes]]


def _rows(sources: list[Path], **kw: object) -> Rows:
    """id -> (path, error, bytes) for every row, asserting that ids are unique."""
    out: Rows = {}
    for unit in discover(sources, **kw).units:  # type: ignore[arg-type]
        for batch in read_unit(unit, max_rows=4):
            for i, p, e, b in zip(batch["id"], batch["path"], batch["error"], batch["image"]):
                assert i not in out, f"duplicate id {i}"
                out[i] = (p, e or None, b)
    return out


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return hostile(tmp_path, [png(i) for i in range(3)])


def test_a_csv_manifest_with_bad_records_gives_error_rows(corpus: dict[str, Path]) -> None:
    rows = _rows([corpus["csv"]])
    scan, csv = corpus["scan"], corpus["csv"]
    good = str(scan / "a.png")
    assert [k for k, (_, e, _) in rows.items() if e is None] == [good, f"{good}#2", f"{good}#3"]
    assert rows["empty-path"][1] == f"{csv}, record 2: empty 'path'"
    assert rows[f"{csv}#7"][1] == f"{csv}, record 7: 'path' is not UTF-8 (\\xff.png)"
    assert len(rows) == 8  # every record is a row


def test_a_jsonl_manifest_with_bad_lines_gives_error_rows(corpus: dict[str, Path]) -> None:
    rows = _rows([corpus["jsonl"]])
    jl = corpus["jsonl"]
    assert rows["j1"][:2] == (str(corpus["scan"] / "a.png"), None)
    assert rows["j1#2"][:2] == (str(corpus["scan"] / "a.png"), None)  # a repeated id
    expected = {
        2: "line 2 is not valid JSON (Expecting value)",
        3: "line 3: expected a JSON object with a 'path' field, got list",
        4: "line 4: 'path' is int, not a path string",
        5: "line 5: empty 'path'",
        6: "line 6: 'path' holds a NUL character",
        7: "line 7 is nested too deeply to parse",
        9: "line 9 is not UTF-8",
    }
    for n, message in expected.items():
        assert rows[f"{jl}#{n}"][1] == f"{jl}, {message}"
    assert len(rows) == 2 + len(expected)


def test_manifest_errors_that_are_not_rows_stay_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("file\nx.png\n")
    with pytest.raises(ConfigurationError, match="'path' column"):
        discover([tmp_path / "h.csv"])
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ConfigurationError, match="has no rows"):
        discover([tmp_path / "e.jsonl"])
    (tmp_path / "big.csv").write_bytes(b"path\n" + b"x" * 200_000 + b"\na.png\n")
    rows = _rows([tmp_path / "big.csv"])  # a record over the csv field limit: one row
    assert "field larger than field limit" in (rows[f"{tmp_path / 'big.csv'}#1"][1] or "")
    assert rows[str(tmp_path / "a.png")][1] is None


def test_webdataset_ids_are_unique_and_every_image_is_a_row(corpus: dict[str, Path]) -> None:
    rows = _rows([corpus["shard"]])
    shard = corpus["shard"]
    images = [png(i) for i in range(3)]
    assert {k: v[2] for k, v in rows.items() if v[1] is None} == {
        f"{shard}:s/0000.png": images[0], f"{shard}:s/0000.jpg": images[1],  # one sample
        f"{shard}:s/0001": images[2],
        f"{shard}:s/0000": images[2],  # the key again, later: its own row, its own id
    }
    assert rows[f"{shard}:s/0002"][1] == f"sample s/0002 of {shard} has no image member (.txt)"


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_webdataset_bad_shards_and_members_are_error_rows(tmp_path: Path) -> None:
    a, b = png(0), png(1)
    same = _tar(tmp_path / "dup.tar", [("k.png", a), ("k.png", b)])  # one name twice
    assert list(_rows([same])) == [f"{same}:k.png", f"{same}:k.png#2"]
    big = _tar(tmp_path / "big.tar", [("k.png", a), ("k.txt", b"x"), ("m.png", b"\0" * 5000)])
    rows = _rows([big], max_bytes=len(a))
    assert rows[f"{big}:k"][2] == a
    assert rows[f"{big}:m"][1] == (f"m in {big} is 5000 bytes, over the limit of {len(a)} "
                                   "bytes; raise max_bytes if expected")
    cut = tmp_path / "cut.tar"  # cut inside the second member's data
    whole = _tar(tmp_path / "whole.tar", [("k.png", a), ("m.png", b)]).read_bytes()
    cut.write_bytes(whole[:512 + -(-len(a) // 512) * 512 + 512 + 100])
    rows = _rows([cut])
    assert rows[f"{cut}:k"][2] == a
    assert "breaks off after 1 sample" in (rows[f"{cut}#error"][1] or "")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all" * 40)
    assert list(_rows([junk])) == [f"{junk}#error"]
    assert "cannot read tar shard" in (_rows([junk])[f"{junk}#error"][1] or "")


def test_a_folder_is_its_own_root(corpus: dict[str, Path]) -> None:
    scan = corpus["scan"]
    rows = _rows([scan])
    assert rows[str(scan / "a.png")][:2] == (str(scan / "a.png"), None)
    assert rows[str(scan / "inside-link.png")][:2] == (str(scan / "a.png"), None)  # real path
    outside = {name: rows[str(scan / name)][1] for name in
               ("leak.png", "dangling.png", "notes-link", "outdir")}
    # one message, whether the target is a picture, missing, a text file or a folder
    assert {(m or "").replace(name, "X") for name, m in outside.items()} == {
        f"{scan / 'X'} is outside the scan root {scan}; not read (pass --root, or root=, "
        "with a folder that holds it)"}
    assert not any("x.png" in k for k in rows)  # the linked folder was not entered
    assert len(rows) == 6


def test_manifest_paths_outside_the_root_reveal_nothing(corpus: dict[str, Path],
                                                        tmp_path: Path) -> None:
    rows = _rows([corpus["csv"]])
    scan = corpus["scan"]
    names = ("secret.png", "missing.png", "notes.txt")  # a picture, nothing, a text file
    messages = {(rows[str(scan / ".." / "outside" / n)][1] or "").replace(n, "X") for n in names}
    assert messages == {f"{scan / '..' / 'outside' / 'X'} is outside the scan root {scan}; "
                        "not read (pass --root, or root=, with a folder that holds it)"}
    # a wider root reads them (and then "missing" and "not an image" are the scorer's to say)
    wide = _rows([corpus["csv"]], root=tmp_path)
    assert all(wide[str(scan / ".." / "outside" / n)][1] is None for n in names)
    assert wide[str(scan / ".." / "outside" / "secret.png")][0] == str(
        corpus["outside"] / "secret.png")


def test_root_usage_errors(corpus: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is outside the scan root"):
        discover([corpus["scan"]], root=corpus["outside"])
    with pytest.raises(ConfigurationError, match="is not a folder"):
        discover([corpus["scan"]], root=tmp_path / "nope")
    with pytest.raises(ConfigurationError, match="given twice"):
        discover([corpus["scan"], corpus["scan"] / "."])


def test_a_file_name_that_is_not_utf8_is_a_row(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png(0))
    with open(os.path.join(os.fsencode(folder), b"\xff\xfe.png"), "wb") as fh:
        fh.write(png(1))
    rows = _rows([folder])
    assert set(rows) == {str(folder / "ok.png"), f"{folder}/\\xff\\xfe.png"}
