"""How much memory a generator needs per pixel, and the tile size that keeps a frame within what the machine has.

A conv generator's activations grow with the frame: `niji` holds ~1.9 KB per pixel at its peak on the CPU (process
RSS, measured), so a 24-megapixel photo needs ~46 GB and the kernel's OOM killer ends the process without a word.
``rt-anime`` therefore tiles frames that would not fit (``--tile auto``, the default on the CPU).

The per-pixel cost is measured, not tabulated, so it holds for any registered family and any width: one forward
pass at two small sizes under a dispatch mode that adds up the bytes of the tensors alive at each op (a storage
counts until its last tensor is collected); the slope between the two sizes is the cost per pixel. oneDNN's scratch
buffers and the allocator's slack are not tensors; ``RSS_FACTOR`` covers them (RSS slope / tracked slope was 1.34
for `niji` and 1.36 for `niji-lite` between 0.75 and 3 megapixels on the 2-core VM).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["RSS_FACTOR", "TilePlan", "TilePlanner", "available_memory", "bytes_per_pixel", "fit_tiles"]

logger = logging.getLogger(__name__)

RSS_FACTOR = 1.5
"""Process memory per tracked tensor byte (measured 1.34–1.36; rounded up)."""
BUDGET_FRACTION = 0.75
"""Share of the memory available at start-up a frame's activations may take (decode, encode and queues need some)."""
MIN_TILE = 256
"""Smallest automatic tile side: below it the overlap is most of each tile's work."""
SURE_BYTES_PER_PIXEL = 16 * 1024
"""More than any generator here needs (`niji`: 1.9 KB measured): a frame that fits at this rate is run unprobed."""


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of tensors alive during the ops run under it (storages shared by views count once)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        self.refs[ptr] -= 1
        if not self.refs[ptr]:
            del self.refs[ptr]
            self.live -= self.sizes.pop(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in self.refs:
                self.refs[ptr] = 0
                self.sizes[ptr] = storage.nbytes()
                self.live += self.sizes[ptr]
                self.peak = max(self.peak, self.live)
            self.refs[ptr] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def _peak_bytes(model: torch.nn.Module, side: int) -> int:
    x = torch.zeros(1, 3, side, side)
    with torch.inference_mode(), _LiveBytes() as tracker:
        y = model(x)
        del y
    return tracker.peak


def bytes_per_pixel(model: torch.nn.Module, *, multiple: int = 4) -> float:
    """Process memory per output pixel that one frame through ``model`` (on the CPU, fp32) needs at its peak.

    Runs the model twice on small black frames (64² and 128², rounded up to ``multiple``); takes 1–3 s.
    """
    small, large = (math.ceil(s / multiple) * multiple for s in (64, 128))
    was_training = model.training
    model.eval()
    try:
        a, b = _peak_bytes(model, small), _peak_bytes(model, large)
    finally:
        model.train(was_training)
    return max(b - a, 0) / (large * large - small * small) * RSS_FACTOR


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (``MemAvailable``), or ``None`` where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class TilePlan:
    """What ``--tile auto`` decided: frames with both sides at most ``tile`` run whole."""

    tile: int
    bytes_per_pixel: float
    budget: int

    def needs_tiles(self, height: int, width: int) -> bool:
        return height > self.tile or width > self.tile

    def describe(self, height: int, width: int, batch: int = 1) -> str:
        need = self.bytes_per_pixel * height * width * batch
        return (f"a {width}x{height} frame needs ~{need / 2**30:.1f} GiB to run whole, {self.budget / 2**30:.1f} "
                f"GiB is the budget (3/4 of the memory available to this process): running it in {self.tile}-px "
                f"tiles (--tile none runs it whole, --tile N sets the tile)")


def fit_tiles(per_pixel: float, *, multiple: int, batch: int = 1, available: int) -> TilePlan | None:
    """The largest square tile (a multiple of ``multiple``, at least ``MIN_TILE``) whose activations for ``batch``
    frames at ``per_pixel`` bytes fit ``BUDGET_FRACTION`` of ``available``, or ``None`` for an unmeasured cost."""
    budget = max(int(available * BUDGET_FRACTION), 1)  # next to nothing free: the smallest tiles
    if per_pixel <= 0:
        return None
    side = int(math.sqrt(budget / (per_pixel * max(batch, 1))))
    tile = max(MIN_TILE, side - side % multiple)
    logger.debug("memory: %.0f bytes/px, budget %.1f GiB, tile %d", per_pixel, budget / 2**30, tile)
    return TilePlan(tile=tile, bytes_per_pixel=per_pixel, budget=budget)


class TilePlanner:
    """``--tile auto`` for one model, decided per frame size and lazily: the model is probed (once) only when a
    frame is large enough that it might not fit, so small images and video pay nothing.

    Args:
        model: The generator (probed on the CPU in fp32).
        multiple: Its size multiple (tiles are multiples of it).
        share: Fraction of the machine's available memory this process may plan with (processes that split a
            machine, e.g. Ray actors, or a server running several requests at once).
        available: Available memory in bytes; read from the system (once) when ``None``.
    """

    def __init__(self, model: torch.nn.Module, *, multiple: int, share: float = 1.0,
                 available: int | None = None) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share!r}")
        self._model, self.multiple, self.share = model, multiple, share
        self._available = available
        self._per_pixel: float | None = None
        self._lock = threading.Lock()

    def plan_for(self, height: int, width: int, batch: int = 1) -> TilePlan | None:
        """The plan for ``batch`` frames of ``height`` × ``width``, or ``None`` to run them whole."""
        with self._lock:
            if self._available is None:
                self._available = available_memory() or 0
            if not self._available:  # unknown: run whole, as before --tile auto existed
                return None
            available = max(int(self._available * self.share), 1)
            if height * width * batch * SURE_BYTES_PER_PIXEL <= available * BUDGET_FRACTION:
                return None
            if self._per_pixel is None:
                try:
                    self._per_pixel = bytes_per_pixel(self._model, multiple=self.multiple)
                except Exception as error:  # noqa: BLE001 - a broken model fails on its frame, where it is reported
                    logger.debug("memory probe failed (%s): frames run whole", error)
                    self._per_pixel = 0.0
            if not self._per_pixel:
                return None
            return fit_tiles(self._per_pixel, multiple=self.multiple, batch=batch, available=available)
