"""Encode stage: encode stylized frames with their source timestamps and mux them with the copied streams.

Timestamps: the video stream's time base is the input's (GIF's muxer keeps centiseconds, so a GIF gets 1/100), and
each frame is encoded with the pts it carries (rescaled when a frame arrives in another time base). Nothing is derived from a frame rate, so VFR input
stays VFR. A pts that does not increase (broken source) is bumped by one tick and counted, because the encoder
would reject it and dropping the frame would break "frames in == frames out".

Odd sizes: 4:2:0 and 4:2:2 cannot represent an odd width (4:2:0 an odd height) at all, in the bitstream as well as
in libx264 (it refuses to open). :class:`~realtime.pipeline.EncodeConfig` ``odd_size`` picks the policy; the
default keeps the exact size by switching to the 4:4:4 twin of ``pix_fmt``.

Rotation: frames are processed in coded orientation and the source's display matrix is written on the output
stream (``VideoStream.set_display_matrix``), so players rotate the output exactly as they rotated the input.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from fractions import Fraction

import av
import av.error
import torch.nn.functional as F

from ..frames import Frame
from .codecs import DtsRepair, PaletteQuantizer, muxer_time_base, resolve_encode
from .config import EncodeConfig
from .convert import _rgb_format_for, _tensor_to_frame
from .decode import InputVideo, SourceInfo
from .errors import EncoderError, OutputError
from .stage import Channel, Stage
from .streams import StreamCopier, filter_metadata, rescale

__all__ = ["OutputVideo", "EncodeStage", "SinkStage", "choose_pix_fmt"]

logger = logging.getLogger(__name__)


def _subsampling(pix_fmt: str) -> tuple[int, int]:
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or len(fmt.components) < 3:
        return 1, 1
    return 1024 // fmt.chroma_width(1024), 1024 // fmt.chroma_height(1024)


def _full_chroma_twin(pix_fmt: str) -> str:
    twin = re.sub(r"4(20|22|11|10|40)", "444", pix_fmt)
    if twin == pix_fmt:  # semi-planar (nv12, p010le): pick the planar 4:4:4 of the same depth
        twin = "yuv444p10le" if _rgb_format_for(pix_fmt) == "rgb48le" else "yuv444p"
    return twin


def choose_pix_fmt(
    config: EncodeConfig, width: int, height: int, *, path: str | os.PathLike[str] | None = None
) -> tuple[str, int, int]:
    """Pixel format and coded size for a ``width``×``height`` output, applying ``config.odd_size``.

    Raises:
        EncoderError: the size does not fit ``pix_fmt`` and ``odd_size`` is ``"error"``.
    """
    try:
        sub_w, sub_h = _subsampling(config.pix_fmt)
    except (ValueError, av.error.FFmpegError) as error:
        raise EncoderError(f"pix_fmt {config.pix_fmt!r} is not a pixel format FFmpeg knows", path=path) from error
    if width % sub_w == 0 and height % sub_h == 0:
        return config.pix_fmt, width, height
    if config.odd_size == "error":
        raise EncoderError(
            f"size {width}x{height} does not fit pix_fmt {config.pix_fmt!r} (needs multiples of {sub_w}x{sub_h}); "
            "set odd_size='full_chroma' or 'pad', or size= to an even size",
            path=path,
        )
    if config.odd_size == "pad":
        padded = (-(-width // sub_w) * sub_w, -(-height // sub_h) * sub_h)
        logger.warning("padding %dx%d to %dx%d for pix_fmt %s", width, height, *padded, config.pix_fmt)
        return config.pix_fmt, *padded
    twin = _full_chroma_twin(config.pix_fmt)
    logger.warning(
        "size %dx%d does not fit pix_fmt %s; encoding with %s to keep the exact size "
        "(4:4:4 H.264 does not play in some browsers and hardware decoders)",
        width,
        height,
        config.pix_fmt,
        twin,
    )
    return twin, width, height


class OutputVideo:
    """The output container: one encoded video stream plus the carried audio/subtitle streams.

    Nothing is written to ``path`` before the first frame or packet (the header is written on first mux).

    Args:
        path: File to write (the temporary path next to the final output).
        encode: Encoder configuration.
        source: The opened input (stream templates, metadata).
        output_hw: Output ``(height, width)``.
        display_name: Path named in error messages (the final output path).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encode: EncodeConfig,
        source: InputVideo,
        output_hw: tuple[int, int],
        display_name: str | os.PathLike[str] | None = None,
    ) -> None:
        self.display_name = os.fspath(display_name or path)
        info = source.info
        try:
            self.container: av.container.OutputContainer = av.open(os.fspath(path), "w", format=encode.container_format)
        except (ValueError, av.error.FFmpegError) as error:
            raise OutputError(
                f"cannot create an output container ({error}); use a known extension or set container_format",
                path=self.display_name,
            ) from error
        try:
            encode, pix_fmt, width, height = self._resolve(encode, output_hw)
            self.stream = self._add_video_stream(encode, info, pix_fmt, width, height)
            self.stream.metadata.update(filter_metadata(dict(source.video.metadata)))
            self.container.metadata.update(filter_metadata(dict(source.container.metadata)))
            self.copier = StreamCopier(self.container, source.copy_streams, source.attachments)
            _copy_chapters(source.container, self.container)
        except BaseException:
            self.container.close()
            raise
        self.pix_fmt = pix_fmt
        self.coded_hw = (height, width)
        self.output_hw = output_hw
        self.time_base = self.stream.time_base
        self._quantize = PaletteQuantizer(width, height) if pix_fmt == "pal8" else None
        self._colorspace = info.colorspace
        self._color_range = info.color_range
        self._frame_step = max(round(1 / ((info.frame_rate or Fraction(25)) * self.time_base)), 1)
        self._last_pts: int | None = None
        self._repair = DtsRepair()
        self.frames_written = 0
        self.pts_adjusted = 0
        self._finished = False

    def _resolve(self, encode: EncodeConfig, output_hw: tuple[int, int]) -> tuple[EncodeConfig, str, int, int]:
        try:
            encode = resolve_encode(encode, self.container)
        except ValueError as error:
            raise EncoderError(str(error), path=self.display_name) from error
        codec = encode.codec
        if codec not in av.codecs_available or not _is_encoder(codec):
            raise EncoderError(
                f"codec {codec!r} is not an encoder of this FFmpeg build (see av.codecs_available; "
                f"'auto' picks one for the container)",
                path=self.display_name,
            )
        pix_fmt, width, height = choose_pix_fmt(encode, output_hw[1], output_hw[0], path=self.display_name)
        allowed = av.Codec(codec, "w").video_formats
        if allowed and pix_fmt not in {f.name for f in allowed}:
            raise EncoderError(
                f"codec {codec!r} does not take pix_fmt {pix_fmt!r} (allowed: {', '.join(f.name for f in allowed)})",
                path=self.display_name,
            )
        return encode, pix_fmt, width, height

    def _add_video_stream(
        self, encode: EncodeConfig, info: SourceInfo, pix_fmt: str, width: int, height: int
    ) -> av.video.stream.VideoStream:
        try:
            stream = self.container.add_stream(encode.codec, rate=info.frame_rate, options=encode.encoder_options())
        except ValueError as error:
            raise EncoderError(
                f"container {self.container.format.name!r} cannot hold codec {encode.codec!r} ({error})",
                path=self.display_name,
            ) from error
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        # The input's time base, so source pts are written verbatim (VFR-safe, no rounding), where the muxer allows.
        time_base = muxer_time_base(self.container.format.name, info.frame_rate, info.time_base)
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        for tag in ("colorspace", "color_range", "color_primaries", "color_trc"):
            value = getattr(info, tag)
            if value:
                setattr(stream.codec_context, tag, value)
        if info.display_matrix is not None:
            stream.set_display_matrix(list(info.display_matrix))
        if info.sample_aspect_ratio is not None:
            # Non-square pixels keep the picture's shape: an anamorphic 720x480 16:9 DVD frame stays 16:9 on
            # screen, and resized to another size its pixels get the shape that keeps the same display ratio.
            sar = info.sample_aspect_ratio * Fraction(info.width, info.height) / Fraction(width, height)
            sar = sar.limit_denominator(65535) if max(sar.numerator, sar.denominator) > 65535 else sar
            stream.codec_context.sample_aspect_ratio = sar
        return stream

    def write_frame(self, frame: Frame) -> None:
        """Encode one stylized frame with its own timestamp."""
        data = frame.data
        if (frame.height, frame.width) != self.output_hw:
            data = F.interpolate(data[None].float(), size=self.output_hw, mode="bilinear", align_corners=False)[0]
        if self.coded_hw != self.output_hw:  # odd_size="pad": replicate the last row/column
            pad_h, pad_w = self.coded_hw[0] - self.output_hw[0], self.coded_hw[1] - self.output_hw[1]
            data = F.pad(data[None].float(), (0, pad_w, 0, pad_h), mode="replicate")[0]
        if self._quantize is not None:
            vf = self._quantize(_tensor_to_frame(data, format="rgb24"))
        else:
            vf = _tensor_to_frame(data, format=self.pix_fmt, colorspace=self._colorspace,
                                  color_range=self._color_range)
        pts = self._next_pts(frame)
        vf.pts = pts
        vf.time_base = self.time_base
        if frame.duration:
            vf.duration = rescale(frame.duration, frame.time_base, self.time_base)
        try:
            packets = self.stream.encode(vf)
        except av.error.FFmpegError as error:
            raise EncoderError(
                f"encoder {self.stream.codec_context.name!r} failed: {error}", path=self.display_name
            ) from error
        self.container.mux(self._repair(packets))
        if self.frames_written == 0:
            self._warn_unused_options()
        self.frames_written += 1

    def _warn_unused_options(self) -> None:
        # avcodec_open2 removes the options it consumed; what is left was ignored (a typo, or e.g. crf given to
        # an encoder without rate-factor control).
        unused = dict(self.stream.codec_context.options)
        if unused:
            logger.warning("encoder %s ignored options %s", self.stream.codec_context.name, unused)

    def _next_pts(self, frame: Frame) -> int:
        if frame.pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._frame_step
        else:
            pts = rescale(frame.pts, frame.time_base, self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            self.pts_adjusted += 1
            log = logger.warning if self.pts_adjusted == 1 else logger.debug
            log(
                "frame %d: pts %d does not increase (previous %d); writing %d",
                frame.index,
                pts,
                self._last_pts,
                self._last_pts + 1,
            )
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def write_packet(self, packet: av.Packet) -> None:
        """Copy (or transcode) one packet of a carried stream."""
        self.copier.write(packet)

    def finish(self) -> None:
        """Flush the encoders and write the trailer."""
        try:
            self.container.mux(self._repair(self.stream.encode(None)))
            self.copier.flush()
            self.container.close()
        except av.error.FFmpegError as error:
            raise EncoderError(f"finishing the output failed: {error}", path=self.display_name) from error
        self._finished = True

    def abort(self) -> None:
        """Close the container after a failure (the caller deletes the file)."""
        if self._finished:
            return
        self._finished = True
        try:
            self.container.close()
        except Exception as error:  # noqa: BLE001 - already failing; the first error is the one to report
            logger.debug("closing the aborted output raised %r", error)


def _is_encoder(codec: str) -> bool:
    try:
        av.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        return False
    return True


def _copy_chapters(source: av.container.InputContainer, output: av.container.OutputContainer) -> None:
    try:
        chapters = source.chapters()
        if chapters:
            output.set_chapters(chapters)
    except (AttributeError, ValueError, TypeError, av.error.FFmpegError) as error:
        logger.warning("chapters not copied: %s", error)


class EncodeStage(Stage):
    """Thread writing stylized frames and copied packets into an :class:`OutputVideo`.

    Args:
        output: The output container.
        items: Channel carrying stylized Frames (from translate) and packets (from decode); two producers.
        stop: The pipeline's shared stop event.
        progress: ``progress(frames_written, frames_expected)`` after each frame, on this thread.
        total: Expected frame count passed to ``progress``.
    """

    def __init__(
        self,
        *,
        output: OutputVideo,
        items: Channel[Frame | av.Packet],
        stop: threading.Event,
        progress: Callable[[int, int | None], None] | None = None,
        total: int | None = None,
    ) -> None:
        super().__init__(name="encode", stop=stop)
        self._output = output
        self._items = items
        self._progress = progress
        self._total = total

    @property
    def frames_out(self) -> int:
        return self._output.frames_written

    def run(self) -> None:
        for item in self._items:
            try:
                with self.timed():
                    if isinstance(item, Frame):
                        self._output.write_frame(item)
                    else:
                        self._output.write_packet(item)
            except av.error.FFmpegError as error:
                raise EncoderError(f"writing the output failed: {error}", path=self._output.display_name) from error
            if self._progress is not None and isinstance(item, Frame):
                self._progress(self._output.frames_written, self._total)

    def finish(self) -> None:
        with self.timed():
            self._output.finish()


class SinkStage(Stage):
    """Thread handing stylized frames to a live sink callable (preview window, virtual camera, ...).

    Args:
        sink: Called with each output Frame, on this thread.
        items: Stylized frames from the translate stage.
        stop: The pipeline's shared stop event.
        on_frame: Called after the sink returns (latency bookkeeping).
    """

    def __init__(
        self,
        *,
        sink: Callable[[Frame], object],
        items: Channel[Frame],
        stop: threading.Event,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        super().__init__(name="sink", stop=stop)
        if not callable(sink):
            raise TypeError(f"sink must be callable, got {type(sink).__name__}")
        self._sink = sink
        self._items = items
        self._on_frame = on_frame
        self.frames_out = 0

    def run(self) -> None:
        for frame in self._items:
            with self.timed():
                self._sink(frame)
            self.frames_out += 1
            if self._on_frame is not None:
                self._on_frame(frame)
