"""One frozen configuration shared by the Python API, the LangChain Runnable and the CLI.

``GuardConfig`` round-trips to JSON and YAML, so a threshold calibrated by
``safeclip calibrate`` is a file that ``SafeCLIPGuard.from_config``, the Runnable and
``safeclip scan --config`` all read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safeclip_guardrail._validation import ValidatedModel, first_error, read_data_file
from safeclip_guardrail.concepts import ConceptBank
from safeclip_guardrail.errors import ConfigurationError

__all__ = [
    "DEFAULT",
    "DEFAULT_FORMATS",
    "DEFAULT_REFUSAL",
    "DEFAULT_SAFE_INSTRUCTION",
    "ClsSource",
    "Decision",
    "DocumentOptions",
    "GuardConfig",
    "ImageOptions",
    "InterventionConfig",
    "Mode",
    "OnError",
    "ScoringConfig",
]

ClsSource = Literal["final", "penultimate"]
Decision = Literal["top", "any"]
OnError = Literal["block", "raise", "allow"]
Mode = Literal["rewrite", "annotate", "redact", "block", "raise"]

DEFAULT_SAFE_INSTRUCTION = (
    "First detect if this image contains harmful content. If it does, respond with "
    "'I cannot fulfill this request' and provide a reason. Otherwise, fulfill the request:"
)
"""The SafeCLIP paper's safety instruction (spelling fixed), prepended on ``rewrite``."""

DEFAULT_REFUSAL = (
    "I cannot fulfill this request: the image was flagged as unsafe ({categories})."
)
"""Answer given instead of calling the model on ``block``; ``{categories}`` is filled in."""


DEFAULT_FORMATS: tuple[str, ...] = (
    "PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF",
)
"""Image formats opened by default (``ImageOptions.formats``)."""

_NEVER_FORMATS = frozenset({"EPS", "PS"})


class DocumentOptions(ValidatedModel):
    """How documents (PDF) are judged: every page rendered as providers render it, plus every
    picture embedded in it, within these budgets; past any of them the document is unreadable.

    Needs the ``documents`` extra (``pip install "safeclip-guardrail[documents]"``, which
    installs pypdfium2: PDFium in a wheel). docs/security.md says what a judged PDF covers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Judge PDF documents. False: every document is unreadable (the default policy blocks it)."""
    render_long_side: int = Field(default=1568, ge=64, le=10_000)
    """Pixels on a rendered page's longer side. 1568 is the longest side Claude reads an image
    at before scaling it down, inside Gemini's documented 768-3072 range for PDF pages;
    OpenAI documents "an image of each page" without a size."""
    max_pages: int = Field(default=100, gt=0)
    """Pages of one document (checked before any page is rendered). 100 is Claude's and
    OpenAI's per-request page limit."""
    max_page_points: float = Field(default=14_400.0, gt=0)
    """Longest page side in PDF points (1/72 in) that is rendered; 14,400 is the PDF
    specification's own limit. A larger page is refused before it is rasterised."""
    max_page_objects: int = Field(default=100_000, gt=0)
    """Content objects of one page (paths, text, images, nested forms), counted before the
    page is rendered: rendering time grows with them, not with pixels."""
    max_pictures: int = Field(default=1_000, ge=0)
    """Embedded pictures decoded per document, each use counted (each is decoded at its own
    size; the same picture on many pages is judged once)."""
    max_total_pixels: int = Field(default=250_000_000, gt=0)
    """Decoded pixels of one document, rendered pages and embedded pictures together
    (each picture is also held to ``ImageOptions.max_pixels``)."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds of PDF work per document: checked between pages and pictures and, while a page
    renders, by PDFium's progressive renderer; past it the document is unreadable."""
    allow_attachments: bool = False
    """Judge PDFs that carry file attachments. Attachments are not judged and travel inside
    the forwarded PDF, so by default such a PDF is unreadable (an invoice's XML is harmless;
    a picture attached to a PDF would reach the provider unjudged)."""


class ImageOptions(ValidatedModel):
    """Limits and options for reading images; the defaults fail closed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pixels: int = Field(default=50_000_000, gt=0)
    """Largest width x height accepted; checked from the header before any pixel is decoded."""
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    """Largest encoded image accepted (file, bytes, base64 or download)."""
    frames: int = Field(default=1, ge=1)
    """Frames of an animated image to check; the image is flagged if any of them is."""
    tiles: bool = True
    """Judge tiles too where the whole-picture view shrinks parts of a picture (a wide or tall
    one, see ``tile_aspect``): the worst view decides. False judges the padded whole picture
    alone (all of it, with less detail). See :mod:`safeclip_guardrail.images.views`."""
    max_tiles: int = Field(default=6, ge=1, le=64)
    """Most tiles per frame, besides the whole-picture view (each costs one encoder input)."""
    tile_aspect: float = Field(default=1.5, ge=1.0)
    """A picture whose long side is more than this many times its short side gets tiles (3:2
    photos stay one view; 16:9 gets 2 tiles, a 3:1 panorama 3)."""
    tile_downscale: float | None = Field(default=None, ge=1.0)
    """Also tile pictures the encoder would shrink more than this many times (long side over
    its input size), squares included; None (default) tiles by aspect only, so a square picture
    is one view. 3.0 tiles e.g. a 1024 px square for a 224 px CLIP into 2x2."""
    allow_urls: bool = False
    """Fetch ``http(s)`` image URLs. Off by default: a guard should not be an open proxy."""
    allowed_hosts: tuple[str, ...] = ()
    """Hosts that may be fetched when ``allow_urls`` (exact names or ``*.example.com``)."""
    url_timeout: float = Field(default=10.0, gt=0)
    """Seconds for a whole remote fetch: DNS, connect, TLS, headers and body together (a
    total deadline, whatever the server does, not a per-read timeout)."""
    jpeg_draft: bool = True
    """Decode large JPEGs at a reduced DCT scale (never below the encoder's input size).

    Saves a third of the decode time on photos for a change in class mass of about 0.002
    (measured on ViT-B/32); set False to decode every pixel."""
    formats: tuple[str, ...] = DEFAULT_FORMATS
    """Pillow formats that may be opened; anything else is rejected before a parser runs.

    The default is what LVLM providers accept plus common camera formats (AVIF/HEIF only
    when a plugin for them is installed). EPS/PS are refused even when listed: Pillow hands
    them to Ghostscript. ``ICO`` may be added: its embedded pictures are size-checked first."""
    max_total_pixels: int = Field(default=100_000_000, gt=0)
    """Decoded pixels across all frames/pages of one image (``frames > 1``)."""
    max_request_pixels: int = Field(default=1_000_000_000, gt=0)
    """Decoded pixels one ``check_batch`` call may decode; images past the budget are
    unreadable (fail closed). Bounds the decode work a single request can cause."""
    chunk_pixels: int = Field(default=64_000_000, gt=0)
    """Decoded pixels a batch holds before it encodes them and lets them go (memory bound:
    a batch keeps at most one chunk of decoded frames, whatever its length)."""
    max_chunks: int = Field(default=10_000, ge=0)
    """Container records (PNG chunks, GIF blocks, JPEG markers, TIFF strips/tiles and
    directory entries, WebP/AVIF boxes) an image may hold beyond one per 256 bytes of data;
    bounds parser work on files made of millions of tiny records."""
    max_jpeg_scans: int = Field(default=32, ge=1)
    """Scans (SOS markers) of one JPEG picture. libjpeg passes over every coefficient once per
    scan, so decode time grows with the scan count, not only the pixels: a 249 KB progressive
    JPEG with its last scan repeated thousands of times takes a minute. Encoders write 1
    (baseline) to about 12 (progressive; mozjpeg 4-10, libjpeg 6-10)."""
    max_metadata_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    """Metadata one image may carry as Pillow holds it: JPEG APPn/COM payloads (EXIF split
    over several segments counts the copies Pillow makes to join them), PNG text/iCCP/eXIf
    chunks decompressed, WebP EXIF/XMP/ICCP chunks."""
    max_bmp_rle_pixels: int = Field(default=2_000_000, ge=0)
    """Pixels of an RLE-compressed BMP (or an ICO picture). Pillow decodes RLE4/RLE8 in Python,
    at 0.05-0.3 s per megapixel, so larger ones are refused."""
    forward_original: bool = False
    """Forward a judged picture's original bytes instead of its reconstruction, where the
    decode is unambiguous (a PNG or single-picture JPEG that any plain decoder reads as the
    judged pixels: no transparency, EXIF rotation, colour profile, wide samples, further
    frames, embedded pictures, unknown chunks or trailing bytes); elsewhere the reconstruction
    is still sent. Off by default, because original bytes also carry what was not judged:
    metadata (EXIF, XMP, text chunks, GPS), and whatever a future or lenient decoder reads
    in them that the guard's does not. See docs/security.md."""
    documents: DocumentOptions = Field(default_factory=DocumentOptions)
    """PDF budgets and the switch that refuses every document."""

    @field_validator("formats")
    @classmethod
    def _formats_safe(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(f.strip().upper() for f in v))
        refused = sorted(set(names) & _NEVER_FORMATS)
        if refused:
            msg = (f"formats {refused} can never be opened: Pillow runs Ghostscript on them; "
                   "convert such files to PNG before checking them")
            raise ConfigurationError(msg)
        if not names:
            msg = "formats must name at least one image format, e.g. ('PNG', 'JPEG')"
            raise ConfigurationError(msg)
        return names

    @model_validator(mode="after")
    def _hosts_needed(self) -> ImageOptions:
        if self.allow_urls and not self.allowed_hosts:
            msg = ("allow_urls=True needs allowed_hosts (e.g. ('images.example.com',)); "
                   "fetching from any host is not supported")
            raise ConfigurationError(msg)
        return self


class ScoringConfig(ValidatedModel):
    """How images are read and scored: the options the engine (``SafeCLIPGuard``) uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "llava-1.5"
    """Alias (``llava-1.5``), hub id, local directory, or ``open_clip:<model>/<pretrained>``."""
    concepts: ConceptBank | None = None
    """The concept bank; None means the paper's default bank."""
    threshold: float = Field(default=0.6, gt=0.0, lt=1.0)
    """Class mass above which a toxic top class flags (the paper's 0.6)."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-class overrides of ``threshold``."""
    cls_source: ClsSource = "final"
    """``final``: CLIP's own image embedding; ``penultimate``: the paper's released code."""
    decision: Decision = "top"
    """``top``: flag when the top class is toxic (paper); ``any``: when any toxic class passes
    its threshold."""
    device: str | None = None
    """``cuda``, ``cpu``, ``cuda:1``...; None picks a GPU when present."""
    dtype: str | None = None
    """``float32``, ``float16``, ``bfloat16``; None picks half precision on GPU."""
    batch_size: int = Field(default=32, ge=1)
    """Images per encoder forward in ``check_batch``."""
    cache_size: int = Field(default=4096, ge=0)
    """Verdicts kept in the image-hash LRU cache (0 disables it)."""
    images: ImageOptions = Field(default_factory=ImageOptions)
    """How images are read."""

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for name, t in v.items():
            if not 0.0 < t < 1.0:
                msg = f"threshold for {name!r} must be in (0, 1), got {t}"
                raise ConfigurationError(msg)
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype_known(cls, v: str | None) -> str | None:
        if v is None:
            return v
        aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
        v = aliases.get(v, v)
        if v not in {"float32", "float16", "bfloat16"}:
            msg = f"dtype must be float32, float16 or bfloat16, got {v!r}"
            raise ConfigurationError(msg)
        return v

    @model_validator(mode="after")
    def _known_threshold_classes(self) -> ScoringConfig:
        _check_names("thresholds", self.thresholds, set(self.bank.class_names))
        return self

    @property
    def bank(self) -> ConceptBank:
        """The concept bank in force (the default one when ``concepts`` is None)."""
        return self.concepts if self.concepts is not None else _default_bank()

    def threshold_for(self, category: str) -> float:
        return self.thresholds.get(category, self.threshold)


class InterventionConfig(ValidatedModel):
    """What a guardrail does with the verdicts: the options of :mod:`safeclip_guardrail.policy`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_error: OnError = "block"
    """Unreadable image: ``block`` (fail closed), ``raise`` (ImageInputError), ``allow``.
    Whatever it says, an image that could not be judged is never forwarded to a model."""
    mode: Mode = "rewrite"
    """What a guardrail does with a flagged image (see ``intervention``)."""
    policy: dict[str, Mode] = Field(default_factory=dict)
    """Per-class overrides of ``mode``, e.g. ``{"alcohol": "annotate", "porn": "block"}``;
    the key ``"unreadable"`` sets what an image that could not be judged does (default: the
    strongest of ``block`` and ``mode``)."""
    safe_instruction: str = DEFAULT_SAFE_INSTRUCTION
    """Text prepended to the user's message on ``rewrite``."""
    refusal: str = DEFAULT_REFUSAL
    """Answer on ``block`` (``{categories}`` is replaced by the flagged categories)."""

    def refusal_for(self, categories: Sequence[str], *, fallback: str = "unsafe") -> str:
        """``refusal`` with ``{categories}`` filled in (``fallback`` when there are none)."""
        return self.refusal.replace("{categories}", ", ".join(categories) or fallback)

    def mode_for(self, category: str | None) -> Mode:
        if category is None:
            return self.mode
        return self.policy.get(category, self.mode)


class GuardConfig(InterventionConfig, ScoringConfig):
    """Every option of a guard and of the guardrails built on it, in one file format.

    It composes :class:`ScoringConfig` (what the engine uses) and
    :class:`InterventionConfig` (what guardrails do with verdicts); ``.scoring`` and
    ``.intervention`` give each half, :meth:`compose` joins two halves.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _known_policy_classes(self) -> GuardConfig:
        # policy may also say what an unreadable image does ("unreadable": "redact")
        _check_names("policy", self.policy, set(self.bank.class_names) | {"unreadable"})
        return self

    @property
    def scoring(self) -> ScoringConfig:
        return ScoringConfig.model_validate(_fields_of(self, ScoringConfig))

    @property
    def intervention(self) -> InterventionConfig:
        return InterventionConfig.model_validate(_fields_of(self, InterventionConfig))

    @classmethod
    def compose(cls, scoring: ScoringConfig, intervention: InterventionConfig | None = None,
                ) -> GuardConfig:
        """One GuardConfig from its two halves (default intervention options when omitted)."""
        data = {**_fields_of(intervention or InterventionConfig(), InterventionConfig),
                **_fields_of(scoring, ScoringConfig)}
        return build_config(data)

    def replace(self, **changes: Any) -> GuardConfig:
        """A validated copy with some fields changed (the config itself is frozen).

        None keeps a field's value; :data:`DEFAULT` resets it to its default
        (``config.replace(refusal=DEFAULT)``)."""
        return build_config(self.model_dump(), **changes)

    # ----------------------------------------------------------------- files
    @classmethod
    def from_file(cls, path: str | Path) -> GuardConfig:
        """Read a JSON or YAML config written by :meth:`to_file` or ``safeclip calibrate``."""
        p = Path(path)
        data = read_data_file(p, what="guard config", hint=_CONFIG_HINT)
        if not isinstance(data, dict):
            msg = f"config {p} must contain a mapping of options"
            raise ConfigurationError(msg)
        return build_config(data)

    def to_file(self, path: str | Path) -> Path:
        p = Path(path)
        data = self.model_dump(mode="json", exclude_defaults=False)
        if p.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        else:
            p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return p


def build_config(base: GuardConfig | dict[str, Any] | None = None, **changes: Any) -> GuardConfig:
    """Validate options into a GuardConfig, turning pydantic errors into ConfigurationError.

    ``None`` values in ``changes`` mean "not given" and keep the base value, so keyword
    arguments of ``from_pretrained`` and CLI flags can be passed through unchanged.
    """
    data: dict[str, Any] = (
        base.model_dump() if isinstance(base, GuardConfig) else dict(base or {})
    )
    for key, value in changes.items():
        if value is DEFAULT:
            data.pop(key, None)
        elif value is not None:
            data[key] = value
    if isinstance(data.get("concepts"), (str, Path)):
        data["concepts"] = ConceptBank.from_file(data["concepts"])
    if isinstance(data.get("images"), dict):
        data["images"] = {**data["images"]}
    try:
        return GuardConfig.model_validate(data)
    except ValidationError as exc:
        msg = f"invalid guard configuration: {first_error(exc)}"
        raise ConfigurationError(msg) from None


_CONFIG_HINT = ("a guard config is a UTF-8 JSON or YAML mapping of options, as written by "
                "GuardConfig.to_file or `safeclip calibrate --out guard.json`")


def _check_names(field: str, keys: dict[str, Any], names: set[str]) -> None:
    unknown = sorted(set(keys) - names)
    if unknown:
        msg = (f"{field} names classes that are not in the concept bank: "
               f"{', '.join(unknown)} (known: {', '.join(sorted(names))})")
        raise ConfigurationError(msg)


def _fields_of(model: BaseModel, cls: type[BaseModel]) -> dict[str, Any]:
    return {name: getattr(model, name) for name in cls.model_fields}


class _Default:
    """Sentinel type of :data:`DEFAULT`."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""Pass to :meth:`GuardConfig.replace` (or ``build_config``) to reset a field to its default."""

_DEFAULT_BANK: ConceptBank | None = None


def _default_bank() -> ConceptBank:
    global _DEFAULT_BANK
    if _DEFAULT_BANK is None:
        _DEFAULT_BANK = ConceptBank.default()
    return _DEFAULT_BANK
