"""Cameras for live mode: a capture thread that always keeps only the newest frame.

A :class:`LatestFrameCamera` reads on its own thread and overwrites a one-frame slot; the consumer (the live
pipeline's source stage) takes whatever is newest, so a slow stylizer never sees stale frames and no queue ever
grows. Frames that were overwritten before anyone took them are counted as drops. Every frame is stamped on the
capture clock (``time.perf_counter`` at the moment the frame was read, microsecond ``pts``), which is what recording
and the latency statistics use: a driver's nominal frame rate is never trusted (USB cameras deliver less in low
light or when the bus is full), the real rate is measured.

Backends, one class each behind :class:`Grabber`:

* a camera (``0``, ``/dev/video2``) through OpenCV, asking for MJPG and the wanted size when opening (raw YUYV at
  720p and above is limited by USB 2.0 bandwidth to 5–10 fps on most webcams);
* a video file or URL through PyAV, released at its own timestamps so it behaves like a camera (frames arrive in
  real time and are dropped when the stylizer is busy), optionally looped. This is how the filter is tried and
  tested without a camera.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from ..errors import RtAnimeError
from ..frames import Frame

__all__ = ["CameraConfig", "LatestFrameCamera", "Grabber", "classify_device", "fit_to_size", "RateMeter"]

logger = logging.getLogger(__name__)

CameraKind = Literal["camera", "file", "url"]
TIME_BASE = Fraction(1, 1_000_000)
"""Capture-clock unit of every camera frame's ``pts`` (microseconds)."""
_POLL = 0.05  # longest sleep before re-checking the stop flag
_STALL_SECONDS = 5.0  # a camera that delivers nothing for this long is reported as gone


@dataclass(frozen=True, kw_only=True, slots=True)
class CameraConfig:
    """What to open and how to shape its frames.

    Attributes:
        device: Camera index (``"0"``), device path (``/dev/video2``), video file, or URL (``rtsp://…``,
            ``http://…``).
        size: Output ``(width, height)``; frames are centre-cropped to its aspect ratio and resized, so every frame
            has exactly this size whatever the camera negotiated.
        mirror: Flip frames horizontally (the "selfie" view); can be toggled while running.
        loop: Start a video file or URL again at its end instead of ending the session.
        request_fps: Frame rate asked of a camera at open (it may deliver less; the real rate is measured).
    """

    device: str = "0"
    size: tuple[int, int] = (320, 240)
    mirror: bool = False
    loop: bool = False
    request_fps: int = 30

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"camera device must be a non-empty string, got {self.device!r}")
        w, h = self.size
        if w < 8 or h < 8 or w % 2 or h % 2:
            raise ValueError(f"--size {w}x{h}: width and height must be even and at least 8 (video encoders and "
                             "virtual cameras need 4:2:0-compatible sizes)")
        if not 1 <= self.request_fps <= 240:
            raise ValueError(f"request_fps must be in 1..240, got {self.request_fps}")


def classify_device(text: str) -> tuple[CameraKind, str | int]:
    """``"0"`` → camera 0, ``/dev/videoN`` → that camera, ``scheme://…`` → URL, a file → video file."""
    if text.isdigit():
        return "camera", int(text)
    if "://" in text:
        return "url", text
    if text.startswith("/dev/video"):
        return "camera", text
    path = Path(text).expanduser()
    if path.is_file():
        return "file", str(path)
    raise RtAnimeError(f"--device {text!r}: not a camera index (0, 1, …), a /dev/videoN device, an existing video "
                       "file or a URL")


class RateMeter:
    """Events per second over a sliding window (the rate a HUD shows), plus the count since the start."""

    def __init__(self, window: int = 60) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self.count = 0
        self._first: float | None = None

    def tick(self, t: float) -> None:
        if self._first is None:
            self._first = t
        self._times.append(t)
        self.count += 1

    @property
    def average(self) -> float:
        """Events per second from the first event to the last."""
        if self.count < 2 or self._first is None or self._times[-1] <= self._first:
            return 0.0
        return (self.count - 1) / (self._times[-1] - self._first)

    @property
    def rate(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


def fit_to_size(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``rgb`` (H, W, 3) to the aspect ratio of ``size`` = (W, H), then resize to it (no distortion)."""
    import cv2

    h, w = rgb.shape[:2]
    tw, th = size
    if (w, h) == (tw, th):
        return rgb
    if w * th > h * tw:  # too wide: crop columns
        cw = max(round(h * tw / th), 1)
        x0 = (w - cw) // 2
        rgb = rgb[:, x0:x0 + cw]
    elif w * th < h * tw:  # too tall: crop rows
        ch = max(round(w * th / tw), 1)
        y0 = (h - ch) // 2
        rgb = rgb[y0:y0 + ch]
    shrink = rgb.shape[1] > tw
    return cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Grabber(Protocol):
    """One capture backend: ``read`` blocks until the next frame (RGB uint8 HWC) or returns ``None`` at the end."""

    description: str

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class OpenCVGrabber:
    """A local camera through OpenCV (V4L2 on Linux, MSMF/DirectShow on Windows, AVFoundation on macOS)."""

    def __init__(self, device: str | int, config: CameraConfig) -> None:
        import cv2

        self._cv2 = cv2
        # On Linux go to V4L2 directly: otherwise OpenCV falls back to FFmpeg, which cannot open cameras here.
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # its open warnings repeat our error
        try:
            self._cap = cv2.VideoCapture(device, api)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self._cap.isOpened():
            self._cap.release()
            raise RtAnimeError(f"--device {device}: cannot open the camera (no such device, in use by another "
                               "program, or no permission); on Linux list cameras with 'v4l2-ctl --list-devices'")
        # Ask for MJPG first: the size/rate requests that follow are only honoured in a format that can carry them.
        self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.size[0])
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.size[1])
        self._cap.set(cv2.CAP_PROP_FPS, config.request_fps)
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer driver-side buffers = fresher frames (where supported)
        fourcc = int(self._cap.get(cv2.CAP_PROP_FOURCC))
        fourcc_text = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)) if fourcc else "?"
        self.description = (f"camera {device} ({int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x"
                            f"{int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))} {fourcc_text.strip()}, driver says "
                            f"{self._cap.get(cv2.CAP_PROP_FPS):g} fps)")
        logger.info("opened %s", self.description)

    def read(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise _NoFrame
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


class _NoFrame(Exception):
    """A camera read that returned nothing (the capture thread retries until ``_STALL_SECONDS``)."""


class MediaGrabber:
    """A video file or URL through PyAV, released in real time at its own timestamps, optionally looped."""

    def __init__(self, source: str, *, kind: CameraKind, loop: bool, stop: threading.Event,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._source = source
        self._kind = kind
        self._loop = loop
        self._stop = stop
        self._clock = clock
        self._container = None
        self._open()
        self._wall0: float | None = None
        self._offset = 0.0  # media seconds added per completed loop
        self._last = 0.0
        self.loops = 0

    def _open(self) -> None:
        import av

        from ..pipeline.decode import main_video_stream

        try:
            # Open/read timeouts so a dead URL fails instead of hanging the capture thread forever.
            container = av.open(self._source, timeout=(15.0, 10.0) if self._kind == "url" else None)
        except (av.error.FFmpegError, OSError) as error:
            raise RtAnimeError(f"--device {self._source}: cannot open it as a video ({error})") from None
        try:
            stream = main_video_stream(container)
        except IndexError:
            container.close()
            raise RtAnimeError(f"--device {self._source}: has no video stream") from None
        self._interval = float(1 / stream.average_rate) if stream.average_rate else 1 / 25
        self.description = (f"{'video file' if self._kind == 'file' else 'stream'} {self._source} "
                            f"({stream.codec_context.width}x{stream.codec_context.height}"
                            f"{', looped' if self._loop else ''})")
        self._container = container
        self._frames = _timed_frames(container, stream, live=self._kind == "url")
        self._t0: float | None = None

    def read(self) -> np.ndarray | None:
        import av

        while True:
            try:
                frame, t = next(self._frames)
            except StopIteration:
                frame = None
            except av.error.FFmpegError as error:
                raise RtAnimeError(f"--device {self._source}: reading failed ({error})") from None
            if frame is None:
                if not self._loop:
                    return None
                # Continue the media clock after the last frame, so looping never sends time backwards.
                self._offset += self._last + self._interval
                self._last = 0.0
                self.loops += 1
                self._container.close()
                self._open()
                continue
            if self._t0 is None:
                self._t0 = t
            self._last = max(t - self._t0, 0.0)
            self._pace(self._offset + self._last)
            return frame.to_ndarray(format="rgb24")

    def _pace(self, media_seconds: float) -> None:
        if self._wall0 is None:
            self._wall0 = self._clock() - media_seconds
        while not self._stop.is_set():
            delay = self._wall0 + media_seconds - self._clock()
            if delay <= 0:
                return
            time.sleep(min(delay, _POLL))

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


class LatestFrameCamera:
    """Capture thread + newest-frame slot; iterate :meth:`frames` to get :class:`~realtime.frames.Frame` objects.

    Args:
        config: What to open and the output size.
        clock: Capture clock (``time.perf_counter``); frame ``pts`` are microseconds since :attr:`epoch`.

    Opening happens in :meth:`start` (on the caller's thread, so a missing camera is an immediate error).
    ``mirror`` may be changed at any time; it applies to the next frame taken.
    """

    def __init__(self, config: CameraConfig, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.config = config
        self.mirror = config.mirror
        self._clock = clock
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: tuple[int, float, np.ndarray] | None = None  # (sequence, capture time, RGB)
        self._taken = -1
        self._ended = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._grabber: Grabber | None = None
        self.epoch = 0.0
        """Capture-clock time of ``pts == 0``."""
        self.frames_captured = 0
        self.frames_dropped = 0
        """Frames overwritten in the slot before the consumer took them."""
        self.rate = RateMeter()
        """Measured capture rate (frames actually delivered by the camera)."""

    @property
    def description(self) -> str:
        return self._grabber.description if self._grabber is not None else self.config.device

    def start(self) -> LatestFrameCamera:
        kind, target = classify_device(self.config.device)
        if kind == "camera":
            self._grabber = OpenCVGrabber(target, self.config)
        else:
            self._grabber = MediaGrabber(str(target), kind=kind, loop=self.config.loop, stop=self._stop,
                                         clock=self._clock)
        self.epoch = self._clock()
        self._thread = threading.Thread(target=self._run, name="rt-anime-capture", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._grabber is not None
        seq = 0
        last_ok = self._clock()
        try:
            while not self._stop.is_set():
                try:
                    rgb = self._grabber.read()
                except _NoFrame:
                    if self._clock() - last_ok > _STALL_SECONDS:
                        raise RtAnimeError(f"{self.description} delivered no frame for {_STALL_SECONDS:g} s "
                                           "(unplugged, or taken by another program?)") from None
                    time.sleep(0.01)
                    continue
                if rgb is None:
                    break
                now = self._clock()
                last_ok = now
                self.rate.tick(now)
                with self._cond:
                    if self._slot is not None and self._slot[0] > self._taken:
                        self.frames_dropped += 1
                    self._slot = (seq, now, rgb)
                    self.frames_captured += 1
                    self._cond.notify_all()
                seq += 1
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._error = error
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def take(self, timeout: float | None = None) -> tuple[int, float, np.ndarray] | None:
        """The newest frame not taken yet as ``(sequence, capture time, RGB)``; ``None`` at the end or on timeout.

        Raises:
            Exception: whatever stopped the capture thread (a camera that vanished, an unreadable stream).
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._slot is None or self._slot[0] <= self._taken:
                if self._error is not None:
                    raise self._error
                if self._ended or self._stop.is_set():
                    return None
                if deadline is not None and self._clock() >= deadline:
                    return None
                self._cond.wait(_POLL)
            self._taken = self._slot[0]
            return self._slot

    def frames(self) -> Iterator[Frame]:
        """Newest frames as model-ready Frames (exact size, mirrored if asked), until the end or :meth:`close`."""
        last_pts = -1
        while (item := self.take()) is not None:
            seq, t, rgb = item
            rgb = fit_to_size(rgb, self.config.size)
            if self.mirror:
                rgb = rgb[:, ::-1]
            data = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().mul_(1 / 127.5).sub_(1.0)
            pts = max(round((t - self.epoch) / TIME_BASE), last_pts + 1)
            last_pts = pts
            yield Frame(data=data, pts=pts, time_base=TIME_BASE, index=seq)

    def capture_time(self, frame: Frame) -> float:
        """Capture-clock time of a frame made by :meth:`frames` (its stylized copy keeps the pts)."""
        return self.epoch + float(frame.pts * frame.time_base) if frame.pts is not None else self._clock()

    def close(self) -> None:
        """Stop capturing and release the device; pending :meth:`frames` iterations end."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                logger.error("capture thread did not stop within 5 s; abandoning it")
                return  # the grabber is still in use by the stuck thread
        if self._grabber is not None:
            self._grabber.close()

    def __enter__(self) -> LatestFrameCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timed_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream, *,
                  live: bool) -> Iterator[tuple[av.VideoFrame, float]]:
    """Decoded frames and their times in seconds, as file mode times them (AVI's B-frames included) and
    deinterlaced as file mode does by default."""
    from ..pipeline.timestamps import LOOKAHEAD, FrameClock

    clock = FrameClock(stream, deinterlace="auto", lookahead=0 if live else LOOKAHEAD)
    for vf in container.decode(stream):
        for item in clock.push([vf]):
            yield item, float(item.pts * clock.time_base)
    for item in clock.push([], flush=True):
        yield item, float(item.pts * clock.time_base)
