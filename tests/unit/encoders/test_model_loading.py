"""Loading fails closed: only whole CLIP image-text checkpoints become guards, fast and quietly.

Every model here is a tiny real checkpoint built offline and loaded through the user's path
(``SafeCLIPGuard.from_pretrained`` or the CLI).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from safeclip_guardrail import ModelLoadError, SafeCLIPGuard
from safeclip_guardrail.cli import main
from safeclip_guardrail.testing import build_tiny_clip, build_tiny_llava
from safeclip_guardrail.testing.pictures import encode, noise

IMAGES = [noise(40, 30, seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaVA that does not record its CLIP (as llava-hf checkpoints do not)."""
    return build_tiny_llava(tmp_path_factory.mktemp("llava"), record_clip=False)


@pytest.fixture(scope="module")
def tiny_llava_next_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("llava_next"), kind="llava_next",
                            record_clip=False)


def _load(model: str | Path) -> SafeCLIPGuard:
    return SafeCLIPGuard.from_pretrained(str(model), device="cpu", dtype="float32")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ item: LLaVA / not CLIP
@pytest.mark.parametrize("which", ["llava", "llava_next"])
def test_llava_checkpoint_is_refused_with_the_clip_to_use(
        which: str, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue("tiny_llava_dir" if which == "llava"
                                        else "tiny_llava_next_dir")
    with pytest.raises(ModelLoadError) as info:
        _load(model_dir)
    msg = str(info.value)
    assert f"model_type '{which}'" in msg and "not a CLIP image-text model" in msg
    assert "'llava-1.5'" in msg and "openai/clip-vit-large-patch14-336" in msg
    assert "guard='auto'" in msg and "guard_model=" in msg
    assert "\n" not in msg


def test_llava_that_records_its_clip_loads_that_clip(tiny_llava_dir: Path, tiny_clip_dir: Path,
                                                     tmp_path: Path) -> None:
    # the original LLaVA configs record their tower's CLIP as ``mm_vision_tower``
    llava = _copy(tiny_llava_dir, tmp_path / "llava")
    cfg = json.loads((llava / "config.json").read_text())
    cfg["mm_vision_tower"] = str(tiny_clip_dir)
    (llava / "config.json").write_text(json.dumps(cfg))
    via_llava, direct = _load(llava), _load(tiny_clip_dir)
    assert via_llava.model_name == f"{tiny_clip_dir} (via {llava})"
    np.testing.assert_allclose(via_llava.embed_images(IMAGES), direct.embed_images(IMAGES),
                               atol=1e-6)
    np.testing.assert_array_equal(via_llava.text_embeddings, direct.text_embeddings)
    # a recorded CLIP that is not there is an error naming both
    cfg["mm_vision_tower"] = str(tmp_path / "gone")
    (llava / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"records its CLIP as .*gone.*does not exist"):
        _load(llava)


def test_original_llava_config_is_recognised(tiny_clip_dir: Path, tmp_path: Path) -> None:
    """liuhaotian-style repos: a model_type transformers does not know, the CLIP recorded."""
    config = {"model_type": "llava_llama", "architectures": ["LlavaLlamaForCausalLM"],
              "mm_vision_tower": str(tiny_clip_dir), "hidden_size": 4096}
    (tmp_path / "config.json").write_text(json.dumps(config))
    np.testing.assert_allclose(_load(tmp_path).embed_images(IMAGES),
                               _load(tiny_clip_dir).embed_images(IMAGES), atol=1e-6)
    del config["mm_vision_tower"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"is a LLaVA checkpoint .*'llava_llama'.*llava-1\.5"):
        _load(tmp_path)


def test_scan_with_a_llava_model_exits_two_with_one_line(
        tiny_llava_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.png"
    img.write_bytes(encode(noise(seed=1)))
    assert main(["scan", str(img), "-m", str(tiny_llava_dir)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == ""
    assert len(lines) == 1 and lines[0].startswith("safeclip: error:"), lines
    assert "LLaVA checkpoint" in lines[0] and "llava-1.5" in lines[0]


def test_checkpoint_missing_text_tower_is_refused_naming_the_parts(tiny_clip_dir: Path,
                                                                   tmp_path: Path) -> None:
    broken = _copy(tiny_clip_dir, tmp_path / "clip")
    weights = load_file(str(broken / "model.safetensors"))
    kept = {k: v for k, v in weights.items()
            if not k.startswith(("text_model.encoder.", "text_projection"))}
    save_file(kept, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError) as info:
        _load(broken)
    msg = str(info.value)
    assert "missing from the checkpoint" in msg and "randomly initialised" in msg
    assert "text_model.encoder" in msg and "text_projection.weight" in msg
    assert "vision_model" not in msg  # only the parts that are really missing


def test_checkpoint_with_a_wrong_shape_is_refused(tiny_clip_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_clip_dir, tmp_path / "clip")
    weights = load_file(str(broken / "model.safetensors"))
    weights["visual_projection.weight"] = weights["visual_projection.weight"][:8].contiguous()
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"wrong shape: visual_projection\.weight"):
        _load(broken)


def test_extra_tensors_in_a_whole_checkpoint_are_accepted(tiny_clip_dir: Path,
                                                          tmp_path: Path) -> None:
    extra = _copy(tiny_clip_dir, tmp_path / "clip")
    weights = load_file(str(extra / "model.safetensors"))
    weights["unused.head.weight"] = weights["visual_projection.weight"].clone()
    save_file(weights, str(extra / "model.safetensors"), metadata={"format": "pt"})
    np.testing.assert_allclose(_load(extra).embed_images(IMAGES),
                               _load(tiny_clip_dir).embed_images(IMAGES), atol=1e-6)


def test_vision_only_and_other_model_types_are_refused(tmp_path: Path) -> None:
    from transformers import CLIPVisionConfig, LlamaConfig

    CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                     num_attention_heads=4).save_pretrained(tmp_path / "vision")
    with pytest.raises(ModelLoadError, match="vision tower only"):
        _load(tmp_path / "vision")
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=4).save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelLoadError, match=r"model_type 'llama'.*needs model_type 'clip'"):
        _load(tmp_path / "llama")


def test_open_clip_checkpoint_missing_keys_is_refused(tiny_open_clip_dir: Path,
                                                      tmp_path: Path) -> None:
    broken = _copy(tiny_open_clip_dir, tmp_path / "oc")
    path = broken / "open_clip_model.safetensors"
    weights = load_file(str(path))
    kept = {k: v for k, v in weights.items() if not k.startswith("transformer.resblocks.1.")
            and k != "text_projection"}
    save_file(kept, str(path))
    with pytest.raises(ModelLoadError) as info:
        _load(broken)
    msg = str(info.value)
    assert "refusing open_clip checkpoint" in msg and "missing from the checkpoint" in msg
    assert "transformer.resblocks" in msg and "text_projection" in msg
    # no weights file at all: an error, never a randomly initialised CLIP
    path.unlink()
    with pytest.raises(ModelLoadError, match="no weights were found"):
        _load(broken)


# ------------------------------------------------------------------ item: offline, fast
_SOCKET_WARNING = "ignore:A test tried to use socket:UserWarning"


class _HubCalls:
    """What huggingface_hub tried: every HTTP request it sent, every backoff it slept."""

    def __init__(self) -> None:
        self.sends: list[str] = []
        self.sleeps: list[float] = []


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> _HubCalls:
    import httpx
    from huggingface_hub.utils import _http

    calls = _HubCalls()
    original_send = httpx.Client.send

    def counting_send(self: httpx.Client, request: httpx.Request, **kw: object) -> httpx.Response:
        calls.sends.append(str(request.url))
        return original_send(self, request, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.Client, "send", counting_send)
    monkeypatch.setattr(_http.time, "sleep", calls.sleeps.append)  # a backoff loop sleeps here
    return calls


@pytest.mark.filterwarnings(_SOCKET_WARNING)
@pytest.mark.parametrize("failure", ["sockets_blocked", "dns_failure"])
def test_hub_id_without_network_fails_at_once_without_retries(
        failure: str, monkeypatch: pytest.MonkeyPatch, hub_calls: _HubCalls) -> None:
    """HF_HUB_OFFLINE is *not* set and there is no network: the case where huggingface_hub
    retried with backoff for ~30 s. Sockets are disabled (pytest-socket); ``dns_failure``
    also makes the transport fail the way a machine without DNS does (httpx.ConnectError,
    the error huggingface_hub retries on). The bound is on attempts, not on time."""
    import httpx
    from huggingface_hub import constants

    if failure == "dns_failure":
        def no_dns(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

        monkeypatch.setattr(httpx.HTTPTransport, "handle_request", no_dns)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    sends, sleeps = hub_calls.sends, hub_calls.sleeps
    with pytest.raises(ModelLoadError) as info:
        _load("safeclip-tests/no-such-clip")
    msg = str(info.value)
    model_requests = [url for url in sends if "no-such-clip" in url]
    assert model_requests == [
        "https://huggingface.co/safeclip-tests/no-such-clip/resolve/main/config.json"], sends
    assert sleeps == []
    assert "could not be reached" in msg and "not in the local Hugging Face cache" in msg
    assert "hf download safeclip-tests/no-such-clip --local-dir DIR" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "\n" not in msg


@pytest.mark.filterwarnings(_SOCKET_WARNING)
def test_cached_hub_model_still_loads_without_network(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_clip_dir: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--safeclip-tests--tiny-clip"
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cached = _load("safeclip-tests/tiny-clip")
    np.testing.assert_allclose(cached.embed_images(IMAGES),
                               _load(tiny_clip_dir).embed_images(IMAGES), atol=1e-6)


# ------------------------------------------------------------------ item: quiet, deterministic
def _hf_state() -> tuple[int, bool]:
    from transformers.utils import logging as hf_logging

    return hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()


@pytest.fixture
def hf_defaults() -> Iterator[None]:
    """transformers' own defaults (WARNING, bars on); the CLI tests switch them off globally."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = _hf_state()
    hf_logging.set_verbosity_warning()
    hf_logging.enable_progress_bar()
    yield
    hf_logging.set_verbosity(verbosity)
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


@pytest.mark.usefixtures("hf_defaults")
def test_loading_prints_no_bars_or_reports_and_restores_state(
        tiny_clip_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    extra = _copy(tiny_clip_dir, tmp_path / "clip")  # unexpected keys: transformers would warn
    weights = load_file(str(extra / "model.safetensors"))
    weights["unused.head.weight"] = weights["visual_projection.weight"].clone()
    save_file(weights, str(extra / "model.safetensors"), metadata={"format": "pt"})
    before = _hf_state()
    assert before == (logging.WARNING, True)
    capfd.readouterr()
    _load(extra)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "LOAD REPORT" not in err, err
    assert _hf_state() == before


@pytest.mark.usefixtures("hf_defaults")
def test_loading_shows_bars_when_the_user_asks(tiny_clip_dir: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    capfd.readouterr()
    _load(tiny_clip_dir)
    err = capfd.readouterr().err
    assert "Loading weights" in err
    assert _hf_state() == (logging.INFO, True)


@pytest.mark.usefixtures("hf_defaults")
def test_a_process_we_own_stays_silenced_unless_the_user_asked() -> None:
    """``silence_transformers`` (the CLI, Ray workers): the block's state, kept for good."""
    from transformers.utils import logging as hf_logging

    from safeclip_guardrail.encoders._quiet import quiet_transformers, silence_transformers

    with quiet_transformers():
        silence_transformers()  # inside an open block: its exit must not undo it
    assert _hf_state() == (logging.ERROR, False)
    with quiet_transformers():
        pass
    assert _hf_state() == (logging.ERROR, False)
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    silence_transformers()
    assert _hf_state() == (logging.INFO, True)


def test_build_tiny_clip_is_the_same_without_open_clip(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with_oc = build_tiny_clip(tmp_path / "with", seed=3)
    monkeypatch.setitem(sys.modules, "open_clip", None)  # `import open_clip` now fails
    monkeypatch.setitem(sys.modules, "open_clip.tokenizer", None)
    with pytest.raises(ImportError):
        import open_clip  # noqa: F401
    without = build_tiny_clip(tmp_path / "without", seed=3)
    a, b = load_file(str(with_oc / "model.safetensors")), load_file(str(without / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and bool((a[key] == b[key]).all()), key
    assert (with_oc / "tokenizer.json").read_bytes() == (without / "tokenizer.json").read_bytes()
    monkeypatch.undo()
    ga, gb = _load(with_oc), _load(without)
    np.testing.assert_array_equal(ga.text_embeddings, gb.text_embeddings)
    np.testing.assert_array_equal(ga.embed_images(IMAGES), gb.embed_images(IMAGES))


@pytest.mark.filterwarnings(_SOCKET_WARNING)
def test_open_clip_tag_without_network_fails_at_once(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path,
                                                     hub_calls: _HubCalls) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sends, sleeps = hub_calls.sends, hub_calls.sleeps
    with pytest.raises(ModelLoadError) as info:
        _load("open_clip:ViT-B-32/openai")
    msg = str(info.value)
    assert [u for u in sends if "clip" in u] == [
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/"
        "open_clip_config.json"], sends
    assert sleeps == []
    assert "hf download timm/vit_base_patch32_clip_224.openai" in msg and "\n" not in msg


@pytest.mark.parametrize(("name", "payload"), [
    ("model.safetensors", "half"), ("model.safetensors", b""),
    ("tokenizer.json", b"{not json"), ("tokenizer_config.json", b"[1]"),
    ("config.json", b"{bad"), ("preprocessor_config.json", b'{"size": "x"}'),
])
def test_corrupt_checkpoint_files_are_model_load_errors(
        name: str, payload: bytes | str, tiny_clip_dir: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_clip_dir, tmp_path / "clip")
    target = broken / name
    data = target.read_bytes()[: target.stat().st_size // 2] if payload == "half" else payload
    target.write_bytes(data)  # type: ignore[arg-type]
    with pytest.raises(ModelLoadError) as info:
        _load(broken)
    assert str(broken) in str(info.value) and "\n" not in str(info.value)
