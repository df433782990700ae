"""A deterministic encoder whose embeddings a test chooses.

Detection quality needs real weights, which tests cannot download; semantics ("this image
must flag as gun at mass 0.7") need an encoder we control. :class:`PlantedEncoder` gives
every class of a bank its own orthonormal direction; descriptors embed exactly on their
class direction, and :meth:`PlantedEncoder.plant` makes a unique real image whose embedding
yields the class masses the test asks for, through the guard's real decoding path.

Images are matched by their exact pixels. A square planted picture reaches the encoder as
itself (the guard judges a square as one view, the frame itself). A wide or tall picture is
judged as views (:mod:`safeclip_guardrail.images.views`): its whole-picture view is padded and its
tiles are crops, each a new image. The planted encoder has no input size, so views keep the
picture's own scale and a tile is exactly the pixels it covers: compose a panorama from
planted squares (a 96x32 picture of three 32x32 ones) and its tiles are those squares. Pass
``unplanted="neutral"`` to embed every image nobody planted (the padded whole-picture
view) as that class instead of refusing it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.encoders.base import ForwardCounter, ImageEmbeddings, l2_normalize
from safeclip_guardrail.errors import ConfigurationError

__all__ = ["PlantedEncoder"]


def _pixel_key(image: Image.Image) -> str:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()


class PlantedEncoder:
    """An :class:`~safeclip_guardrail.encoders.ImageTextEncoder` with planted embeddings.

    ``plant("gun")`` returns an image whose mass is (almost) all ``gun``;
    ``plant({"gun": 0.7, "neutral": 0.3})`` one whose class masses are exactly those (the
    rest of the mass, 1e-6 per unlisted class, is spread over the other classes).
    The penultimate embedding is the final one rotated slightly, so tests can tell the two
    CLS sources apart.

    ``unplanted``: a class of the bank whose embedding any image that was not planted gets
    (e.g. the padded whole-picture view of a panorama made of planted tiles); None (default)
    refuses such an image with a ConfigurationError, so a test cannot judge pixels it did
    not mean to.
    """

    def __init__(self, bank: ConceptBank | None = None, *, logit_scale: float = 100.0,
                 extra_dims: int = 8, seed: int = 0, name: str = "planted",
                 unplanted: str | None = None) -> None:
        self.bank = bank or ConceptBank.default()
        self.logit_scale = float(logit_scale)
        self.name = name
        self.embed_dim = len(self.bank) + extra_dims
        self.cache_key: str | None = None
        self.forward_counter = ForwardCounter()
        """Calls of :meth:`encode_images` (one per vision forward of a real encoder)."""
        self.text_calls = 0
        self._seed = seed
        self._images: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._counter = 0
        eye = np.eye(self.embed_dim, dtype=np.float32)
        self.class_vectors = {c.name: eye[i] for i, c in enumerate(self.bank.classes)}
        self._spare = eye[len(self.bank)]  # absorbs the norm in planted mixtures
        self.unplanted = unplanted
        """The class an image nobody planted is embedded as (None: refused)."""
        self._fallback = None if unplanted is None else self.embedding_for(unplanted)

    # ----------------------------------------------------------------- planting
    def embedding_for(self, target: str | Mapping[str, float]) -> np.ndarray:
        """The unit vector whose class masses are ``target`` under the decision rule."""
        masses = {target: 1.0 - 1e-6 * (len(self.bank) - 1)} if isinstance(target, str) \
            else dict(target)
        unknown = set(masses) - set(self.class_vectors)
        if unknown:
            msg = f"cannot plant unknown classes: {sorted(unknown)}"
            raise ConfigurationError(msg)
        m = np.array([masses.get(c.name, 1e-6) for c in self.bank.classes], np.float64)
        if (m <= 0).any():
            msg = "planted masses must be positive"
            raise ConfigurationError(msg)
        m = m / m.sum()
        k = np.array([len(c.descriptors) for c in self.bank.classes], np.float64)
        logits = np.log(m / k)
        coeff = (logits - logits.min()) / self.logit_scale
        if float((coeff**2).sum()) >= 1.0:
            msg = "masses too extreme to plant at this logit scale"
            raise ConfigurationError(msg)
        vec = np.zeros(self.embed_dim, np.float64)
        for i, c in enumerate(self.bank.classes):
            vec += coeff[i] * self.class_vectors[c.name]
        vec += np.sqrt(1.0 - float((coeff**2).sum())) * self._spare
        return vec.astype(np.float32)

    def plant(self, target: str | Mapping[str, float], *, size: tuple[int, int] = (24, 24),
              mode: str = "RGB") -> Image.Image:
        """A new, unique image (seeded noise) whose embedding is :meth:`embedding_for`."""
        with self._lock:
            self._counter += 1
            rng = np.random.default_rng([self._seed, self._counter])
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(arr, "RGB")
        self.register(image, self.embedding_for(target))
        return image if mode == "RGB" else image.convert(mode)

    def plant_bytes(self, target: str | Mapping[str, float], *, fmt: str = "PNG",
                    size: tuple[int, int] = (24, 24)) -> bytes:
        """Like :meth:`plant`, encoded losslessly (PNG by default) for path/bytes/base64 tests."""
        buf = io.BytesIO()
        self.plant(target, size=size).save(buf, format=fmt)
        return buf.getvalue()

    def register(self, image: Image.Image, embedding: np.ndarray) -> None:
        """Plant an arbitrary embedding for an existing image (matched by its RGB pixels)."""
        with self._lock:
            self._images[_pixel_key(image)] = l2_normalize(np.asarray(embedding))

    # ----------------------------------------------------------------- protocol
    def encode_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        self.forward_counter()
        rows = []
        for im in images:
            key = _pixel_key(im)
            with self._lock:
                vec = self._images.get(key)
            if vec is None:
                vec = self._fallback
            if vec is None:
                msg = (f"PlantedEncoder got a {im.size[0]}x{im.size[1]} image that was not planted; "
                       "create test images with encoder.plant(...) or register them with "
                       "encoder.register(image, vector); a wide picture's padded whole-picture "
                       "view is a new image: PlantedEncoder(unplanted='neutral') embeds such views "
                       "as that class")
                raise ConfigurationError(msg)
            rows.append(vec)
        final = np.stack(rows) if rows else np.zeros((0, self.embed_dim), np.float32)
        rot = np.roll(final, 1, axis=1) * 0.1 + final
        return ImageEmbeddings(final=l2_normalize(final), penultimate=l2_normalize(rot))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls += 1
        lookup = {d: c.name for c in self.bank.classes for d in c.descriptors}
        rows = []
        for t in texts:
            if t in lookup:
                rows.append(self.class_vectors[lookup[t]])
            else:  # a text outside the planted bank: a fixed pseudo-random direction
                seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
                rows.append(np.random.default_rng(seed).standard_normal(self.embed_dim))
        return l2_normalize(np.stack(rows))
