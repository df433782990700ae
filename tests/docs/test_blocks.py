"""Every ```python block of the documentation runs: README.md, docs/**/*.md, integrations/*/README.md.

New pages are picked up by themselves (the glob below); nothing to register.

Conventions for writers (also in docs/CONTRIBUTING-docs.md):

- A block is a **complete program**: it has its imports and runs as pasted on a machine with
  the model at hand. Blocks run one by one, each in a fresh namespace and a fresh temporary
  working directory.
- **Stand-ins.** No weights can be downloaded in tests, so model ids resolve to tiny real
  models built offline: ``"llava-1.5"`` and the CLIP hub ids to a tiny CLIP, LLaVA hub ids to
  the directory of a tiny LLaVA whose tower is that CLIP and whose config records it, as a
  user's local copy would be loaded (see ``STAND_IN_MODELS``). Every block gets that.
- **Hidden setup.** A block that uses names a reader brings along (``llm``, ``prompt``,
  ``retriever``, files such as ``photo.jpg``) declares a setup in an HTML comment on the
  line right before its fence, e.g. ``<!-- docs-test: setup=langchain -->``. The setups
  below define exactly those names (offline fakes of the frameworks) and files; say in the
  block, in a comment, what the reader's own object is (``# llm: your chat model``).
- **Fragments.** A block that cannot stand alone (a body inside a LangGraph node, say) is
  marked ``<!-- docs-test: fragment -->`` *and* says so in its first line
  (``# fragment: ...``). Its imports are executed and the rest is compiled, so a ``return``
  outside a function or a wrong import still fails.
- Other fences (```bash, ```text, ```colang, ```csv) are not run.

A block that fails, a setup name that does not exist, or a ```python fence the parser does
not see (an indented one, say) fails this test.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safeclip_guardrail.testing.pictures import encode, noise

ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    code: str
    setup: str | None
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def doc_files(root: Path = ROOT) -> list[Path]:
    files = [root / "README.md", *sorted((root / "docs").glob("**/*.md")),
             *sorted((root / "integrations").glob("*/README.md"))]
    return [f for f in files if f.is_file()]


def parse_blocks(text: str, name: str) -> list[Block]:
    """The ```python blocks of a Markdown text, with the directive right before each."""
    blocks = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()]
        d = _DIRECTIVE.match(before.rstrip("\n").rsplit("\n", 1)[-1])
        setup, fragment = None, False
        if d:
            for word in d.group(1).split():
                if word == "fragment":
                    fragment = True
                elif word.startswith("setup="):
                    setup = word.removeprefix("setup=")
                else:
                    raise AssertionError(f"{name}: unknown docs-test directive {word!r}")
        blocks.append(Block(name, before.count("\n") + 2, m.group(1), setup, fragment))
    n_fences = len(re.findall(r"^[ \t>]*```python", text, re.M))
    if n_fences != len(blocks):
        raise AssertionError(f"{name}: {n_fences} ```python fences but {len(blocks)} parsed "
                             "blocks; fences must start at the beginning of a line")
    return blocks


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in parse_blocks(f.read_text(encoding="utf-8"),
                                                         str(f.relative_to(ROOT)))]


# ------------------------------------------------------------------ stand-ins and setups
def _png(seed: int, fmt: str = "PNG") -> bytes:
    return encode(noise(32, 32, seed), fmt)


@dataclass
class Env:
    """What setups can use: the tiny models, the block's temporary folder."""

    cwd: Path
    tiny_clip: Path
    llava_dir: Callable[[], Path]
    monkeypatch: pytest.MonkeyPatch
    finalizers: list[Callable[[], Any]] = dataclasses.field(default_factory=list)


def _files(env: Env) -> dict[str, Any]:
    (env.cwd / "photo.jpg").write_bytes(_png(1, "JPEG"))
    (env.cwd / "a.png").write_bytes(_png(2))
    (env.cwd / "b.png").write_bytes(_png(3))
    (env.cwd / "photos").mkdir()
    (env.cwd / "photos" / "1.jpg").write_bytes(_png(5, "JPEG"))
    (env.cwd / "photos" / "2.png").write_bytes(_png(6))
    return {"tmp_path": env.cwd, "b64_png": base64.b64encode(_png(4)).decode()}


def _setup_tiny(env: Env) -> dict[str, Any]:
    return _files(env)


def _setup_langchain(env: Env) -> dict[str, Any]:
    from langchain_core.documents import Document
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import HumanMessage
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda

    from safeclip_guardrail import SafeCLIPGuard, SafeCLIPGuardrail
    from tests._fake_chat import ToolCallingFakeChatModel

    ns = _files(env)
    guard = SafeCLIPGuard.from_pretrained(str(env.tiny_clip), device="cpu")
    image = {"type": "image", "base64": ns["b64_png"], "mime_type": "image/png"}
    text = {"type": "text", "text": "What is in this picture?"}
    docs = [Document(page_content="a photo", metadata={"image_path": str(env.cwd / "a.png")})]
    ns.update(
        guard=guard,
        llm=ToolCallingFakeChatModel(answer="a picture"),  # a chat model with tool calling
        model=FakeListChatModel(responses=["a picture"] * 20),
        tools=[],
        prompt=ChatPromptTemplate.from_messages([("human", "{question}")]),
        messages=[HumanMessage(content=[image, text])],
        state={"messages": [HumanMessage(content=[image, text])]},
        text_block=text, image_block=image,
        image_guardrail=SafeCLIPGuardrail(guard=guard, mode="block", on_block="defer"),
        retriever=RunnableLambda(lambda query: docs),
        build_prompt=RunnableLambda(lambda ds: [HumanMessage(content=f"{len(ds)} documents")]),
        call_model=lambda state: {"messages": []},
        record_incident=lambda state: {"messages": []},
    )
    return ns


def _setup_llava(env: Env) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    ns = _files(env)
    env.llava_dir()
    image = {"type": "image", "base64": ns["b64_png"], "mime_type": "image/png"}
    ns["messages"] = [HumanMessage(content=[image, {"type": "text", "text": "What is this?"}])]
    return ns


def _setup_llamaindex(env: Env) -> dict[str, Any]:
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms.mock import MockLLM
    from llama_index.core.schema import ImageNode

    ns = _files(env)
    ns.update(
        embed_model=MockEmbedding(embed_dim=8),
        multimodal_chat_llm=MockLLM(is_chat_model=True),
        image_nodes=[ImageNode(image=ns["b64_png"], image_mimetype="image/png",
                               text="photo 1")],
    )
    return ns


def _setup_nemo(env: Env) -> dict[str, Any]:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from nemoguardrails.integrations.langchain.llm_adapter import LangChainLLMAdapter

    ns = _files(env)
    ns["my_llm"] = LangChainLLMAdapter(FakeListChatModel(responses=["an answer"] * 5))
    return ns


def _setup_evaluation(env: Env) -> dict[str, Any]:
    from safeclip_guardrail import GuardConfig

    ns = _files(env)
    for i, label in enumerate(["gun", "gun", "knife", "insulting_gesture", "neutral", "benign"]):
        (env.cwd / "data" / label).mkdir(parents=True, exist_ok=True)
        (env.cwd / "data" / label / f"{i}.png").write_bytes(_png(10 + i))
    (env.cwd / "benign").mkdir()
    for i in range(4):
        (env.cwd / "benign" / f"{i}.jpg").write_bytes(_png(20 + i, "JPEG"))
    GuardConfig(model="llava-1.5", device="cpu").to_file(env.cwd / "guard.json")
    return ns


def _setup_serve(env: Env) -> dict[str, Any]:
    """The service of docs/serve.md, in process: ``openai.OpenAI`` clients talk to it through
    Starlette's TestClient transport (no socket), whatever ``base_url`` they are given."""
    import openai
    from fastapi.testclient import TestClient

    from safeclip_guardrail import SafeCLIPGuard
    from safeclip_guardrail.serve import create_app

    ns = _files(env)
    guard = SafeCLIPGuard.from_pretrained(str(env.tiny_clip), device="cpu")
    client = TestClient(create_app(guard, api_keys=["key-for-app-1"]))
    client.__enter__()
    env.finalizers.append(lambda: client.__exit__(None, None, None))
    real = openai.OpenAI

    class InProcess(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            kw.setdefault("http_client", client)
            kw.setdefault("max_retries", 0)
            super().__init__(*args, **kw)

    env.monkeypatch.setattr(openai, "OpenAI", InProcess)
    return ns


SETUPS: dict[str, Callable[[Env], dict[str, Any]]] = {
    "tiny": _setup_tiny,
    "langchain": _setup_langchain,
    "llava": _setup_llava,
    "llamaindex": _setup_llamaindex,
    "nemo": _setup_nemo,
    "evaluation": _setup_evaluation,
    "serve": _setup_serve,
}
"""Hidden setups a block may name (``<!-- docs-test: setup=NAME -->``)."""

STAND_IN_MODELS = ("openai/clip-vit-large-patch14-336", "llava-hf/llava-1.5-7b-hf",
                   "llava-hf/llava-1.5-13b-hf")
"""Model ids the docs use (``"llava-1.5"`` is an alias of the CLIP id); in this test they
load tiny real models built offline."""


@pytest.fixture(scope="module")
def tiny_llava(tiny_clip_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """A tiny LLaVA whose tower is the tiny CLIP, built on first use."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            from safeclip_guardrail.testing import build_tiny_llava

            made.append(build_tiny_llava(tmp_path_factory.mktemp("docs_llava"),
                                         clip_dir=tiny_clip_dir))
        return made[0]

    return get


def _install_stand_ins(monkeypatch: pytest.MonkeyPatch, tiny_clip: Path,
                       llava: Callable[[], Path]) -> None:
    from safeclip_guardrail.encoders.hf import TransformersCLIPEncoder
    from safeclip_guardrail.langchain.chat_models import llava as llava_module

    clip_ids = {m for m in STAND_IN_MODELS if "llava-hf" not in m}
    real_clip = TransformersCLIPEncoder.from_pretrained.__func__  # type: ignore[attr-defined]

    def clip_from_pretrained(cls: Any, model_id: str, *args: Any, **kw: Any) -> Any:
        model_id = str(tiny_clip) if str(model_id).lower() in clip_ids else model_id
        return real_clip(cls, model_id, *args, **kw)

    monkeypatch.setattr(TransformersCLIPEncoder, "from_pretrained",
                        classmethod(clip_from_pretrained))
    real_llava = llava_module.load_llava

    def load_llava(model_id: str, *args: Any, **kw: Any) -> Any:
        # A LLaVA hub id becomes the tiny LLaVA's directory, and from here on everything
        # takes the path of a user's local directory: guard="auto" finds the CLIP the
        # checkpoint records (``mm_vision_tower``), not a registry entry for the hub id.
        local = str(llava()) if model_id.startswith("llava-hf/") else model_id
        return real_llava(local, *args, **kw)

    monkeypatch.setattr(llava_module, "load_llava", load_llava)


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Execute a block (or, for a fragment, its imports, after compiling all of it)."""
    code = compile(block.code, block.id, "exec")
    if block.fragment:
        assert block.code.lstrip().startswith("# fragment"), (
            f"{block.id}: a fragment must say so in its first line ('# fragment: ...')")
        tree = ast.parse(block.code)
        imports = ast.Module([n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)],
                             type_ignores=[])
        code = compile(imports, block.id, "exec")
    exec(code, namespace)


BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         tiny_clip_dir: Path, tiny_llava: Callable[[], Path]) -> None:
    monkeypatch.chdir(tmp_path)
    _install_stand_ins(monkeypatch, tiny_clip_dir, tiny_llava)
    if block.setup is not None and block.setup not in SETUPS:
        pytest.fail(f"{block.id}: unknown setup {block.setup!r}; known: {sorted(SETUPS)}")
    env = Env(cwd=tmp_path, tiny_clip=tiny_clip_dir, llava_dir=tiny_llava,
              monkeypatch=monkeypatch)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        namespace.update(SETUPS[block.setup](env) if block.setup else {})
        run_block(block, namespace)
    finally:
        for finalize in reversed(env.finalizers):
            finalize()


# ------------------------------------------------------------------ the runner itself
def test_runner_finds_every_page_and_block(tmp_path: Path) -> None:
    (tmp_path / "docs" / "new").mkdir(parents=True)
    (tmp_path / "README.md").write_text("```python\nx = 1\n```\n")
    (tmp_path / "docs" / "serve.md").write_text(
        "text\n\n<!-- docs-test: setup=tiny -->\n```python\ny = 2\n```\n\n```bash\nls\n```\n")
    (tmp_path / "docs" / "new" / "scale.md").write_text(
        "<!-- docs-test: fragment -->\n```python\n# fragment: a node body\nimport os\n"
        "return os.sep\n```\n")
    files = doc_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "README.md", "docs/new/scale.md", "docs/serve.md"]
    blocks = [b for f in files for b in parse_blocks(f.read_text(), f.name)]
    assert [(b.setup, b.fragment, b.line) for b in blocks] == [
        (None, False, 2), (None, True, 3), ("tiny", False, 5)]
    assert {b.file for b in BLOCKS} >= {"README.md", "docs/langchain.md"}


def test_runner_fails_broken_and_hidden_blocks() -> None:
    with pytest.raises(NameError):
        run_block(Block("x.md", 1, "guard.check('a.png')\n", None, False), {})
    with pytest.raises(SyntaxError):  # a `return` outside a function, even in a fragment
        run_block(Block("x.md", 1, "# fragment: x\nreturn 1\n", None, True), {})
    with pytest.raises(ModuleNotFoundError):  # a fragment's imports must exist
        run_block(Block("x.md", 1, "# fragment: x\nimport no_such_module_xyz\n", None, True), {})
    with pytest.raises(AssertionError, match="fences"):  # an indented fence is not skipped
        parse_blocks("text\n  ```python\n  x = 1\n  ```\n", "x.md")
    with pytest.raises(AssertionError, match="directive"):
        parse_blocks("<!-- docs-test: skip -->\n```python\nx = 1\n```\n", "x.md")
