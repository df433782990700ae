"""The local engine's part files: by rows or by seconds, kept on Ctrl-C, never duplicated.

Time is faked where the rule is about time (a clock the test advances per batch), so no
assertion depends on how fast this machine is; the Ctrl-C test sends a real SIGINT to a
real ``safeclip scan-corpus`` process.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from safeclip_guardrail.scale import _local, scan_corpus
from safeclip_guardrail.testing import PlantedEncoder
from tests._corpus import png


class _Clock:
    """``time.monotonic`` for the engine: moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _rows_per_file(out: Path) -> list[int]:
    return [pq.read_metadata(f).num_rows for f in sorted(out.glob("*.parquet"))]


def _ids(out: Path) -> list[str]:
    files = sorted(out.glob("*.parquet"))
    return [str(i) for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]


def _folder(root: Path, planted: PlantedEncoder, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        (root / f"{i:03d}.png").write_bytes(planted.plant_bytes("gun" if i % 5 == 0 else "neutral"))
    return root


def test_a_part_is_written_every_part_seconds(planted: PlantedEncoder,
                                              planted_guard: SafeCLIPGuard, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(_local, "time", clock)
    root = _folder(tmp_path / "f", planted, 10)

    def two_seconds_per_batch(done: int) -> None:
        clock.now += 2.0

    scan_corpus(root, tmp_path / "out", guard=planted_guard, batch_size=1, rows_per_file=1000,
                part_seconds=5.0, show_progress=False, on_progress=two_seconds_per_batch)
    # the clock moves after a batch is added: a part when >= 5 s have passed at an add
    assert _rows_per_file(tmp_path / "out") == [4, 3, 3]
    # rows still win when they come first
    scan_corpus(root, tmp_path / "rows", guard=planted_guard, batch_size=1, rows_per_file=3,
                part_seconds=5.0, show_progress=False, on_progress=two_seconds_per_batch)
    assert _rows_per_file(tmp_path / "rows") == [3, 3, 3, 1]


def test_ctrl_c_keeps_the_scored_rows_and_resume_adds_the_rest(planted: PlantedEncoder,
                                                               planted_guard: SafeCLIPGuard,
                                                               tmp_path: Path) -> None:
    root = _folder(tmp_path / "f", planted, 12)
    out = tmp_path / "out"
    scored: list[int] = []

    def interrupt_after_seven(done: int) -> None:
        scored.append(done)
        if done >= 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # no part was due yet: 8,192 rows, an hour
        scan_corpus(root, out, guard=planted_guard, batch_size=1, part_seconds=3600,
                    show_progress=False, on_progress=interrupt_after_seven)
    assert len(_ids(out)) == scored[-1] == 7  # every row scored before Ctrl-C was written
    summary = scan_corpus(root, out, guard=planted_guard, batch_size=1, resume=True,
                          show_progress=False)
    assert summary.already_done == 7 and summary.rows == 5
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 12
    fresh = scan_corpus(root, tmp_path / "fresh", guard=planted_guard, show_progress=False)
    assert sorted(ids) == sorted(_ids(tmp_path / "fresh")) and fresh.rows == 12


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_rows_per_second_and_eta(planted: PlantedEncoder,
                                                    planted_guard: SafeCLIPGuard,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "f", planted, 3)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    scan_corpus(root, tmp_path / "out", guard=planted_guard, batch_size=1)
    shown = term.getvalue()
    assert "rows/s" in shown and "ETA" in shown and "/3 rows" in shown


def test_part_options_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "f"
    root.mkdir()
    (root / "a.png").write_bytes(png(1))
    for argv, message in [
        (["--part-seconds", "0"], "must be > 0"),
        (["--part-seconds", "soon"], "not a number"),
        (["--part-rows", "0"], "must be >= 1"),
        (["--engine", "ray", "--part-seconds", "2"], "apply to the local engine"),
    ]:
        assert main(["scan-corpus", str(root), "--out", str(tmp_path / "o"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_sigint_to_the_cli_then_resume(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """A real Ctrl-C: the process exits 130 with what it scored written; --resume finishes
    the table with every row exactly once."""
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.png").write_bytes(png(i))
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:  # many rows, few files: a long scan, cheaply
        writer = csv.writer(fh)
        writer.writerow(["id", "path"])
        writer.writerows([f"r{k:05d}", f"img/{k % 3}.png"] for k in range(1000))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "safeclip_guardrail.cli", "scan-corpus", str(manifest),
            "--out", str(out), "--model", str(tiny_clip_dir), "--device", "cpu",
            "--dtype", "float32", "--batch-size", "4", "--part-seconds", "0.2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no part file was written"
        time.sleep(0.05)
    assert proc.poll() is None, "the scan ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    kept = _ids(out)
    assert 0 < len(kept) == len(set(kept)) < 1000
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already in the output" in done.stdout
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 1000
