"""Views: the squares a picture is judged as, so that all of it is judged.

A CLIP encoder reads one square. Resizing the short side and centre-cropping (CLIP's own
evaluation transform) judges only the middle of a wide picture: for a 960x320 panorama,
replacing its outer two thirds changed 4 edge columns of what CLIP saw. The models behind
the guard see all of it: LLaVA-1.5 pads to a square, LLaVA-NeXT, GPT-4o and Gemini add
tiles, Claude reads the whole picture. So a picture is judged as *views* that together
cover every pixel:

- the **whole picture**, padded to a square with CLIP's mean colour (LLaVA-1.5's
  ``expand2square``: the padding normalises to zero);
- **tiles** where that view shrinks parts of the picture too much to read: a picture whose
  long side exceeds ``ImageOptions.tile_aspect`` times its short side is cut into squares of
  its short side (a 3:1 panorama into its thirds, at the scale CLIP reads a square picture),
  and with ``tile_downscale`` set, a picture the encoder would shrink more than that many
  times is cut into a grid too. Like LLaVA-NeXT's any-resolution grid, the layout is chosen
  among the grids of at most ``max_tiles`` tiles: the fewest tiles that reach the wanted
  scale, else the grid that comes closest. Tiles overlap evenly rather than pad, so no tile
  is mostly padding.

The worst view decides. A square picture without tiles is one view, the frame itself (no
copy): it costs what it always did, and the encoder's preprocessing resizes it as before.
Views of other pictures are made at the encoder's input size when it is known (the picture
is resized once, not padded at full size first), else at the picture's own scale up to
``NATIVE_MAX`` pixels a side, so a test encoder that matches exact pixels sees each tile's
own pixels.

This module is the bytes -> judged-pixels layer (Pillow only): the guard, the batch scorer
and the service's decoders plan views with :func:`plan_views` and make them with
:meth:`ViewPlan.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError

__all__ = ["NATIVE_MAX", "PAD_RGB", "WHOLE", "View", "ViewPlan", "picture_views", "plan_views"]

PAD_RGB = (122, 116, 104)
"""OpenAI CLIP's normalisation mean as 8-bit RGB: padding that normalises to about zero (what
LLaVA-1.5's ``expand2square`` fills with)."""

NATIVE_MAX = 1024
"""Largest view side for an encoder that does not declare its input size (a padded view of
a huge picture at its own scale would hold the square of its long side)."""

WHOLE = "whole picture"
"""Label of the whole-picture view (``ImageVerdict.decided_by``)."""

_SLACK = 1.1
"""A tile may be up to 10% longer than the wanted side (then it is padded): one tile fewer
for a picture slightly wider than a whole number of squares (e.g. 2.1:1 gets 2 tiles, not 3)."""

_DEFAULT_OPTIONS = ImageOptions()


@dataclass(frozen=True)
class View:
    """One square the encoder reads: a region of the frame, padded to a square if needed."""

    box: tuple[int, int, int, int]
    """``(left, top, right, bottom)`` of the region, in frame pixels."""
    label: str
    """``"whole picture"`` or ``"tile k of n"`` (what a verdict names as ``decided_by``)."""

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class ViewPlan:
    """The views of one frame of ``width`` x ``height`` pixels (the whole picture first)."""

    width: int
    height: int
    views: tuple[View, ...]
    side: int | None
    """The side views are made at (the encoder's input size); None: the picture's own scale,
    up to ``NATIVE_MAX``."""

    def __len__(self) -> int:
        return len(self.views)

    @property
    def identity(self) -> bool:
        """One view that is the frame itself (a square picture without tiles): no copy."""
        return len(self.views) == 1 and self.width == self.height

    @property
    def pixels(self) -> int:
        """Pixels the views add once made (0 for the identity view): they count against the
        same budgets as decoded pixels."""
        if self.identity:
            return 0
        return sum(self._out_side(v) ** 2 for v in self.views)

    def _out_side(self, view: View) -> int:
        reach = max(view.width, view.height)
        cap = self.side if self.side is not None else NATIVE_MAX
        return min(reach, cap)

    def render(self, frame: Image.Image, *, fill: tuple[int, int, int] = PAD_RGB
               ) -> list[Image.Image]:
        """Every view of ``frame`` (a frame of this plan's size), in plan order."""
        self._check(frame)
        if self.identity:
            return [frame]
        rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
        return [self._make(rgb, view, fill) for view in self.views]

    def render_view(self, frame: Image.Image, index: int, *,
                    fill: tuple[int, int, int] = PAD_RGB) -> Image.Image:
        """View ``index`` of ``frame``: the frame itself for the identity view, else a new
        square image (resized to ``side`` when larger, padded with ``fill`` when needed)."""
        self._check(frame)
        if self.identity:
            return frame
        rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
        return self._make(rgb, self.views[index], fill)

    def _check(self, frame: Image.Image) -> None:
        if frame.size != (self.width, self.height):
            msg = (f"a frame of {frame.size[0]}x{frame.size[1]} does not match the view plan "
                   f"made for {self.width}x{self.height}; plan each frame's views from its size")
            raise ImageInputError(msg)

    def _make(self, rgb: Image.Image, view: View, fill: tuple[int, int, int]) -> Image.Image:
        out = self._out_side(view)
        reach = max(view.width, view.height)
        if out < reach:  # one resample of the region, never a full-size padded copy
            scale = out / reach
            size = (max(1, min(out, round(view.width * scale))),
                    max(1, min(out, round(view.height * scale))))
            content = rgb.resize(size, Image.Resampling.BICUBIC, box=view.box)
        else:
            content = rgb.crop(view.box)
        if content.size == (out, out):
            return content
        canvas = Image.new("RGB", (out, out), fill)
        canvas.paste(content, ((out - content.width) // 2, (out - content.height) // 2))
        return canvas


def plan_views(width: int, height: int, options: ImageOptions | None = None, *,
               input_size: int | None = None) -> ViewPlan:
    """The views that judge a ``width`` x ``height`` frame under ``options``.

    ``input_size``: the side the encoder reads (``ResizesTo.input_size``); views larger than
    that are made at that size, and ``tile_downscale`` measures against it. None (an encoder
    that does not say, e.g. a planted test encoder) keeps the picture's own scale.
    """
    if width < 1 or height < 1:
        msg = f"a picture of {width}x{height} pixels has nothing to judge"
        raise ImageInputError(msg)
    opts = options or _DEFAULT_OPTIONS
    side = input_size if input_size is not None and input_size > 0 else None
    tiles = _tiles(width, height, opts, side)
    whole = View((0, 0, width, height), WHOLE)
    return ViewPlan(width, height, (whole, *tiles), side)


def picture_views(frame: Image.Image, options: ImageOptions | None = None, *,
                  input_size: int | None = None) -> list[Image.Image]:
    """Every view of ``frame`` (plan and render in one call)."""
    plan = plan_views(frame.size[0], frame.size[1], options, input_size=input_size)
    return plan.render(frame)


# ---------------------------------------------------------------------- tile layout
def _wanted_side(width: int, height: int, opts: ImageOptions, side: int | None) -> float | None:
    """The largest tile side (in frame pixels) that reads well enough, or None: no tiles."""
    if not opts.tiles or opts.max_tiles < 2:
        return None
    long, short = max(width, height), min(width, height)
    wanted = math.inf
    if long > opts.tile_aspect * short:
        wanted = float(short)  # each square of the short side at a square picture's scale
    if side is not None and opts.tile_downscale is not None and long > opts.tile_downscale * side:
        wanted = min(wanted, opts.tile_downscale * side)
    return None if math.isinf(wanted) else wanted


def _tiles(width: int, height: int, opts: ImageOptions, side: int | None) -> tuple[View, ...]:
    wanted = _wanted_side(width, height, opts, side)
    if wanted is None:
        return ()
    cols, rows, tw, th = _grid(width, height, wanted, opts.max_tiles)
    xs = _spread(width, tw, cols)
    ys = _spread(height, th, rows)
    n = cols * rows
    boxes = [(x, y, x + tw, y + th) for y in ys for x in xs]
    return tuple(View(box, f"tile {k} of {n}") for k, box in enumerate(boxes, start=1))


def _grid(width: int, height: int, wanted: float, max_tiles: int) -> tuple[int, int, int, int]:
    """(cols, rows, tile width, tile height): the fewest tiles whose side reaches ``wanted``
    (with slack), else the grid with the smallest tile side (then the fewest tiles)."""
    best: tuple[tuple[int, int, int], tuple[int, int, int, int]] | None = None
    for cols in range(1, max_tiles + 1):
        for rows in range(1, max_tiles // cols + 1):
            n = cols * rows
            if n < 2:
                continue
            t = max(-(-width // cols), -(-height // rows))
            tw, th = min(t, width), min(t, height)
            reach = max(tw, th)
            fits = reach <= wanted * _SLACK
            key = (0, n, reach) if fits else (1, reach, n)
            if best is None or key < best[0]:
                best = (key, (cols, rows, tw, th))
    assert best is not None  # max_tiles >= 2 gives at least one grid
    return best[1]


def _spread(length: int, tile: int, count: int) -> list[int]:
    """Start offsets of ``count`` tiles of ``tile`` pixels covering ``length``, evenly
    overlapping (first at 0, last flush with the end)."""
    if count == 1:
        return [(length - tile) // 2]
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]
