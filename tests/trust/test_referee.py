"""What a model receives holds only judged, clean pictures: checked by the referee.

Every container below hides a flagged picture where some decoder finds it. For each one the
referee (tests/_referee.py: several decoders, every frame, alpha honoured and dropped over
white and black, JPEG/PNG/GIF/WebP carved at every offset, PDF pages and embedded pictures)
first finds the flagged picture in the original bytes, so the case is real; then the guard
judges the bytes with ``forward=True`` and either flags them (nothing is sent) or forwards
bytes in which the referee finds only pictures the encoder judged, none flagged.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.messages.conversation import guard_dict_messages
from tests import _containers as C
from tests._referee import RefereeEncoder, pictures_in, referee


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[RefereeEncoder], bytes]
    expect: str
    """``flag``: the guard sees the flagged picture; ``forward``: it is outside what is judged
    (and forwarded), so the forwarded bytes must not carry it."""
    frames: int = 1


def _keyed(enc: RefereeEncoder, mode: str) -> bytes:
    """A picture whose colour-key region, made transparent, shows a flagged reading."""
    base = C.noise((64, 64), seed=5)
    arr = np.asarray(base).copy()
    key = (10, 200, 30)
    arr[16:48, 16:48] = key
    img = Image.fromarray(arr, "RGB")
    if mode == "L":
        img = img.convert("L")
        key_value = int(np.asarray(img)[20, 20])
        honoured = np.asarray(img.convert("RGB")).copy()
        honoured[np.asarray(img) == key_value] = 255
        enc.plant_reading(Image.fromarray(honoured, "RGB"), "gun")
        return C.trns_png(img, key_value)
    honoured = arr.copy()
    honoured[(arr == key).all(axis=-1)] = 255
    enc.plant_reading(Image.fromarray(honoured, "RGB"), "gun")
    return C.trns_png(img, key)


def _hidden_pdf(enc: RefereeEncoder) -> bytes:  # drawn off the page: no renderer shows it
    return C.pdf([[(C.calm((64, 64)), (20, 20, 100, 100)), (C.marked(), (500, 500, 64, 64))]])


HOSTILE = [
    Case("mpo_flagged_second_picture", lambda e: C.mpo(C.noise(), C.marked()), "forward"),
    Case("mpo_flagged_second_picture_judged", lambda e: C.mpo(C.noise(), C.marked()), "flag",
         frames=2),
    Case("jpeg_flagged_exif_thumbnail",
         lambda e: C.jpeg_with_exif_thumbnail(C.noise(), C.marked((48, 48))), "forward"),
    Case("png_then_flagged_jpeg",
         lambda e: C.appended(C.encode(C.noise()), C.encode(C.marked(), "JPEG")), "forward"),
    Case("jpeg_then_flagged_jpeg",
         lambda e: C.appended(C.encode(C.noise(), "JPEG"), C.encode(C.marked(), "JPEG")),
         "forward"),
    Case("trns_rgb_key_shows_flagged", lambda e: _keyed(e, "RGB"), "flag"),
    Case("trns_grey_key_shows_flagged", lambda e: _keyed(e, "L"), "flag"),
    *[Case(f"{fmt.lower()}_flagged_later_frame",
           lambda e, fmt=fmt: C.animated([C.noise(), C.marked()], fmt), "forward")
      for fmt in ("PNG", "GIF", "WEBP")],
    *[Case(f"{fmt.lower()}_flagged_later_frame_judged",
           lambda e, fmt=fmt: C.animated([C.noise(), C.marked()], fmt), "flag", frames=2)
      for fmt in ("PNG", "GIF", "WEBP")],
    Case("pdf_flagged_picture_off_the_page", _hidden_pdf, "flag"),
    Case("pdf_flagged_picture_on_the_page",
         lambda e: C.pdf([[(C.marked(), (0, 0, 200, 200))]]), "flag"),
    Case("pdf_flagged_jpeg_after_eof",
         lambda e: C.appended(C.pdf([[(C.calm(), (10, 10, 80, 80))]]),
                              C.encode(C.marked(), "JPEG")), "flag"),
    Case("pdf_flagged_drawing_on_page_2",
         lambda e: C.pdf([[(C.calm(), (10, 10, 80, 80))], []], fills=[(1, (0, 0, 200, 200))]),
         "flag"),
]

BENIGN = [
    ("clean_jpeg", lambda: C.encode(C.noise(), "JPEG", quality=90), "image/jpeg"),
    ("clean_png", lambda: C.encode(C.noise()), "image/png"),
    ("clean_mpo", lambda: C.mpo(C.noise(), C.noise(seed=3)), "image/jpeg"),
    ("clean_trns", lambda: C.trns_png(C.noise(), (1, 2, 3)), "image/png"),
    ("clean_gif", lambda: C.animated([C.noise(), C.noise(seed=4)], "GIF"), "image/png"),
    ("clean_pdf", lambda: C.pdf([[(C.calm((48, 64)), (20, 20, 120, 160))],
                                 [(C.calm((64, 64), seed=2), (40, 40, 100, 100))]]),
     "application/pdf"),
]


def _guard(enc: RefereeEncoder, frames: int = 1) -> SafeCLIPGuard:
    return SafeCLIPGuard(enc).with_options(images={"frames": frames})


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_the_referee_finds_the_flagged_picture_in_the_original(case: Case) -> None:
    enc = RefereeEncoder()
    report = referee(case.build(enc), enc)
    assert report.flagged, f"{case.name}: the referee found no flagged picture to hide"


@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_a_hidden_picture_is_judged_or_never_forwarded(case: Case) -> None:
    enc = RefereeEncoder()
    data = case.build(enc)
    judgement = _guard(enc, case.frames).judge_batch([data], forward=True)[0]
    assert judgement.verdict is not None, judgement.error
    if case.expect == "flag":
        assert judgement.verdict.flagged and judgement.verdict.category == "gun"
        return
    assert not judgement.verdict.flagged
    assert judgement.forward is not None and judgement.forward.data != data
    report = referee(judgement.forward.data, enc)
    assert report.clean, f"{case.name}: forwarded {report}"


@pytest.mark.parametrize(("name", "build", "mime"), BENIGN, ids=[b[0] for b in BENIGN])
def test_benign_inputs_reach_the_model_with_only_judged_pictures(
        name: str, build: Callable[[], bytes], mime: str) -> None:
    enc = RefereeEncoder()
    data = build()
    judgement = _guard(enc).judge_batch([data], forward=True)[0]
    assert judgement.verdict is not None and not judgement.verdict.flagged, judgement
    assert judgement.forward is not None and judgement.forward.mime_type == mime
    report = referee(judgement.forward.data, enc)
    assert report.clean, f"{name}: forwarded {report}"


def test_a_clean_pdf_is_forwarded_as_its_own_bytes() -> None:
    enc = RefereeEncoder()
    data = BENIGN[-1][1]()
    judgement = _guard(enc).judge_batch([data], forward=True)[0]
    assert judgement.forward is not None and judgement.forward.data == data
    assert judgement.verdict is not None and judgement.verdict.frames_checked == 4  # 2 pages, 2 pictures


@pytest.mark.parametrize("case", [c for c in HOSTILE if c.expect == "forward"],
                         ids=[c.name for c in HOSTILE if c.expect == "forward"])
def test_through_a_conversation_the_model_gets_only_judged_pictures(case: Case) -> None:
    enc = RefereeEncoder()
    data = case.build(enc)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                             {"type": "image_url", "image_url": {"url": url}}]}]
    outcome = guard_dict_messages(_guard(enc), messages)
    assert not outcome.blocked
    sent = outcome.as_dicts(messages)[0]["content"][1]["image_url"]["url"]
    header, _, payload = sent.partition(",")
    report = referee(base64.b64decode(payload), enc)
    assert report.clean and header.startswith(("data:image/jpeg", "data:image/png")), report


def test_the_referee_reads_what_other_decoders_show() -> None:
    """The referee itself: carving, frames, alpha over black, and a second decoder."""
    data = C.appended(C.encode(C.noise()), C.encode(C.marked(), "JPEG"))
    hows = [f.how for f in pictures_in(data)]
    assert any(h.startswith("JPEG at ") and "pillow" in h for h in hows)
    assert any("torchvision" in h for h in hows)
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    black = [f for f in pictures_in(C.encode(rgba)) if "alpha over black" in f.how]
    assert black and all(int(f.pixels.max()) == 0 for f in black)
