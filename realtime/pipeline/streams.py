"""Carrying audio, subtitle and attachment streams from the input into the output.

Policy (video2x-style): every audio and subtitle packet is **copied** bit for bit (no re-encode). Only when the
output container cannot hold the source codec is the stream transcoded, with a warning: audio to AAC (or the
container's default audio codec when it has no AAC, e.g. WebM → Opus); text subtitles to the container's text
codec (mov_text in mp4/mov, ASS in mkv, WebVTT in webm). Bitmap subtitles that cannot be copied, and streams with
nothing to convert to, are dropped with a warning. Copied packets pass a DTS guard: a packet whose DTS would not
increase (duplicated or backwards timestamps in the source) is dropped and counted instead of failing the mux
hours into a job.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.codec.codec import Properties

__all__ = ["DtsGuard", "StreamCopier", "filter_metadata", "rescale"]

logger = logging.getLogger(__name__)

# Keys that describe the old file rather than the content, or that the muxer writes itself.
_DROP_KEYS = frozenset(
    {
        "encoder",
        "major_brand",
        "minor_version",
        "compatible_brands",
        "duration",
        "rotate",
        "bps",
        "number_of_frames",
        "number_of_bytes",
    }
)

# Text subtitle codecs in order of preference when a container's default is unusable.
_TEXT_SUBTITLE_CODECS = ("mov_text", "ass", "subrip", "webvtt")


def filter_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Container or stream tags worth carrying over (title, language, creation time, ...)."""
    kept = {}
    for key, value in metadata.items():
        base = key.lower().removesuffix("-eng")
        if base in _DROP_KEYS or base.startswith("_statistics"):
            continue
        kept[key] = value
    return kept


def rescale(value: int, src: Fraction, dst: Fraction) -> int:
    """``value`` from time base ``src`` to ``dst``, rounding half away from zero (FFmpeg's AV_ROUND_NEAR_INF)."""
    exact = Fraction(value) * src / dst
    floor = exact.numerator // exact.denominator
    rest = exact - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and exact > 0):
        return floor + 1
    return floor


@dataclass
class DtsGuard:
    """Drops packets whose DTS would not increase on their output stream.

    Args:
        strict: Require strictly increasing DTS (audio, data); subtitles may repeat a DTS.
    """

    strict: bool = True
    last: int | None = None
    dropped: int = 0

    def admit(self, dts: int | None) -> bool:
        """``True`` if a packet with this DTS (in output time base) may be muxed; records it."""
        if dts is None:
            return True
        if self.last is not None and (dts < self.last or (self.strict and dts == self.last)):
            self.dropped += 1
            return False
        self.last = dts
        return True


@dataclass
class _Route:
    source: av.stream.Stream
    output: av.stream.Stream
    action: str  # "copy" or "transcode"
    guard: DtsGuard
    label: str
    packets: int = 0
    warned: bool = False


class StreamCopier:
    """Creates the output streams for the input's non-video streams and routes their packets.

    Must be constructed before the output header is written (before the first mux).

    Args:
        output: The output container.
        streams: Input audio/subtitle streams to carry.
        attachments: Input attachment streams (fonts for ASS subtitles); copied when the container allows.
    """

    def __init__(
        self,
        output: av.container.OutputContainer,
        streams: list[av.stream.Stream],
        attachments: list[av.stream.Stream] = (),  # type: ignore[assignment]
    ) -> None:
        self._output = output
        self._routes: dict[int, _Route] = {}
        self.transcoded: list[str] = []
        self.dropped_streams: list[str] = []
        self.packets_copied = 0
        self.packets_transcoded = 0
        supported = output.supported_codecs
        for stream in streams:
            label = f"#{stream.index} {stream.type} ({stream.codec_context.name})"
            route = self._copy(stream, label) or self._transcode(stream, label, supported)
            if route is None:
                self.dropped_streams.append(label)
                continue
            self._routes[stream.index] = route
            _carry_stream_tags(stream, route.output)
        for stream in attachments:
            name = stream.metadata.get("filename", f"#{stream.index}")
            # Only Matroska stores attachments; other muxers accept the stream and then fail writing the header.
            if output.format.name != "matroska":
                logger.warning("attachment %s dropped: %s cannot hold attachments", name, output.format.name)
                self.dropped_streams.append(f"#{stream.index} attachment ({name})")
                continue
            output.add_stream_from_template(stream)

    @property
    def dts_dropped(self) -> int:
        return sum(r.guard.dropped for r in self._routes.values())

    def _copy(self, stream: av.stream.Stream, label: str) -> _Route | None:
        fmt = self._output.format.name
        if not _listed(fmt, stream.codec_context.name) or not _header_accepts(fmt, stream):
            return None
        try:
            out = self._output.add_stream_from_template(stream)
        except ValueError:
            return None  # "format does not support codec": fall through to transcoding
        out.time_base = stream.time_base
        return _Route(stream, out, "copy", DtsGuard(strict=stream.type != "subtitle"), label)

    def _transcode(self, stream: av.stream.Stream, label: str, supported: set[str]) -> _Route | None:
        fmt = self._output.format.name
        if stream.type == "audio":
            aac = "aac" in supported or "aac" in _COPYABLE.get(fmt, ())
            target = "aac" if aac else self._output.default_audio_codec
            if target in ("", "none") or target not in av.codecs_available:
                logger.warning("dropping audio stream %s: %s holds neither it nor AAC", label, fmt)
                return None
            ctx = stream.codec_context
            out = self._output.add_stream(target, rate=_sample_rate(target, ctx.sample_rate),
                                          layout=_layout_name(ctx.layout))
            logger.warning("transcoding audio stream %s to %s: %s cannot hold %s", label, target, fmt, ctx.name)
        else:
            if not _is_text_subtitle(stream):
                logger.warning("dropping bitmap subtitle stream %s: %s cannot hold it", label, fmt)
                return None
            default = self._output.default_subtitle_codec
            candidates = (default, *_TEXT_SUBTITLE_CODECS)
            target = next((c for c in candidates if c in supported and c in av.codecs_available
                           and _listed(fmt, c)), None)
            if target is None:
                logger.warning("dropping subtitle stream %s: %s holds no text subtitle codec", label, fmt)
                return None
            out = self._output.add_stream(target)
            out.codec_context.subtitle_header = stream.codec_context.subtitle_header or _DEFAULT_ASS_HEADER
            logger.warning(
                "transcoding subtitle stream %s to %s: %s cannot hold %s", label, target, fmt, stream.codec_context.name
            )
        self.transcoded.append(f"{label} -> {target}")
        return _Route(stream, out, "transcode", DtsGuard(strict=stream.type != "subtitle"), label)

    def write(self, packet: av.Packet) -> None:
        """Mux (or transcode then mux) one demuxed packet of a carried stream; other packets are ignored."""
        route = self._routes.get(packet.stream_index)
        if route is None:
            return
        if route.action == "copy":
            if self._mux_guarded(route, packet, packet.time_base or route.source.time_base):
                self.packets_copied += 1
        elif route.source.type == "audio":
            try:
                frames = route.source.decode(packet)
            except av.error.FFmpegError as error:
                # A corrupt audio packet costs ~20 ms of sound, not the run; the encoder's timestamps follow the
                # decoded frames' pts, so later audio stays in place.
                logger.warning("audio packet on %s does not decode: %s", route.label, error)
                return
            for frame in frames:
                self._encode_audio(route, frame)
        else:
            self._transcode_subtitle(route, packet)

    def flush(self) -> None:
        """Drain audio encoders; log what the DTS guard dropped."""
        for route in self._routes.values():
            if route.action == "transcode" and route.source.type == "audio":
                try:
                    tail = route.source.decode(None)
                except av.error.FFmpegError:
                    tail = []
                for frame in tail:
                    self._encode_audio(route, frame)
                self._encode_audio(route, None)
            if route.guard.dropped:
                logger.warning(
                    "dropped %d packet(s) with non-increasing DTS on stream %s", route.guard.dropped, route.label
                )

    def _mux_guarded(self, route: _Route, packet: av.Packet, time_base: Fraction) -> bool:
        self._output.start_encoding()  # the muxer fixes each stream's final time base in the header
        out_tb = route.output.time_base or time_base
        dts = None if packet.dts is None else rescale(packet.dts, time_base, out_tb)
        if not route.guard.admit(dts):
            log = logger.warning if not route.warned else logger.debug
            route.warned = True
            log("stream %s: dropping packet with DTS %s, not after %s", route.label, dts, route.guard.last)
            return False
        packet.stream = route.output
        packet.time_base = time_base
        self._output.mux(packet)
        route.packets += 1
        return True

    def _encode_audio(self, route: _Route, frame: av.AudioFrame | None) -> None:
        for out_packet in route.output.encode(frame):
            if self._mux_guarded(route, out_packet, out_packet.time_base):
                self.packets_transcoded += 1

    def _transcode_subtitle(self, route: _Route, packet: av.Packet) -> None:
        try:
            subtitle = route.source.codec_context.decode2(packet)
        except av.error.FFmpegError as error:
            logger.debug("subtitle packet on %s does not decode: %s", route.label, error)
            return
        if subtitle is None or len(subtitle) == 0 or packet.pts is None:
            return  # empty samples only clear the screen; text codecs express that through durations
        out_packet = route.output.codec_context.encode_subtitle(subtitle)
        time_base = packet.time_base or route.source.time_base
        duration = packet.duration
        if not duration:
            duration = rescale(subtitle.end_display_time - subtitle.start_display_time, Fraction(1, 1000), time_base)
        out_packet.pts = packet.pts
        out_packet.dts = packet.pts
        out_packet.duration = duration
        if self._mux_guarded(route, out_packet, time_base):
            self.packets_transcoded += 1


# Default layouts by channel count, for sources whose layout is only a channel count ("1 channels", which
# encoders such as AAC refuse).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


# Muxers that take any codec without complaint but cannot carry it: MPEG-TS writes an unmapped codec (FLAC, Vorbis,
# PCM, text subtitles) as opaque private data that players show as "bin_data"; FLV aborts the process (an FFmpeg
# assertion, no error code) on PCM. For these only the codecs they map are copied; the rest is transcoded or, with
# nothing to convert to, dropped with a warning.
_COPYABLE = {
    "mpegts": frozenset({"aac", "aac_latm", "mp2", "mp3", "ac3", "eac3", "dts", "truehd", "opus", "s302m",
                         "dvb_subtitle", "dvb_teletext"}),
    "flv": frozenset({"aac", "mp3"}),
    # MPEG-PS labels every subtitle stream DVD (a text stream read back as dvd_subtitle garbage).
    **dict.fromkeys(("mpeg", "vob", "dvd", "svcd", "vcd"), frozenset(
        {"mp1", "mp2", "mp3", "ac3", "dts", "pcm_dvd", "pcm_s16be", "dvd_subtitle"})),
}


def _listed(format_name: str, codec: str) -> bool:
    allowed = _COPYABLE.get(format_name)
    return allowed is None or codec in allowed


def _sample_rate(codec: str, rate: int | None) -> int:
    """The source's rate where the encoder takes it, else 48 kHz (Opus takes 8–48 kHz steps only, not 44.1)."""
    rates = av.Codec(codec, "w").audio_rates
    if not rates or (rate and rate in rates):
        return rate or 48000
    return 48000 if 48000 in rates else max(rates)


def _header_accepts(format_name: str, stream: av.stream.Stream) -> bool:
    """Whether a ``format_name`` file can start with ``stream`` copied into it, tried on a scratch muxer.

    Some muxers take any codec at add-stream time and refuse it only when the header is written (MPEG-PS and AAC
    or Opus, MOV and Opus), which for the real output would be after the first video frame. A stream cannot be
    taken back out of a PyAV container, so the question is asked of a throwaway one first.
    """
    scratch = av.open(io.BytesIO(), "w", format=format_name)
    try:
        copy = scratch.add_stream_from_template(stream)
        copy.time_base = stream.time_base
        scratch.start_encoding()
    except (ValueError, av.error.FFmpegError):
        return False
    finally:
        try:
            scratch.close()
        except (ValueError, av.error.FFmpegError):
            pass  # a scratch that never started may refuse its trailer
    return True


def _layout_name(layout: av.AudioLayout) -> str:
    if "channels" in layout.name:
        return _DEFAULT_LAYOUTS.get(layout.nb_channels, layout.name)
    return layout.name


def _is_text_subtitle(stream: av.stream.Stream) -> bool:
    return bool(stream.codec_context.codec.properties & Properties.TEXT_SUB.value)


def _carry_stream_tags(source: av.stream.Stream, output: av.stream.Stream) -> None:
    output.metadata.update(filter_metadata(dict(source.metadata)))
    try:
        output.disposition = source.disposition
    except (AttributeError, TypeError, ValueError):
        logger.debug("cannot copy disposition of stream #%d", source.index)


# libavcodec's default header (ff_ass_subtitle_header_default), for decoders that expose none.
_DEFAULT_ASS_HEADER = (
    b"[Script Info]\r\nScriptType: v4.00+\r\nPlayResX: 384\r\nPlayResY: 288\r\nScaledBorderAndShadow: yes\r\n\r\n"
    b"[V4+ Styles]\r\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    b"Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    b"MarginL, MarginR, MarginV, Encoding\r\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,"
    b"1,1,0,2,10,10,10,1\r\n\r\n[Events]\r\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
    b"Effect, Text\r\n"
)
