"""The video encoder an output container gets when none is named (``codec="auto"``), and GIF's per-frame palette.

H.264 (libx264) is the default wherever the container can hold it (mp4, mkv, mov, avi, ts, flv, ...). Containers
that cannot (WebM, GIF) get their own default encoder instead of a refusal: ``rt-anime clip.mp4 out.webm`` writes
VP9, ``rt-anime clip.gif out.gif`` writes an animated GIF. Settings the resolved encoder has no option for (x264's
``preset`` for VP9; ``crf`` and ``preset`` for GIF) are left out rather than warned about, since the user asked
for no particular encoder; an encoder named explicitly keeps every setting the user changed (the encode stage warns
about those it ignored) and drops x264's defaults it has no use for (crf 18, preset medium, yuv420p for ProRes).
Every encoder gets its ``crf`` and x264/x265 ``preset`` checked before a file is opened, and AVI gets no B-frames.

GIF holds 256 colours per frame. FFmpeg's own recipe (``palettegen`` + ``paletteuse``) computes each frame's palette
from that frame (``stats_mode=single``, ``new=1``) and dithers with ``sierra2_4a``; swscale cannot produce ``pal8``
at all. Flat anime colour suits a per-frame palette well.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import tempfile
from fractions import Fraction

import av
import av.error
import av.filter

from .config import EncodeConfig

__all__ = ["AUTO", "PaletteQuantizer", "resolve_encode", "resolve_encode_for"]

logger = logging.getLogger(__name__)

AUTO = "auto"
_PREFERRED = ("libx264",)  # in order; the first one the container holds and this FFmpeg has
_RAW = frozenset({"rawvideo", "wrapped_avframe"})
# GIF's muxer keeps time in centiseconds whatever the stream asks for.
GIF_TIME_BASE = Fraction(1, 100)


def _encoder_options(codec: str) -> set[str]:
    options = av.CodecContext.create(codec, "w").supported_options
    return {o.name for o in options.private} | {o.name for o in options.generic}


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")
# x264 and x265 declare crf unbounded and clamp it themselves; their documented scale ends at 51.
_CRF_MAX = {"libx264": 51.0, "libx264rgb": 51.0, "libx265": 51.0}


def _crf_range(codec: str) -> tuple[float, float]:
    option = next(o for o in av.CodecContext.create(codec, "w").supported_options.private if o.name == "crf")
    # -1 is the option's "unset" default, not a quality level.
    return max(0.0, float(option.min)), min(float(option.max), _CRF_MAX.get(codec, float(option.max)))


# Muxers whose clock ticks once per frame: AVI stores one frame rate and marks a skipped tick with an empty chunk.
FRAME_CLOCK_FORMATS = frozenset({"avi"})


def muxer_time_base(muxer: str, frame_rate: Fraction | None, otherwise: Fraction) -> Fraction:
    """The video time base a muxer needs: GIF counts centiseconds; AVI ticks once per frame (a finer clock would
    make a 12800 or 1000 fps stream of mostly empty slots); any other muxer takes ``otherwise``."""
    if muxer == "gif":
        return GIF_TIME_BASE
    if muxer in FRAME_CLOCK_FORMATS:
        return 1 / (frame_rate or Fraction(25))
    return otherwise


_MAX_REORDER_TICKS = 2 ** 32


class DtsRepair:
    """Decode timestamps an encoder got wrong, made valid before the muxer sees them.

    FFmpeg's libx265 wrapper sometimes hands out packets whose dts is uninitialised memory (±4.6e18 for a pts of
    0; about 1 in 10 runs of a short clip, at the flush), which Matroska refuses with EINVAL and MP4 with "not yet
    implemented", and the whole output is lost. A dts must not pass its pts, must increase, and cannot trail it by
    more than any reorder delay (2^32 ticks is 13 h at 1/90000); one that breaks a rule is replaced by the pts (or
    one tick after the previous dts when that is later), which is what a stream without reordering has anyway.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self.repaired = 0

    def __call__(self, packets: list[av.Packet]) -> list[av.Packet]:
        for packet in packets:
            pts, dts = packet.pts, packet.dts
            # A missing dts is the muxer's to fill; a wrong one is ours to mend.
            if pts is not None and dts is not None and (dts > pts or pts - dts > _MAX_REORDER_TICKS
                                                        or (self._last is not None and dts <= self._last)):
                fixed = pts if self._last is None or pts > self._last else self._last + 1
                logger.debug("encoder packet dts %d (pts %d) is invalid; writing %d", dts, pts, fixed)
                packet.dts = fixed
                self.repaired += 1
            if packet.dts is not None:
                self._last = packet.dts
        return packets


def _pix_fmt_for(codec: str, wanted: str) -> str:
    """``wanted`` where the encoder takes it, else the encoder's own first choice (``pal8`` for GIF)."""
    allowed = [f.name for f in av.Codec(codec, "w").video_formats or ()]
    full_range = "yuvj" + wanted.removeprefix("yuv")
    if full_range in allowed[:1]:
        # MJPEG lists its full-range formats first and refuses limited-range yuv420p unless made non-strict.
        return full_range
    if not allowed or wanted in allowed:
        return wanted
    return "pal8" if "pal8" in allowed else allowed[0]


def _quiet(encode: EncodeConfig) -> EncodeConfig:
    """x265 prints its banner and settings to stderr itself (not through av_log): keep it to errors."""
    if encode.codec != "libx265" or "x265-params" in encode.options:
        return encode
    return dataclasses.replace(encode, options={**encode.options, "x265-params": "log-level=error"})


def _encoder_name(codec: str) -> str | None:
    try:
        found = av.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        return None
    return found.name


def _holds(container_format: str, codec: str) -> bool:
    # A scratch muxer of the same format: add_stream asks libavformat (avformat_query_codec) and refuses a codec
    # the format cannot hold. PyAV's ``supported_codecs`` lists only codecs a muxer *declares*, which leaves H.264
    # out of MPEG-TS and MPEG-PS although both carry it.
    with av.open(io.BytesIO(), "w", format=container_format) as scratch:
        try:
            scratch.add_stream(codec)
        except ValueError:
            return False
    return True


def resolve_encode(encode: EncodeConfig, container: av.container.OutputContainer) -> EncodeConfig:
    """``encode`` with ``codec="auto"`` replaced by the encoder ``container`` gets, and settings that suit it.

    Anything else is returned unchanged. A ``crf`` outside the encoder's scale is refused here, before any file
    is opened, rather than by libavcodec's "Numerical result out of range" (or x264 clamping it silently).
    """
    resolved = _resolve_codec(encode, container)
    if container.format.name in FRAME_CLOCK_FORMATS and "bf" not in resolved.options:
        # AVI stores no presentation times: a reordered (B-frame) stream plays every frame its delay late.
        resolved = dataclasses.replace(resolved, options={**resolved.options, "bf": "0"})
    codec = _encoder_name(resolved.codec)
    if resolved.preset is not None and codec in ("libx264", "libx264rgb", "libx265") \
            and resolved.preset not in _X26X_PRESETS:
        raise ValueError(f"preset {resolved.preset!r} (--preset): {codec} takes {', '.join(_X26X_PRESETS)}")
    if codec is not None and resolved.crf is not None and "crf" in _encoder_options(codec):
        low, high = _crf_range(codec)
        if not low <= resolved.crf <= high:
            raise ValueError(f"crf {resolved.crf:g} (--crf): {codec} takes {low:g}..{high:g} (lower is better quality)")
    return resolved


def _resolve_codec(encode: EncodeConfig, container: av.container.OutputContainer) -> EncodeConfig:
    if encode.codec != AUTO:
        codec = _encoder_name(encode.codec)
        if codec is None:
            return encode  # the encode stage names the unknown codec
        # The defaults (crf 18, preset medium) are x264's settings, not a request: an encoder without those options
        # (FFV1, ProRes, MJPEG) drops them quietly; a value the user changed is kept and warned about when ignored.
        have, defaults = _encoder_options(codec), EncodeConfig()
        unasked: dict[str, str | None] = {name: None for name in ("crf", "preset")
                                          if name not in have and getattr(encode, name) == getattr(defaults, name)}
        if encode.pix_fmt == defaults.pix_fmt:  # likewise yuv420p: ProRes takes 4:2:2/4:4:4 10-bit only
            unasked["pix_fmt"] = _pix_fmt_for(codec, encode.pix_fmt)
        unasked = {k: v for k, v in unasked.items() if getattr(encode, k) != v}
        return _quiet(dataclasses.replace(encode, **unasked) if unasked else encode)
    default = container.default_video_codec
    default = default if default and default != "none" else None
    # Raw formats (y4m) take only their own codec; the muxer would accept an H.264 stream and fail at the trailer.
    if default not in _RAW:
        for name in _PREFERRED:
            if _encoder_name(name) and _holds(container.format.name, name):
                return dataclasses.replace(encode, codec=name)
    codec = _encoder_name(default) if default else None
    if codec is None:
        raise ValueError(f"container {container.format.name!r} has no video encoder in this FFmpeg build; "
                         "name one with --codec")
    have = _encoder_options(codec)
    options = dict(encode.options)
    crf = encode.crf if "crf" in have else None
    if codec.startswith("libvpx") and crf is not None:
        options.setdefault("b", "0")  # libvpx is constant-quality only with no bitrate target
        options.setdefault("deadline", "good")
        options.setdefault("cpu-used", "4")  # vs the default 1: half the time, a 3 % larger file (30 bikes.mp4 frames)
        if "row-mt" in have:
            options.setdefault("row-mt", "1")
    pix_fmt = _pix_fmt_for(codec, encode.pix_fmt)
    resolved = dataclasses.replace(encode, codec=codec, pix_fmt=pix_fmt, crf=crf,
                                   preset=encode.preset if "preset" in have else None, options=options)
    logger.info("%s: encoding with %s (%s)", container.format.name, codec, pix_fmt)
    return _quiet(resolved)


def resolve_encode_for(encode: EncodeConfig, path: str | os.PathLike[str]) -> EncodeConfig:
    """:func:`resolve_encode` for the container a file at ``path`` would get (its extension, or
    ``encode.container_format``), without touching ``path``: for callers that encode elsewhere first (rt-anime
    batch's Matroska chunks) and remux into ``path`` later."""
    with tempfile.TemporaryDirectory(prefix="rt-anime-codec-") as scratch:
        probe = os.path.join(scratch, "probe" + os.path.splitext(os.fspath(path))[1])
        with av.open(probe, "w", format=encode.container_format) as container:
            return resolve_encode(encode, container)


class PaletteQuantizer:
    """RGB frames → ``pal8`` frames, each with the 256-colour palette of its own pixels (FFmpeg filters)."""

    def __init__(self, width: int, height: int) -> None:
        graph = av.filter.Graph()
        source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=GIF_TIME_BASE)
        split = graph.add("split")
        make = graph.add("palettegen", "stats_mode=single:reserve_transparent=0")
        apply = graph.add("paletteuse", "new=1:dither=sierra2_4a")
        sink = graph.add("buffersink")
        source.link_to(split)
        split.link_to(apply, 0, 0)
        split.link_to(make, 1, 0)
        make.link_to(apply, 0, 1)
        apply.link_to(sink)
        graph.configure()
        self._graph = graph
        self._count = 0

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The ``pal8`` frame (its pts is the caller's to set)."""
        # paletteuse pairs each frame with its palette by timestamp: give the graph a clean count of its own.
        frame.pts, frame.time_base = self._count, GIF_TIME_BASE
        self._count += 1
        self._graph.push(frame)
        return self._graph.pull()
