"""Join encoded chunks into the final file: a remux of their video packets, no second encode.

Timestamps come from the source, not from the chunk files. Chunk ``k`` recorded the source pts of the frames it
wrote (:class:`~realtime.batch.chunk.ChunkResult`), so the ``r``-th packet of chunk ``k`` in presentation order gets
the ``r``-th of those pts, in the source's time base: the output has exactly the source's frames and pts whatever
the chunk container rounded (Matroska keeps milliseconds). Decode timestamps are rebuilt for the whole stream as
``dts_i = S[i − D]`` over the sorted output pts ``S`` and the global decode index ``i``, with ``D`` the largest
B-frame delay of any chunk: strictly increasing across seams and never after the packet's pts.

Audio and subtitle packets are copied once, straight from the source (byte-identical, with file mode's
:class:`~realtime.pipeline.streams.StreamCopier` and its transcode fallback and DTS guard), interleaved with the
video by decode time. The file is written to a temporary name beside the output and renamed when complete.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.bitstream
import av.error

from ..pipeline.codecs import muxer_time_base
from ..pipeline.config import EncodeConfig, PipelineConfig
from ..pipeline.decode import InputVideo
from ..pipeline.encode import _copy_chapters
from ..pipeline.errors import EncoderError, OutputError
from ..pipeline.run import _create_temp, _unlink
from ..pipeline.streams import StreamCopier, filter_metadata, rescale
from .plan import InputPlan

__all__ = ["ChunkFile", "JoinResult", "join_chunks", "output_timestamps"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkFile:
    """A finished chunk on disk and the facts its worker reported."""

    index: int
    path: Path
    pts: tuple[int, ...]
    reorder: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinResult:
    frames: int
    packets_copied: int
    packets_transcoded: int
    pts_adjusted: int
    streams_transcoded: tuple[str, ...]
    streams_dropped: tuple[str, ...]


def output_timestamps(chunks: Sequence[ChunkFile], source_time_base: Fraction | None = None,
                      time_base: Fraction | None = None) -> tuple[list[int], int]:
    """All chunks' pts in order (in ``time_base`` when it differs from the source's), made strictly increasing (a
    repeated pts is bumped by one tick, as file mode does); and how many were bumped."""
    out: list[int] = []
    adjusted = 0
    convert = source_time_base is not None and time_base is not None and time_base != source_time_base
    for chunk in chunks:
        for pts in chunk.pts:
            if convert:
                pts = rescale(pts, source_time_base, time_base)
            if out and pts <= out[-1]:
                pts = out[-1] + 1
                adjusted += 1
            out.append(pts)
    return out, adjusted


def join_chunks(plan: InputPlan, chunks: Sequence[ChunkFile], *, pipeline: PipelineConfig,
                encode: EncodeConfig) -> JoinResult:
    """Remux ``chunks`` (in index order) with the source's audio/subtitles into ``plan.output_path``, atomically.

    Raises:
        EncoderError: the chunks disagree on codec parameters or frame counts, or muxing fails.
        OutputError: the output cannot be created.
    """
    chunks = sorted(chunks, key=lambda c: c.index)
    if [c.index for c in chunks] != list(range(len(plan.chunks))):
        raise EncoderError(f"cannot join: have chunks {[c.index for c in chunks]}, need 0..{len(plan.chunks) - 1}",
                           path=plan.output_path)
    out_path = plan.output_path
    tmp = _create_temp(out_path)
    container: av.container.OutputContainer | None = None
    try:
        with InputVideo(plan.input_path, copy_audio=pipeline.copy_audio,
                        copy_subtitles=pipeline.copy_subtitles) as source:
            info = source.info
            try:
                container = av.open(os.fspath(tmp), "w", format=encode.container_format)
            except (ValueError, av.error.FFmpegError) as error:
                raise OutputError(f"cannot create an output container ({error})", path=out_path) from error
            with av.open(os.fspath(chunks[0].path)) as first:
                template = first.streams.video[0]
                extradata = template.codec_context.extradata
                video = container.add_stream_from_template(template)
                to_annexb = _annexb_filter(container, template, video)
                codec = template.codec_context.name  # the decoder's name (h264), as a read-back reports it
            time_base = muxer_time_base(container.format.name, info.frame_rate, info.time_base)  # as file mode
            video.time_base = time_base
            if info.display_matrix is not None:
                video.set_display_matrix(list(info.display_matrix))
            video.metadata.update(filter_metadata(dict(source.video.metadata)))
            container.metadata.update(filter_metadata(dict(source.container.metadata)))
            copier = StreamCopier(container, source.copy_streams, source.attachments)
            _copy_chapters(source.container, container)

            timestamps, adjusted = output_timestamps(chunks, info.time_base, time_base)
            depth = max((c.reorder for c in chunks), default=0)
            rate = info.frame_rate or Fraction(25)
            step = max(round(1 / (rate * time_base)), 1)
            videos = _video_packets(chunks, timestamps, depth, step, time_base, extradata, out_path)
            others = _source_packets(plan.input_path, [s.index for s in source.copy_streams])
            written = 0
            for _, kind, _, packet in heapq.merge(videos, others):
                if kind == 0:
                    for out in to_annexb.filter(packet) if to_annexb is not None else (packet,):
                        out.stream = video
                        container.mux(out)
                        written += 1
                else:
                    copier.write(packet)
            if written != len(timestamps):
                raise EncoderError(f"chunks hold {written} video packets for {len(timestamps)} frames",
                                   path=out_path)
            copier.flush()
            container.close()
            container = None
        _check_readback(tmp, template_codec=codec, frames=written, out_path=out_path)
        os.replace(tmp, out_path)
    except av.error.FFmpegError as error:
        _abort(container, tmp)
        raise EncoderError(f"joining chunks failed: {error}", path=out_path) from error
    except BaseException:
        _abort(container, tmp)
        raise
    if adjusted:
        logger.warning("%s: %d frame(s) had a non-increasing pts and were moved by one tick", out_path, adjusted)
    return JoinResult(frames=written, packets_copied=copier.packets_copied,
                      packets_transcoded=copier.packets_transcoded, pts_adjusted=adjusted,
                      streams_transcoded=tuple(copier.transcoded), streams_dropped=tuple(copier.dropped_streams))


# Muxers that take H.264/HEVC only as an Annex B byte stream (start codes) and, unlike MPEG-TS, do not convert the
# length-prefixed packets of a Matroska chunk themselves: MPEG-PS would otherwise write a stream no reader finds.
_ANNEXB_FORMATS = frozenset({"avi", "mpeg", "vob", "dvd", "svcd", "vcd"})
_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


def _annexb_filter(container: av.container.OutputContainer, template: av.video.stream.VideoStream,
                   video: av.video.stream.VideoStream) -> av.bitstream.BitStreamFilterContext | None:
    name = _ANNEXB_FILTERS.get(template.codec_context.name)
    extradata = template.codec_context.extradata
    if container.format.name not in _ANNEXB_FORMATS or name is None or not extradata or extradata[0] != 1:
        return None  # not needed, or already start codes (avcC/hvcC extradata begins with version byte 1)
    return av.bitstream.BitStreamFilterContext(name, template, video)


def _check_readback(path: Path, *, template_codec: str, frames: int, out_path: Path) -> None:
    """The joined file must demux to the frames written, before it takes the output's name: a muxer that accepts
    packets it cannot store (as MPEG-PS did with length-prefixed H.264) must not leave a file that looks done."""
    try:
        with av.open(os.fspath(path)) as check:
            streams = check.streams.video
            found = (sum(1 for p in check.demux(streams[0]) if p.size) if streams else 0)
            context = streams[0].codec_context if streams else None
            codec = context.name if context is not None else "unknown" if streams else "no video"
    except av.error.FFmpegError as error:
        raise EncoderError(f"the joined file cannot be read back ({error})", path=out_path) from error
    if codec != template_codec or found != frames:
        raise EncoderError(f"the joined file reads back as {found} {codec} packets, not the {frames} {template_codec} "
                           "frames written; this container cannot hold the chunks' stream (try --ext mkv)",
                           path=out_path)


def _abort(container: av.container.OutputContainer | None, tmp: Path) -> None:
    if container is not None:
        try:
            container.close()
        except Exception as error:  # noqa: BLE001 - already failing; the first error is the one to report
            logger.debug("closing the aborted output raised %r", error)
    _unlink(tmp)


# Merge keys: (decode time in seconds, 0 = video / 1 = other, sequence number, packet). The sequence number keeps
# the merge stable and stops heapq from ever comparing two packets.
_Item = tuple[Fraction, int, int, av.Packet]


def _video_packets(chunks: Sequence[ChunkFile], timestamps: list[int], depth: int, step: int,
                   time_base: Fraction, extradata: bytes | None, out_path: Path) -> Iterator[_Item]:
    offset = 0  # global presentation index of the chunk's first frame
    decode_index = 0
    for chunk in chunks:
        with av.open(os.fspath(chunk.path)) as container:
            stream = container.streams.video[0]
            if stream.codec_context.extradata != extradata:
                raise EncoderError(f"chunk {chunk.index} was encoded with other codec parameters than chunk 0 "
                                   "(extradata differ); delete OUTDIR/.rt-anime-batch and run again", path=out_path)
            packets = [p for p in container.demux(stream) if not (p.size == 0 and p.dts is None)]
            if len(packets) != len(chunk.pts):
                raise EncoderError(f"chunk {chunk.index} holds {len(packets)} packets for {len(chunk.pts)} "
                                   "recorded frames", path=out_path)
            order = sorted(range(len(packets)), key=lambda i: (packets[i].pts, i))
            rank = [0] * len(packets)
            for r, i in enumerate(order):
                rank[i] = r
            for i, packet in enumerate(packets):
                pts = timestamps[offset + rank[i]]
                j = decode_index - depth
                dts = timestamps[j] if j >= 0 else timestamps[0] - (depth - decode_index) * step
                duration = rescale(packet.duration, packet.time_base, time_base) if packet.duration else 0
                packet.pts, packet.dts, packet.time_base = pts, dts, time_base
                packet.duration = duration
                yield Fraction(dts) * time_base, 0, decode_index, packet
                decode_index += 1
        offset += len(chunk.pts)


def _source_packets(path: Path, stream_indices: list[int]) -> Iterator[_Item]:
    """The source's audio/subtitle packets in demux order (no video is read or decoded)."""
    if not stream_indices:
        return
    with av.open(os.fspath(path)) as container:
        streams = [container.streams[i] for i in stream_indices]
        last: Fraction | None = None
        for n, packet in enumerate(container.demux(*streams)):
            if packet.size == 0 and packet.dts is None:
                continue
            ts = packet.dts if packet.dts is not None else packet.pts
            key = last if ts is None else Fraction(ts) * (packet.time_base or packet.stream.time_base)
            # Never let one odd timestamp reorder the merge: keys only move forward (the copier's DTS guard
            # still sees the packet's own timestamps).
            last = key if last is None or (key is not None and key > last) else last
            yield (last if last is not None else Fraction(0)), 1, n, packet
