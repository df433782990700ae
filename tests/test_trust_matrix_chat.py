"""ChatLlava and the RAG document guard as rows of the trust matrix (tests/test_trust_matrix.py).

The matrix's placements, referee and checks are reused as they are, through its pluggable
surface interface; this module only adds the two surfaces of branch ``chat``:

- ``chat_llava``: ChatLlava with the planted guard. LLaVA is the model, so the referee reads
  what LLaVA's processor receives (the PIL images it turns into ``pixel_values``, and the
  prompt text) and whether ``generate`` ran.
- ``rag``: retriever | SafeCLIPDocumentGuard | the application's prompt builder | recording
  model, over documents that carry the image in each metadata key and as page content.

Skipped until the matrix (branch ``matrix``) is on the branch under test.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

matrix = pytest.importorskip("tests.test_trust_matrix",
                             reason="the trust matrix (tests/test_trust_matrix.py) is not here")

from tests._trust import (  # noqa: E402
    Conversation,
    Images,
    Outcome,
    Received,
    RecordingChatModel,
    Runner,
    Surface,
    assert_only_judged,
    frames_of,
    make_images,
    pixel_key,
    scan,
)

STYLES = ("invoke", "ainvoke", "batch", "abatch", "stream", "astream")

# ---------------------------------------------------------------------- ChatLlava
_TINY_LLAVA: dict[str, str] = {}


def _tiny_llava_dir() -> str:
    """One tiny real LLaVA per test process (built offline, a few seconds)."""
    if "dir" not in _TINY_LLAVA:
        from safeclip_guardrail.testing import build_tiny_llava

        _TINY_LLAVA["dir"] = str(build_tiny_llava(Path(tempfile.mkdtemp()) / "tiny_llava"))
    return _TINY_LLAVA["dir"]


def _raised_in_langchain_core(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "langchain_core" in tb.tb_frame.f_code.co_filename


def _chat_llava(imgs: Images) -> Runner:
    from safeclip_guardrail.chat_models import ChatLlava

    llm = ChatLlava.from_pretrained(_tiny_llava_dir(), device="cpu", dtype="float32",
                                    max_new_tokens=2, guard=imgs.guard.with_options(mode="block"))

    def run(conv: Conversation, style: str) -> Outcome:
        received, generated = Received(), []
        processor_cls = type(llm.processor)
        real_call, real_generate = processor_cls.__call__, llm.hf_model.generate

        def record(self: Any, *args: Any, **kwargs: Any) -> Any:
            for im in kwargs.get("images") or []:
                received.frames.append(pixel_key(im))
            scan(kwargs.get("text"), received)
            return real_call(self, *args, **kwargs)

        def generate(**kwargs: Any) -> Any:
            generated.append(True)
            return real_generate(**kwargs)

        processor_cls.__call__ = record
        object.__setattr__(llm.hf_model, "generate", generate)
        try:
            out = matrix._call(llm, matrix._lc(conv), style)
        except (ValueError, TypeError) as exc:
            out = exc
        finally:
            processor_cls.__call__ = real_call
            del llm.hf_model.generate
        if isinstance(out, Exception):
            # langchain-core's own BaseChatModel refuses some malformed blocks (base64
            # without a MIME type, a list as block type) before any chat model runs: the
            # request fails and nothing is sent
            if not generated and _raised_in_langchain_core(out):
                return Outcome(True, received, False)
            raise out
        chunks = out if isinstance(out, list) else [out]
        refused = any(c.response_metadata.get("finish_reason") == "guardrail" for c in chunks)
        assert refused == (not generated), (refused, generated)
        return Outcome(not generated, received, bool(generated))
    return run


def _chat_llava_supports(conv: Conversation) -> bool:
    # langchain-core's BaseChatModel normalises v0 ``source_type`` blocks to v1 before any
    # chat model's _generate runs, keeping one source (the url of a two-source v0 block is
    # dropped): ChatLlava judges and sends that one image, and never sees the conflict.
    return not any(isinstance(b, dict) and b.get("source_type") and "url" in b
                   for m in matrix._lc(conv) if isinstance(m.content, list) for b in m.content)


CHAT_LLAVA = Surface("chat_llava", STYLES, _chat_llava, supports=_chat_llava_supports)


@pytest.mark.parametrize("style", STYLES)
def test_chat_llava_every_placement_blocks_or_forwards_only_judged_bytes(
        style: str, tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    failures = matrix._check(CHAT_LLAVA, CHAT_LLAVA.build(imgs), imgs, style)
    assert not failures, "\n".join(failures)


def test_chat_llava_no_path_inside_a_message_is_ever_opened(tmp_path: Path) -> None:
    matrix.test_no_path_inside_a_message_is_ever_opened(CHAT_LLAVA, tmp_path)


@pytest.mark.parametrize("on_error", ["block", "raise", "allow"])
def test_chat_llava_unreadable_same_action_as_wrap(on_error: str, tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    imgs.guard = imgs.guard.with_options(on_error=on_error)
    seen: dict[str, str] = {}
    for surface in (CHAT_LLAVA, next(s for s in matrix.SURFACES if s.name == "wrap")):
        try:
            outcome = surface.build(imgs)(matrix._unreadable_conv(), "invoke")
        except Exception as exc:
            from safeclip_guardrail import SafeCLIPError

            assert isinstance(exc, SafeCLIPError), repr(exc)
            seen[surface.name] = "raise"
            continue
        assert outcome.received.frames == []  # never sent, whatever on_error says
        seen[surface.name] = "block" if outcome.blocked else "allow"
    assert set(seen.values()) == {on_error}, seen


# ---------------------------------------------------------------------- RAG documents
@dataclass(frozen=True)
class DocPlacement:
    """Where a retrieved Document carries its image (metadata keys, page_content)."""

    name: str
    build: Callable[[Images, bytes], Any]
    flagged: str = "block"
    benign: str = "forward"


def _doc_placements() -> list[DocPlacement]:
    from langchain_core.documents import Document

    b64, durl = matrix.b64, matrix.durl

    def trusted(i: Images, x: bytes) -> str:
        return i.path_of(x, f"doc_{pixel_key(frames_of(x)[0])[:8]}.png")  # type: ignore[index]

    return [
        # image_path: set by the application's ingestion pipeline (a trusted path key)
        DocPlacement("image_path_trusted", lambda i, x: Document(
            "a photo", metadata={"image_path": trusted(i, x)})),
        DocPlacement("image_base64", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(x)})),
        DocPlacement("image_url_data_url", lambda i, x: Document(
            "a photo", metadata={"image_url": durl(x)})),
        DocPlacement("image_bytes", lambda i, x: Document("a photo", metadata={"image": x})),
        DocPlacement("page_content_data_url", lambda i, x: Document(durl(x))),
        DocPlacement("page_content_octet_stream", lambda i, x: Document(
            durl(x, "application/octet-stream"))),
        # untrusted keys never name paths; remote URLs are not fetched by default
        DocPlacement("image_url_local_path", lambda i, x: Document(
            "a photo", metadata={"image_url": i.path_of(x, "doc_url.png")}), benign="block"),
        DocPlacement("image_file_uri", lambda i, x: Document(
            "a photo", metadata={"image": Path(i.path_of(x, "doc_uri.png")).as_uri()}),
            benign="block"),
        DocPlacement("image_url_remote", lambda i, x: Document(
            "a photo", metadata={"image_url": "https://images.example.com/x.png"}),
            benign="block"),
        DocPlacement("two_images_one_flagged", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(x), "image_url": durl(i.flagged)}),
            benign="block"),
        DocPlacement("nonfinite", lambda i, x: Document(
            "a photo", metadata={"image_base64": b64(i.nonfinite)}), benign="block"),
    ]


def _rag_prompt(documents: list[Any]) -> list[BaseMessage]:
    """An application's prompt builder: reads its own (trusted) paths, forwards the rest."""
    blocks: list[Any] = [{"type": "text", "text": "what is in the pictures?"}]
    for d in documents:
        meta = d.metadata
        if "image_path" in meta:
            blocks.append({"type": "image", "base64": matrix.b64(
                Path(meta["image_path"]).read_bytes()), "mime_type": "image/png"})
        for key in ("image_base64", "image_url", "image"):
            value = meta.get(key)
            if isinstance(value, bytes):
                value = matrix.b64(value)
            if isinstance(value, str):
                url = value if value.startswith(("data:", "http", "/", "file:")) \
                    else f"data:image/png;base64,{value}"
                blocks.append({"type": "image_url", "image_url": {"url": url}})
        if d.page_content.startswith("data:"):
            blocks.append({"type": "image_url", "image_url": {"url": d.page_content}})
        else:
            blocks.append({"type": "text", "text": d.page_content})
    return [HumanMessage(content=blocks)]


def _rag_run(imgs: Images, doc: Any, style: str) -> Outcome:
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.runnables import RunnableLambda
    from langchain_core.vectorstores import InMemoryVectorStore

    from safeclip_guardrail import SafeCLIPDocumentGuard

    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_documents([doc, Document("a note")], ids=["doc", "note"])
    passed: list[bool] = []

    def build(documents: list[Any]) -> list[BaseMessage]:
        passed.append(any(d.id == "doc" for d in documents))
        return _rag_prompt(documents)

    model = RecordingChatModel()
    chain = (store.as_retriever(search_kwargs={"k": 2}) | SafeCLIPDocumentGuard(guard=imgs.guard)
             | RunnableLambda(build) | model)
    out = matrix._call(chain, "what is in the pictures?", style)
    assert not isinstance(out, Exception), repr(out)
    return Outcome(not passed[0], model.received(), bool(model.requests))


@pytest.mark.parametrize("style", STYLES)
def test_rag_documents_block_or_forward_only_judged_bytes(style: str, tmp_path: Path) -> None:
    imgs = make_images(tmp_path)
    failures = []
    for placement in _doc_placements():
        for variant, image in (("flagged", imgs.flagged), ("benign", imgs.benign)):
            where = f"rag/{style}/{placement.name}/{variant}"
            expect = placement.flagged if variant == "flagged" else placement.benign
            try:
                outcome = _rag_run(imgs, placement.build(imgs, image), style)
                assert_only_judged(outcome.received, imgs, where)
                if expect == "block":
                    assert outcome.blocked, f"{where}: document kept"
                elif expect == "forward":
                    assert not outcome.blocked, f"{where}: document dropped"
                    want = pixel_key(frames_of(image)[0])  # type: ignore[index]
                    assert want in outcome.received.frames, f"{where}: image did not arrive"
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0][:300])
            except Exception as exc:
                failures.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------- fuzzing ChatLlava
try:
    import importlib

    fuzz: Any = importlib.import_module("tests.test_trust_fuzz")
except ImportError:  # the fuzzer lands with the matrix
    fuzz = None

if fuzz is not None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _FUZZ_LLM: dict[str, Any] = {}

    def _fuzz_llm() -> Any:
        from safeclip_guardrail.chat_models import ChatLlava

        if "llm" not in _FUZZ_LLM:
            _FUZZ_LLM["llm"] = ChatLlava.from_pretrained(
                _tiny_llava_dir(), device="cpu", dtype="float32", max_new_tokens=1)
        return _FUZZ_LLM["llm"]

    @settings(max_examples=max(50, fuzz.EXAMPLES // 2), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(conv=fuzz.conversation, mode=st.sampled_from(["block", "redact"]),
           on_error=st.sampled_from(["block", "allow"]))
    def test_chat_llava_fuzzed_conversations_send_only_judged_images(
            conv: list[tuple[str, Any, dict[str, Any]]], mode: str, on_error: str) -> None:
        """The fuzzer's conversations through ChatLlava: what LLaVA's processor receives is
        judged and never flagged; nothing raises but a SafeCLIPError (ConfigurationError for
        blocks LLaVA cannot show) or langchain-core's own refusal of a malformed block."""
        from safeclip_guardrail import SafeCLIPError
        from safeclip_guardrail.chat_models import ChatLlava

        imgs = fuzz._ctx()
        base = _fuzz_llm()
        llm = ChatLlava.from_pretrained(base.model, device="cpu", dtype="float32",
                                        max_new_tokens=1,
                                        guard=imgs.guard.with_options(mode=mode, on_error=on_error))
        received = Received()
        processor_cls = type(llm.processor)
        real_call = processor_cls.__call__

        def record(self: Any, *args: Any, **kwargs: Any) -> Any:
            for im in kwargs.get("images") or []:
                received.frames.append(pixel_key(im))
            return real_call(self, *args, **kwargs)

        processor_cls.__call__ = record
        try:
            llm.invoke([fuzz._lc_message(r, c, x) for r, c, x in conv])
        except SafeCLIPError:
            pass
        except (ValueError, TypeError) as exc:
            if not _raised_in_langchain_core(exc):
                raise
        finally:
            processor_cls.__call__ = real_call
        assert_only_judged(received, imgs, "fuzz (chat_llava)")
