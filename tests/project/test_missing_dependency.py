"""A missing optional dependency names a pip command that works outside any package index."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import tomllib

from safeclip_guardrail.errors import MissingDependencyError, extra_requirements, require

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


@pytest.mark.parametrize("extra", ["open-clip", "langchain", "eval", "serve", "ray"])
def test_command_installs_the_extras_own_packages(extra: str) -> None:
    exc = MissingDependencyError("x", extra=extra, feature="a feature")
    words = shlex.split(exc.command)
    assert words[:2] == ["pip", "install"]
    # the packages themselves, not "safeclip-guardrail[extra]", which needs an index
    assert words[2:] == EXTRAS[extra] == extra_requirements(extra)
    assert exc.command in str(exc) and f"'{extra}' extra" in str(exc)


def test_require_raises_with_the_command() -> None:
    with pytest.raises(MissingDependencyError, match=r'pip install "no_such_pkg_xyz"'):
        require("no_such_pkg_xyz", package="no_such_pkg_xyz", extra="no-such-extra",
                feature="a test")
