"""Every cookbook script, run with the command its docstring gives (``python cookbook/X.py
...``), as a user pastes it.

The other cookbook tests call each recipe's ``main()``; this one runs the script itself
(``runpy`` with ``__name__ == "__main__"`` and that ``sys.argv``), so the argument parsing
and the printing are covered too. What the user brings is made here: the image files the
command names (``photo.jpg``, ``./photos``, ``DATA``...). Model ids are swapped for tiny
real models built offline, as in the documentation test (``STAND_IN_MODELS``).
"""

from __future__ import annotations

import ast
import re
import runpy
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._corpus import png
from tests.docs.test_blocks import _install_stand_ins

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbook"
SCRIPTS = sorted(COOKBOOK.glob("*.py"))
_COMMAND = re.compile(r"python (cookbook/\w+\.py(?:[^\n]*\\\n)*[^\n]*)$", re.M)


def documented_command(script: Path) -> list[str]:
    """The ``python cookbook/NAME.py ...`` command of the script's docstring, as argv."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    found = _COMMAND.findall(doc)
    assert len(found) == 1, f"{script.name}: its docstring should show one 'python cookbook/...' command"
    words = shlex.split(found[0].replace("\\\n", " "))
    assert words[0] == f"cookbook/{script.name}"
    return [w for w in words[1:] if w != "..."]


def _user_files(cwd: Path) -> None:
    """The files the documented commands name, with pictures in them."""
    (cwd / "photo.jpg").write_bytes(png(1))
    (cwd / "photo1.jpg").write_bytes(png(2))
    (cwd / "photo2.png").write_bytes(png(3))
    for folder in ("photos", "image_folder"):
        (cwd / folder).mkdir()
        for i in range(3):
            (cwd / folder / f"{i}.png").write_bytes(png(10 + i))
    for i, label in enumerate(["gun", "knife", "insulting_gesture", "neutral", "neutral"]):
        (cwd / "DATA" / label).mkdir(parents=True, exist_ok=True)
        (cwd / "DATA" / label / f"{i}.png").write_bytes(png(20 + i))


@pytest.fixture(scope="module")
def tiny_llava(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A tiny LLaVA whose tower is the tiny CLIP, built on first use (as the docs test's)."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            from safeclip_guardrail.testing import build_tiny_llava

            made.append(build_tiny_llava(tmp_path_factory.mktemp("cookbook_llava"),
                                         clip_dir=tiny_clip_dir))
        return made[0]

    return get


def test_every_script_documents_one_command() -> None:
    assert len(SCRIPTS) >= 12
    for script in SCRIPTS:
        documented_command(script)


@pytest.mark.slow
@pytest.mark.enable_socket  # serve_moderation.py serves on loopback
@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_runs_as_pasted(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               tiny_clip_dir: Path, tiny_llava: Callable[[], Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = documented_command(script)
    monkeypatch.chdir(tmp_path)
    _user_files(tmp_path)
    _install_stand_ins(monkeypatch, tiny_clip_dir, tiny_llava)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    try:
        runpy.run_path(str(script), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert out.out.strip(), f"{script.name} printed nothing"


_BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def recipe_commands(md: Path) -> list[list[str]]:
    """The ``safeclip ...`` and ``python cookbook/...`` commands of a Markdown recipe's
    ``bash`` blocks (installs and downloads left out), each as argv."""
    commands = []
    for block in _BASH.findall(md.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["safeclip"] or words[:2] == ["python", "cookbook/reproduce_paper.py"]:
                commands.append(words)
    return commands


def test_reproduce_paper_md_commands_are_found() -> None:
    commands = recipe_commands(COOKBOOK / "reproduce_paper.md")
    assert [c[1] for c in commands] == ["eval", "cookbook/reproduce_paper.py", "eval",
                                        "calibrate", "eval"]


@pytest.mark.slow
def test_reproduce_paper_md_runs_as_pasted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           tiny_clip_dir: Path, tiny_llava: Callable[[], Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Its commands in order (the last eval reads the guard.json calibrate writes), with the weights'
    directories of step 1 pointing at tiny models and this machine's CPU for ``cuda``."""
    from safeclip_guardrail.cli import main

    monkeypatch.chdir(tmp_path)
    for i, label in enumerate(["alcohol", "blood", "gun", "insulting_gesture", "knife",
                               "neutral", "neutral"]):
        (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / label / f"{i}.png").write_bytes(png(30 + i))
    (tmp_path / "benign_holdout").mkdir()
    for i in range(4):
        (tmp_path / "benign_holdout" / f"{i}.jpg").write_bytes(png(40 + i))
    _install_stand_ins(monkeypatch, tiny_clip_dir, tiny_llava)
    paths = {"/models/clip-l-336": str(tiny_clip_dir), "/models/llava-1.5-7b": str(tiny_llava()),
             "llava:/models/llava-1.5-7b": f"llava:{tiny_llava()}", "cuda": "cpu",
             "cookbook/reproduce_paper.py": str(COOKBOOK / "reproduce_paper.py")}
    for words in recipe_commands(COOKBOOK / "reproduce_paper.md"):
        argv = [paths.get(w, w) for w in words]
        if argv[0] == "safeclip":
            code = main(argv[1:])
        else:
            monkeypatch.setattr(sys, "argv", argv[1:])
            try:
                runpy.run_path(argv[1], run_name="__main__")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        assert code in (0, 1), (" ".join(words), out.err[-2000:])  # 1: eval found flags
    assert (tmp_path / "guard.json").is_file()
    assert (tmp_path / "results" / "calibrated" / "report.json").is_file()
