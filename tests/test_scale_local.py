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
    sources[f"{tar}:s/9999"] = b""
    assert set(rows) == set(sources) and table.num_rows == len(sources) == 13
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
    assert summary.rows == 13 and summary.errors == 3 and summary.non_image_files == 1
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
