"""Non-finite embeddings are errors, never verdicts: argmax over NaN would pass the image."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from langchain_core.messages import HumanMessage
from PIL import Image

from safeclip_guardrail import (
    EncoderOutputError,
    GuardrailViolation,
    SafeCLIPGuard,
    SafeCLIPGuardrail,
)
from safeclip_guardrail.result import UNREADABLE
from safeclip_guardrail.testing import PlantedEncoder

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def nan_image(planted: PlantedEncoder, value: float = np.nan) -> bytes:
    img = Image.fromarray(np.full((16, 16, 3), 7, np.uint8))
    vec = np.full(planted.embed_dim, value, np.float32)
    with planted._lock:  # register() normalises, which a NaN must survive unchanged
        from safeclip_guardrail.testing._planted import _pixel_key

        planted._images[_pixel_key(img)] = vec
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_embedding_fails_closed(planted: PlantedEncoder,
                                           planted_guard: SafeCLIPGuard, value: float) -> None:
    data = nan_image(planted, value)
    verdict = planted_guard.check(data)
    assert verdict.flagged and verdict.category == UNREADABLE
    assert "non-finite" in (verdict.error or "")
    # not cached as a verdict: the same image is judged again next time
    assert planted_guard.cache_info().size == 0
    good = planted.plant_bytes("neutral")
    both = planted_guard.check_batch([good, data])
    assert [v.flagged for v in both] == [False, True]  # the other image keeps its verdict

    allowed = planted_guard.with_options(on_error="allow").check(data)
    assert not allowed.flagged and allowed.error
    with pytest.raises(EncoderOutputError, match="non-finite"):
        planted_guard.with_options(on_error="raise").check(data)


def test_score_embeddings_never_scores_nan(planted_guard: SafeCLIPGuard) -> None:
    d = planted_guard.text_embeddings.shape[1]
    rows = np.stack([np.full(d, np.nan, np.float32), planted_guard.text_embeddings[0]])
    bad, ok = planted_guard.score_embeddings(rows)
    assert bad.flagged and bad.category == UNREADABLE and bad.error
    assert ok.error is None and ok.top_category == planted_guard.bank.class_names[0]
    zero = planted_guard.score_embeddings(np.zeros((1, d), np.float32))[0]
    assert zero.flagged and zero.error  # a zero vector has no direction: no verdict either


def test_non_finite_image_blocks_the_request(planted: PlantedEncoder,
                                             planted_guard: SafeCLIPGuard) -> None:
    data = base64.b64encode(nan_image(planted)).decode()
    msg = HumanMessage(content=[{"type": "text", "text": "hi"},
                                {"type": "image", "base64": data, "mime_type": "image/png"}])
    with pytest.raises(GuardrailViolation) as info:
        SafeCLIPGuardrail(guard=planted_guard, mode="annotate").invoke([msg])
    assert info.value.result.categories == [UNREADABLE]
