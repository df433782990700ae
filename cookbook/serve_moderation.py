"""Recipe: run the guard as an OpenAI-compatible moderation service and call it with `openai`.

Run on a real model:      python cookbook/serve_moderation.py --model llava-1.5 photo1.jpg ...
(or start it for good with: safeclip serve --model llava-1.5 --api-key "$SAFECLIP_API_KEY").
The test suite runs ``main`` on a planted encoder and on a tiny CLIP, over loopback.

Any client of OpenAI's moderation endpoint works unchanged: point its ``base_url`` at the
service. Flagged images appear under the standard keys (porn -> ``sexual``, blood ->
``violence/graphic``, gun and knife -> ``violence``) and the bank's other classes under
``safeclip/<class>`` (``result.categories.model_extra``).
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openai

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.serve import BackgroundServer, create_app


def data_url(image: bytes | str | Path) -> str:
    """A data URL for image bytes or a file (the service never reads paths itself)."""
    if isinstance(image, bytes):
        data, mime = image, "image/png"
    else:
        data, mime = Path(image).read_bytes(), mimetypes.guess_type(str(image))[0] or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def moderate(client: openai.OpenAI, image: bytes | str | Path) -> Any:
    """One omni-moderation request: a question and an image, as any OpenAI client sends it."""
    return client.moderations.create(model="omni-moderation-latest", input=[
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url(image)}},
    ]).results[0]


def main(images: Sequence[bytes | str | Path], *, guard: SafeCLIPGuard | None = None,
         model: str | None = None, api_key: str = "cookbook-key") -> list[Any]:
    guard = guard or SafeCLIPGuard.from_pretrained(model or "llava-1.5")
    app = create_app(guard, api_keys=[api_key])
    results = []
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key, max_retries=0)
        for i, image in enumerate(images):
            result = moderate(client, image)
            flags = result.categories.model_dump(by_alias=True)
            hits = [k for k, v in flags.items() if v]
            print(f"image {i}: {'FLAGGED ' + ', '.join(hits) if result.flagged else 'ok'}")
            results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", default="llava-1.5")
    ns = parser.parse_args()
    main(ns.images, model=ns.model)
