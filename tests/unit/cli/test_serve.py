"""`safeclip serve` end to end (a real process on a tiny CLIP) and the serving cookbook recipe."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.cli import main as cli_main
from safeclip_guardrail.testing import PlantedEncoder
from safeclip_guardrail.testing.pictures import data_url, encode, noise
from tests._serve_helpers import LOOPBACK

ROOT = Path(__file__).resolve().parents[3]


def _recipe():
    spec = importlib.util.spec_from_file_location("cookbook_serve_moderation",
                                                  ROOT / "cookbook" / "serve_moderation.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_serve_refuses_a_public_address_without_a_key(capsys, monkeypatch):
    monkeypatch.delenv("SAFECLIP_API_KEYS", raising=False)
    assert cli_main(["serve", "--host", "0.0.0.0", "--model", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--api-key" in err and "Traceback" not in err
    assert cli_main(["serve", "--port", "0", "--model", "unused"]) == 2


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(LOOPBACK)
def test_serve_on_a_busy_port_fails_in_one_line_before_the_model_loads(capsys, monkeypatch,
                                                                       tiny_clip_dir):
    from safeclip_guardrail.guard import SafeCLIPGuard

    def load(*_a, **_k):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(SafeCLIPGuard, "from_config", load)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["serve", "--port", str(port), "--model", str(tiny_clip_dir)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "already in use" in err and f":{port}" in err, err
    assert "serving on" not in out + err and "Traceback" not in err


def test_the_public_model_name_never_shows_a_local_path(tmp_path):
    from safeclip_guardrail.serve.app import public_model_name

    assert public_model_name("llava-1.5") == "safeclip-llava-1.5"
    assert public_model_name("openai/clip-vit-large-patch14-336") == (
        "safeclip-openai/clip-vit-large-patch14-336")
    for local in (str(tmp_path / "clip-tiny"), "./models/clip", "~/clip", "C:\\models\\clip",
                  f"open_clip:local-dir:{tmp_path}/oc"):
        shown = public_model_name(local)
        assert "/" not in shown and "\\" not in shown and str(tmp_path) not in shown, shown
    (tmp_path / "relative").mkdir()
    assert "/" not in public_model_name(str(tmp_path / "relative"))


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(LOOPBACK)
def test_recipe_flags_through_the_openai_sdk():
    recipe = _recipe()
    planted = PlantedEncoder(ConceptBank.default())
    results = recipe.main([planted.plant_bytes("gun"), planted.plant_bytes("neutral"),
                           planted.plant_bytes("cigarette")], guard=SafeCLIPGuard(planted))
    assert [r.flagged for r in results] == [True, False, True]
    assert results[0].categories.violence is True
    assert results[2].categories.model_extra["safeclip/cigarette"] is True


@pytest.mark.slow
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(LOOPBACK)
def test_safeclip_serve_process_on_a_tiny_clip(tiny_clip_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SAFECLIP_API_KEYS": "env-key-1, env-key-2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "SAFECLIP_CACHE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safeclip_guardrail.cli", "serve", "--model", str(tiny_clip_dir),
         "--device", "cpu", "--dtype", "float32", "--port", str(port), "--api-key", "flag-key",
         "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline().decode()]  # the banner: once the socket listens
        while not lines[-1].startswith("safeclip: serving") and lines[-1] and len(lines) < 50:
            lines.append(proc.stderr.readline().decode())
        banner = lines[-1]
        assert banner.startswith("safeclip: serving safeclip-") and f":{port} " in banner, banner
        assert str(tiny_clip_dir) not in banner and str(tmp_path) not in banner
        ready = httpx.get(f"{url}/readyz", timeout=10)  # no retry: it listens already
        assert ready.status_code == 200 and "/" not in ready.json()["model"]
        image = data_url(encode(noise(64, 48, seed=3)))
        for key in ("flag-key", "env-key-1", "env-key-2"):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            (result,) = client.moderations.create(model="m", input=[
                {"type": "image_url", "image_url": {"url": image}}]).results
            assert result.category_applied_input_types.violence == ["image"]
        plain = httpx.post(f"{url}/v1/moderations", json={"input": "x"},
                           headers={"authorization": "Bearer flag-key"}, timeout=30)
        assert plain.json()["model"] == ready.json()["model"]  # no `model`: the public name
        assert str(tiny_clip_dir) not in plain.text + ready.text
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).moderations.create(
                model="m", input="x")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
