"""The descriptor-embedding cache is keyed on the weights' content and trusts no file blindly;
concept-bank files that are not text fail with a typed, readable error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from safeclip_guardrail import ConceptBank, ConfigurationError, SafeCLIPGuard
from safeclip_guardrail.testing import build_tiny_clip
from safeclip_guardrail.testing.pictures import encode, noise


@pytest.fixture(scope="module")
def other_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and file sizes as ``tiny_clip_dir``, other weights (seed 1)."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip_seed1"), seed=1)


def _load(model: Path, **kw: object) -> SafeCLIPGuard:
    return SafeCLIPGuard.from_pretrained(str(model), device="cpu", dtype="float32", **kw)  # type: ignore[arg-type]


def _swap_in(src: Path, dst: Path) -> None:
    """Copy ``src``'s weights over ``dst``'s, keeping ``dst``'s mtime (tar, rsync -a)."""
    target = dst / "model.safetensors"
    st = target.stat()
    shutil.copyfile(src / "model.safetensors", target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns


def test_swapped_weights_with_same_sizes_and_mtimes_are_not_served_stale(
        tiny_clip_dir: Path, other_clip_dir: Path, tmp_path: Path,
        text_calls: list[int]) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, model)
    first = _load(model)
    assert text_calls == [40]
    assert np.array_equal(_load(model).text_embeddings, first.text_embeddings)
    assert text_calls == [40]  # warm start: no text-tower pass
    _swap_in(other_clip_dir, model)
    swapped = _load(model)
    assert text_calls == [40, 40]  # a new key: recomputed, not the old embeddings
    reference = _load(other_clip_dir, cache_dir=tmp_path / "fresh-cache")
    np.testing.assert_allclose(swapped.text_embeddings, reference.text_embeddings, atol=1e-6)
    assert not np.allclose(swapped.text_embeddings, first.text_embeddings, atol=1e-3)


def test_key_covers_only_what_decides_text_embeddings(tiny_clip_dir: Path, other_clip_dir: Path,
                                                      tmp_path: Path,
                                                      text_calls: list[int]) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, model)
    first = _load(model)
    # new vision weights, same text side: the cached descriptor embeddings stay valid
    mixed = load_file(str(model / "model.safetensors"))
    other = load_file(str(other_clip_dir / "model.safetensors"))
    mixed.update({k: v for k, v in other.items() if k.startswith("vision_model.")})
    save_file(mixed, str(model / "model.safetensors"), metadata={"format": "pt"})
    moved = tmp_path / "moved"  # and a copy elsewhere is the same content
    shutil.copytree(model, moved)
    second = _load(moved)
    assert text_calls == [40]
    assert not np.allclose(second.embed_images([noise()]), first.embed_images([noise()]))
    # one changed row of the token embedding (a word of one descriptor) is a new key
    mixed["text_model.embeddings.token_embedding.weight"][300] += 0.5
    save_file(mixed, str(moved / "model.safetensors"), metadata={"format": "pt"})
    _load(moved)
    assert text_calls == [40, 40]


def _bad_cache_files(shape: tuple[int, int]) -> dict[str, bytes]:
    import io

    def npy(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()

    structured = np.zeros(shape[0], dtype=[("a", "f4", (shape[1],))])
    huge_header = npy(np.zeros((2, 2), np.float32)).replace(b"(2, 2)", b"(9999999999, 16)")
    return {
        "structured dtype": npy(structured),
        "structured, right shape": npy(np.zeros(shape, dtype=[("a", "f4"), ("b", "f4")])),
        "integers": npy(np.ones(shape, np.int64)),
        "complex": npy(np.ones(shape, np.complex64)),
        "wrong shape": npy(np.ones((shape[0] - 1, shape[1]), np.float32)),
        "non-finite": npy(np.full(shape, np.nan, np.float32)),
        "huge declared shape": huge_header,
        "truncated": npy(np.ones(shape, np.float32))[:-7],
        "not npy": b"garbage",
        "empty": b"",
    }


def test_bad_cache_files_are_recomputed(tiny_clip_dir: Path, _isolated_cache: Path,
                                        text_calls: list[int],
                                        caplog: pytest.LogCaptureFixture) -> None:
    good = _load(tiny_clip_dir).text_embeddings
    (cache_file,) = (_isolated_cache / "text_embeddings").glob("*.npy")
    for n, (name, payload) in enumerate(_bad_cache_files(good.shape).items(), start=2):
        cache_file.write_bytes(payload)
        guard = _load(tiny_clip_dir)
        assert len(text_calls) == n, name
        np.testing.assert_array_equal(guard.text_embeddings, good)
        assert "ignoring" in caplog.text
        caplog.clear()
    # and the rewritten file is a clean hit again
    _load(tiny_clip_dir)
    assert len(text_calls) == n


# ------------------------------------------------------------------ bank files
def test_bank_file_that_is_an_image_is_a_configuration_error(tmp_path: Path) -> None:
    for fmt, kind in (("PNG", "PNG image"), ("JPEG", "JPEG image"), ("GIF", "GIF image")):
        p = tmp_path / f"bank-{fmt}.json"
        p.write_bytes(encode(noise(), fmt))
        with pytest.raises(ConfigurationError, match=f"is a {kind}, not a text file") as info:
            ConceptBank.from_file(p)
        assert "JSON or YAML" in str(info.value)


def test_bank_file_with_invalid_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bank.yaml"
    p.write_bytes(b"classes:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigurationError, match=r"not valid UTF-8 \(byte 0xe9 at offset 22\)"):
        ConceptBank.from_file(p)
    # a UTF-8 BOM is fine
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + ConceptBank.default().to_file(tmp_path / "b.json")
                    .read_bytes())
    assert ConceptBank.from_file(bom).class_names == ConceptBank.default().class_names


def test_unreadable_bank_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        p = tmp_path / "bank.json"
        ConceptBank.default().to_file(p)
        p.chmod(0)
    else:  # root reads any mode; /proc/self/mem is a regular file whose offset 0 cannot be read
        p = Path("/proc/self/mem")
        if not p.is_file():
            pytest.skip("no unreadable regular file available to root here")
    with pytest.raises(ConfigurationError, match="cannot read concept bank"):
        ConceptBank.from_file(p)


def test_cli_bank_that_is_an_image_one_line(tmp_path: Path, tiny_clip_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from safeclip_guardrail.cli import main

    img = tmp_path / "a.png"
    img.write_bytes(encode(noise()))
    assert main(["scan", str(img), "-m", str(tiny_clip_dir), "--concepts", str(img)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a PNG image, not a text file" in err[0], err
    assert "UnicodeDecodeError" not in err[0]
