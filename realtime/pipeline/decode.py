"""Decode stage: demux the input, decode its video stream, pass other streams' packets on untouched.

:class:`InputVideo` owns the input container. Opening it decodes up to the first video frame ("priming"), so the
encoder can be configured from facts rather than guesses (frame size, pixel format, colour tags, display matrix)
and an audio-only or undecodable input fails before any output file exists. :class:`SourceStage` is the thread
that drains an iterator of :class:`~realtime.frames.Frame` (and, for files, copied ``av.Packet``) into channels;
the same stage runs a live source (camera thread, network stream) in live mode.

Image sequences (a folder, a glob or printf pattern) are ``InputVideo`` inputs too, opened with FFmpeg's
``image2`` demuxer (:mod:`realtime.jobs`).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import torch
from av.sidedata.sidedata import Type as SideDataType

from ..frames import Frame
from .config import DeinterlaceMode
from .convert import _frame_to_tensor
from .errors import InputError, NoVideoError
from .stage import Channel, PipelineStopped, Stage
from .timestamps import FrameClock, Splices

__all__ = ["InputVideo", "SourceInfo", "SourceStage", "main_video_stream", "open_video"]

logger = logging.getLogger(__name__)



def open_video(path: str | os.PathLike, role: str) -> av.container.InputContainer:
    """Open a file that must hold a video stream, for the tools that read frames outside the pipeline (scoring,
    fine-tuning). ``role`` names the argument in errors (``CLIP``, ``--reference``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{role} {path} does not exist")
    if path.is_dir():
        raise InputError(f"{role} {path} is a folder; a video file is needed")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise InputError(f"{role} {path} cannot be opened as a video: {exc}") from None
    if not container.streams.video:
        container.close()
        raise NoVideoError(f"{role} {path} has no video stream")
    return container


# Open and read timeouts (seconds) for URLs: a server that never answers fails the run instead of hanging it.
URL_TIMEOUTS = (15.0, 10.0)
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art is a one-frame "video" stream, never the video


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """Facts about the input's video stream, read from its container and its first decoded frame."""

    path: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    frame_rate: Fraction | None
    """Average frame rate, a hint for encoder rate control only (timestamps always come from the frames)."""
    frames_declared: int | None
    """Frame count the container declares (mp4/mov sample tables), ``None`` when it declares none (mkv, ts)."""
    frames_unreadable: int
    """Frames the index points at beyond the end of the file (truncated mp4/mov); 0 when unknown."""
    display_matrix: tuple[int, ...] | None
    """The 3×3 display matrix (rotation/flip) as 9 int32, ``None`` when the stream has none."""
    rotation: int
    """Counter-clockwise rotation in degrees derived from ``display_matrix`` (0 when none)."""
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    sample_aspect_ratio: Fraction | None = None
    """Pixel shape (DV, DVD and broadcast SD store 720×480 or 720×576 for a 4:3 or 16:9 picture); ``None`` for
    square or unknown."""


def main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The video a player would show: FFmpeg's best stream (the default-flagged, then the largest), never cover art
    (an attached picture is a one-frame "video" stream, and may come first). Raises IndexError without video."""
    videos = [s for s in container.streams.video if not int(s.disposition) & _ATTACHED_PIC]
    if not videos:
        raise IndexError("no video stream")
    try:
        best = container.streams.best("video")
    except (ValueError, av.error.FFmpegError):
        best = None
    return best if best in videos else videos[0]


def _pixel_shape(sar: Fraction | None) -> Fraction | None:
    return Fraction(sar) if sar and sar > 0 and sar != 1 else None


class InputVideo:
    """An opened input: its video stream is decoded into Frames, chosen other streams are passed as packets.

    Args:
        path: Input file (or any URL FFmpeg opens, or an ``image2`` glob/printf pattern).
        copy_audio: Emit the packets of every audio stream.
        copy_subtitles: Emit the packets of every subtitle stream.
        format: FFmpeg demuxer to force (``image2`` for image sequences); ``None`` probes.
        options: Demuxer options (``{"framerate": "30000/1001", "pattern_type": "glob"}`` for ``image2``).
        deinterlace: ``"auto"`` deinterlaces the frames the decoder flags interlaced (yadif, one frame per frame);
            ``"off"`` keeps them woven.
        device: Where decoded frames' pixels should end up (the model's device): on a CUDA device the common
            pixel formats are uploaded as planes and converted there (``_frame_to_tensor``).

    Raises:
        InputError: the input does not exist or FFmpeg cannot open it.
        NoVideoError: the input has no video stream, or no video frame decodes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        copy_audio: bool = True,
        copy_subtitles: bool = True,
        format: str | None = None,
        options: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
        deinterlace: DeinterlaceMode = "off",
    ) -> None:
        self.path = os.fspath(path)
        self.device = torch.device(device)
        if format is None and "://" not in self.path and not os.path.exists(self.path):
            raise InputError("input file not found", path=self.path)
        try:
            timeout = URL_TIMEOUTS if "://" in self.path else None
            self.container: av.container.InputContainer = av.open(self.path, "r", format=format, options=options,
                                                                  timeout=timeout)
        except av.error.FFmpegError as error:
            hint = "" if timeout else "; an mp4/mov cut before its index cannot be read"
            # FFmpeg reports its own timeout as "Immediate exit requested".
            reason = f"no answer within {timeout[0]:g} s" if timeout and isinstance(error, av.error.ExitError) \
                else _reason(error)
            raise InputError(f"cannot open input as a media file ({reason}{hint})", path=self.path) from error
        try:
            videos = [s for s in self.container.streams.video if not int(s.disposition) & _ATTACHED_PIC]
            if not videos:
                kinds = sorted({s.type for s in self.container.streams}) or ["none"]
                raise NoVideoError(f"input has no video stream (streams: {', '.join(kinds)})", path=self.path)
            self.video: av.video.stream.VideoStream = main_video_stream(self.container)
            if len(videos) > 1:
                logger.warning("input has %d video streams; stylizing stream #%d only (the one a player shows)",
                               len(videos), self.video.index)
            self.copy_streams: list[av.stream.Stream] = [
                s
                for s in self.container.streams
                if ((s.type == "audio" and copy_audio) or (s.type == "subtitle" and copy_subtitles))
                and s.codec_context is not None  # FFmpeg knows no codec for it: nothing to copy it as
            ]
            self.attachments: list[av.stream.Stream] = [
                s for s in self.container.streams if s.type == "attachment" and copy_subtitles
            ]
            self.frames_decoded = 0
            self.video_packets = 0
            self.decode_errors = 0
            self.demux_error: str | None = None
            self._clock = FrameClock(self.video, deinterlace=deinterlace)
            self.splices = Splices(self.container, self.video)
            self._first_frame: av.VideoFrame | None = None
            self._pending: deque[Frame | av.Packet] = deque()
            self._items = self._generate()
            self.info = self._prime()
        except BaseException:
            self.container.close()
            raise

    def __enter__(self) -> InputVideo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @property
    def deinterlaced(self) -> bool:
        """Frames flagged interlaced have gone through the deinterlacer."""
        return self._clock.deinterlacer.used

    def items(self) -> Iterator[Frame | av.Packet]:
        """Frames of the video stream and packets of the copied streams, in demux order (call once)."""
        while self._pending:
            yield self._pending.popleft()
        yield from self._items

    def _prime(self) -> SourceInfo:
        for item in self._items:
            self._pending.append(item)
            if isinstance(item, Frame):
                break
        else:
            detail = f"; {self.decode_errors} decode errors" if self.decode_errors else ""
            raise NoVideoError(
                f"no video frame decodes from stream #{self.video.index} ({self.video.codec_context.name}{detail})",
                path=self.path,
            )
        first, self._first_frame = self._first_frame, None  # keep no decoder buffer alive for the whole run
        assert first is not None  # set by _to_frame for the Frame just found
        declared = int(self.video.frames or 0) or None
        matrix = None
        side = first.side_data.get(SideDataType.DISPLAYMATRIX)
        if side is not None and len(bytes(side)) == 36:
            matrix = struct.unpack("<9i", bytes(side))
        return SourceInfo(
            path=self.path,
            width=first.width,
            height=first.height,
            pix_fmt=first.format.name,
            time_base=self.video.time_base or Fraction(1, 90000),
            frame_rate=self.video.average_rate or self.video.guessed_rate,
            frames_declared=declared,
            frames_unreadable=self._count_unreadable(declared),
            display_matrix=matrix,
            rotation=int(first.rotation) if matrix is not None else 0,
            colorspace=int(first.colorspace),
            color_range=int(first.color_range),
            color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc),
            sample_aspect_ratio=_pixel_shape(self.video.sample_aspect_ratio),
        )

    def _count_unreadable(self, declared: int | None) -> int:
        """Frames whose bytes the sample index places past the end of the file (mp4/mov truncation)."""
        if declared is None or "://" in self.path:
            return 0
        entries = self.video.index_entries
        # Only a complete per-sample index says anything; mkv cues list keyframes only.
        if len(entries) != declared:
            return 0
        size = Path(self.path).stat().st_size
        return sum(1 for e in entries if e.pos + e.size > size)

    def _generate(self) -> Iterator[Frame | av.Packet]:
        demux = self.container.demux(self.video, *self.copy_streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as error:
                # The demuxer cannot resync after a read error: stop here and report it as a truncation.
                self.demux_error = _reason(error)
                logger.warning("demuxing %s stopped early: %s", self.path, self.demux_error)
                break
            if packet.size == 0 and packet.dts is None:
                continue  # PyAV's end-of-stream marker, one per stream
            self.splices.fix(packet)
            if packet.stream_index == self.video.index:
                self.video_packets += 1
                yield from self._decode(packet)
            else:
                yield packet
        yield from self._decode(None)

    def _decode(self, packet: av.Packet | None) -> Iterator[Frame]:
        try:
            frames = self.video.decode(packet)
        except av.error.EOFError:
            frames = []
        except av.error.FFmpegError as error:
            # A corrupt packet costs its own frame(s), never the stream: the decoder resyncs at the next one and
            # every frame that does decode keeps its own timestamp, so audio stays in sync.
            self.decode_errors += 1
            where = "flush" if packet is None else f"packet pts={packet.pts}"
            log = logger.warning if self.decode_errors <= 3 else logger.debug
            log("decode error in %s (%s): %s", self.path, where, _reason(error))
            frames = []
        for vf in self._clock.push(frames, flush=packet is None):
            yield self._to_frame(vf)

    def _to_frame(self, vf: av.VideoFrame) -> Frame:
        if self.frames_decoded == 0:
            self._first_frame = vf
        frame = Frame(
            data=_frame_to_tensor(vf, self.device),
            pts=vf.pts,
            time_base=self._clock.time_base,
            index=self.frames_decoded,
            duration=vf.duration or None,
        )
        self.frames_decoded += 1
        return frame


def _reason(error: BaseException) -> str:
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__


class SourceStage(Stage):
    """Thread draining a producer of Frames (and copied packets) into the pipeline's channels.

    Args:
        items: For a file, :meth:`InputVideo.items`; for a live source, any iterator of Frames.
        frames: Channel to the translate stage (blocking in file mode, ``drop_oldest`` in live mode).
        packets: Channel to the encode stage for copied packets, or ``None`` when the source has none.
        stop: The pipeline's shared stop event.
        on_frame: Called with each frame just before it is queued (live latency bookkeeping).
    """

    def __init__(
        self,
        *,
        items: Iterable[Frame | av.Packet],
        frames: Channel[Frame],
        packets: Channel[Any] | None,
        stop: threading.Event,
        name: str = "decode",
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        super().__init__(name=name, stop=stop)
        self._items = items
        self._frames = frames
        self._packets = packets
        self._on_frame = on_frame
        self.frames_out = 0
        self.packets_out = 0

    def run(self) -> None:
        iterator = iter(self._items)
        while True:
            if self.stop_event.is_set():
                raise PipelineStopped
            with self.timed():
                item = next(iterator, None)
            if item is None:
                return
            if isinstance(item, Frame):
                if self._on_frame is not None:
                    self._on_frame(item)
                self._frames.put(item)
                self.frames_out += 1
            elif isinstance(item, av.Packet) and self._packets is not None:
                self._packets.put(item)
                self.packets_out += 1
            else:
                raise TypeError(f"a source must yield realtime.frames.Frame objects, got {type(item).__name__}")

    def finish(self) -> None:
        self._frames.close()
        if self._packets is not None:
            self._packets.close()
