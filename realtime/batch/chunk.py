"""One chunk: seek to its keyframe, decode its frames, stylize them, encode them into a small Matroska file.

This is file mode's pipeline (the same decode → translate → encode stage threads, frame conversion and encoder
set-up as :func:`~realtime.pipeline.run_file`), fed by a reader that yields only the chunk's frames and writing
video only: audio and subtitles are copied once, from the source, when the chunks are joined (:mod:`.join`).

Chunks are always Matroska, whatever the final container: every chunk of every input is encoded with one set of
encoder flags (Matroska wants global headers, as mp4/mov/webm do, so the codec extradata of all chunks is
identical and valid for the joined stream), and no edit list can hide packets the way mp4's can. Matroska rounds
timestamps to milliseconds, which is harmless: the join maps packets back to the *source's* pts by their order.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import torch

from ..frames import Frame
from ..pipeline.config import DeinterlaceMode, EncodeConfig, PipelineConfig
from ..pipeline.convert import _frame_to_tensor
from ..pipeline.decode import InputVideo, SourceStage
from ..pipeline.encode import EncodeStage, OutputVideo
from ..pipeline.errors import EncoderError, InputError
from ..pipeline.stage import Channel, run_stages
from ..pipeline.streams import rescale
from ..pipeline.timestamps import FrameClock
from ..pipeline.translate import TranslateFn, TranslateStage
from .config import FaultSpec
from .plan import Chunk

__all__ = ["ChunkTask", "ChunkResult", "ChunkFrames", "run_chunk", "packet_order", "CHUNK_FORMAT", "CHUNK_SUFFIX"]

logger = logging.getLogger(__name__)

CHUNK_FORMAT = "matroska"
CHUNK_SUFFIX = ".mkv"


@dataclass(frozen=True, kw_only=True)
class ChunkTask:
    """Everything a worker needs for one chunk (plain data: it travels to the actor pickled)."""

    input_path: str
    name: str
    """Output file name of the input; identifies the input in logs, faults and results."""
    chunk: Chunk
    pipeline: PipelineConfig
    encode: EncodeConfig
    attempt: int = 1
    fault: FaultSpec | None = None


@dataclass(frozen=True, kw_only=True)
class ChunkResult:
    """An encoded chunk and what the join needs to know about it."""

    name: str
    index: int
    data: bytes = dataclasses.field(repr=False)
    """The chunk's Matroska file (video only)."""
    pts: tuple[int, ...]
    """Source pts (source time base) of the frames written, in presentation order."""
    reorder: int
    """Largest ``decode index − presentation index`` of the chunk's packets (B-frame delay)."""
    warmup_frames: int
    decode_errors: int
    seconds: float
    model_seconds: float
    worker: str


class ChunkFrames:
    """Iterable of the Frames a chunk translates: its own frames plus the ``--temporal blend`` warm-up frames.

    Decoding starts at ``chunk.seek_pts`` (a keyframe) and stops once every packet of the translated range was
    fed to the decoder and the decoder was drained, so reordered frames (B-frames) at the end are not lost.
    """

    def __init__(self, path: str | os.PathLike[str], stream_index: int, chunk: Chunk,
                 device: str | torch.device = "cpu", *, deinterlace: DeinterlaceMode = "off") -> None:
        self.path = os.fspath(path)
        self.deinterlace = deinterlace
        self.device = torch.device(device)
        self.stream_index = stream_index
        self.chunk = chunk
        self.lower = chunk.warmup_pts if chunk.warmup_pts is not None else chunk.start_pts
        self.frames = 0
        self.decode_errors = 0
        self.demux_error: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        overshot = yield from self._run(seek=self.chunk.seek_pts is not None)
        if overshot:
            # The demuxer's seek landed after the wanted keyframe (a bad index): decode from the start instead,
            # slower but exact (frames before the chunk are dropped before translation).
            logger.warning("%s: seek to pts %s overshot; decoding chunk %d from the start of the file",
                           self.path, self.chunk.seek_pts, self.chunk.index)
            yield from self._run(seek=False)

    def _in_range(self, pts: int | None, lower: int | None) -> bool:
        if pts is None:
            return True
        return (lower is None or pts >= lower) and (self.chunk.end_pts is None or pts < self.chunk.end_pts)

    def _run(self, *, seek: bool) -> Iterator[Frame]:
        container = av.open(self.path)
        try:
            video = container.streams[self.stream_index]
            if seek:
                try:
                    container.seek(self.chunk.seek_pts, stream=video, backward=True, any_frame=False)
                except av.error.FFmpegError:
                    return True  # an unseekable input: the caller decodes from the start
            started = not seek
            fed = 0
            clock = FrameClock(video, deinterlace=self.deinterlace)
            demux = container.demux(video)
            while fed < self.chunk.packets:
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                except av.error.FFmpegError as error:
                    self.demux_error = str(error.strerror or error)
                    logger.warning("demuxing %s stopped early in chunk %d: %s", self.path, self.chunk.index,
                                   self.demux_error)
                    break
                if packet.size == 0 and packet.dts is None:
                    continue
                if not started:
                    # Skip what the seek put before our keyframe without decoding it.
                    if packet.is_keyframe and packet.pts == self.chunk.seek_pts:
                        started = True
                    elif packet.is_keyframe and packet.pts is not None and packet.pts > self.chunk.seek_pts:
                        return True
                    else:
                        continue
                if self._in_range(packet.pts, self.lower):
                    fed += 1
                yield from self._decode(video, clock, packet)
            yield from self._decode(video, clock, None)
            return False
        finally:
            container.close()

    def _decode(self, video: av.video.stream.VideoStream, clock: FrameClock,
                packet: av.Packet | None) -> Iterator[Frame]:
        try:
            decoded = video.decode(packet)
        except av.error.EOFError:
            decoded = []
        except av.error.FFmpegError as error:
            # As in file mode: a corrupt packet costs its own frame, the decoder resyncs at the next one.
            self.decode_errors += 1
            logger.warning("decode error in %s chunk %d: %s", self.path, self.chunk.index, error)
            decoded = []
        # Times as file mode chooses them (AVI's B-frames included), so the chunk keeps exactly its own frames.
        for vf in clock.push(decoded, flush=packet is None):
            if not self._in_range(vf.pts, self.lower):
                continue
            yield Frame(data=_frame_to_tensor(vf, self.device), pts=vf.pts, time_base=clock.time_base,
                        index=self.frames, duration=vf.duration or None)
            self.frames += 1


class _ChunkOutput(OutputVideo):
    """An OutputVideo that drops the warm-up frames and records the pts it writes."""

    def __init__(self, *args: object, keep_from: int | None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.keep_from = keep_from
        self.discarded = 0
        self.pts_written: list[int] = []

    def write_frame(self, frame: Frame) -> None:
        if self.keep_from is not None and frame.pts is not None \
                and rescale(frame.pts, frame.time_base, self.time_base) < self.keep_from:
            self.discarded += 1
            return
        super().write_frame(frame)
        assert self._last_pts is not None
        self.pts_written.append(self._last_pts)


def _fault_hook(fault: FaultSpec | None, output: _ChunkOutput, label: str) -> Callable[[int, int | None], None]:
    fired = False

    def hook(_done: int, _total: int | None) -> None:
        nonlocal fired
        if fault is None or fired or output.frames_written < fault.after_frames:
            return
        fired = True
        if fault.marker is not None:
            try:
                os.close(os.open(fault.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                return  # another attempt already took this fault
        logger.warning("injected fault %r in %s", fault.action, label)
        if fault.action == "exit":
            os._exit(17)  # the way an OOM kill or a lost node ends a worker: no cleanup, no exception
        raise RuntimeError(f"injected fault in {label}")

    return hook


def run_chunk(task: ChunkTask, translate: TranslateFn, *, workdir: str | os.PathLike[str]) -> ChunkResult:
    """Decode, translate and encode one chunk; return the encoded bytes and its frame timestamps.

    Raises:
        InputError, EncoderError, …: as :func:`~realtime.pipeline.run_file` does for the same file.
    """
    started = time.perf_counter()
    chunk = task.chunk
    label = f"{task.name} chunk {chunk.index}"
    encode = dataclasses.replace(task.encode, container_format=CHUNK_FORMAT, overwrite=True)
    config: PipelineConfig = task.pipeline
    fd, tmp_name = tempfile.mkstemp(prefix=f"chunk-{chunk.index:05d}-", suffix=CHUNK_SUFFIX, dir=workdir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with InputVideo(task.input_path, copy_audio=False, copy_subtitles=False) as source:
            info = source.info
            output_hw = (config.size[1], config.size[0]) if config.size else (info.height, info.width)
            reader = ChunkFrames(task.input_path, source.video.index, chunk, config.device,
                                 deinterlace=config.deinterlace)
            output = _ChunkOutput(tmp, encode=encode, source=source, output_hw=output_hw, display_name=label,
                                  keep_from=chunk.start_pts)
            try:
                stop = threading.Event()
                frames: Channel[Frame] = Channel(name="frames", capacity=max(config.queue_size, config.batch_size),
                                                 stop=stop)
                mux: Channel[Frame] = Channel(name="mux", capacity=config.queue_size, stop=stop)
                translate_stage = TranslateStage(translate=translate, config=config, output_hw=output_hw,
                                                 inputs=frames, outputs=mux, stop=stop)
                stages = [SourceStage(items=reader, frames=frames, packets=None, stop=stop), translate_stage,
                          EncodeStage(output=output, items=mux, stop=stop,
                                      progress=_fault_hook(task.fault, output, label))]
                run_stages(stages, [frames, mux], stop_timeout=config.stop_timeout)
            except BaseException:
                output.abort()
                raise
        written = len(output.pts_written)
        if written == 0 or (written < chunk.frames and not reader.decode_errors and reader.demux_error is None):
            # Frames that vanish without a decode error mean the reader missed part of its range: never join that.
            raise InputError(f"{label}: decoded {written} of the {chunk.frames} frames the keyframe scan found",
                             path=task.input_path)
        pts_in_order, reorder = packet_order(tmp)
        if len(pts_in_order) != len(output.pts_written):
            raise EncoderError(f"{label}: the encoder wrote {len(pts_in_order)} packets for "
                               f"{len(output.pts_written)} frames; rt-anime needs one packet per frame to join chunks")
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return ChunkResult(name=task.name, index=chunk.index, data=data, pts=tuple(sorted(output.pts_written)),
                       reorder=reorder, warmup_frames=output.discarded, decode_errors=reader.decode_errors,
                       seconds=time.perf_counter() - started, model_seconds=translate_stage.model_seconds,
                       worker=f"{socket.gethostname()}:{os.getpid()}")


def packet_order(path: str | os.PathLike[str]) -> tuple[list[int], int]:
    """Video packet pts in decode order, and the reorder depth ``max(decode index − presentation index)``."""
    with av.open(os.fspath(path)) as container:
        video = container.streams.video[0]
        pts = [p.pts for p in container.demux(video) if not (p.size == 0 and p.dts is None)]
    if any(p is None for p in pts):
        raise EncoderError("a chunk packet has no pts; cannot join", path=path)
    rank = {i: r for r, i in enumerate(sorted(range(len(pts)), key=lambda i: (pts[i], i)))}
    reorder = max((i - rank[i] for i in range(len(pts))), default=0)
    return pts, max(reorder, 0)
