"""scan_corpus with the local engine: the table check_batch implies, resuming, the CLI."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.scale import SIDECAR, scan_corpus
from safeclip_guardrail.testing import PlantedEncoder
from tests._corpus import folder, parquet, shard


def _table(out: Path) -> pa.Table:
    return pq.read_table(sorted(out.glob("*.parquet"))).sort_by("id")


def test_every_source_kind_matches_check_batch(planted: PlantedEncoder,
                                               planted_guard: SafeCLIPGuard,
                                               tmp_path: Path) -> None:
    targets = ["gun", "neutral", "porn", {"knife": 0.55, "neutral": 0.45}, "neutral"]
    images = [planted.plant_bytes(t) for t in targets]
    root = folder(tmp_path / "f", images)
    pq_file = parquet(tmp_path / "c.parquet", images[:3])
    tar = shard(tmp_path / "s.tar", images[3:])
    summary = scan_corpus([root, pq_file, tar], tmp_path / "out", guard=planted_guard,
                          batch_size=4, show_progress=False)
    table = _table(tmp_path / "out")
    rows = {r["id"]: r for r in table.to_pylist()}
    sources: dict[str, object] = {str(p): p for p in sorted(root.rglob("*"))
                                  if p.is_file() and p.suffix != ".txt"
                                  and not p.name.startswith(".")}
    sources.update({f"row-{i}": b for i, b in enumerate([*images[:3], b""])})
    sources.update({f"{tar}:s/{i:04d}": b for i, b in enumerate(images[3:])})
    no_image = rows.pop(f"{tar}:s/9999")  # a sample without an image: an error row saying so
    assert no_image["flagged"] and no_image["category"] == "unreadable"
    assert no_image["error"] == f"sample s/9999 of {tar} has no image member (.json)"
    assert set(rows) == set(sources) and table.num_rows == len(sources) + 1 == 13
    reference = planted_guard.check_batch(list(sources.values()))
    for key, verdict in zip(sources, reference):
        row = rows[key]
        assert (row["flagged"], row["category"], row["error"]) == \
            (verdict.flagged, verdict.category, verdict.error)
        assert row["image_sha256"] == verdict.image_sha256
        if verdict.error is None:
            assert row["top_category"] == verdict.top_category
            assert row["toxic_score"] == pytest.approx(verdict.toxic_score, abs=1e-9)
            assert row["score_gun"] == pytest.approx(verdict.scores["gun"], abs=1e-9)
        else:
            assert row["toxic_score"] is None and row["score_gun"] is None
    assert rows[str(root / "broken.jpg")]["category"] == "unreadable"
    assert summary.rows == 13 and summary.errors == 3
    assert summary.non_image_files == 2  # notes.txt and the hidden file (skipped, counted)
    assert summary.flagged_by_class == {"gun": 2, "porn": 2}  # folder + parquet copies
    assert "13 images" in summary.line() and "gun 2, porn 2" in summary.line()
    # the table records the guard it came from
    assert '"bank_fingerprint"' in (tmp_path / "out" / SIDECAR).read_text()


def test_resume_after_interruption_neither_duplicates_nor_loses(planted: PlantedEncoder,
                                                               planted_guard: SafeCLIPGuard,
                                                               tmp_path: Path) -> None:
    images = [planted.plant_bytes("gun" if i % 4 == 0 else "neutral") for i in range(11)]
    root = folder(tmp_path / "f", images)  # 11 images + the corrupt one = 12 rows
    out = tmp_path / "out"

    def stop_after_three_batches(done: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_corpus(root, out, guard=planted_guard, batch_size=2, rows_per_file=2,
                    show_progress=False, on_progress=stop_after_three_batches)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3 and _table(out).num_rows == 6
    # a crash in the middle of writing leaves half a file behind: cut one short
    files[1].write_bytes(files[1].read_bytes()[:40])
    with pytest.raises(ConfigurationError, match="pass --resume"):
        scan_corpus(root, out, guard=planted_guard, show_progress=False)
    with pytest.raises(ConfigurationError, match=r"threshold 0\.6 -> 0\.7"):
        scan_corpus(root, out, guard=planted_guard.with_options(threshold=0.7), resume=True)
    summary = scan_corpus(root, out, guard=planted_guard, batch_size=2, resume=True,
                          show_progress=False)
    assert summary.already_done == 4 and summary.rows == 8
    assert any("corrupt" in n for n in summary.notes)
    table = _table(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 12
    full = scan_corpus(root, tmp_path / "fresh", guard=planted_guard, show_progress=False)
    assert full.rows == 12
    assert table.equals(_table(tmp_path / "fresh"))


def test_cli_scan_corpus(tiny_clip_dir: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    from tests._corpus import png

    root = folder(tmp_path / "f", [png(i) for i in range(4)])
    args = ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
            "--no-progress"]
    assert main(["scan-corpus", str(root), "--out", str(tmp_path / "o"), "--embeddings",
                 "--batch-size", "3", *args]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("5 images in ") and "1 unreadable" in out[0]
    table = _table(tmp_path / "o")
    assert table.schema.field("embedding_final").type == pa.list_(pa.float32(), 16)
    assert table.column("embedding_final").null_count == 1  # the corrupt file
    # bad inputs: one line on stderr, exit 2
    for argv, message in [
        ([str(tmp_path / "nope"), "--out", str(tmp_path / "x")], "corpus source not found"),
        ([str(root), "--out", str(tmp_path / "o")], "pass --resume"),
        ([str(root), "--out", str(tmp_path / "y"), "--actors", "2"], "need --engine ray"),
        ([str(root), "--out", str(tmp_path / "y"), "--actors", "0"], "must be >= 1"),
    ]:
        assert main(["scan-corpus", *argv, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_hostile_corpus_is_scanned_to_the_end(planted: PlantedEncoder,
                                                planted_guard: SafeCLIPGuard,
                                                tmp_path: Path) -> None:
    """Issue 20.7: bad manifest records, symlinks and paths leaving the root, a sample with
    two pictures and a repeated key: every row is written, once, and no run fails."""
    from tests._corpus import hostile

    images = [planted.plant_bytes(t) for t in ("gun", "neutral", "porn")]
    h = hostile(tmp_path / "c", images)
    sources = [h["scan"], h["csv"], h["jsonl"], h["shard"]]
    summary = scan_corpus(sources, tmp_path / "out", guard=planted_guard, batch_size=4,
                          show_progress=False)
    table = _table(tmp_path / "out")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == summary.rows == 28
    assert summary.errors == 17 and summary.non_image_files == 2  # the two manifests
    rows = {r["id"]: r for r in table.to_pylist()}
    for row in rows.values():
        assert (row["error"] is None) == (row["image_sha256"] is not None)
        if row["error"] is not None:
            assert row["flagged"] and row["category"] == "unreadable"
    judged = {r["image_sha256"]: r for r in rows.values() if r["error"] is None}
    for verdict in planted_guard.check_batch(images):  # every picture of the shard judged
        assert judged[verdict.image_sha256]["category"] == verdict.category
    shard = h["shard"]
    assert rows[f"{shard}:s/0000.png"]["category"] == "gun"
    assert rows[f"{shard}:s/0000.jpg"]["flagged"] is False
    leak = rows[str(h["scan"] / "leak.png")]
    assert leak["image_sha256"] is None and "outside the scan root" in leak["error"]
    # resuming finds nothing left to do: error rows count as done like any other
    again = scan_corpus(sources, tmp_path / "out", guard=planted_guard, resume=True,
                        show_progress=False)
    assert (again.rows, again.already_done) == (0, 28)


def test_cli_scan_corpus_root(tiny_clip_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from tests._corpus import hostile, png

    h = hostile(tmp_path / "c", [png(i) for i in range(3)])
    args = ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
            "--no-progress"]
    assert main(["scan-corpus", str(h["csv"]), "--out", str(tmp_path / "narrow"), *args]) == 0
    assert "8 images" in capsys.readouterr().out and \
        _table(tmp_path / "narrow").column("error").null_count == 3
    assert main(["scan-corpus", str(h["csv"]), "--root", str(tmp_path / "c"), "--out",
                 str(tmp_path / "wide"), *args]) == 0
    capsys.readouterr()
    rows = {r["id"]: r for r in _table(tmp_path / "wide").to_pylist()}
    outside = h["scan"] / ".." / "outside"
    assert rows[str(outside / "secret.png")]["error"] is None  # inside the wider root
    assert "not found" in rows[str(outside / "missing.png")]["error"]
    assert main(["scan-corpus", str(h["csv"]), "--root", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a folder" in err and len(err.splitlines()) == 1
