"""SafeCLIPDocumentGuard's trust boundary: who may name a path, what is passed on, on_error.

Metadata keys in ``path_keys`` are set by the application's ingestion pipeline (trusted
paths); every other key and ``page_content`` are untrusted content and never opened as a
path. A recording model downstream decodes every image it receives and finds none flagged.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableLambda
from PIL import Image

from safeclip_guardrail import (
    ConceptBank,
    ConfigurationError,
    GuardConfig,
    GuardrailViolation,
    ImageInputError,
    SafeCLIPDocumentGuard,
    SafeCLIPGuard,
)
from safeclip_guardrail.images.decode import decode_image
from safeclip_guardrail.langchain import guard_messages
from safeclip_guardrail.policy import UNREADABLE_PLACEHOLDER
from safeclip_guardrail.testing import FakeFetcher, PlantedEncoder
from safeclip_guardrail.testing.pictures import b64, data_url, encode
from tests._pathwatch import PathWatch

PLANTED = PlantedEncoder(ConceptBank.default())
FLAG = PLANTED.plant("gun")
OK = PLANTED.plant("neutral")


def _guard(**options: Any) -> SafeCLIPGuard:
    return SafeCLIPGuard(PLANTED, config=GuardConfig(**options))


def _file(tmp_path: Path, img: Image.Image, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(encode(img))
    return p


PLACEMENTS: dict[str, Any] = {
    "image_path_file": lambda im, tmp: Document("x", metadata={"image_path": str(_file(tmp, im, "a.png"))}),
    "image_path_pathlike": lambda im, tmp: Document("x", metadata={"image_path": _file(tmp, im, "b.png")}),
    "image_base64": lambda im, tmp: Document("x", metadata={"image_base64": b64(encode(im))}),
    "image_url_data_url": lambda im, tmp: Document("x", metadata={"image_url": data_url(encode(im))}),
    "image_bytes": lambda im, tmp: Document("x", metadata={"image": encode(im)}),
    "image_pil": lambda im, tmp: Document("x", metadata={"image": im}),
    "page_content_data_url": lambda im, tmp: Document(data_url(encode(im))),
    "page_content_octet_stream": lambda im, tmp: Document(data_url(encode(im), "application/octet-stream")),
}


@pytest.mark.parametrize("action", ["drop", "redact", "annotate"])
@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_every_placement_is_judged(name: str, action: str, tmp_path: Path) -> None:
    guard = SafeCLIPDocumentGuard(guard=_guard(), action=action)  # type: ignore[arg-type]
    doc = PLACEMENTS[name](FLAG, tmp_path)
    out = guard.invoke([doc, Document("plain text")])
    if action == "drop":
        assert [d.page_content for d in out] == ["plain text"]
        return
    assert len(out) == 2 and out[0].metadata["safeclip"]["categories"] == ["gun"]
    left = [v for k, v in out[0].metadata.items() if k.startswith("image") and k != "image_redacted"]
    if action == "redact":
        assert left == [] and "data:" not in out[0].page_content
        assert "gun" in out[0].metadata["image_redacted"]
    else:
        assert left or out[0].page_content.startswith("data:")  # annotate keeps the image
    benign = PLACEMENTS[name](OK, tmp_path)
    (passed,) = guard.invoke([benign])
    if name == "page_content_octet_stream":  # the judged bytes, under their sniffed type
        assert passed.page_content == data_url(encode(OK))
    else:
        assert passed == benign  # untouched: same bytes, same form


@pytest.mark.parametrize("key", ["image_url", "image", "image_base64"])
@pytest.mark.parametrize("form", ["plain", "file_url", "home", "relative"])
def test_a_path_under_an_untrusted_key_is_never_opened(key: str, form: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _file(tmp_path, OK, "ingested_secret.png")
    value = {"plain": str(secret), "file_url": f"file://{secret}",
             "home": f"~/{secret.name}", "relative": f"./{secret.name}"}[form]
    monkeypatch.chdir(tmp_path)
    doc = Document("x", metadata={key: value})
    guard = SafeCLIPDocumentGuard(guard=_guard(), action="annotate")
    PathWatch.arm(secret.name, monkeypatch)
    try:
        assert guard.invoke([doc]) == []  # unreadable: fails closed, even under annotate
        assert guard.images_of(doc)[0].error is not None
        lenient = SafeCLIPDocumentGuard(guard=_guard(), on_error="allow").invoke([doc])
        assert key not in lenient[0].metadata  # allowed on, without the unjudged value
    finally:
        hits = PathWatch.disarm()
    assert hits == []
    trusted = SafeCLIPDocumentGuard(guard=_guard(), path_keys=(key,)).invoke(
        [Document("x", metadata={key: str(secret)})])
    assert len(trusted) == 1  # the same file, named under a trusted key, is read


@pytest.mark.parametrize("bad", ["missing", "directory", "too_long", "nul", "not_image"])
def test_a_bad_path_is_an_error_row_not_an_exception(bad: str, tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    value = {"missing": str(tmp_path / "nope.png"), "directory": str(tmp_path),
             "too_long": "/" + "a" * 5000 + ".png", "nul": "bad\x00name.png",
             "not_image": str(tmp_path / "text.png")}[bad]
    good = Document("good", metadata={"image_base64": b64(encode(OK))})
    flagged = Document("flagged", metadata={"image_base64": b64(encode(FLAG))})
    broken = Document("broken", metadata={"image_path": value})
    guard = SafeCLIPDocumentGuard(guard=_guard(), action="annotate")
    assert [d.page_content for d in guard.invoke([good, broken, flagged])] == ["good", "flagged"]
    strict = SafeCLIPDocumentGuard(guard=_guard(), on_error="raise")
    with pytest.raises(ImageInputError):
        strict.invoke([broken])
    out = strict.batch([[good], [broken], [flagged, good]], return_exceptions=True)
    assert out[0] == [good] and isinstance(out[1], ImageInputError) and out[2] == [good]
    aout = asyncio.run(strict.abatch([[broken], [good]], return_exceptions=True))
    assert isinstance(aout[0], ImageInputError) and aout[1] == [good]


def test_a_non_document_fails_its_own_input_only() -> None:
    guard = SafeCLIPDocumentGuard(guard=_guard())
    good = Document("good", metadata={"image_base64": b64(encode(OK))})
    out = guard.batch([["not a document"], [good]], return_exceptions=True)  # type: ignore[list-item]
    assert isinstance(out[0], ConfigurationError) and out[1] == [good]


_MODE = {"drop": "block", "redact": "redact", "annotate": "annotate"}


@pytest.mark.parametrize("on_error", ["block", "raise", "allow"])
@pytest.mark.parametrize("action", ["drop", "redact", "annotate"])
def test_unreadable_same_action_as_the_runnable(action: str, on_error: str) -> None:
    bad = base64.b64encode(b"certainly not an image").decode()
    doc = Document("caption", metadata={"image_base64": bad})
    guard = _guard(mode=_MODE[action], on_error=on_error)
    doc_guard = SafeCLIPDocumentGuard(guard=_guard(), action=action,  # type: ignore[arg-type]
                                      on_error=on_error)  # type: ignore[arg-type]
    msgs = [HumanMessage([{"type": "image", "base64": bad, "mime_type": "image/png"}])]
    if on_error == "raise":
        with pytest.raises(ImageInputError):
            guard_messages(guard, msgs)
        with pytest.raises(ImageInputError):
            doc_guard.invoke([doc])
        return
    runnable = guard_messages(guard, msgs).result.action
    out = doc_guard.invoke([doc])
    if runnable == "block":
        assert out == []
    else:
        (kept,) = out
        assert "image_base64" not in kept.metadata  # never passed on unjudged
        assert kept.metadata["image_redacted"] == UNREADABLE_PLACEHOLDER
        assert kept.metadata["safeclip"]["action"] == runnable


def test_class_policy_applies_as_on_every_surface() -> None:
    guard = _guard(policy={"gun": "annotate", "porn": "raise"})
    doc_guard = SafeCLIPDocumentGuard(guard=guard, action="drop")
    gun = Document("g", metadata={"image_base64": b64(encode(FLAG))})
    (kept,) = doc_guard.invoke([gun])
    assert kept.metadata["safeclip"]["action"] == "annotate"
    porn = Document("p", metadata={"image_base64": base64.b64encode(
        PLANTED.plant_bytes("porn")).decode()})
    with pytest.raises(GuardrailViolation):
        doc_guard.invoke([porn])
    assert len(doc_guard.batch([[porn], [gun]], return_exceptions=True)[1]) == 1


def test_passed_on_images_are_the_judged_pixels() -> None:
    """An RGBA image under an untrusted key is passed on as a PNG of the judged pixels."""
    rgba = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    rgba.paste(OK.convert("RGBA").crop((0, 0, 12, 24)), (0, 0))
    guard = _guard()
    decoded = guard.decode(encode(rgba))
    judged = decoded.image  # alpha over white: what is passed on
    for reading in decoded.frames:  # the alpha-dropped reading is judged too
        PLANTED.register(reading, PLANTED.embedding_for("neutral"))
    doc = Document("x", metadata={"image_base64": base64.b64encode(encode(rgba)).decode(),
                                  "image_url": data_url(encode(OK))})
    (out,) = SafeCLIPDocumentGuard(guard=guard).invoke([doc])
    sent = Image.open(io.BytesIO(base64.b64decode(out.metadata["image_base64"])))
    assert sent.mode == "RGB" and sent.tobytes() == judged.tobytes()
    assert out.metadata["image_url"] == doc.metadata["image_url"]  # faithful: unchanged


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, **kwargs: Any) -> None:
        self.calls.extend(messages)


def _to_prompt(documents: list[Document]) -> list[BaseMessage]:
    """An application's prompt builder: reads its own paths, forwards the rest as is."""
    blocks: list[Any] = []
    for d in documents:
        for key, value in d.metadata.items():
            if key == "image_path":
                blocks.append({"type": "image", "base64": base64.b64encode(
                    Path(value).read_bytes()).decode(), "mime_type": "image/png"})
            elif key in ("image_base64", "image_url", "image"):
                data = value if isinstance(value, bytes) else encode(value) \
                    if isinstance(value, Image.Image) else value
                url = data if isinstance(data, str) and data.startswith("data:") else \
                    _url_of(data)
                blocks.append({"type": "image_url", "image_url": {"url": url}})
        if d.page_content.startswith("data:"):
            blocks.append({"type": "image_url", "image_url": {"url": d.page_content}})
        blocks.append({"type": "text", "text": d.page_content[:20]})
    return [HumanMessage(blocks)]


def _url_of(data: str | bytes) -> str:
    raw = data if isinstance(data, bytes) else base64.b64decode(data)
    return "data:image/png;base64," + base64.b64encode(raw).decode()


@pytest.mark.parametrize("action", ["drop", "redact"])
def test_the_model_downstream_never_receives_a_flagged_image(action: str, tmp_path: Path) -> None:
    docs = [PLACEMENTS[name](img, tmp_path / f"{name}-{i}") for i, img in enumerate((FLAG, OK))
            for name in sorted(PLACEMENTS)
            if not (tmp_path / f"{name}-{i}").mkdir()]
    rec = _Recorder()
    chain = (SafeCLIPDocumentGuard(guard=_guard(), action=action)  # type: ignore[arg-type]
             | RunnableLambda(_to_prompt) | FakeListChatModel(responses=["ok"], callbacks=[rec]))
    chain.invoke(docs)
    (call,) = rec.calls
    urls = [b["image_url"]["url"] for m in call for b in m.content  # type: ignore[union-attr]
            if isinstance(b, dict) and b.get("type") == "image_url"]
    urls += [b["base64"] for m in call for b in m.content  # type: ignore[union-attr]
             if isinstance(b, dict) and b.get("type") == "image"]
    assert len(urls) == len(PLACEMENTS)  # every benign image arrives
    judge = _guard()
    for u in urls:
        verdict = judge.check(decode_image(u).image)
        assert not verdict.flagged and verdict.error is None


def test_the_path_watch_itself_sees_a_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch used above can fail: reading or probing the file is recorded."""
    secret = _file(tmp_path, OK, "watched.png")
    PathWatch.arm(secret.name, monkeypatch)
    try:
        assert secret.exists()
        secret.read_bytes()
    finally:
        hits = PathWatch.disarm()
    assert any(h.startswith("os.stat") for h in hits) and any(h.startswith("open") for h in hits)


def test_an_allowed_url_is_passed_on_as_the_fetched_bytes() -> None:
    url = "http://images.example.com/a.png"
    fetcher = FakeFetcher({url: encode(OK)})
    guard = SafeCLIPGuard(PLANTED, fetcher=fetcher, config=GuardConfig(
        images={"allow_urls": True, "allowed_hosts": ["images.example.com"]}))
    doc = Document("x", metadata={"image_url": url})
    (out,) = SafeCLIPDocumentGuard(guard=guard).invoke([doc])
    assert fetcher.calls == [url]  # fetched once, judged and forwarded from those bytes
    assert out.metadata["image_url"] == data_url(encode(OK))  # inline: the provider never fetches again
    fetcher.calls.clear()
    fetcher.images[url] = encode(FLAG)  # the host now serves another picture at the same URL
    assert SafeCLIPDocumentGuard(guard=guard).invoke([doc]) == [] and fetcher.calls == [url]


@pytest.mark.parametrize("images", [{}, {"allow_urls": True, "allowed_hosts": ["cdn.example.org"]}],
                         ids=["urls_off", "host_not_allowed"])
def test_a_forbidden_url_never_reaches_the_fetcher(images: dict[str, Any]) -> None:
    url = "http://images.example.com/a.png"
    fetcher = FakeFetcher({url: encode(OK)})
    guard = SafeCLIPGuard(PLANTED, fetcher=fetcher, config=GuardConfig(images=images))
    docs = [Document("x", metadata={"image_url": url}), Document(url)]
    out = SafeCLIPDocumentGuard(guard=guard).invoke(docs)
    assert fetcher.calls == []
    assert all(d.metadata.get("image_url") != url for d in out)
