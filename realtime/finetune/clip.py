"""The clip side of fine-tuning: scan for scene cuts, choose frame triplets inside shots, load only those frames.

Memory stays bounded whatever the clip's length or resolution: a first decoding pass keeps only the previous 32×32
thumbnail and the list of cut pairs; a second pass keeps the frames of the chosen triplets, resized to the
resolution the model will run at (``max_side``, the same rule as ``rt-anime --max-side``), as uint8. The number of
triplets is capped by ``max_triplets`` and by a byte budget.

Scene cuts use the rule of the warping-error metric and of ``--temporal blend``: SSIM of 32×32 grayscale input
thumbnails (INTER_AREA) below the threshold (0.2) marks pair ``(t, t+1)`` as a cut. A triplet centred on ``t`` is
usable only if neither pair ``(t−1, t)`` nor ``(t, t+1)`` is a cut, so no loss ever spans a cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from ..errors import RtAnimeError
from ..pipeline.decode import main_video_stream, open_video
from ..temporal.warping_error import thumbnail_ssim

__all__ = ["ClipScan", "NothingToLearn", "TripletStore", "choose_centers", "load_triplets", "model_size", "scan_clip", "valid_centers"]

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 32


class NothingToLearn(RtAnimeError):
    """The clip has no three consecutive frames of one shot: there is no motion to learn stability from."""


@dataclass(frozen=True)
class ClipScan:
    """What the first pass found.

    Attributes:
        path: The clip.
        frames: Frames decoded.
        size: ``(width, height)`` of the decoded frames.
        cut_pairs: Pairs ``(t, t+1)`` detected as scene cuts, by ``t``.
        ssim: Thumbnail SSIM of every pair (``frames − 1`` values).
    """

    path: Path
    frames: int
    size: tuple[int, int]
    cut_pairs: tuple[int, ...]
    ssim: tuple[float, ...] = field(repr=False)

    @property
    def shots(self) -> list[tuple[int, int]]:
        """``[start, end)`` frame ranges between cuts."""
        bounds = [0] + [t + 1 for t in self.cut_pairs] + [self.frames]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _decode(path: Path) -> Iterator[np.ndarray]:
    container = open_video(path, "CLIP")
    try:
        stream = main_video_stream(container)
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise RtAnimeError(f"CLIP {path} failed to decode: {exc}") from None
    finally:
        container.close()


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    # The metric's thumbnail: BT.601 luma in [0, 1], area-resized to 32x32.
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return cv2.resize(gray, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).astype(np.float64)


def scan_clip(path: "str | Path", *, cut_threshold: float = 0.2,
              progress: Callable[[int], None] | None = None) -> ClipScan:
    """First pass: count frames and find scene cuts (keeps one thumbnail in memory).

    Raises:
        FileNotFoundError: The clip does not exist.
        RtAnimeError: Not a video, undecodable, or fewer than 3 frames.
    """
    path = Path(path)
    if not -1.0 <= cut_threshold <= 1.0:
        raise ValueError(f"cut threshold {cut_threshold} is out of range; allowed: -1 (no cuts) .. 1")
    prev: np.ndarray | None = None
    ssim: list[float] = []
    cuts: list[int] = []
    size: tuple[int, int] | None = None
    n = 0
    for rgb in _decode(path):
        if size is None:
            size = (rgb.shape[1], rgb.shape[0])
        thumb = _thumbnail(rgb)
        if prev is not None:
            score = thumbnail_ssim(prev, thumb)
            ssim.append(score)
            if score < cut_threshold:
                cuts.append(n - 1)
        prev = thumb
        n += 1
        if progress is not None:
            progress(n)
    if n < 3:
        raise NothingToLearn(f"CLIP {path} has {n} frame(s); fine-tuning needs at least 3 consecutive frames")
    assert size is not None
    logger.info("%s: %d frames, %d scene cut(s) at pairs %s", path, n, len(cuts), cuts[:20])
    return ClipScan(path=path, frames=n, size=size, cut_pairs=tuple(cuts), ssim=tuple(ssim))


def valid_centers(frames: int, cut_pairs: Sequence[int]) -> list[int]:
    """Middle frames ``t`` of triplets ``(t−1, t, t+1)`` that lie inside one shot."""
    cut = set(cut_pairs)
    return [t for t in range(1, frames - 1) if (t - 1) not in cut and t not in cut]


def choose_centers(centers: Sequence[int], count: int) -> list[int]:
    """Up to ``count`` centres spread evenly over ``centers`` (deterministic; all of them when there are fewer)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if len(centers) <= count:
        return list(centers)
    picks = np.linspace(0, len(centers) - 1, count).round().astype(int)
    return [centers[i] for i in sorted(set(picks.tolist()))]


def model_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` the model runs at under ``--max-side`` (the pipeline's rounding)."""
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(round(w * scale), 1), max(round(h * scale), 1)


@dataclass(frozen=True)
class TripletStore:
    """The frames of the chosen triplets, at model resolution.

    Attributes:
        centers: Middle frame of each triplet, in clip order.
        frames: ``{frame index: (H, W, 3) uint8 RGB}``.
        size: ``(width, height)`` of the stored frames.
    """

    centers: tuple[int, ...]
    frames: dict[int, np.ndarray] = field(repr=False)
    size: tuple[int, int]

    def triplet(self, i: int) -> np.ndarray:
        """``(3, H, W, 3)`` uint8: frames ``(t−1, t, t+1)`` of triplet ``i``."""
        t = self.centers[i]
        return np.stack([self.frames[t - 1], self.frames[t], self.frames[t + 1]])

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.frames.values())


def load_triplets(scan: ClipScan, *, max_triplets: int, max_side: int | None = None,
                  memory_mb: float = 512.0) -> TripletStore:
    """Second pass: choose triplets within shots and keep their frames at model resolution.

    Raises:
        NothingToLearn: No three consecutive frames without a cut.
    """
    if max_triplets < 1:
        raise ValueError(f"max_triplets must be >= 1, got {max_triplets}")
    centers = valid_centers(scan.frames, scan.cut_pairs)
    if not centers:
        raise NothingToLearn(f"CLIP {scan.path}: no three consecutive frames without a scene cut "
                           f"({len(scan.cut_pairs)} cuts in {scan.frames} frames); nothing to fine-tune on")
    w, h = model_size(scan.size, max_side)
    budget = int(memory_mb * 2 ** 20 // (3 * w * h * 3))
    if budget < 1:
        raise ValueError(f"memory budget {memory_mb} MB cannot hold one {w}x{h} triplet; raise it or lower "
                         "--max-side")
    if budget < max_triplets:
        logger.info("memory budget %.0f MB holds %d triplets at %dx%d (asked for %d)", memory_mb, budget, w, h,
                    max_triplets)
    chosen = choose_centers(centers, min(max_triplets, budget))
    wanted = {t + d for t in chosen for d in (-1, 0, 1)}
    frames: dict[int, np.ndarray] = {}
    for index, rgb in enumerate(_decode(scan.path)):
        if index in wanted:
            if (rgb.shape[1], rgb.shape[0]) != (w, h):
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            frames[index] = np.ascontiguousarray(rgb)
        if index >= max(wanted):
            break
    missing = sorted(wanted - set(frames))
    if missing:
        raise RtAnimeError(f"CLIP {scan.path} gave fewer frames on the second read (missing {missing[:5]}); is the "
                           "file being written?")
    return TripletStore(centers=tuple(chosen), frames=frames, size=(w, h))
