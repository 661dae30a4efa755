"""Timestamps of decoded frames and demuxed packets, where the container's own are wrong or jump.

:class:`FrameClock` gives each decoded frame a presentation time that increases (AVI's B-frames come out of the
decoder with shuffled pts); :class:`Splices` makes an MPEG-TS/PS timeline continuous where it jumps (segments
joined with ``cat``, broadcast captures), for every stream alike so audio stays with its pictures.
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av

from .config import DeinterlaceMode
from .deinterlace import Deinterlacer

__all__ = ["FrameClock", "Splices"]

logger = logging.getLogger(__name__)

# Decoded frames held back before their timestamp is chosen, so the first frames are judged by the stream's
# pattern too (x264's B-pyramid shows its first out-of-order pts by the third output frame).
LOOKAHEAD = 4


def frame_duration(video: av.video.stream.VideoStream) -> Fraction:
    """Seconds of one frame at the stream's nominal rate (25 fps when it declares none): the step for frames and
    packets that carry no time of their own."""
    return 1 / Fraction(video.average_rate or video.guessed_rate or 25)


class _FrameTimes:
    """The presentation time of each decoded frame, also where the container's own times are wrong.

    A decoder emits frames in presentation order, so their times must increase. Where the container stores no
    presentation times (AVI: the demuxer makes them up), B-frames come out of the decoder with shuffled pts while
    their dts increase. As FFmpeg does for its "best effort timestamp" (libavcodec's ``guess_correct_pts``, which
    PyAV does not expose), decreases are counted in each, and pts are trusted while they have no more faults than
    dts. Untrusted pts are still the right set of times, only attached to the wrong frames: each frame then gets
    the earliest pts not yet given out (the decoder holds back :data:`LOOKAHEAD` frames, more than B-frames
    reorder), which keeps the times exact where switching to dts would shift them by the decoder's delay. Faults are
    counted as frames arrive, ahead of the choice, so the first frames are judged by the stream's pattern too. A
    frame with no usable time continues from the previous one by the nominal frame duration.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self.faulty_pts = self.faulty_dts = 0
        self._seen_pts: int | None = None
        self._seen_dts: int | None = None
        self._pending: list[int] = []  # pts seen and not yet given out, sorted
        self.last: int | None = None

    def see(self, pts: int | None, dts: int | None) -> None:
        """Count one decoded frame's times, in output order."""
        if dts is not None:
            self.faulty_dts += self._seen_dts is not None and dts <= self._seen_dts
            self._seen_dts = dts
        if pts is not None:
            self.faulty_pts += self._seen_pts is not None and pts <= self._seen_pts
            self._seen_pts = pts
            bisect.insort(self._pending, pts)

    def choose(self, pts: int | None, dts: int | None) -> int:
        """The time of the next frame out (each frame is seen first, in the same order)."""
        if self.faulty_pts <= self.faulty_dts:
            value = pts if pts is not None else dts
            at = bisect.bisect_left(self._pending, pts) if pts is not None else len(self._pending)
            if at < len(self._pending) and self._pending[at] == pts:  # gone already if given out while untrusted
                del self._pending[at]
        else:
            value = self._pending.pop(0) if self._pending else dts
            if value is not None and self.last is not None and value <= self.last:
                value = None
        if value is None:
            value = 0 if self.last is None else self.last + self.step
        self.last = value
        return value


class FrameClock:
    """Decoded frames of one stream as the pipeline takes them: ``pts`` set to the presentation time
    (:class:`_FrameTimes`, :data:`LOOKAHEAD` frames behind the decoder), ``time_base`` set to the stream's, and
    progressive (:class:`~realtime.pipeline.deinterlace.Deinterlacer`).

    Args:
        video: The stream being decoded (its time base and nominal rate give the step for frames without a time).
        deinterlace: ``"auto"``: frames flagged interlaced are deinterlaced; ``"off"``: frames are left woven.
        lookahead: Frames held back to judge the stream's times; 0 for a live stream, where each frame held is
            latency (its times come from the stream itself, not a made-up AVI index).
    """

    def __init__(self, video: av.video.stream.VideoStream, *, deinterlace: DeinterlaceMode = "off",
                 lookahead: int = LOOKAHEAD) -> None:
        self.time_base = video.time_base or Fraction(1, 90000)
        self.lookahead = lookahead
        self._times = _FrameTimes(max(round(frame_duration(video) / self.time_base), 1))
        self._held: deque[av.VideoFrame] = deque()
        self.deinterlacer = Deinterlacer(deinterlace, time_base=self.time_base)

    def push(self, frames: Iterable[av.VideoFrame], *, flush: bool = False) -> Iterator[av.VideoFrame]:
        """Take the decoder's output for one packet; yield the frames now due (all of them at ``flush``)."""
        for vf in frames:
            self._times.see(vf.pts, vf.dts)
            self._held.append(vf)
        while self._held and (flush or len(self._held) > self.lookahead):
            vf = self._held.popleft()
            vf.pts = self._times.choose(vf.pts, vf.dts)
            vf.time_base = self.time_base
            yield from self.deinterlacer.push(vf)
        if flush:
            yield from self.deinterlacer.flush()


# FFmpeg's command-line tool uses the same limits for formats whose timestamps may jump (AVFMT_TS_DISCONT): a
# step forward beyond 10 s (its default dts_delta_threshold) or back by more than 0.1 s is a splice.
_JUMP_FORWARD = Fraction(10)
_JUMP_BACK = Fraction(1, 10)


class Splices:
    """One timeline from an MPEG-TS/PS stream whose timestamps jump (``cat a.ts b.ts``, broadcast captures, the
    33-bit clock wrapping after 26.5 hours).

    Each audio/video packet's dts is compared with where its stream was due to continue (its previous dts plus
    its duration). A jump forward of more than 10 s, or back more than 0.1 s behind that stream's latest dts, is a
    splice: from then on every stream's packets are shifted by one common offset that puts that packet where its
    stream was due. The offset is shared, so audio keeps its place beside the pictures (each stream's own packets
    after the splice then arrive close to where they are due, and are not taken for another). Formats without
    jumps (mp4, mkv, ...) are left untouched.

    Args:
        container: The input; nothing is changed unless its format declares discontinuous timestamps.
        video: Its video stream, whose nominal frame duration is how long a video packet lasts when it does not say.
    """

    def __init__(self, container: av.container.InputContainer, video: av.video.stream.VideoStream) -> None:
        self.enabled = bool(container.format.flags & av.format.Flags.ts_discont.value)
        self.offset = Fraction(0)
        self.count = 0
        self._frame_duration = frame_duration(video)
        self._due: dict[int, Fraction] = {}
        self._latest: dict[int, Fraction] = {}

    def fix(self, packet: av.Packet) -> None:
        """Shift ``packet``'s pts and dts (in place) onto the joined timeline."""
        if not self.enabled or packet.dts is None or packet.time_base is None:
            return
        time_base = packet.time_base
        kind = packet.stream.type
        index = packet.stream_index
        t = packet.dts * time_base + self.offset
        due = self._due.get(index)
        if kind in ("video", "audio") and due is not None and (
                t - due > _JUMP_FORWARD or t + _JUMP_BACK < self._latest[index]):
            self.count += 1
            log = logger.warning if self.count == 1 else logger.info
            log("timestamps of stream #%d (%s) jump by %+.3f s at %.3f s (a splice); joining the timeline there",
                index, kind, float(t - due), float(due))
            self.offset += due - t
        shift = round(self.offset / time_base)
        if shift:
            packet.dts += shift
            if packet.pts is not None:
                packet.pts += shift
        start = packet.dts * time_base
        # dts, not pts: a B-frame stream's pts run ahead of its dts by the reorder delay.
        self._latest[index] = max(self._latest.get(index, start), start)
        duration = packet.duration * time_base if packet.duration else (
            self._frame_duration if kind == "video" else Fraction(0))
        self._due[index] = start + duration
