"""The trust contract as a test suite a surface subclasses: what is judged is what is sent.

Like langchain-tests' standard tests, a surface's own test module subclasses
:class:`TrustContract` in a ``Test...`` class and says only how one conversation goes
through it (``run``) and in which call styles (``styles``); every test below is inherited::

    class TestMySurface(TrustContract):
        styles = ("invoke", "ainvoke")

        def start(self) -> None:          # once per test, after self.images exists
            self.guarded = my_framework.guard(self.images.guard)

        def run(self, conversation, style) -> Outcome:
            model = RecordingModel()      # decodes every picture it receives (``scan``)
            ...                           # send the conversation through the surface
            return Outcome(blocked=..., received=model.received, called=bool(model.calls))

``run`` answers with ``mode="block"`` semantics: refused (a refusal answer, a
``GuardrailViolation``, a rail's refusal, a dropped item) or passed on. The referee
(:func:`assert_only_judged`) then checks what the model received. Served surfaces put
``pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]`` on
their class. :class:`RetrievalTrustContract` is the same for retrieved items (documents,
nodes) whose placements the framework defines.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from safeclip_guardrail.errors import SafeCLIPError
from safeclip_guardrail.testing.documents import TEXT_FILE
from safeclip_guardrail.testing.pictures import b64
from safeclip_guardrail.testing.trust._audit import watch_paths
from safeclip_guardrail.testing.trust._images import TrustImages, frames_of, make_images, pixel_key
from safeclip_guardrail.testing.trust._messages import (
    Conversation,
    Message,
    ask,
    human,
    image_url_block,
)
from safeclip_guardrail.testing.trust._placements import PLACEMENTS
from safeclip_guardrail.testing.trust._received import Received, assert_only_judged, scan

__all__ = ["ItemPlacement", "Outcome", "RetrievalTrustContract", "TrustContract"]

FUZZ_EXAMPLES_ENV = "SAFECLIP_CONTRACT_FUZZ_EXAMPLES"


@dataclass
class Outcome:
    """What a surface did with one conversation (or one retrieved item)."""

    blocked: bool
    """The request was refused (refusal answer, GuardrailViolation, rail refusal, dropped)."""
    received: Received
    """Everything the recording model received."""
    called: bool
    """Whether the model was called at all."""


class _Suite:
    """What both contracts share: styles, a fresh world per test, pytest parametrisation."""

    name: ClassVar[str] = ""
    """The surface's name in failure messages (default: the class name)."""
    styles: ClassVar[tuple[str, ...]] = ("invoke",)
    """The call styles of the surface (``invoke``, ``ainvoke``, ``stream``...)."""
    images: TrustImages
    """This test's planted images and guard (set before :meth:`start`)."""

    @property
    def surface_name(self) -> str:
        return self.name or type(self).__name__

    def start(self) -> None:
        """Build what the surface needs once per test (a model, rails, a server) from
        ``self.images.guard``. Default: nothing."""

    def stop(self) -> None:
        """Release what :meth:`start` built. Default: nothing."""

    @contextmanager
    def opened(self, *, on_error: str | None = None) -> Iterator[TrustImages]:
        """Fresh planted images in a temporary folder, the surface started, then stopped."""
        tmp = Path(tempfile.mkdtemp(prefix="safeclip_trust_"))
        try:
            self.images = make_images(tmp)
            if on_error is not None:
                self.images.guard = self.images.guard.with_options(on_error=on_error)
            self.start()
            try:
                yield self.images
            finally:
                self.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """pytest calls this on test classes: each test taking ``style`` runs per style."""
        if "style" in metafunc.fixturenames:
            metafunc.parametrize("style", self.styles)
        if "on_error" in metafunc.fixturenames:
            metafunc.parametrize("on_error", ["block", "raise", "allow"])


def _assert_expected(outcome: Outcome, expect: str, where: str, *, image: bytes,
                         sent: Any, forwards_images: bool, forwards_documents: bool) -> None:
    """Assert what ``expect`` promises of ``outcome`` (see :class:`Placement`)."""
    if expect == "block":
        assert outcome.blocked and not outcome.called, f"{where}: not blocked"
    elif expect == "text":
        assert not outcome.blocked, f"{where}: blocked, expected to go through"
    elif expect == "forward_document":
        assert not outcome.blocked, f"{where}: blocked, expected to go through"
        documents = Received()
        scan(sent, documents)
        if forwards_images and forwards_documents:
            assert set(documents.documents) <= set(outcome.received.documents), \
                f"{where}: the judged PDF did not arrive"
    elif expect in ("forward", "pass"):
        assert not outcome.blocked, f"{where}: blocked, expected to go through"
        if forwards_images:
            assert outcome.received.frames, f"{where}: no image arrived"
        if forwards_images and expect == "forward":
            want = {pixel_key(f) for f in frames_of(image) or []}
            assert want <= set(outcome.received.frames), \
                f"{where}: the judged benign image did not arrive"


def _failure(where: str, exc: Exception) -> str:
    """One line: an assertion's own message (it names the case), else the error's type."""
    if isinstance(exc, AssertionError):
        return (str(exc).splitlines() or [where])[0][:300]
    return f"{where}: {type(exc).__name__}: {str(exc)[:200]}"


class TrustContract(_Suite):
    """Every placement, in every call style, blocks or forwards only judged bytes."""

    forwards_images: ClassVar[bool] = True
    """False for surfaces whose model never receives images (NeMo's prompt is text)."""
    forwards_documents: ClassVar[bool] = True
    """False for surfaces whose model takes pixels only (LLaVA is shown a judged PDF's
    rendered page, never the file)."""
    answers_a_raising_guard: ClassVar[bool] = False
    """True where the framework answers a failing guard itself instead of raising (NeMo's
    failed-action answer): ``on_error="raise"`` shows as a refusal, the model not called."""
    known_holes: ClassVar[Mapping[str, str]] = {}
    """Placement name -> why: holes another change fixes. Strict: each must still fail, and
    the test fails once it holds, until its entry is removed."""
    fuzz_examples: ClassVar[int] = 20
    """Generated conversations per run (``SAFECLIP_CONTRACT_FUZZ_EXAMPLES`` overrides)."""

    def supports(self, conversation: Conversation) -> bool:
        """False for conversations the framework itself cannot represent (say why)."""
        return True

    def run(self, conversation: Conversation, style: str) -> Outcome:
        """Send ``conversation`` through the surface in ``style``, in front of a recording
        model; report whether it was refused and what the model received."""
        msg = f"{type(self).__name__} must implement run()"
        raise NotImplementedError(msg)

    # ------------------------------------------------------------------ the matrix
    def placement_failures(self, imgs: TrustImages, style: str) -> list[str]:
        """Every placement x (flagged, benign): what failed, as one line each."""
        failures: list[str] = []
        documents = "forward_document" if imgs.judges_documents() else "block"
        for placement in PLACEMENTS:
            for variant, image in zip(("flagged", "benign"), placement.images(imgs), strict=True):
                conv = placement.build(imgs, image)
                if not self.supports(conv):
                    continue
                where = f"{self.surface_name}/{style}/{placement.name}/{variant}"
                expect = placement.flagged if variant == "flagged" else placement.benign
                try:
                    outcome = self.run(conv, style)
                    assert_only_judged(outcome.received, imgs, where)
                    _assert_expected(outcome, documents if expect == "document" else expect,
                                         where, image=image, sent=conv,
                                         forwards_images=self.forwards_images,
                                         forwards_documents=self.forwards_documents)
                except Exception as exc:  # every failure of every placement, then one assert
                    failures.append(_failure(where, exc))
        return self._known(failures, style)

    def _known(self, failures: list[str], style: str) -> list[str]:
        prefix = f"{self.surface_name}/{style}/"
        out = [f for f in failures
               if not any(f.startswith(f"{prefix}{p}/") for p in self.known_holes)]
        out += [f"{prefix}{p}: a known hole now holds; remove it from known_holes"
                for p in self.known_holes
                if not any(f.startswith(f"{prefix}{p}/") for f in failures)]
        return out

    def test_every_placement_blocks_or_forwards_only_judged_bytes(self, style: str) -> None:
        with self.opened() as imgs:
            failures = self.placement_failures(imgs, style)
        assert not failures, "\n".join(failures)

    def test_benign_conversations_pass(self, style: str) -> None:
        """No blanket blocking: text, and a benign picture in the common shapes, go through
        and the picture arrives as judged."""
        with self.opened() as imgs:
            a = imgs.benign
            convs: dict[str, tuple[Conversation, bytes | None]] = {
                "text": ([ask()], None),
                "image_url": ([human(image_url_block(a))], a),
                "v1_base64": ([human({"type": "image", "base64": b64(a),
                                      "mime_type": "image/png"})], a),
                "provider_dict": ([{"role": "user", "content": [
                    {"type": "text", "text": "and this?"}, image_url_block(a)]}], a),
                "text_file": ([human({"type": "file", "base64": b64(TEXT_FILE),
                                      "mime_type": "text/plain"})], None),
            }
            ran = 0
            for name, (conv, image) in convs.items():
                if not self.supports(conv):
                    continue
                where = f"{self.surface_name}/{style}/benign {name}"
                outcome = self.run(conv, style)
                ran += 1
                assert not outcome.blocked and outcome.called, f"{where}: refused"
                assert_only_judged(outcome.received, imgs, where)
                if image is not None and self.forwards_images:
                    want = {pixel_key(f) for f in frames_of(image) or []}
                    assert want <= set(outcome.received.frames), f"{where}: the picture did not arrive"
        assert ran, "the surface supports none of the benign conversations"

    def test_no_path_inside_a_message_is_ever_opened(self) -> None:
        """A path or file URI in message content never reaches ``open``/``os.*`` (an audit
        hook watches), and never reaches the model."""
        with self.opened() as imgs:
            secret = imgs.tmp / "secret_dir"
            secret.mkdir()
            paths = {name: secret / f"{name}.png" for name in "abcdef"}
            for p in paths.values():
                p.write_bytes(imgs.flagged)
            missing = str(secret / "missing.png")
            convs: list[Conversation] = [
                [human({"type": "image_url", "image_url": {"url": str(paths["a"])}})],
                [human({"type": "image", "url": str(paths["b"])})],
                [human({"type": "image", "url": paths["c"].as_uri()})],
                [human({"type": "image_url", "image_url": {"url": missing}})],
                [human({"type": "image", "base64": str(paths["d"]), "mime_type": "image/png"})],
                [Message("human", "x", extras={"images": [str(paths["e"])]})],
                [{"role": "user", "content": [{"type": "input_image",
                                               "image_url": str(paths["f"])}]}],
            ]
            outcomes = []
            with watch_paths({str(secret), secret.as_uri()}) as opened:
                for conv in convs:
                    if self.supports(conv):
                        outcomes.append(self.run(conv, self.styles[0]))
        assert not opened, opened[:3]
        assert outcomes, "the surface supports none of the conversations"
        for o in outcomes:  # refused, or (a framework drops extra fields) no path got through
            assert o.blocked or not any(str(secret) in s for s in o.received.strings), o

    def test_an_unreadable_image_follows_on_error(self, on_error: str) -> None:
        """One GuardConfig, one action: block -> refused; raise -> a SafeCLIPError out of the
        surface; allow -> the request goes on WITHOUT the image."""
        conv = [human({"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFu"}})]
        with self.opened(on_error=on_error):
            try:
                outcome = self.run(conv, self.styles[0])
            except SafeCLIPError:
                seen = "raise"
            else:
                assert outcome.received.frames == []  # never forwarded, whatever on_error says
                if self.answers_a_raising_guard and on_error == "raise" and outcome.blocked:
                    seen = "raise"
                else:
                    seen = "block" if outcome.blocked else "allow"
        assert seen == on_error

    def test_nested_conversations_never_forward_an_unjudged_payload(self) -> None:
        """Generated nested conversations (a small profile), in every style: refused, or
        only judged payloads reach the model."""
        from hypothesis import HealthCheck, assume, given, settings
        from hypothesis import strategies as st

        from safeclip_guardrail.testing.trust.fuzz import nested_conversations

        examples = int(os.environ.get(FUZZ_EXAMPLES_ENV, self.fuzz_examples))
        with self.opened() as imgs:
            @settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=False,
                      suppress_health_check=list(HealthCheck))
            @given(conv=nested_conversations(imgs), style=st.sampled_from(self.styles))
            def prop(conv: Conversation, style: str) -> None:
                assume(self.supports(conv))
                outcome = self.run(conv, style)
                if not outcome.blocked:
                    assert_only_judged(outcome.received, imgs, f"{self.surface_name}/{style}/fuzz")

            prop()


@dataclass(frozen=True)
class ItemPlacement:
    """Where a retrieved item (a document, a node) carries its picture."""

    name: str
    build: Callable[[TrustImages, bytes], Any]
    """``(imgs, picture) -> item`` of the framework's own type."""
    flagged: str = "block"
    benign: str = "forward"


class RetrievalTrustContract(_Suite):
    """Retrieved items carrying a picture: dropped, or only judged pictures reach the model."""

    def placements(self) -> Sequence[ItemPlacement]:
        """The framework's item shapes (metadata keys, fields, resources)."""
        msg = f"{type(self).__name__} must implement placements()"
        raise NotImplementedError(msg)

    def run(self, item: Any, style: str) -> Outcome:
        """Retrieve ``item`` (beside a text item) through the guarded pipeline in ``style``;
        ``blocked`` means the item did not reach the model."""
        msg = f"{type(self).__name__} must implement run()"
        raise NotImplementedError(msg)

    def test_every_retrieved_item_blocks_or_forwards_only_judged_bytes(self, style: str) -> None:
        failures: list[str] = []
        with self.opened() as imgs:
            placements = list(self.placements())
            for placement in placements:
                for variant, image in (("flagged", imgs.flagged), ("benign", imgs.benign)):
                    where = f"{self.surface_name}/{style}/{placement.name}/{variant}"
                    expect = placement.flagged if variant == "flagged" else placement.benign
                    try:
                        outcome = self.run(placement.build(imgs, image), style)
                        assert_only_judged(outcome.received, imgs, where)
                        if expect == "block":
                            assert outcome.blocked, f"{where}: item kept"
                        elif expect == "forward":
                            assert not outcome.blocked, f"{where}: item dropped"
                            want = {pixel_key(f) for f in frames_of(image) or []}
                            assert want <= set(outcome.received.frames), \
                                f"{where}: image did not arrive"
                    except Exception as exc:  # every failure, then one assert
                        failures.append(_failure(where, exc))
        assert placements, "no placements"
        assert not failures, "\n".join(failures)
