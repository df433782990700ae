"""Fixtures of the CLI's tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def constant_bank(tmp_path: Path) -> Path:
    """A bank under which every image has gun mass exactly 0.8: identical descriptors make
    the joint softmax uniform (4 of 5 descriptors are gun's), whatever the image."""
    p = tmp_path / "bank.json"
    p.write_text(json.dumps({"classes": [
        {"name": "neutral", "kind": "benign", "descriptors": ["a photo"]},
        {"name": "gun", "kind": "toxic", "descriptors": ["a photo"] * 4},
    ]}))
    return p
