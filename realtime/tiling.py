"""Tiled inference for frames too large to run whole: overlapping tiles, blended with linear ramps.

Caveat, stated because it is visible: the generators normalise with InstanceNorm, whose statistics are per image,
so each tile is normalised on its own content. Overlap plus feathering hides the seams, but colours can drift
slightly between distant tiles. Use tiling only when a whole frame does not fit in memory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from .memory import TilePlanner

logger = logging.getLogger(__name__)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # the last tile is flush with the edge
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    w = torch.ones(length)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 1) / (overlap + 1)
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = ramp.flip(0)
    return w


class TiledTranslate:
    """Wraps a translate function ``(N, 3, H, W) → (N, 3, H, W)`` so that it runs on tiles of at most ``tile``².

    Args:
        translate: The backend (or any function) to run on each tile.
        tile: Tile side in pixels; a multiple of ``multiple``.
        overlap: Pixels shared by neighbouring tiles (blended); a multiple of ``multiple``, less than ``tile``.
        multiple: The model's size multiple.
    """

    def __init__(self, translate: Callable[[torch.Tensor], torch.Tensor], *, tile: int, overlap: int = 32,
                 multiple: int = 4) -> None:
        if tile < 2 * multiple or tile % multiple:
            raise ValueError(f"tile {tile} must be a multiple of {multiple} and at least {2 * multiple}")
        if overlap < 0 or overlap >= tile or overlap % multiple:
            raise ValueError(f"tile overlap {overlap} must be a multiple of {multiple} in [0, {tile})")
        self.translate, self.tile, self.overlap = translate, tile, overlap
        self.name = f"{getattr(translate, 'name', 'model')}+tiles{tile}"
        self.device = getattr(translate, "device", torch.device("cpu"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h <= self.tile and w <= self.tile:
            return self.translate(x)
        ys, xs = _starts(h, self.tile, self.overlap), _starts(w, self.tile, self.overlap)
        out = torch.zeros(n, c, h, w)
        weight = torch.zeros(1, 1, h, w)
        for y0 in ys:
            th = min(self.tile, h)
            wy = _ramp(th, self.overlap, y0 == 0, y0 + th >= h)
            for x0 in xs:
                tw = min(self.tile, w)
                wx = _ramp(tw, self.overlap, x0 == 0, x0 + tw >= w)
                mask = (wy[:, None] * wx[None, :])[None, None]
                y = self.translate(x[:, :, y0:y0 + th, x0:x0 + tw]).float().cpu()
                out[:, :, y0:y0 + th, x0:x0 + tw] += y * mask
                weight[:, :, y0:y0 + th, x0:x0 + tw] += mask
        return out / weight


class AutoTiles:
    """``--tile auto``: frames that fit the memory budget run whole; larger ones run as :class:`TiledTranslate`
    tiles of the planner's size, with one warning (naming the size and the flags) the first time it happens."""

    def __init__(self, translate: Callable[[torch.Tensor], torch.Tensor], planner: TilePlanner, *, overlap: int = 32,
                 multiple: int = 4) -> None:
        self.translate, self.planner, self.overlap, self.multiple = translate, planner, overlap, multiple
        self.name = getattr(translate, "name", "model")
        self.device = getattr(translate, "device", torch.device("cpu"))
        self._tiled: dict[int, TiledTranslate] = {}
        self._warned = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        plan = self.planner.plan_for(h, w, n)
        if plan is None or not plan.needs_tiles(h, w):
            return self.translate(x)
        if not self._warned:
            self._warned = True
            logger.warning(plan.describe(h, w, n))
        if plan.tile not in self._tiled:
            self._tiled[plan.tile] = TiledTranslate(self.translate, tile=plan.tile, overlap=self.overlap,
                                                    multiple=self.multiple)
        return self._tiled[plan.tile](x)
