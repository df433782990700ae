"""``safeclip serve --engine ray`` options: checked before anything starts."""

from __future__ import annotations

import pytest

from safeclip_guardrail.cli import main


@pytest.mark.parametrize(("argv", "message"), [
    (["--replicas", "2"], "--replicas need --engine ray"),
    (["--num-gpus", "1", "--address", "auto"], "--num-gpus, --address need --engine ray"),
    (["--engine", "ray", "--replicas", "0"], "--replicas must be >= 1"),
    (["--engine", "ray", "--num-gpus", "-1"], "--num-gpus must be >= 0"),
    (["--engine", "ray", "--host", "0.0.0.0"], "without an API key"),
])
def test_bad_ray_serve_options(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "unused", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
