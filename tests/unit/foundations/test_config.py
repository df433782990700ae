from __future__ import annotations

from pathlib import Path

import pytest

from safeclip_guardrail import ConceptBank, ConfigurationError, GuardConfig, ImageOptions
from safeclip_guardrail.config import build_config


def test_defaults_follow_the_paper() -> None:
    c = GuardConfig()
    assert c.model == "llava-1.5"
    assert c.threshold == 0.6
    assert c.cls_source == "final"
    assert c.on_error == "block"
    assert c.mode == "rewrite"
    assert c.safe_instruction.startswith("First detect if this image contains harmful content.")
    assert c.bank.class_names[0] == "neutral"


def test_frozen() -> None:
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        GuardConfig().threshold = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    bank = ConceptBank.default().with_class("chef", ["a chef slicing vegetables"], kind="benign")
    cfg = build_config(concepts=bank, threshold=0.7, thresholds={"alcohol": 0.9},
                       policy={"porn": "block"}, images={"frames": 3})
    again = GuardConfig.from_file(cfg.to_file(tmp_path / f"guard{suffix}"))
    assert again == cfg
    assert again.threshold_for("alcohol") == 0.9
    assert again.threshold_for("gun") == 0.7
    assert again.mode_for("porn") == "block"
    assert again.mode_for("gun") == "rewrite"


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"thresholds": {"gun": 0.0}}, "threshold for 'gun'"),
        ({"thresholds": {"dragons": 0.5}}, "not in the concept bank: dragons"),
        ({"policy": {"dragons": "block"}}, "not in the concept bank"),
        ({"cls_source": "middle"}, "cls_source"),
        ({"on_error": "ignore"}, "on_error"),
        ({"dtype": "int8"}, "dtype"),
        ({"batch_size": 0}, "batch_size"),
        ({"unknown_option": 1}, "unknown_option"),
        ({"images": {"allow_urls": True}}, "allowed_hosts"),
    ],
)
def test_bad_configuration(changes: dict, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        build_config(**changes)


def test_dtype_aliases_and_replace() -> None:
    assert build_config(dtype="bf16").dtype == "bfloat16"
    c = GuardConfig().replace(threshold=0.8)
    assert c.threshold == 0.8
    with pytest.raises(ConfigurationError):
        GuardConfig().replace(threshold=-1)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        GuardConfig.from_file(tmp_path / "nope.json")
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="mapping"):
        GuardConfig.from_file(p)


def test_image_options_validation() -> None:
    assert ImageOptions(allow_urls=True, allowed_hosts=("img.example.com",)).allow_urls
    with pytest.raises(ValueError):
        ImageOptions(max_pixels=0)


def test_config_splits_into_scoring_and_intervention_halves() -> None:
    from safeclip_guardrail.config import InterventionConfig, ScoringConfig

    cfg = GuardConfig(threshold=0.7, cls_source="penultimate", mode="block",
                      policy={"gun": "redact", "unreadable": "redact"}, refusal="No.")
    assert isinstance(cfg.scoring, ScoringConfig) and not isinstance(cfg.scoring, GuardConfig)
    assert cfg.scoring.threshold == 0.7 and not hasattr(cfg.scoring, "mode")
    assert isinstance(cfg.intervention, InterventionConfig)
    assert cfg.intervention.policy == {"gun": "redact", "unreadable": "redact"}
    assert not hasattr(cfg.intervention, "threshold")
    assert GuardConfig.compose(cfg.scoring, cfg.intervention) == cfg
    assert GuardConfig.compose(cfg.scoring).mode == GuardConfig().mode
    # the file format is unchanged: one flat mapping, scoring options first
    assert list(cfg.model_dump())[:3] == ["model", "concepts", "threshold"]


def test_replace_can_reset_a_field_to_its_default() -> None:
    from safeclip_guardrail.config import DEFAULT

    cfg = GuardConfig(refusal="No.", threshold=0.8, device="cpu")
    assert cfg.replace(refusal=None).refusal == "No."  # None keeps
    reset = cfg.replace(refusal=DEFAULT, device=DEFAULT)
    assert reset.refusal == GuardConfig().refusal and reset.device is None
    assert reset.threshold == 0.8
