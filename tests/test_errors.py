"""The error tree: every error the package raises is caught by exactly one kind.

``except UsageError`` (fix your code), ``except GuardRuntimeError`` (this request or this
environment failed) and ``except GuardrailViolation`` (the policy blocked the input) must
each catch their own errors and nothing else, so an application can retry, report or
refuse by kind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

from safeclip_guardrail import (
    ConceptBank,
    ConfigurationError,
    EncoderOutputError,
    GuardConfig,
    GuardrailViolation,
    GuardRuntimeError,
    ImageInputError,
    ImageOptions,
    MissingDependencyError,
    ModelLoadError,
    SafeCLIPError,
    SafeCLIPGuard,
    SafeCLIPGuardrail,
    UsageError,
)
from safeclip_guardrail.errors import require
from safeclip_guardrail.eval import CalibrationError, calibrate, load_dataset
from safeclip_guardrail.testing import PlantedEncoder

KINDS = (UsageError, GuardRuntimeError, GuardrailViolation)


def _raise_calibration(tmp_path: Path, planted: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "gun" / "a.png").write_bytes(planted.plant_bytes("gun"))
    calibrate(guard, load_dataset(tmp_path, bank=guard.bank), target_fpr=0.1, show_progress=False)


def _blocked(planted: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    import base64

    data = base64.b64encode(planted.plant_bytes("gun")).decode()
    SafeCLIPGuardrail(guard=guard, mode="block").invoke(
        [HumanMessage(content=[{"type": "image", "base64": data, "mime_type": "image/png"}])])


def cases(tmp_path: Path, planted: PlantedEncoder, guard: SafeCLIPGuard,
          ) -> dict[str, tuple[type[SafeCLIPError], type[SafeCLIPError], Callable[[], object]]]:
    """name -> (expected class, expected kind, a call through the public API that raises it)."""
    strict = guard.with_options(on_error="raise")
    return {
        "config value": (ConfigurationError, UsageError, lambda: GuardConfig(threshold=2.0)),
        "image options": (ConfigurationError, UsageError, lambda: ImageOptions(allow_urls=True)),
        "concept bank": (ConfigurationError, UsageError, lambda: ConceptBank(classes=())),
        "bank file": (ConfigurationError, UsageError,
                      lambda: ConceptBank.from_file(tmp_path / "missing.yaml")),
        "runnable option": (ConfigurationError, UsageError,
                            lambda: SafeCLIPGuardrail(guard=guard, mode="shout")),  # type: ignore[arg-type]
        "one string as a batch": (ConfigurationError, UsageError,
                                  lambda: guard.check_batch("photo.jpg")),
        "missing extra": (MissingDependencyError, UsageError,
                          lambda: require("no_such_module_xyz", package="x", extra="x", feature="X")),
        "unreadable image": (ImageInputError, GuardRuntimeError,
                             lambda: strict.check(b"not an image at all")),
        "non-finite embedding": (EncoderOutputError, GuardRuntimeError,
                                 lambda: strict.score_embeddings(
                                     np.full((1, planted.embed_dim), np.nan, np.float32))),
        "model load": (ModelLoadError, GuardRuntimeError,
                       lambda: SafeCLIPGuard.from_pretrained(str(tmp_path / "no-model"))),
        "calibration": (CalibrationError, GuardRuntimeError,
                        lambda: _raise_calibration(tmp_path, planted, guard)),
        "blocked input": (GuardrailViolation, GuardrailViolation, lambda: _blocked(planted, guard)),
    }


CASE_NAMES = ["config value", "image options", "concept bank", "bank file", "runnable option",
              "one string as a batch", "missing extra", "unreadable image",
              "non-finite embedding", "model load", "calibration", "blocked input"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_error_is_caught_by_exactly_its_kind(name: str, tmp_path: Path,
                                                  planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard) -> None:
    expected, kind, call = cases(tmp_path, planted, planted_guard)[name]
    with pytest.raises(SafeCLIPError) as info:
        call()
    assert type(info.value) is expected, f"{name}: {type(info.value).__name__}"
    matching = [k for k in KINDS if isinstance(info.value, k)]
    assert matching == [kind]
    assert str(info.value)  # a message a person can act on


def test_every_case_is_listed() -> None:
    import inspect

    source = inspect.getsource(cases)
    assert all(f'"{n}"' in source for n in CASE_NAMES)


def test_the_tree_has_three_disjoint_branches() -> None:
    for a in KINDS:
        for b in KINDS:
            assert (a is b) == issubclass(a, b)
    for cls in (ConfigurationError, MissingDependencyError):
        assert issubclass(cls, UsageError) and not issubclass(cls, GuardRuntimeError)
    for cls in (ImageInputError, EncoderOutputError, ModelLoadError, CalibrationError):
        assert issubclass(cls, GuardRuntimeError) and not issubclass(cls, UsageError)
    # the builtin bases stay, so older `except ValueError` code keeps working
    assert issubclass(ConfigurationError, ValueError) and issubclass(ImageInputError, ValueError)
