"""Typed video frames passed between pipeline stages.

Design: a :class:`Frame` always carries a decoded, converted picture, ``data`` being a ``(3, H, W)`` floating-point
RGB tensor in ``[-1, 1]`` (the range every rt-anime generator takes). Container-level objects (``av.VideoFrame``,
``av.Packet``) never leave the decode and encode stages, so every stage in between, and every live source or sink,
sees one type with timestamps that are never optional to think about: ``pts`` and ``time_base`` travel with the
pixels (VFR-safe; rt-anime never re-derives timestamps from a frame rate).

Timestamps are plain Python values and stay on the CPU even when ``data`` lives on an accelerator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

__all__ = ["Frame", "FrameBatch"]


def _check_time_base(time_base: object, owner: str) -> None:
    if not isinstance(time_base, Fraction):
        raise TypeError(
            f"{owner}.time_base must be a fractions.Fraction, got {type(time_base).__name__} ({time_base!r})"
        )
    if time_base <= 0:
        raise ValueError(f"{owner}.time_base must be > 0, got {time_base}")


def _check_optional_int(value: object, name: str) -> None:
    # bool is an int subclass; a True pts is always a bug upstream.
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} ({value!r})")


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One video frame with its source timestamp.

    The pixel range is documented, not checked: checking it would cost a full reduction per frame.
    """

    data: torch.Tensor
    """RGB picture, shape ``(3, H, W)``, floating point, values in ``[-1, 1]``."""
    pts: int | None
    """Presentation timestamp in ``time_base`` units; ``None`` only for sources without timestamps."""
    time_base: Fraction
    """Unit of ``pts`` and ``duration`` in seconds."""
    index: int
    """Position of the frame in the order the source produced it (decoder output order), from 0."""
    duration: int | None = None
    """Display duration in ``time_base`` units, when the source knows it."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"Frame.data must be a torch.Tensor, got {type(self.data).__name__}")
        if self.data.ndim != 3 or self.data.shape[0] != 3:
            raise ValueError(f"Frame.data must have shape (3, H, W), got {tuple(self.data.shape)}")
        if self.data.shape[1] < 1 or self.data.shape[2] < 1:
            raise ValueError(f"Frame.data must have H, W >= 1, got {tuple(self.data.shape)}")
        if not self.data.is_floating_point():
            raise TypeError(f"Frame.data must be a floating-point tensor in [-1, 1], got dtype {self.data.dtype}")
        _check_optional_int(self.pts, "Frame.pts")
        _check_optional_int(self.duration, "Frame.duration")
        _check_time_base(self.time_base, "Frame")
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"Frame.index must be an int >= 0, got {self.index!r}")

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def pts_seconds(self) -> float | None:
        """Presentation time in seconds, or ``None`` when the frame has no pts."""
        return None if self.pts is None else float(self.pts * self.time_base)

    @property
    def duration_seconds(self) -> float | None:
        """Display duration in seconds, or ``None`` when unknown."""
        return None if self.duration is None else float(self.duration * self.time_base)

    def with_data(self, data: torch.Tensor) -> Frame:
        """The same frame (timestamps, index) carrying new pixels, e.g. the stylized picture."""
        return Frame(data=data, pts=self.pts, time_base=self.time_base, index=self.index, duration=self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameBatch:
    """Frames of one size and one time base stacked for a batched model call."""

    data: torch.Tensor
    """RGB pictures, shape ``(N, 3, H, W)``, floating point, values in ``[-1, 1]``."""
    pts: tuple[int | None, ...]
    time_base: Fraction
    indices: tuple[int, ...]
    durations: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"FrameBatch.data must be a torch.Tensor, got {type(self.data).__name__}")
        if self.data.ndim != 4 or self.data.shape[1] != 3:
            raise ValueError(f"FrameBatch.data must have shape (N, 3, H, W), got {tuple(self.data.shape)}")
        n = int(self.data.shape[0])
        for name in ("pts", "indices", "durations"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FrameBatch.{name} has {len(getattr(self, name))} entries for {n} frames")
        _check_time_base(self.time_base, "FrameBatch")

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> FrameBatch:
        """Stack frames that share a size and a time base.

        Raises:
            ValueError: if ``frames`` is empty or the frames differ in size or time base.
        """
        if not frames:
            raise ValueError("FrameBatch.from_frames needs at least one frame, got 0")
        first = frames[0]
        for f in frames[1:]:
            if f.data.shape != first.data.shape:
                raise ValueError(
                    f"frames in a batch must share one size, got {tuple(first.data.shape)} and {tuple(f.data.shape)}"
                )
            if f.time_base != first.time_base:
                raise ValueError(f"frames in a batch must share one time base, got {first.time_base} and {f.time_base}")
        return cls(
            data=torch.stack([f.data for f in frames]),
            pts=tuple(f.pts for f in frames),
            time_base=first.time_base,
            indices=tuple(f.index for f in frames),
            durations=tuple(f.duration for f in frames),
        )

    def to_frames(self, data: torch.Tensor | None = None) -> list[Frame]:
        """Split back into frames, optionally with new pixels of shape ``(N, 3, H', W')``."""
        data = self.data if data is None else data
        if data.ndim != 4 or data.shape[0] != len(self):
            raise ValueError(f"data must have shape ({len(self)}, 3, H, W), got {tuple(data.shape)}")
        return [
            Frame(data=d, pts=p, time_base=self.time_base, index=i, duration=du)
            for d, p, i, du in zip(data.unbind(0), self.pts, self.indices, self.durations, strict=True)
        ]
