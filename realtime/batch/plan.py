"""What a batch will do: which files, where their outputs go, and where each video is cut.

Cutting reads packets only (no decode): a chunk starts at a packet flagged as a keyframe, so an actor can seek
there and decode the chunk on its own. Chunk ``i`` owns the frames whose pts lie in ``[start_i, start_{i+1})``;
ownership is by presentation time, never by decode order, so B-frames and open-GOP leading pictures land in
exactly one chunk and no frame is duplicated or lost at a seam.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from ..errors import RtAnimeError
from ..jobs import VIDEO_SUFFIXES
from ..pipeline.decode import InputVideo
from ..pipeline.errors import InputError, TruncatedInputError
from ..pipeline.timestamps import Splices

__all__ = ["Chunk", "InputPlan", "expand_inputs", "output_paths", "plan_input", "cut_points"]

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".txt", ".list", ".lst")


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One independently decodable piece of a video, in the source's time base.

    Attributes:
        index: Position in the video, from 0.
        start_pts: First pts the chunk owns; ``None``: from the first frame.
        end_pts: First pts the next chunk owns; ``None``: to the last frame.
        seek_pts: Keyframe the decoder starts at; ``None``: the start of the file.
        warmup_pts: First pts that is translated; frames in ``[warmup_pts, start_pts)`` only warm up
            ``--temporal blend`` and are not written. ``None``: no warm-up.
        packets: Video packets with pts in the translated range; the reader stops feeding after them.
        frames: Video packets with pts in ``[start_pts, end_pts)``: the frames the chunk writes.
    """

    index: int
    start_pts: int | None
    end_pts: int | None
    seek_pts: int | None
    warmup_pts: int | None
    packets: int
    frames: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InputPlan:
    """One input: its output path and its chunks."""

    input_path: Path
    output_path: Path
    time_base: Fraction
    frames: int
    """Video packets found by the scan (the frames expected, barring corrupt packets)."""
    keyframes: int
    duration: float
    chunks: tuple[Chunk, ...]
    scan_seconds: float

    @property
    def name(self) -> str:
        return self.output_path.name


def expand_inputs(items: Sequence[str]) -> list[Path]:
    """Files, folders of videos (not recursive) and text manifests (one path per line) → video paths in order.

    Raises:
        RtAnimeError: an item does not exist, a folder holds no video, or a manifest names a missing file.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise RtAnimeError(f"input folder {path} holds no video file ({', '.join(VIDEO_SUFFIXES[:6])}, …)")
            paths.extend(videos)
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            paths.extend(_read_manifest(path))
        elif path.exists():
            paths.append(path)
        else:
            raise RtAnimeError(f"input {path} does not exist")
    if not paths:
        raise RtAnimeError("no input given: name video files, folders of videos, or a text manifest")
    return paths


def _read_manifest(path: Path) -> list[Path]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        if not entry.is_absolute():
            entry = path.parent / entry  # relative to the manifest, not to the caller's working directory
        if not entry.is_file():
            raise RtAnimeError(f"manifest {path} line {number}: {entry} is not a file")
        out.append(entry)
    return out


def output_paths(inputs: Sequence[Path], outdir: Path, *, ext: str | None) -> list[Path]:
    """``OUTDIR/<input name>`` (or ``<stem>.<ext>``) for each input; refuses clashes and overwriting an input."""
    outputs: list[Path] = []
    seen: dict[str, Path] = {}
    for path in inputs:
        name = path.name if ext is None else f"{path.stem}.{ext}"
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise RtAnimeError(f"output {name}: extension {suffix or '(none)'!r} is not a video container; pass "
                               f"--ext with one of {', '.join(s.lstrip('.') for s in VIDEO_SUFFIXES[:6])}, …")
        if name in seen:
            raise RtAnimeError(f"inputs {seen[name]} and {path} would both be written to {outdir / name}; rename one "
                               "or run them in separate batches")
        seen[name] = path
        target = outdir / name
        if (target.exists() and os.path.samefile(target, path)) or target.resolve() == path.resolve():
            raise RtAnimeError(f"output {target} is the input file; choose another -o OUTDIR or --ext")
        outputs.append(target)
    return outputs


def cut_points(pts: Sequence[int], keyframe_pts: Sequence[int], time_base: Fraction,
               chunk_seconds: float) -> list[int]:
    """Start pts of chunks 1, 2, …: the first keyframe at least ``chunk_seconds`` after the previous cut."""
    if not pts:
        return []
    step = Fraction(chunk_seconds).limit_denominator(10**6) / time_base
    first = min(pts)
    cuts: list[int] = []
    last = first
    for key in sorted(set(keyframe_pts)):
        if key > first and key - last >= step:
            cuts.append(key)
            last = key
    return cuts


def plan_input(input_path: Path, output_path: Path, *, chunk_seconds: float, warmup_frames: int = 0,
               allow_partial: bool = False) -> InputPlan:
    """Open and scan one input and cut it into chunks.

    Raises:
        InputError: not a media file, no video (:class:`NoVideoError`), or truncated without ``allow_partial``.
    """
    started = time.perf_counter()
    with InputVideo(input_path, copy_audio=False, copy_subtitles=False) as source:
        # Opening decodes the first frame: an undecodable file fails here, before any worker is busy with it.
        info = source.info
        stream_index = source.video.index
    pts, keys, demux_error = _scan(input_path, stream_index)
    if not allow_partial and (demux_error or info.frames_unreadable):
        detail = f"demuxing stopped: {demux_error}" if demux_error else "its sample index points past the end"
        raise TruncatedInputError(path=input_path, frames_decoded=len(pts), frames_expected=info.frames_declared,
                                  detail=detail)
    if not pts:
        raise InputError("input has no video packets", path=input_path)
    time_base = info.time_base
    if any(p is None for p in pts):
        # Raw elementary streams carry no timestamps to cut at: the whole file is one chunk.
        logger.warning("%s has video packets without timestamps; it is processed as one chunk", input_path)
        chunk = Chunk(index=0, start_pts=None, end_pts=None, seek_pts=None, warmup_pts=None, packets=len(pts),
                      frames=len(pts))
        return InputPlan(input_path=input_path, output_path=output_path, time_base=time_base, frames=len(pts),
                         keyframes=sum(keys), duration=0.0, chunks=(chunk,),
                         scan_seconds=time.perf_counter() - started)
    ordered = sorted(pts)
    key_pts = sorted(p for p, k in zip(pts, keys) if k)
    cuts = cut_points(ordered, key_pts, time_base, chunk_seconds)
    bounds: list[int | None] = [None, *cuts, None]
    chunks = []
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1]
        lo = 0 if start is None else bisect.bisect_left(ordered, start)
        hi = len(ordered) if end is None else bisect.bisect_left(ordered, end)
        seek, warmup, first = start, None, lo
        if start is not None and warmup_frames > 0:
            first = max(lo - warmup_frames, 0)
            warmup = ordered[first]
            # Decode from the last keyframe at or before the first warm-up frame (None: the file's start).
            k = bisect.bisect_right(key_pts, warmup) - 1
            seek = key_pts[k] if k >= 0 else None
        chunks.append(Chunk(index=i, start_pts=start, end_pts=end, seek_pts=seek, warmup_pts=warmup,
                            packets=hi - first, frames=hi - lo))
    duration = float((ordered[-1] - ordered[0]) * time_base)
    return InputPlan(input_path=input_path, output_path=output_path, time_base=time_base, frames=len(pts),
                     keyframes=len(key_pts), duration=duration, chunks=tuple(chunks),
                     scan_seconds=time.perf_counter() - started)


def _scan(path: Path, stream_index: int) -> tuple[list[int | None], list[bool], str | None]:
    """Pts and keyframe flag of every video packet, in demux order; and the demux error that ended the scan."""
    pts: list[int | None] = []
    keys: list[bool] = []
    error: str | None = None
    try:
        container = av.open(os.fspath(path))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot open input as a media file ({exc})", path=path) from exc
    with container:
        stream = container.streams[stream_index]
        splices = Splices(container, stream)
        demux = container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                error = str(exc.strerror or exc)
                break
            if packet.size == 0 and packet.dts is None:
                continue  # PyAV's end-of-stream marker
            raw = packet.pts
            splices.fix(packet)
            if packet.pts != raw:
                # Chunks are found again by seeking to source timestamps, which repeat after a splice.
                raise InputError(f"its timestamps jump at {float(packet.dts * packet.time_base):.3f} s (joined "
                                 "MPEG-TS segments or a broadcast capture), so it cannot be cut into chunks; "
                                 "`rt-anime INPUT OUTPUT` joins the timeline and stylizes it in one pass", path=path)
            pts.append(packet.pts)
            keys.append(bool(packet.is_keyframe))
    return pts, keys, error
