"""What a pipeline run reports: counts, losses and timings (for ``--benchmark`` and the progress bar)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import PipelineMode

__all__ = ["PipelineResult"]


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineResult:
    """Statistics of one :func:`run_file` or :func:`run_live` run."""

    mode: PipelineMode
    output_path: str | None
    """Final output file (``run_file``), ``None`` for a live sink."""
    frames_in: int
    """Frames the source produced (decoded frames for a file)."""
    frames_out: int
    """Frames encoded or handed to the sink; equals ``frames_in`` in file mode."""
    frames_dropped: int = 0
    """Live mode: frames discarded because the translate stage was busy (latest frame wins)."""
    frames_expected: int | None = None
    """Frame count declared by the input container, when it declares one."""
    frames_lost: int | None = None
    """Frames the input declared but that could not be read (truncation) or decoded (corrupt packets)."""
    truncated: bool = False
    """The input ended early (only possible with ``allow_partial=True``; otherwise the run raised)."""
    decode_errors: int = 0
    """Video packets the decoder rejected (corrupt data); their frames are missing from the output."""
    packets_copied: int = 0
    packets_transcoded: int = 0
    packets_dropped_dts: int = 0
    """Copied packets dropped by the DTS guard (non-increasing timestamps in the source)."""
    pts_adjusted: int = 0
    """Video frames whose non-increasing pts was bumped by one tick so the encoder accepts them."""
    splices_joined: int = 0
    """Jumps in an MPEG-TS/PS clock (joined segments) across which the timeline was made continuous."""
    deinterlaced: bool = False
    """Frames flagged interlaced were found and deinterlaced (``PipelineConfig.deinterlace="auto"``)."""
    streams_transcoded: tuple[str, ...] = ()
    streams_dropped: tuple[str, ...] = ()
    wall_seconds: float = 0.0
    """End-to-end time, including opening the input and finishing the output."""
    model_seconds: float = 0.0
    """Time spent inside the ``translate`` callable only (device-synchronized)."""
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    """Busy time of each stage thread (``decode``/``source``, ``translate``, ``encode``/``sink``)."""
    max_pending: int = 0
    """Most frames ever waiting for the translate stage (bounded by the queue capacity)."""
    latency_p50: float | None = None
    """Live mode: median seconds from a frame entering the pipeline to the sink returning."""
    latency_p95: float | None = None

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        """Frames per second of the model call alone."""
        translated = self.frames_in - self.frames_dropped
        return translated / self.model_seconds if self.model_seconds > 0 else 0.0
