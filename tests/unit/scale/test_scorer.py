"""BatchScorer: columns in, verdict columns out, row for row what check_batch says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.errors import ConfigurationError
from safeclip_guardrail.scale.scorer import BatchScorer, score_column
from safeclip_guardrail.testing import PlantedEncoder


def _objects(values: list[object]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def test_bytes_paths_and_errors_match_check_batch(planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard,
                                                  tmp_path: Path) -> None:
    gun = planted.plant_bytes("gun")
    mixed = planted.plant_bytes({"knife": 0.55, "neutral": 0.45})
    neutral_file = tmp_path / "n.png"
    neutral_file.write_bytes(planted.plant_bytes("neutral"))
    missing = tmp_path / "missing.png"
    images = _objects([gun, b"", mixed, b"not an image", gun, b""])
    paths = _objects(["", str(neutral_file), "", "", "", str(missing)])
    scorer = BatchScorer.from_guard(planted_guard, embeddings=True)
    out = scorer({"id": _objects(list("abcdef")), "image": images, "path": paths})
    expected = planted_guard.with_options(cache_size=0).check_batch(
        [gun, neutral_file, mixed, b"not an image", gun, missing])
    assert list(out["id"]) == list("abcdef")
    assert list(out["path"]) == [None, str(neutral_file), None, None, None, str(missing)]
    for i, v in enumerate(expected):
        assert out["flagged"][i] == v.flagged
        assert out["category"][i] == v.category
        assert out["error"][i] == v.error
        assert out["image_sha256"][i] == v.image_sha256
        if v.error is None:
            assert out["top_category"][i] == v.top_category
            assert out["toxic_score"][i] == pytest.approx(v.toxic_score, abs=1e-9)
            assert out["threshold"][i] == v.threshold
            for name, mass in v.scores.items():
                assert out[score_column(name)][i] == pytest.approx(mass, abs=1e-9)
        else:  # an error row: no scores, no embedding, flagged as unreadable (on_error=block)
            assert np.isnan(out["toxic_score"][i]) and np.isnan(out["embedding_final"][i]).all()
    assert out["category"][0] == "gun" and not out["flagged"][2]
    assert out["category"][3] == "unreadable" and "missing.png" in out["error"][5]
    # the duplicate (rows 0 and 4) was encoded once: 3 distinct readable images, one forward
    assert planted.forward_counter.count == 1 + 1  # scorer + the reference check_batch
    emb = planted_guard.embed_images([gun])[0]
    np.testing.assert_allclose(out["embedding_final"][0], emb, atol=1e-6)
    np.testing.assert_allclose(out["embedding_final"][4], emb, atol=1e-6)
    assert out["embedding_penultimate"].shape == (6, planted.embed_dim)


def test_decoded_arrays_and_chunks(planted: PlantedEncoder, planted_guard: SafeCLIPGuard) -> None:
    imgs = [planted.plant("gun"), planted.plant("neutral"), planted.plant("porn")]
    arrays = _objects([np.asarray(im) for im in imgs])
    scorer = BatchScorer.from_guard(planted_guard.with_options(batch_size=2))
    out = scorer({"image": arrays})
    assert list(out["category"]) == ["gun", None, "porn"]
    assert list(out["id"]) == ["0", "1", "2"]  # no id column: the row number
    assert planted.forward_counter.count == 2  # chunks of batch_size
    assert "embedding_final" not in out


def test_allow_and_raise_never_fail_the_batch(planted: PlantedEncoder) -> None:
    allow = BatchScorer.from_guard(SafeCLIPGuard(planted).with_options(on_error="allow"))
    out = allow({"image": _objects([b"junk"])})
    assert not out["flagged"][0] and out["category"][0] is None and out["error"][0]
    strict = BatchScorer.from_guard(SafeCLIPGuard(planted).with_options(on_error="raise"))
    out = strict({"image": _objects([b"junk"])})
    assert out["flagged"][0] and out["category"][0] == "unreadable"


def test_animated_image_worst_frame_decides(planted: PlantedEncoder) -> None:
    frames = [planted.plant("neutral"), planted.plant("blood")]
    import io

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    gif = buf.getvalue()
    # GIF quantises: plant what the guard will decode
    from safeclip_guardrail.config import ImageOptions
    from safeclip_guardrail.images.decode import decode_image

    decoded = decode_image(gif, ImageOptions(frames=2))
    for frame, target in zip(decoded.frames, ["neutral", "blood"]):
        planted.register(frame, planted.embedding_for(target))
    guard = SafeCLIPGuard(planted).with_options(images={"frames": 2})
    out = BatchScorer.from_guard(guard)({"image": _objects([gif])})
    [expected] = guard.check_batch([gif])
    assert out["category"][0] == expected.category == "blood"


def test_bad_batches_are_usage_errors(planted_guard: SafeCLIPGuard) -> None:
    scorer = BatchScorer.from_guard(planted_guard)
    with pytest.raises(ConfigurationError, match="neither a 'path' nor an 'image' column"):
        scorer({"bytes": _objects([b"x"])})
    with pytest.raises(ConfigurationError, match="different lengths"):
        scorer({"image": _objects([b"x"]), "id": _objects(["a", "b"])})
    with pytest.raises(ConfigurationError, match="either a guard or"):
        BatchScorer("some-model", guard=planted_guard)
    empty = scorer({"image": _objects([])})
    assert len(empty["flagged"]) == 0


def test_loads_its_own_guard_from_a_checkpoint(tiny_clip_dir: Path) -> None:
    scorer = BatchScorer(str(tiny_clip_dir), device="cpu", dtype="float32", embeddings=True)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 30, 3), np.uint8))
    out = scorer({"image": _objects([np.asarray(img)])})
    [v] = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu",
                                        dtype="float32").check_batch([img])
    assert out["top_category"][0] == v.top_category
    assert out["toxic_score"][0] == pytest.approx(v.toxic_score, abs=1e-6)
    assert out["embedding_final"].shape == (1, scorer.embed_dim)


def test_non_finite_embedding_is_an_error_row(planted: PlantedEncoder) -> None:
    img = planted.plant("gun")
    planted.register(img, np.full(planted.embed_dim, np.nan, np.float32))
    ok = planted.plant("neutral")
    for on_error in ("block", "raise"):
        guard = SafeCLIPGuard(planted).with_options(on_error=on_error)
        out = BatchScorer.from_guard(guard)({"image": _objects([np.asarray(img), np.asarray(ok)])})
        assert out["flagged"][0] and out["category"][0] == "unreadable"
        assert out["error"][0] and np.isnan(out["toxic_score"][0])
        assert not out["flagged"][1] and out["error"][1] is None


def test_an_error_column_makes_error_rows_without_reading(planted: PlantedEncoder,
                                                          planted_guard: SafeCLIPGuard,
                                                          tmp_path: Path) -> None:
    """A corpus reader's verdict on a row it must not read (issue 20.7) is kept as is; a
    missing cell as Ray hands it over (float32 NaN) is no error, and a file name that is
    not UTF-8 is written escaped."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(planted.plant_bytes("gun"))
    odd = tmp_path / "odd\udcff.png"  # the surrogate Python keeps for the byte 0xff
    scorer = BatchScorer.from_guard(planted_guard)
    out = scorer({"id": _objects(["a", "b", "c"]),
                  "path": _objects([str(secret), str(secret), str(odd)]),
                  "image": _objects([b"", b"", b""]),
                  "error": _objects(["outside the scan root; not read", np.float32("nan"),
                                     None])})
    assert list(out["error"][:1]) == ["outside the scan root; not read"]
    assert out["image_sha256"][0] is None and out["category"][0] == "unreadable"
    assert out["error"][1] is None and out["category"][1] == "gun"  # read: nothing wrong
    assert out["path"][2] == f"{tmp_path}/odd\\xff.png" and "not found" in out["error"][2]
