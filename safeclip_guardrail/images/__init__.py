"""Bytes to judged pixels: where image bytes come from, and what the guard judges of them.

One layer, framework-free and model-free (it imports no encoder, no guard, no message
parser): explicit sources (:mod:`.sources`: a path only from the application, never from
message content; the remote fetcher behind a total deadline and the IANA address
registries), total decoding within budgets (:mod:`.decode`, the structural pre-walk in
``_container``, PDF pages in ``_document``), the views a picture is judged as
(:mod:`.views`), the pixels forwarded after judging (``_reconstruct``), and the one folder
walk (:mod:`.discover`). ``safeclip_guardrail.images`` re-exports the decoder's public names.
"""

from safeclip_guardrail.images.decode import (
    DecodedImage,
    ImageSource,
    decode_image,
    describe_source,
    forward_image,
    read_image_bytes,
    to_rgb,
)

__all__ = [
    "DecodedImage",
    "ImageSource",
    "decode_image",
    "describe_source",
    "forward_image",
    "read_image_bytes",
    "to_rgb",
]
