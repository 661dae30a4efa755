"""Deinterlacing of frames the decoder flags as interlaced (camcorder DV, DVD, broadcast 480i/576i/1080i).

The generators see a picture: two fields captured 1/50 s apart, woven into one frame, show every moving edge as a
comb, which the model then draws as line art. FFmpeg's ``yadif`` in ``send_frame`` mode turns each frame into one
progressive frame (so frames in == frames out, with the same timestamps) and, with ``deint=interlaced``, leaves the
frames not flagged interlaced alone; it looks one frame ahead, so frames leave one call later and the last at
:meth:`Deinterlacer.flush`. Progressive sources never build the filter and pay nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import av
import av.error
import av.filter

from .config import DeinterlaceMode
from .streams import rescale

__all__ = ["Deinterlacer"]

logger = logging.getLogger(__name__)


class Deinterlacer:
    """Frames in, progressive frames out, in order, each keeping its pts.

    Args:
        mode: ``"auto"`` deinterlaces the frames flagged interlaced; ``"off"`` passes every frame through.
        time_base: Time base of the frames' pts.
    """

    def __init__(self, mode: DeinterlaceMode, *, time_base: Fraction) -> None:
        self.mode = mode
        self.time_base = time_base
        self._graph: av.filter.Graph | None = None
        self._shape: tuple[int, int, str] | None = None
        self.used = False
        """A filter was built: frames flagged interlaced came by."""

    def push(self, frame: av.VideoFrame) -> Iterator[av.VideoFrame]:
        """Take one decoded frame (its pts already chosen); yield the frames now ready."""
        if self.mode == "off" or (self._graph is None and not frame.interlaced_frame):
            yield frame
            return
        shape = (frame.width, frame.height, frame.format.name)
        if self._graph is not None and shape != self._shape:
            yield from self.flush()  # a new size mid-stream: finish the old graph, start one for the new size
        if self._graph is None:
            try:
                self._graph, self._shape = self._build(*shape), shape
            except (ValueError, av.error.FFmpegError) as error:
                logger.warning("cannot deinterlace %s frames (%s); they stay woven", shape[2], error)
                self.mode = "off"
                yield frame
                return
            self.used = True
            logger.info("frames are interlaced: deinterlacing with yadif (--deinterlace off to keep them woven)")
        frame.time_base = self.time_base
        self._graph.push(frame)
        yield from self._pull()

    def flush(self) -> Iterator[av.VideoFrame]:
        """The frames still inside the filter (end of stream)."""
        if self._graph is None:
            return
        self._graph.push(None)
        yield from self._pull()
        self._graph = None

    def _build(self, width: int, height: int, pix_fmt: str) -> av.filter.Graph:
        graph = av.filter.Graph()
        source = graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=self.time_base)
        yadif = graph.add("yadif", "mode=send_frame:parity=auto:deint=interlaced")
        sink = graph.add("buffersink")
        source.link_to(yadif)
        yadif.link_to(sink)
        graph.configure()
        return graph

    def _pull(self) -> Iterator[av.VideoFrame]:
        assert self._graph is not None
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            # yadif halves the time base (its field-rate mode needs it): back to the stream's, exactly.
            if frame.time_base != self.time_base and frame.pts is not None:
                frame.pts = rescale(frame.pts, frame.time_base, self.time_base)
            frame.time_base = self.time_base
            yield frame
