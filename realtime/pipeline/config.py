"""Frozen configuration records for the pipeline and the encoder.

The CLI maps its flags onto these two dataclasses in one place; nothing else in the pipeline takes options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

import torch

__all__ = ["PipelineConfig", "EncodeConfig", "PipelineMode", "OddSizePolicy", "DeinterlaceMode"]

PipelineMode = Literal["file", "live"]
OddSizePolicy = Literal["full_chroma", "pad", "error"]
DeinterlaceMode = Literal["auto", "off"]


def _check_int(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_literal(name: str, value: object, options: object) -> None:
    allowed = get_args(options)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    """How frames move through decode → translate → encode.

    Geometry: the output size is ``size`` when given, else the source size. The model runs on that size, first
    scaled down so its longer side is at most ``max_side`` (when set), then reflect-padded up to a multiple of
    ``size_multiple``; its output is cropped back and scaled to the output size. With neither ``size`` nor
    ``max_side`` the model sees the source pixels unresampled (padding only).
    """

    mode: PipelineMode = "file"
    """``"file"``: lossless, every frame in order, blocking back-pressure. ``"live"``: latest frame wins; frames
    waiting for the translate stage while it is busy are dropped and counted, so no queue ever grows."""
    batch_size: int = 1
    """Frames per ``translate`` call (file mode fills batches; live mode takes what is pending, up to this)."""
    queue_size: int = 8
    """Capacity of each bounded queue between stages (file mode, and live mode after translate)."""
    size_multiple: int = 1
    """The model's input height and width must be multiples of this (e.g. 4 for CUT/Scenimefy, 8 or 32 others)."""
    max_side: int | None = None
    """Cap on the longer side of the model's input; larger frames are processed downscaled and scaled back."""
    size: tuple[int, int] | None = None
    """Forced output size ``(width, height)``; ``None`` keeps the source size."""
    device: str = "cpu"
    """Device the batch is moved to before ``translate`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""
    allow_partial: bool = False
    """Keep the output of a truncated input instead of raising :class:`TruncatedInputError`."""
    copy_audio: bool = True
    """Carry audio streams into the output (packet copy; transcoded only when the container needs it)."""
    copy_subtitles: bool = True
    """Carry subtitle streams into the output (packet copy; transcoded or dropped when the container needs it)."""
    deinterlace: DeinterlaceMode = "auto"
    """``"auto"``: frames the decoder flags interlaced (DV, DVD, 1080i) are deinterlaced first (FFmpeg's yadif, one
    frame per frame, timestamps kept), so the model never draws the fields' comb as line art; ``"off"``: never."""
    stop_timeout: float = 10.0
    """Seconds to wait for each stage thread to exit after a stop; a stage stuck inside native code is then
    abandoned (daemon thread) with an error logged rather than hanging the caller."""

    def __post_init__(self) -> None:
        _check_literal("mode", self.mode, PipelineMode)
        _check_literal("deinterlace", self.deinterlace, DeinterlaceMode)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("queue_size", self.queue_size, minimum=1)
        _check_int("size_multiple", self.size_multiple, minimum=1)
        _check_int("max_side", self.max_side, minimum=2, optional=True)
        if self.size is not None and (
            not isinstance(self.size, tuple)
            or len(self.size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.size)
        ):
            raise ValueError(f"size must be None or a (width, height) tuple of ints >= 1, got {self.size!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(
                f"device must be a torch device string such as 'cpu' or 'cuda:0', got {self.device!r}"
            ) from error
        if not self.stop_timeout > 0:
            raise ValueError(f"stop_timeout must be > 0 seconds, got {self.stop_timeout!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class EncodeConfig:
    """How the stylized video is encoded and written."""

    codec: str = "auto"
    """FFmpeg encoder name (``libx264``, ``libx265``, ``h264_nvenc`` when the bundled FFmpeg has it, ...), or
    ``"auto"``: libx264 where the container holds H.264, else the container's own encoder (VP9 for WebM, GIF with a
    per-frame palette for ``.gif``; :mod:`realtime.pipeline.codecs`)."""
    pix_fmt: str = "yuv420p"
    """Encoder pixel format; ``yuv420p10le`` keeps 10-bit sources at 10 bits."""
    crf: float | None = 18
    """Constant rate factor (lower is better); ``None`` leaves the encoder default. Applied as the ``crf`` encoder
    option; an encoder without that option logs a warning naming it."""
    preset: str | None = "medium"
    """Speed/size preset of x264/x265-style encoders; ``None`` leaves the encoder default."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Extra encoder options (FFmpeg AVOptions, e.g. ``{"tune": "animation"}``); unused ones are logged."""
    odd_size: OddSizePolicy = "full_chroma"
    """What to do when the frame size does not fit the pixel format's chroma subsampling (an odd width or height
    with ``yuv420p``, which libx264 rejects and H.264 cannot signal): ``"full_chroma"`` keeps the exact size and
    encodes with the matching 4:4:4 format (``yuv444p``, ``yuv444p10le``), a warning says so; ``"pad"`` keeps
    ``pix_fmt`` and adds one replicated row/column (the size grows by one); ``"error"`` raises."""
    container_format: str | None = None
    """Muxer name (``mp4``, ``matroska``, ...); ``None`` guesses it from the output file extension."""
    overwrite: bool = True
    """Replace an existing output file (never the input); ``False`` raises :class:`OutputError` instead."""

    def __post_init__(self) -> None:
        for name in ("codec", "pix_fmt"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if self.crf is not None and (isinstance(self.crf, bool) or not isinstance(self.crf, (int, float))):
            raise ValueError(f"crf must be a number or None, got {self.crf!r}")
        if self.preset is not None and (not isinstance(self.preset, str) or not self.preset):
            raise ValueError(f"preset must be a non-empty string or None, got {self.preset!r}")
        if not isinstance(self.options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.options.items()
        ):
            raise ValueError(f"options must be a mapping of str to str, got {self.options!r}")
        # Freeze the mapping too, so a config cannot change after validation.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        _check_literal("odd_size", self.odd_size, OddSizePolicy)

    def encoder_options(self) -> dict[str, str]:
        """The AVOptions handed to the encoder: ``crf`` and ``preset`` first, ``options`` overriding them."""
        opts: dict[str, str] = {}
        if self.crf is not None:
            opts["crf"] = f"{self.crf:g}"
        if self.preset is not None:
            opts["preset"] = self.preset
        opts.update(self.options)
        return opts
