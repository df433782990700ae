"""Evaluation datasets: class folders (HOD-style), manifests, label maps, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeclip_guardrail import ConceptBank, ConfigurationError, SafeCLIPGuard
from safeclip_guardrail.eval import HOD_LABEL_MAP, evaluate, load_dataset
from safeclip_guardrail.eval.datasets import parse_label_map
from safeclip_guardrail.testing import PlantedEncoder

BANK = ConceptBank.default()


def test_hod_style_folders_nested_and_mapped(tmp_path: Path, planted: PlantedEncoder) -> None:
    for rel in ("gun/normal_cases/a.png", "gun/hard_cases/b.jpg", "insulting_gesture/c.png",
                "neutral/d.PNG"):
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(planted.plant_bytes("neutral"))
    (tmp_path / "gun" / "labels.txt").write_text("not an image")  # skipped: not an image
    (tmp_path / "gun" / ".hidden.png").write_bytes(b"x")          # skipped: hidden
    (tmp_path / ".cache").mkdir()                                   # skipped: hidden folder
    (tmp_path / "loose.png").write_bytes(planted.plant_bytes("gun"))  # skipped: no class
    with pytest.raises(ConfigurationError, match=r"insulting_gesture.*--label-map"):
        load_dataset(tmp_path, bank=BANK)
    ds = load_dataset(tmp_path, bank=BANK, label_map=HOD_LABEL_MAP)
    assert ds.kind == "folder"
    assert ds.label_counts == {"gesture": 1, "gun": 2, "neutral": 1}
    assert {s.path.name for s in ds.samples if s.label == "gun"} == {"a.png", "b.jpg"}
    assert sorted((f.path.name, f.reason) for f in ds.skipped) == [
        (".cache", "hidden"), (".hidden.png", "hidden"), ("labels.txt", "not an image"),
        ("loose.png", "not in a class folder")]


def test_folder_without_class_subfolders_is_explained(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"class subfolders.*x\.png"):
        load_dataset(tmp_path, bank=BANK)
    with pytest.raises(ConfigurationError, match="dataset not found"):
        load_dataset(tmp_path / "missing", bank=BANK)
    with pytest.raises(ConfigurationError, match="is not a dataset"):
        load_dataset(tmp_path / "x.png", bank=BANK)


def test_csv_and_jsonl_manifests(tmp_path: Path, planted: PlantedEncoder) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(planted.plant_bytes("gun"))
    (tmp_path / "img" / "b.png").write_bytes(planted.plant_bytes("neutral"))
    csv = tmp_path / "m.csv"
    csv.write_text("path,label,query\nimg/a.png,gun,How do I use this?\n"
                   f"{tmp_path / 'img' / 'b.png'},safe,\n")
    ds = load_dataset(csv, bank=BANK, label_map={"safe": "neutral"})
    assert ds.kind == "manifest"
    assert [(s.path, s.label, s.query) for s in ds.samples] == [
        (tmp_path / "img" / "a.png", "gun", "How do I use this?"),
        (tmp_path / "img" / "b.png", "neutral", None),
    ]
    jl = tmp_path / "m.jsonl"
    jl.write_text(json.dumps({"path": "img/a.png", "label": "gun"}) + "\n\n"
                  + json.dumps({"path": "img/b.png", "label": "neutral", "query": "hi"}) + "\n")
    ds = load_dataset(jl, bank=BANK)
    assert [(s.label, s.query) for s in ds.samples] == [("gun", None), ("neutral", "hi")]


@pytest.mark.parametrize(("content", "suffix", "message"), [
    ("file,label\na.png,gun\n", ".csv", "header row with 'path' and 'label' columns"),
    ("path\na.png\n", ".csv", "header row with 'path' and 'label' columns"),
    ("path,label\na.png,dragon\n", ".csv", r"record 1: label 'dragon' is not a class"),
    ('{"path": "a.png", "label": "gun"}\n{"path": "b.png", "label": "Guns"}\n', ".jsonl",
     r"line 2: label 'Guns' is not a class.*--label-map Guns=gun"),
    ("path,label\n", ".csv", "has no rows"),
])
def test_manifest_errors_that_stop_the_run_name_the_record(tmp_path: Path, content: str,
                                                           suffix: str, message: str) -> None:
    """A manifest that is not one, or a label the bank does not know (a mapping to fix)."""
    m = tmp_path / f"m{suffix}"
    m.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_dataset(m, bank=BANK)


def test_bad_label_records_are_unreadable_never_fatal(tmp_path: Path) -> None:
    """A record the shared reader cannot use is listed, with its line, like a broken image."""
    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"path": "a.png", "label": "gun"}\n'
                  b'not json\n'
                  b'{"path": "b.png"}\n'
                  b'{"path": "c.png", "label": 3}\n'
                  b'{"path": 5, "label": "neutral"}\n'
                  b'\xff\xfe\n'
                  b'{"path": "d.png", "label": " neutral ", "query": "what is it?"}\n')
    ds = load_dataset(m, bank=BANK)
    assert [(s.path.name, s.label, s.query) for s in ds.samples] == [
        ("a.png", "gun", None), ("d.png", "neutral", "what is it?")]
    assert [(u.path, u.label, u.error) for u in ds.unreadable] == [
        (f"{m}#2", "", f"{m}, line 2 is not valid JSON (Expecting value)"),
        (str(tmp_path / "b.png"), "", f"{m}, line 3: empty 'label'"),
        (str(tmp_path / "c.png"), "", f"{m}, line 4: 'label' is int, not text"),
        (f"{m}#5", "neutral", f"{m}, line 5: 'path' is int, not a path string"),
        (f"{m}#6", "", f"{m}, line 6 is not UTF-8"),
    ]
    assert ds.n_files == 7


def test_parse_label_map() -> None:
    assert parse_label_map(["a=gun", " b = neutral "]) == {"a": "gun", "b": "neutral"}
    with pytest.raises(ConfigurationError, match="FOLDER=CLASS"):
        parse_label_map(["nonsense"])


def test_unreadable_files_are_listed_never_fatal(tmp_path: Path, planted: PlantedEncoder,
                                                 planted_guard: SafeCLIPGuard) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "ok.png").write_bytes(planted.plant_bytes("gun"))
    (tmp_path / "img" / "ok2.png").write_bytes(planted.plant_bytes("neutral"))
    (tmp_path / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "img" / "empty.jpg").write_bytes(b"")
    m = tmp_path / "m.csv"
    m.write_text("path,label\nimg/ok.png,gun\nimg/corrupt.png,gun\nimg/missing.png,neutral\n"
                 "img/empty.jpg,neutral\nimg/ok2.png,neutral\n")
    report = evaluate(planted_guard, load_dataset(m, bank=planted_guard.bank),
                      show_progress=False)
    assert report.dataset.n_files == 5 and report.n_images == 2
    assert report.defense_success_rate == 1.0 and report.false_positive_rate == 0.0
    bad = {Path(u.path).name: u for u in report.unreadable}
    assert set(bad) == {"corrupt.png", "missing.png", "empty.jpg"}
    assert bad["missing.png"].label == "neutral" and bad["missing.png"].error
    assert report.dataset.n_unreadable == 3


def test_all_unreadable_gives_empty_metrics(tmp_path: Path, planted_guard: SafeCLIPGuard) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "gun" / "bad.png").write_bytes(b"nope")
    report = evaluate(planted_guard, load_dataset(tmp_path, bank=planted_guard.bank),
                      show_progress=False)
    assert report.n_images == 0 and len(report.unreadable) == 1
    assert report.defense_success_rate is None and report.roc_auc is None
    assert report.ablations == [] and report.images == []
