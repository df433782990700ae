"""Run inside a fresh virtual env where only the built wheels are installed (not the checkout).

``tests/project/test_wheels.py`` copies this file to a temporary folder and runs it with the fresh
env's Python. It imports every installed distribution, checks it was imported from that env
(not from a source tree), and runs each one on a tiny CLIP built offline. Prints one line
per check; any failure raises (non-zero exit).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import sys
import tempfile
from pathlib import Path

from PIL import Image

import safeclip_guardrail
from safeclip_guardrail import ConceptBank, SafeCLIPGuard
from safeclip_guardrail.testing import PlantedEncoder, build_tiny_clip

PREFIX = Path(sys.prefix).resolve()


def _from_env(module: object) -> None:
    where = Path(str(getattr(module, "__file__", ""))).resolve()
    assert PREFIX in where.parents, f"{module} imported from {where}, not from {PREFIX}"
    print(f"imported {getattr(module, '__name__', module)} from the env")


def core(tmp: Path) -> SafeCLIPGuard:
    _from_env(safeclip_guardrail)
    # package data shipped in the wheel: the paper's concept bank
    assert "gun" in ConceptBank.default().class_names
    tiny = build_tiny_clip(tmp / "clip", seed=0)
    guard = SafeCLIPGuard.from_pretrained(str(tiny), device="cpu", dtype="float32")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp / "red.png")
    verdict = guard.check(tmp / "red.png")
    assert verdict.error is None and abs(sum(verdict.scores.values()) - 1) < 1e-4, verdict
    print(f"core: tiny CLIP verdict top={verdict.top_category}")
    from safeclip_guardrail.cli import main

    assert main(["scan", "--model", str(tiny), "--device", "cpu", "--no-progress",
                 str(tmp / "red.png")]) in (0, 1)
    print("core: safeclip scan ran")
    return guard


def langchain(guard: SafeCLIPGuard, planted: PlantedEncoder) -> None:
    import safeclip_guardrail_langchain as lc
    from langchain_core.messages import AIMessage, HumanMessage

    _from_env(lc)
    node = lc.safeclip_node(SafeCLIPGuard(planted))
    url = "data:image/png;base64," + base64.b64encode(planted.plant_bytes("gun")).decode()
    msg = HumanMessage(content=[{"type": "image_url", "image_url": {"url": url}}])
    out = node.invoke({"messages": [msg]})
    assert isinstance(out["messages"][-1], AIMessage), out
    assert lc.is_blocked(out["messages"]), out
    lc.SafeCLIPMiddleware(guard)
    print("langchain: a planted gun image is blocked by safeclip_node")


def llamaindex(planted: PlantedEncoder) -> None:
    import safeclip_guardrail_llamaindex as li
    from llama_index.core.schema import ImageNode, NodeWithScore

    _from_env(li)
    nodes = [NodeWithScore(node=ImageNode(image=base64.b64encode(planted.plant_bytes(c)).decode(),
                                          image_mimetype="image/png"), score=1.0)
             for c in ("gun", "neutral")]
    kept = li.SafeCLIPImagePostprocessor(SafeCLIPGuard(planted)).postprocess_nodes(nodes)
    assert len(kept) == 1, kept
    print("llamaindex: the postprocessor dropped the planted gun image")


def nemo(planted: PlantedEncoder) -> None:
    import safeclip_guardrail_nemo as nm

    _from_env(nm)
    # package data shipped in the wheel: the example rails config
    assert (nm.example_config_dir() / "config.yml").is_file()
    nm.example_rails_config()
    rail = nm.SafeCLIPImageRail(SafeCLIPGuard(planted))
    url = "data:image/png;base64," + base64.b64encode(planted.plant_bytes("gun")).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}]
    decision = asyncio.run(rail.check({"user_message": content}))
    assert decision["allowed"] is False, decision
    print("nemo: the rail refuses the planted gun image")


def litellm() -> None:
    import safeclip_guardrail_litellm as ll

    _from_env(ll)
    print("litellm: imported")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        guard = core(tmp)
        planted = PlantedEncoder(ConceptBank.default())
        for name, run in (("safeclip_guardrail_langchain", lambda: langchain(guard, planted)),
                          ("safeclip_guardrail_llamaindex", lambda: llamaindex(planted)),
                          ("safeclip_guardrail_nemo", lambda: nemo(planted)),
                          ("safeclip_guardrail_litellm", litellm)):
            if name in sys.argv[1:]:
                assert importlib.util.find_spec(name) is not None, f"{name} is not installed"
                run()
    print("all wheel checks passed")


if __name__ == "__main__":
    main()
