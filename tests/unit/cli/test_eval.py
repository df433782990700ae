"""``safeclip eval`` in-process on a tiny real CLIP: report files, errors, end to end."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail.cli import main
from safeclip_guardrail.eval import EvalReport


def _noise_dataset(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / label / f"{i:02d}.png")
    return root


@pytest.fixture
def model_args(tiny_clip_dir: Path) -> list[str]:
    return ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
            "--no-progress"]


def test_eval_writes_report(tmp_path: Path, model_args: list[str],
                            capsys: pytest.CaptureFixture[str]) -> None:
    data = _noise_dataset(tmp_path / "data", {"gun": 4, "neutral": 4, "knife": 2})
    (data / "neutral" / "bad.png").write_bytes(b"broken")
    out = tmp_path / "out"
    code = main(["eval", str(data), *model_args, "--sweep", "--batch-size", "4",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "10 images (6 toxic, 4 benign)" in captured.out
    assert "1 file(s) could not be read" in captured.err
    report = EvalReport.model_validate_json((out / "report.json").read_text())
    assert report.model == str(tiny_clip_dir_of(model_args))
    assert report.n_images == 10 and len(report.unreadable) == 1
    assert report.sweep and report.ablations and report.config.batch_size == 4
    assert {p.name for p in out.glob("*.png")} == {"roc.png", "sweep.png", "confusion.png"}
    # the per-image verdicts are the ones `safeclip scan` gives for the same files
    code = main(["scan", str(data / "gun"), *model_args, "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_path = {r.path: r for r in report.images}
    for line in lines:
        rec = by_path[line["path"]]
        assert (rec.flagged, rec.top_category) == (line["flagged"], line["top_category"])
        assert rec.toxic_score == pytest.approx(line["toxic_score"], abs=1e-4)


def tiny_clip_dir_of(args: list[str]) -> str:
    return args[args.index("--model") + 1]


def test_eval_prints_tables_without_out(tmp_path: Path, model_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = _noise_dataset(tmp_path / "d", {"insulting_gesture": 2, "benign": 2})
    assert main(["eval", str(data), *model_args, "--hod", "--no-ablations"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# SafeCLIP guard evaluation")
    assert "| gesture | toxic | 2 |" in out and "## Ablations" not in out
    assert not list(tmp_path.glob("**/report.json"))


@pytest.mark.parametrize(("extra", "message"), [
    ([], "folder(s) dragons"),
    (["--label-map", "dragons"], "FOLDER=CLASS"),
    (["--label-map", "dragons=unicorn"], "not classes of the concept bank"),
    (["--e2e"], "--e2e needs a chat model"),
    (["--chat-model", "openai:gpt-4o"], "only used with --e2e"),
    (["--e2e", "--chat-model-factory", "no_such_module_xyz:f"], "cannot import"),
    (["--e2e", "--chat-model-factory", "json:dumps"], "not a LangChain chat model"),
    (["--e2e", "--chat-model-factory", "x:y", "--refusal-pattern", "("], "not a valid regex"),
    (["--threshold", "1.5"], "between 0 and 1"),
])
def test_eval_errors_are_one_line(tmp_path: Path, model_args: list[str], extra: list[str],
                                  message: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = _noise_dataset(tmp_path / "d", {"dragons": 1, "neutral": 1})
    if "--label-map" in extra or "--e2e" in extra or "--chat-model" in extra:
        data = _noise_dataset(tmp_path / "d2", {"neutral": 1})
        if extra[:2] == ["--label-map", "dragons=unicorn"]:
            data = tmp_path / "d"
    code = main(["eval", str(data), *model_args, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_eval_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "dataset not found" in capsys.readouterr().err


FAKE_MODULE = textwrap.dedent('''
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    from safeclip_guardrail import DEFAULT_SAFE_INSTRUCTION


    class Refuser(BaseChatModel):
        @property
        def _llm_type(self):
            return "refuser"

        def _generate(self, messages, stop=None, run_manager=None, **kw):
            text = " ".join(m.text for m in messages)
            answer = ("I cannot fulfill this request." if DEFAULT_SAFE_INSTRUCTION in text
                      else "Here you go.")
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])
''')


def test_eval_e2e_with_factory(tmp_path: Path, model_args: list[str],
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "fake_refuser_mod.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    data = _noise_dataset(tmp_path / "d", {"gun": 3, "neutral": 3})
    queries = tmp_path / "q.txt"
    queries.write_text("# one query\nWhat is this?\n")
    out = tmp_path / "o"
    code = main(["eval", str(data), *model_args, "--e2e", "--chat-model-factory",
                 "fake_refuser_mod:Refuser", "--queries", str(queries), "--out", str(out),
                 "--no-plots"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "end to end (Refuser)" in captured.out
    report = EvalReport.model_validate_json((out / "report.json").read_text())
    e = report.e2e
    assert e is not None and e.n_queries == 6 and {r.query for r in e.records} == {"What is this?"}
    # the fake refuses exactly the flagged images, so the e2e rates equal the guard-level ones
    assert e.defense_success_rate == report.defense_success_rate
    assert e.false_positive_rate == report.false_positive_rate
    assert e.defense_success_rate_without_guard == 0.0
    assert not list(out.glob("*.png"))
