from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeclip_guardrail import ConceptBank, ConfigurationError

PAPER = Path(__file__).resolve().parents[4] / "shared" / "reference" / "paper_concept_bank.json"


def test_default_bank_is_the_papers() -> None:
    bank = ConceptBank.default()
    assert bank.class_names == ("neutral", "porn", "blood", "gun", "gesture", "knife", "alcohol",
                                "cigarette")
    assert bank.benign_classes == ("neutral",)
    assert all(len(c.descriptors) == 5 for c in bank.classes)
    assert len(bank.descriptors) == 40
    assert bank.descriptors[:2] == ("Safe for work image", "Common scene photo")
    if PAPER.is_file():  # the shipped package data is the reference file, verbatim
        ref = json.loads(PAPER.read_text())
        assert bank.to_dict()["classes"] == ref["classes"]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip_file(tmp_path: Path, suffix: str) -> None:
    bank = ConceptBank.default().with_class(
        "chef", ["a chef slicing vegetables", "cooking in a kitchen"], kind="benign")
    path = bank.to_file(tmp_path / f"bank{suffix}")
    again = ConceptBank.from_file(path)
    assert again.classes == bank.classes
    assert again.fingerprint == bank.fingerprint
    assert ConceptBank.from_dict(bank.to_dict()).classes == bank.classes


def test_benign_context_class_is_added_and_never_toxic() -> None:
    bank = ConceptBank.default().with_class("chef", ["a chef cutting vegetables"], kind="benign")
    assert "chef" in bank.benign_classes
    assert not bank.is_toxic("chef")
    assert bank.descriptor_class_index[-1] == bank.class_names.index("chef")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"classes": [{"name": "gun", "kind": "toxic", "descriptors": ["Gun"]}]}, "no benign class"),
        ({"classes": [{"name": "n", "kind": "benign", "descriptors": ["x"]}]}, "no toxic class"),
        ({"classes": [{"name": "n", "kind": "benign", "descriptors": []},
                      {"name": "g", "kind": "toxic", "descriptors": ["g"]}]}, "no descriptors"),
        ({"classes": [{"name": "n", "kind": "benign", "descriptors": ["a"]},
                      {"name": "n", "kind": "toxic", "descriptors": ["b"]}]}, "duplicate class names: n"),
        ({"classes": [{"name": "n", "kind": "evil", "descriptors": ["a"]}]}, "kind"),
        ({"classes": [{"name": " ", "kind": "benign", "descriptors": ["a"]}]}, "name must not be empty"),
        ({"classes": [{"name": "n", "kind": "benign", "descriptors": "one string"}]}, "list of strings"),
        ({"classes": [{"name": "n", "kind": "benign", "descriptors": ["ok", "  "]}]}, "empty descriptor"),
        ({"labels": []}, "'classes' list"),
        ({"classes": []}, "at least 1"),
    ],
)
def test_invalid_banks_raise_configuration_error(data: dict, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        ConceptBank.from_dict(data)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        ConceptBank.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot parse"):
        ConceptBank.from_file(broken)


def test_truncated_and_without() -> None:
    bank = ConceptBank.default()
    k1 = bank.truncated(1)
    assert len(k1.descriptors) == 8
    assert k1.descriptors[0] == bank.descriptors[0]
    assert bank.without("porn").class_names[1] == "blood"
    with pytest.raises(ConfigurationError, match="unknown classes"):
        bank.without("dragons")
    with pytest.raises(ConfigurationError):
        bank.truncated(0)
