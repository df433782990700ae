"""`safeclip serve` end to end (a real process on a tiny CLIP) and the serving cookbook recipe."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.cli import main as cli_main
from safeclip_guardrail.testing import PlantedEncoder
from tests._imgs import encode, noise
from tests._serve_helpers import LOOPBACK, data_url

ROOT = Path(__file__).resolve().parents[1]


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
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "safeclip serve did not become ready"
            time.sleep(0.2)
        image = data_url(encode(noise(64, 48, seed=3)))
        for key in ("flag-key", "env-key-1", "env-key-2"):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            (result,) = client.moderations.create(model="m", input=[
                {"type": "image_url", "image_url": {"url": image}}]).results
            assert result.category_applied_input_types.violence == ["image"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0).moderations.create(
                model="m", input="x")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
