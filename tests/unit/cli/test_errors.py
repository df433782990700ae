"""Every ``safeclip`` subcommand with bad inputs: one line on stderr, exit 2, no traceback,
and no model loaded first (a spy on ``SafeCLIPGuard.from_config`` records any load).

The table is the audit of ``safeclip --help``'s commands: files that are missing, of the
wrong kind or malformed, options out of range, a model directory or a device that is not
there, an output that cannot be written. ``serve``'s port is checked in its own tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from tests._corpus import png


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = SafeCLIPGuard.from_config.__func__  # type: ignore[attr-defined]

    def spy(cls: type[SafeCLIPGuard], config: object, *args: object, **kw: object) -> object:
        seen.append(str(getattr(config, "model", "?")))
        return real(cls, config, *args, **kw)

    monkeypatch.setattr(SafeCLIPGuard, "from_config", classmethod(spy))
    return seen


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png(1))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "badfield.json").write_text(json.dumps({"thresold": 0.5}))
    (tmp_path / "badbank.yaml").write_text("classes: 5\n")
    (tmp_path / "manifest.csv").write_text("foo,bar\n1,2\n")
    for label in ("gun", "neutral"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "x.png").write_bytes(png(len(label)))
    return tmp_path


M = "<tiny>"  # replaced by the tiny CLIP's directory
CASES = [
    ("scan nope.png --model <tiny>", "no such file or directory"),
    ("scan empty --model <tiny>", "no files found"),
    ("scan imgs --config nope.json", "file not found"),
    ("scan imgs --config imgs/a.png", "is a PNG image"),
    ("scan imgs --config bad.json", "cannot parse guard config"),
    ("scan imgs --config badfield.json", "thresold"),
    ("scan imgs --concepts nope.yaml --model <tiny>", "concept bank file not found"),
    ("scan imgs --concepts badbank.yaml --model <tiny>", "invalid concept bank"),
    ("scan imgs --model ./no-such-model", "--model: no directory"),
    ("scan imgs --model <tiny> --threshold 2", "between 0 and 1"),
    ("scan imgs --model <tiny> --batch-size 0", "must be >= 1"),
    ("scan imgs --model <tiny> --frames 0", "must be >= 1"),
    ("scan imgs --model <tiny> --device gpu7", "--device: unknown device"),
    ("scan imgs --model <tiny> --device mps", "--device: 'mps' is not available"),
    ("bank show --concepts nope.yaml", "not found"),
    ("bank show --concepts badbank.yaml", "invalid concept bank"),
    ("bank export bank.txt", "must end in .json, .yaml or .yml"),
    ("bank export empty.yaml/x.yaml", "no such file or directory"),
    ("eval nope --model <tiny>", "dataset not found"),
    ("eval imgs/a.png --model <tiny>", "is not a dataset"),
    ("eval manifest.csv --model <tiny>", "needs a header row"),
    ("eval data --model <tiny> --out afile --no-plots", "--out: afile is a file"),
    ("eval data --model <tiny> --label-map bad", "FOLDER=CLASS"),
    ("eval data --model <tiny> --queries nope.txt", "queries file not found"),
    ("eval data --model <tiny> --from-embeddings nope", "no scan found"),
    ("eval data --model ./no-such-model", "--model: no directory"),
    ("calibrate data/neutral --target-fpr 2 --out g.json --model <tiny>", "must be in [0, 1)"),
    ("calibrate data/neutral --target-fpr 0.1 --out nodir/g.json --model <tiny>",
     "folder of --out does not exist"),
    ("calibrate data/neutral --target-fpr 0.1 --out empty --model <tiny>", "must end in .json"),
    ("calibrate nope --target-fpr 0.1 --out g.json --model <tiny>", "dataset not found"),
    ("calibrate data/neutral --target-fpr 0.1 --out g.json --model ./no-such-model",
     "--model: no directory"),
    ("scan-corpus imgs --out afile --model <tiny>", "file exists"),
    ("scan-corpus nope --out o1 --model <tiny>", "corpus source not found"),
    ("scan-corpus imgs --out o2 --model ./no-such-model", "--model: no directory"),
    ("scan-corpus imgs --out o2 --engine ray --model ./no-such-model", "--model: no directory"),
    ("scan-corpus imgs --out o3 --config bad.json", "cannot parse guard config"),
    ("scan-corpus manifest.csv --out o5 --model <tiny>", "needs a header row"),
    ("serve --config bad.json", "cannot parse guard config"),
    ("serve --model ./no-such-model", "--model: no directory"),
    ("serve --concepts nope.yaml --model <tiny>", "concept bank file not found"),
]


@pytest.mark.parametrize(("command", "message"), CASES, ids=[c for c, _ in CASES])
def test_one_line_exit_2_and_no_model_loaded(command: str, message: str, files: Path,
                                             tiny_clip_dir: Path, loads: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tiny_clip_dir) if a == M else a for a in command.split()]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and message in err, err
    assert loads == [], f"a model was loaded before the error: {loads}"


def test_a_named_non_image_is_skipped_like_one_in_a_folder(files: Path, tiny_clip_dir: Path,
                                                           loads: list[str],
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    (files / "mixed").mkdir()
    (files / "mixed" / "notes.txt").write_text("hello")
    for target in ("notes.txt", "mixed"):
        argv = ["scan", target, "--model", str(tiny_clip_dir), "--allow-non-images", "--json"]
        assert main(argv) == 0, target
        out = capsys.readouterr()
        record = json.loads(out.out.strip())
        assert record["skipped"] is True and record["path"].endswith("notes.txt")
        assert "1 skipped (not checked)" in out.err
    assert loads == []  # nothing to judge: no model
    # without the flag a named non-image is still not checked: exit 2
    assert main(["scan", "notes.txt", "--model", str(tiny_clip_dir)]) == 2
