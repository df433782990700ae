"""What the install notes promise is what the code asks for.

- A command whose optional package is missing names exactly that package's extra, before
  any model loads (a spy on ``SafeCLIPGuard.from_config`` records any load).
- The README's install lines and extras, docs/integrations.md and scripts/setup.sh name
  every extra and every integration (the LiteLLM one with its ``proxy`` extra).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import tomllib

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from tests._corpus import png

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
INTEGRATIONS = sorted(p.parent.name for p in (ROOT / "integrations").glob("*/pyproject.toml"))


@pytest.fixture
def model(tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny CLIP's directory; loading it fails the test (nothing may load first)."""

    def no_load(*args: object, **kw: object) -> None:
        raise AssertionError("a model was loaded before the missing dependency was reported")

    monkeypatch.setattr(SafeCLIPGuard, "from_config", no_load)
    return str(tiny_clip_dir)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for label in ("gun", "neutral"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "a.png").write_bytes(png(len(label)))
    return tmp_path / "data"


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "a model was loaded" not in err, err
    return err


def test_local_scan_corpus_asks_for_pyarrow_alone(data: Path, model: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    err = _error(["scan-corpus", str(data), "--out", str(tmp_path / "o"),
                  "--model", model], capsys)
    assert "'pyarrow'" in err and "'parquet' extra" in err
    assert "ray" not in err.lower()  # the local engine does not need Ray
    assert "parquet" in EXTRAS and EXTRAS["parquet"] == ["pyarrow>=15"]


def test_ray_scan_corpus_asks_for_ray_first(data: Path, model: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "ray", None)
    err = _error(["scan-corpus", str(data), "--out", str(tmp_path / "o"), "--engine", "ray",
                  "--model", model], capsys)
    assert "'ray'" in err and "'ray' extra" in err


def test_from_embeddings_asks_for_pyarrow_alone(data: Path, model: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    err = _error(["eval", str(data), "--from-embeddings", str(tmp_path / "scan"),
                  "--model", model], capsys)
    assert "'parquet' extra" in err and "ray" not in err.lower()


def test_eval_plots_ask_for_the_eval_extra_before_the_model(data: Path, model: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = _error(["eval", str(data), "--out", str(tmp_path / "r"),
                  "--model", model], capsys)
    assert "'matplotlib'" in err and "'eval' extra" in err and "--no-plots" in err


def _install_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("## Install"):readme.index("## Quickstart")]


def test_readme_names_every_extra_and_what_plain_install_lacks() -> None:
    section = _install_section()
    extras_line = section[section.index("Extras:"):]
    for extra in EXTRAS:
        if extra != "dev":
            assert f"`{extra}`" in extras_line, f"README's extras leave out {extra!r}"
    plain = next(line for line in section.splitlines() if re.match(r"pip install \.\s+#", line))
    assert "no plots" in plain  # `pip install .` gives reports; plots need [eval]


@pytest.mark.parametrize("name", INTEGRATIONS)
def test_every_integration_has_install_lines(name: str) -> None:
    spec = f"./integrations/{name}[proxy]" if name == "litellm" else f"./integrations/{name}"
    assert spec in _install_section(), f"README's install lines leave out {spec}"
    table = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8").split("\n## ")[0]
    assert spec in table, f"docs/integrations.md's install table leaves out {spec}"
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert (f'-e "integrations/{name}[proxy]"' if name == "litellm"
            else f"-e integrations/{name}") in setup
