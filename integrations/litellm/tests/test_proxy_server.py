"""The shipped example configs, run by the real LiteLLM proxy server (``litellm --config``).

Each test starts ``litellm --config <example>`` as a subprocess on a free loopback port, with
two substitutions a test needs: the model list answers with ``mock_response`` (no VLM), and
the guardrails' ``api_base`` point at local servers (``safeclip serve``'s app on a planted
guard, and a fake of OpenAI's text moderation endpoint, the one third-party service here).
Everything else — the master key from the environment, the guardrail classes, their modes —
is the example as shipped. They need the integration's ``proxy`` extra (what ``litellm
--config`` imports); without it they skip and say what to install.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.serve import BackgroundServer, create_app

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "safeclip_guardrail_litellm" / "examples"
MASTER_KEY = "sk-test-" + "0" * 32
pytestmark = [pytest.mark.slow, pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]


def _proxy_extra() -> list[str]:
    """Distribution names of the ``proxy`` extra declared in the integration's pyproject."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^proxy = \[(.*?)\]", text, re.S | re.M)
    assert block, "integrations/litellm/pyproject.toml declares no 'proxy' extra"
    return [re.split(r"[<>=!~\[ ]", r)[0] for r in re.findall(r'"([^"]+)"', block.group(1))]


@pytest.fixture(scope="module")
def litellm_cli() -> list[str]:
    missing = []
    for dist in _proxy_extra():
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        pytest.skip(f"the LiteLLM proxy server needs {', '.join(missing)}: "
                    "pip install './integrations/litellm[proxy]'")
    script = Path(sys.executable).with_name("litellm")
    if not script.is_file():
        pytest.skip(f"no 'litellm' command next to {sys.executable}")
    return [sys.executable, str(script)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "LITELLM_MASTER_KEY": MASTER_KEY, "HF_HUB_OFFLINE": "1", **extra}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the code under test
    return env


def _for_test(example: Path, tmp_path: Path, api_bases: dict[str, str]) -> Path:
    """The example with mock models and the guardrails' ``api_base`` set to local servers."""
    config = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    for entry in config["model_list"]:
        entry["litellm_params"] = {"model": "openai/llava", "api_key": "unused",
                                   "mock_response": "a photo of a cat"}
    for rail in config["guardrails"]:
        rail["litellm_params"]["api_base"] = api_bases[rail["guardrail_name"]]
    path = tmp_path / example.name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextmanager
def _proxy(cli: list[str], config: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    port = _free_port()
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen([*cli, "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=config.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"litellm --config exited with {proc.returncode}:\n"
                            + log.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(base + "/health/liveliness", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("litellm --config did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=60,
                          headers={"authorization": f"Bearer {MASTER_KEY}"}) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _chat(client: httpx.Client, content: Any) -> httpx.Response:
    return client.post("/v1/chat/completions",
                       json={"model": "llava", "messages": [{"role": "user", "content": content}]})


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def _fake_text_moderation(seen: list[str]) -> FastAPI:
    """OpenAI's ``POST /v1/moderations`` for text, faked: flags any text with "hurt"."""
    app = FastAPI()

    @app.post("/v1/moderations")
    async def moderations(body: dict[str, Any]) -> dict[str, Any]:
        text = str(body["input"])
        seen.append(text)
        bad = "hurt" in text
        return {"id": f"modr-{len(seen)}", "model": body["model"], "results": [{
            "flagged": bad, "categories": {"violence": bad, "harassment/threatening": bad},
            "category_scores": {"violence": 0.9 if bad else 0.01,
                                "harassment/threatening": 0.8 if bad else 0.01},
            "category_applied_input_types": {"violence": ["text"]}}]}

    return app


def test_example_config_blocks_a_flagged_image_only_request(litellm_cli, guard: SafeCLIPGuard,
                                                             image_url, tmp_path):
    app = create_app(guard, api_keys=["proxy-key"])
    with BackgroundServer(app) as service:
        config = _for_test(EXAMPLES / "config.yaml", tmp_path, {"safeclip": service.url})
        with _proxy(litellm_cli, config, _env(SAFECLIP_API_KEY="proxy-key")) as proxy:
            clean = _chat(proxy, [_image(image_url("neutral"))])
            assert clean.status_code == 200, clean.text
            assert clean.json()["choices"][0]["message"]["content"] == "a photo of a cat"
            flagged = _chat(proxy, [_image(image_url("gun"))])
            assert flagged.status_code == 400, flagged.text
            assert "gun" in flagged.text
            no_key = httpx.post(str(proxy.base_url) + "/v1/chat/completions", json={
                "model": "llava", "messages": [{"role": "user", "content": "hi"}]})
            assert no_key.status_code == 401  # the master key is in force
    assert app.state.metrics.value("safeclip_images_total") == 2  # both judged by the service


def test_image_and_text_config_blocks_each_kind(litellm_cli, guard: SafeCLIPGuard, image_url,
                                                tmp_path):
    seen: list[str] = []
    app = create_app(guard, api_keys=["proxy-key"])
    with BackgroundServer(app) as service, \
            BackgroundServer(_fake_text_moderation(seen)) as moderation:
        config = _for_test(EXAMPLES / "config_image_and_text.yaml", tmp_path,
                           {"safeclip": service.url, "text-moderation": moderation.url + "/v1"})
        env = _env(SAFECLIP_API_KEY="proxy-key", OPENAI_API_KEY="sk-fake-openai")
        with _proxy(litellm_cli, config, env) as proxy:
            clean = _chat(proxy, [{"type": "text", "text": "what is this?"},
                                  _image(image_url("neutral"))])
            assert clean.status_code == 200, clean.text
            threat = _chat(proxy, [{"type": "text", "text": "I will hurt you"},
                                   _image(image_url("neutral"))])
            assert threat.status_code == 400, threat.text
            assert "moderation" in threat.text and "violence" in threat.text
            picture = _chat(proxy, [{"type": "text", "text": "what is this?"},
                                    _image(image_url("blood"))])
            assert picture.status_code == 400, picture.text
            assert "blood" in picture.text
            image_only = _chat(proxy, [_image(image_url("gun"))])
            assert image_only.status_code == 400 and "gun" in image_only.text
    assert "I will hurt you" in seen and "what is this?" in seen


def test_a_misconfigured_guardrail_stops_the_proxy(litellm_cli, tmp_path):
    """LiteLLM starts without a guardrail whose constructor raises ValueError: ours never
    does, so a typo cannot turn the guard off."""
    config = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    config["guardrails"][0]["litellm_params"]["safeclip_action"] = "blok"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run([*litellm_cli, "--config", str(path), "--host", "127.0.0.1",
                           "--port", str(_free_port())], env=_env(SAFECLIP_API_KEY="k"),
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode != 0
    assert "safeclip_action must be 'block' or 'rewrite'" in done.stdout + done.stderr


def test_litellm_reads_the_shipped_configs(litellm_cli, tmp_path):
    """LiteLLM's own config reader (``--validate_config``) on the files exactly as shipped."""
    env = _env(SAFECLIP_API_KEY="k", OPENAI_API_KEY="k", VLLM_API_KEY="k")
    for example in sorted(EXAMPLES.glob("*.yaml")):
        done = subprocess.run([*litellm_cli, "--config", str(example), "--validate_config"],
                              env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "config OK (1 models)" in done.stdout
