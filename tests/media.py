"""Tiny test clips made with PyAV, and helpers to read them back.

Every clip is a few dozen frames of a moving gradient (cheap to encode, not flat, so colour errors show) with
optional sine-wave audio, text subtitles, irregular (VFR) timestamps, a display matrix, 10-bit pixels, or damage
(truncated tail, corrupt packet, duplicated audio DTS). Nothing here depends on the pipeline under test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.subtitles.subtitle
import numpy as np

__all__ = [
    "ClipSpec",
    "make_clip",
    "make_audio_only",
    "truncate",
    "corrupt_video_packet",
    "duplicate_audio_packet",
    "add_chapters_and_attachment",
    "video_times",
    "video_frames_rgb",
    "packet_payloads",
    "subtitle_texts",
    "first_frame_rotation",
]

AUDIO_RATE = 48000

# libavcodec's default ASS header; text subtitle encoders parse it for styles.
ASS_HEADER = (
    b"[Script Info]\r\nScriptType: v4.00+\r\nPlayResX: 384\r\nPlayResY: 288\r\n\r\n[V4+ Styles]\r\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
    b"Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
    b"MarginR, MarginV, Encoding\r\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,"
    b"10,10,10,0\r\n\r\n[Events]\r\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, "
    b"Text\r\n"
)

SUBTITLE_LINES = (("Hello", 0.1, 0.4), ("anime world", 0.5, 0.9))


@dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """What :func:`make_clip` writes."""

    width: int = 64
    height: int = 48
    frames: int = 24
    rate: int = 25
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    pts: Sequence[int] | None = None
    """Explicit video pts (VFR) in ``time_base`` units; default is one tick per frame at ``1/rate``."""
    time_base: Fraction | None = None
    audio_codec: str | None = "aac"
    audio_seconds: float = 1.0
    audio_rate: int = AUDIO_RATE
    subtitles: Sequence[str] = ()
    """Subtitle codecs, e.g. ``("subrip", "ass")`` for mkv or ``("mov_text",)`` for mp4."""
    rotation: int | None = None
    sample_aspect_ratio: Fraction | None = None
    """Pixel shape (anamorphic video), written into the encoder's bitstream (H.264 VUI) and the stream."""
    metadata: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    video_options: dict[str, str] = field(default_factory=dict)
    """Video encoder options, e.g. ``{"g": "6"}`` for a keyframe every 6 frames (short GOPs to cut at)."""


def _picture(i: int, width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + 7 * i) % 256
    g = (y * 255 // max(height - 1, 1) + 3 * i) % 256
    b = ((x + y) * 2 + 11 * i) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def make_clip(path: str | os.PathLike[str], spec: ClipSpec = ClipSpec()) -> Path:
    """Write a clip described by ``spec`` to ``path`` (container from the extension) and return the path."""
    path = Path(path)
    out = av.open(str(path), "w", options=dict(spec.container_options))
    out.metadata.update(spec.metadata)
    video = out.add_stream(spec.codec, rate=spec.rate, options=dict(spec.video_options))
    video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pix_fmt
    time_base = spec.time_base or Fraction(1, spec.rate)
    video.codec_context.time_base = time_base
    if spec.rotation is not None:
        video.set_display_rotation(spec.rotation)
    if spec.sample_aspect_ratio is not None:
        video.codec_context.sample_aspect_ratio = spec.sample_aspect_ratio
    audio = None
    if spec.audio_codec is not None:
        audio = out.add_stream(spec.audio_codec, rate=spec.audio_rate)
        audio.layout = "mono"
    subs = []
    for codec in spec.subtitles:
        stream = out.add_stream(codec)
        stream.codec_context.subtitle_header = ASS_HEADER
        subs.append(stream)

    pts_list = list(spec.pts) if spec.pts is not None else list(range(spec.frames))
    rgb_format = "rgb48le" if "10" in spec.pix_fmt else "rgb24"
    for i, pts in enumerate(pts_list):
        picture = _picture(i, spec.width, spec.height)
        if rgb_format == "rgb48le":
            picture = picture.astype(np.uint16) * 257
        frame = av.VideoFrame.from_ndarray(picture, format=rgb_format)
        frame.pts = pts
        frame.time_base = time_base
        out.mux(video.encode(frame))
    out.mux(video.encode(None))

    if audio is not None:
        _write_sine(out, audio, spec.audio_seconds, spec.audio_rate)
    for stream in subs:
        tb = stream.time_base
        for j, (text, start, end) in enumerate(SUBTITLE_LINES):
            subtitle = av.subtitles.subtitle.SubtitleSet.create(
                f"{j},0,Default,,0,0,0,,{text}".encode(), 0, int((end - start) / tb), pts=int(start / tb)
            )
            packet = stream.codec_context.encode_subtitle(subtitle)
            packet.stream = stream
            packet.time_base = tb
            out.mux(packet)
    out.close()
    return path


def _write_sine(out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, seconds: float,
                rate: int = AUDIO_RATE) -> None:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    samples = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, n, 1024):
        chunk = samples[start : start + 1024]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))


def make_audio_only(path: str | os.PathLike[str], *, seconds: float = 0.5) -> Path:
    """An AAC-only file (no video stream)."""
    path = Path(path)
    out = av.open(str(path), "w")
    audio = out.add_stream("aac", rate=AUDIO_RATE)
    audio.layout = "mono"
    _write_sine(out, audio, seconds)
    out.close()
    return path


def truncate(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, keep: float = 0.6) -> Path:
    """Copy the first ``keep`` fraction of ``src``'s bytes (an interrupted download or recording)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def corrupt_video_packet(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, index: int) -> Path:
    """Copy an mp4 and overwrite the NAL length prefix of its ``index``-th video sample with garbage."""
    data = bytearray(Path(src).read_bytes())
    with av.open(str(src)) as container:
        entry = container.streams.video[0].index_entries[index]
        pos = entry.pos
    data[pos : pos + 4] = b"\xff\xff\xff\xf0"
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def duplicate_audio_packet(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, index: int) -> Path:
    """Remux ``src`` into mkv (which accepts equal DTS) with the ``index``-th audio packet written twice."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        audio_seen = 0
        for packet in inp.demux(*[inp.streams[i] for i in mapping]):
            if packet.size == 0:
                continue
            is_audio = packet.stream.type == "audio"
            copies = 2 if is_audio and audio_seen == index else 1
            audio_seen += is_audio
            payload, pts, dts, tb, key = bytes(packet), packet.pts, packet.dts, packet.time_base, packet.is_keyframe
            target = mapping[packet.stream_index]
            for _ in range(copies):
                clone = av.Packet(payload)
                clone.pts, clone.dts, clone.time_base, clone.is_keyframe = pts, dts, tb, key
                clone.stream = target
                out.mux(clone)
    return Path(dst)


def add_chapters_and_attachment(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Remux an mkv adding two chapters and a (fake) font attachment, as fansub releases carry."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.add_attachment("font.ttf", "application/x-truetype-font", b"not really a font" * 8)
        ms = Fraction(1, 1000)
        out.set_chapters(
            [
                {"id": 1, "start": 0, "end": 500, "time_base": ms, "metadata": {"title": "Intro"}},
                {"id": 2, "start": 500, "end": 900, "time_base": ms, "metadata": {"title": "Main"}},
            ]
        )
        for packet in inp.demux():
            if packet.size:
                packet.stream = mapping[packet.stream_index]
                out.mux(packet)
    return Path(dst)


def video_times(path: str | os.PathLike[str]) -> list[Fraction]:
    """Presentation time (seconds, exact) of every decoded video frame."""
    with av.open(str(path)) as container:
        return [f.pts * f.time_base for f in container.decode(container.streams.video[0])]


def video_frames_rgb(path: str | os.PathLike[str]) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def packet_payloads(path: str | os.PathLike[str], kind: str = "audio") -> list[bytes]:
    """Bytes of every packet of the first stream of type ``kind``."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return []
        return [bytes(p) for p in container.demux(streams[0]) if p.size]


def subtitle_texts(path: str | os.PathLike[str]) -> list[list[str]]:
    """Decoded dialogue text of every subtitle stream (one list per stream, in stream order)."""
    with av.open(str(path)) as container:
        streams = list(container.streams.subtitles)
        texts: dict[int, list[str]] = {s.index: [] for s in streams}
        for packet in container.demux(*streams):
            if not packet.size:
                continue
            for sub in packet.decode():
                text = sub.dialogue.decode()
                if text:
                    texts[packet.stream_index].append(text)
        return [texts[s.index] for s in streams]


def first_frame_rotation(path: str | os.PathLike[str]) -> tuple[int, bytes | None]:
    """Rotation (degrees, counter-clockwise) of the first frame and its raw display matrix bytes."""
    from av.sidedata.sidedata import Type

    with av.open(str(path)) as container:
        frame = next(container.decode(container.streams.video[0]))
        side = frame.side_data.get(Type.DISPLAYMATRIX)
        return int(frame.rotation), (bytes(side) if side is not None else None)
