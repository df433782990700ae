"""One folder, three surfaces, one answer: ``safeclip scan``, ``scan_corpus`` and an
evaluation dataset find the same files, and split them the same way into checked,
unreadable (never read, or not decodable) and skipped.

The walk's own rules are in tests/unit/images/test_discover.py; here each surface runs for real on a
tiny CLIP and its own output is read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from tests._corpus import every_entry
from tests.unit.images.test_discover import FILES, NOT_READ, SKIPPED

UNREADABLE = {*NOT_READ, "gun/broken.heic"}  # the walk's, and one the decoder refuses


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return every_entry(tmp_path)


def _rel(paths: Iterable[str], root: Path) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}


def test_safeclip_scan(data: Path, tiny_clip_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", str(data), "--json", "--allow-non-images", "--no-progress",
                 "--model", str(tiny_clip_dir), "--device", "cpu"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2  # something could not be read
    verdicts = [r for r in records if not r.get("skipped")]
    assert [Path(r["path"]).relative_to(data).as_posix() for r in verdicts] == FILES
    assert _rel((r["path"] for r in verdicts if r["error"]), data) == UNREADABLE
    assert {Path(r["path"]).relative_to(data).as_posix(): r["reason"]
            for r in records if r.get("skipped")} == SKIPPED
    leak = next(r for r in verdicts if r["path"].endswith("leak.png"))
    assert "outside the scan root" in leak["error"] and leak["category"] == "unreadable"
    assert leak["image_sha256"] is None  # never read, so never hashed


def test_scan_corpus(data: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from safeclip_guardrail.scale import discover, scan_corpus

    summary = scan_corpus(data, tmp_path / "out", model=str(tiny_clip_dir), device="cpu",
                          show_progress=False)
    table = pq.read_table(summary.files, columns=["id", "error"]).to_pylist()
    assert sorted(Path(r["id"]).relative_to(data).as_posix() for r in table) == sorted(FILES)
    assert _rel((r["id"] for r in table if r["error"]), data) == UNREADABLE
    assert summary.errors == len(UNREADABLE) and summary.non_image_files == len(SKIPPED)
    assert {s.path.relative_to(data).as_posix(): s.reason
            for s in discover([data]).skipped} == SKIPPED


def test_eval_dataset(data: Path, tiny_clip_dir: Path) -> None:
    from safeclip_guardrail.eval import evaluate, load_dataset

    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu")
    dataset = load_dataset(data, bank=guard.bank)
    report = evaluate(guard, dataset, sweep=False, ablations=False, show_progress=False)
    checked = _rel((i.path for i in report.images), data)
    unreadable = _rel((u.path for u in report.unreadable), data)
    assert checked | unreadable == set(FILES) and not checked & unreadable
    assert unreadable == UNREADABLE
    assert {s.path.relative_to(data).as_posix(): s.reason for s in dataset.skipped} == SKIPPED
    labels = {Path(u.path).relative_to(data).as_posix(): u.label for u in report.unreadable}
    assert labels["gun/leak.png"] == "gun" and labels["outdir"] == ""  # outside every class
    assert report.dataset.n_files == len(FILES)
