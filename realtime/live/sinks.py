"""Where live frames go: a preview window with a HUD, a virtual camera, and a recording (mp4, WebM, GIF, ...).

Each output takes RGB uint8 ``(H, W, 3)`` pictures. The recorder stamps frames with their capture-clock time (a
live recording stamped at a nominal constant rate drifts against real time, and frames dropped by the stylizer
would shorten it); the window shows the newest picture on the main thread (GUI toolkits want that) and reports
keys; the virtual camera goes through pyvirtualcam (v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import RtAnimeError, require
from ..jobs import VIDEO_SUFFIXES
from ..pipeline.codecs import DtsRepair, PaletteQuantizer, muxer_time_base, resolve_encode
from ..pipeline.config import EncodeConfig
from ..pipeline.encode import choose_pix_fmt
from ..pipeline.run import _create_temp

__all__ = ["Recorder", "VirtualCamera", "PreviewWindow", "LatestSlot", "RECORD_SUFFIXES", "check_record_path",
           "draw_hud"]

logger = logging.getLogger(__name__)

# The containers ``rt-anime`` writes videos to, less raw Y4M (it ignores timestamps, so a live recording would play
# at whatever rate its header names, not the capture clock's).
RECORD_SUFFIXES = tuple(s for s in VIDEO_SUFFIXES if s != ".y4m")
_RECORD_TIME_BASE = Fraction(1, 1000)


def check_record_path(path: Path, *, device: str) -> None:
    """Refuse a recording path before anything is opened: wrong extension, missing folder, or the input itself."""
    if path.suffix.lower() not in RECORD_SUFFIXES:
        raise RtAnimeError(f"--record {path}: unknown extension {path.suffix!r}; allowed: {', '.join(RECORD_SUFFIXES)}")
    if path.is_dir():
        raise RtAnimeError(f"--record {path} is a directory; give a file name like out.mp4")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise RtAnimeError(f"--record {path}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RtAnimeError(f"--record {path}: output directory {parent} is not writable")
    src = Path(device).expanduser()
    if src.is_file() and (path.resolve() == src.resolve() or (path.exists() and os.path.samefile(path, src))):
        raise RtAnimeError(f"--record {path} is the --device input file; choose another output path")


class Recorder:
    """A recording with capture-clock timestamps, written to a temporary file renamed on :meth:`finish`.

    The encoder is chosen for the container as ``rt-anime``'s ``--codec auto`` chooses it
    (:func:`~realtime.pipeline.codecs.resolve_encode`): H.264 for mp4/mkv/mov/avi/ts/..., VP9 for WebM, an animated
    GIF with a per-frame palette for ``.gif``.

    Args:
        path: Final file, one of :data:`RECORD_SUFFIXES`.
        size: ``(width, height)``; an odd size is kept, in 4:4:4 where the encoder needs even 4:2:0.
        rate_hint: Expected frame rate, for the encoder's rate control (and AVI's frame clock); the timestamps
            come from the capture clock.
        crf: Constant rate factor (x264, VP9).
        preset: x264 preset; ``veryfast`` because the encoder shares the CPU with the model.
    """

    def __init__(self, path: Path, *, size: tuple[int, int], rate_hint: float = 30.0, crf: int = 20,
                 preset: str = "veryfast") -> None:
        import av

        self.path = Path(path)
        self._tmp = _create_temp(self.path)
        self._container = None
        rate = Fraction(rate_hint).limit_denominator(1001) if rate_hint > 0 else Fraction(30)
        try:
            # The temporary name keeps the final extension, so the muxer is the one the path asks for.
            self._container = av.open(str(self._tmp), "w")
            muxer = self._container.format.name
            try:
                encode = resolve_encode(EncodeConfig(crf=crf, preset=preset), self._container)
            except ValueError as error:
                raise RtAnimeError(f"--record {self.path}: {error}") from None
            pix_fmt, width, height = choose_pix_fmt(encode, *size, path=self.path)
            self._stream = self._container.add_stream(encode.codec, rate=rate, options=encode.encoder_options())
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
            time_base = muxer_time_base(muxer, rate, _RECORD_TIME_BASE)
            self._stream.time_base = time_base
            self._stream.codec_context.time_base = time_base
        except BaseException:
            if self._container is not None:
                self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._pix_fmt = pix_fmt
        self._repair = DtsRepair()
        self._time_base = time_base
        self._quantize = PaletteQuantizer(width, height) if pix_fmt == "pal8" else None
        self._t0: float | None = None
        self._last_pts = -1
        self.frames_written = 0
        self._closed = False

    def write(self, rgb: np.ndarray, capture_seconds: float) -> None:
        """Encode one picture shown at ``capture_seconds`` on the capture clock (the first one becomes t = 0)."""
        import av

        if self._t0 is None:
            self._t0 = capture_seconds
        # Rounded to the stream's time base; a repeat (two frames in one tick) moves up one tick.
        pts = max(round((capture_seconds - self._t0) / self._time_base), self._last_pts + 1)
        self._last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = self._quantize(frame) if self._quantize is not None else frame.reformat(format=self._pix_fmt)
        frame.pts = pts
        frame.time_base = self._time_base
        self._container.mux(self._repair(self._stream.encode(frame)))
        self.frames_written += 1

    def finish(self) -> Path | None:
        """Flush, close and rename into place; ``None`` (and no file) when nothing was recorded."""
        if self._closed:
            return self.path if self.frames_written else None
        self._closed = True
        if not self.frames_written:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            return None
        try:
            self._container.mux(self._repair(self._stream.encode(None)))
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after an error: no partial recording is left behind)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception as error:  # noqa: BLE001 - already failing; the first error is the one to report
            logger.debug("closing the aborted recording raised %r", error)
        self._tmp.unlink(missing_ok=True)


class VirtualCamera:
    """A virtual webcam other programs (video calls, OBS) can select; frames are sent as they come."""

    def __init__(self, *, size: tuple[int, int], fps: float) -> None:
        pyvirtualcam = require("pyvirtualcam", extra="virtualcam", feature="--virtual-cam")
        try:
            self._cam = pyvirtualcam.Camera(width=size[0], height=size[1], fps=fps, fmt=pyvirtualcam.PixelFormat.RGB)
        except RuntimeError as error:
            raise RtAnimeError(
                f"--virtual-cam: no virtual camera backend is available ({error}). On Linux install and load "
                "v4l2loopback (sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=rt-anime); on "
                "Windows or macOS install OBS Studio and start its Virtual Camera once") from None
        self.device = self._cam.device
        logger.info("virtual camera %s (%s) at %dx%d", self.device, self._cam.backend, *size)

    def send(self, rgb: np.ndarray) -> None:
        self._cam.send(np.ascontiguousarray(rgb))

    def close(self) -> None:
        self._cam.close()


class LatestSlot:
    """One-item mailbox between threads: ``put`` overwrites (counting what was never taken), ``take`` waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: object | None = None
        self.overwritten = 0

    def put(self, item: object) -> None:
        with self._cond:
            if self._item is not None:
                self.overwritten += 1
            self._item = item
            self._cond.notify_all()

    def take(self, timeout: float) -> object | None:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


def draw_hud(bgr: np.ndarray, lines: list[str]) -> np.ndarray:
    """Small text box in the top-left corner (drawn on a copy; recordings never carry it)."""
    import cv2

    out = bgr.copy()
    scale = max(0.35, min(out.shape[1] / 900, 0.7))
    step = int(22 * scale / 0.5)
    box_w = min(out.shape[1], int(max(len(s) for s in lines) * 10 * scale / 0.5) + 8)
    box = out[: step * len(lines) + 6, :box_w]
    box[:] = (box * 0.45).astype(np.uint8)  # darken for legibility over any picture
    for i, text in enumerate(lines):
        cv2.putText(out, text, (4, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class PreviewWindow:
    """OpenCV window driven from the main thread: shows the newest picture with a HUD and returns key presses.

    Args:
        title: Window title.
        gui: The module providing ``namedWindow``/``imshow``/``waitKey``/``getWindowProperty``/``destroyWindow``
            (``cv2``; tests pass a stand-in, since CI machines have no display).
    """

    def __init__(self, title: str = "rt-anime", *, gui: object | None = None) -> None:
        if gui is None:
            gui = _gui_cv2()
        self._gui = gui
        self.title = title
        gui.namedWindow(title, getattr(gui, "WINDOW_NORMAL", 0))

    def show(self, rgb: np.ndarray, hud: list[str]) -> None:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        self._gui.imshow(self.title, draw_hud(bgr, hud) if hud else bgr)

    def poll_key(self, wait_ms: int = 1) -> str | None:
        """The key pressed (one character, ``"esc"``), ``"closed"`` if the window was closed, else ``None``."""
        code = self._gui.waitKey(wait_ms)
        try:
            visible = self._gui.getWindowProperty(self.title, getattr(self._gui, "WND_PROP_VISIBLE", 4))
        except Exception:  # noqa: BLE001 - some backends raise once the window is gone
            visible = 0
        if visible is not None and visible < 1:
            return "closed"
        if code is None or code < 0:
            return None
        code &= 0xFF
        return "esc" if code == 27 else chr(code).lower()

    def close(self) -> None:
        try:
            self._gui.destroyWindow(self.title)
            self._gui.waitKey(1)  # lets HighGUI process the destroy event
        except Exception as error:  # noqa: BLE001 - closing a window that is already gone is not an error
            logger.debug("destroying the preview window raised %r", error)


def _gui_cv2() -> object:
    import cv2

    gui_line = next((line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")), "")
    if gui_line.split(":", 1)[-1].strip().upper() in ("", "NONE"):
        raise RtAnimeError("the preview window needs OpenCV built with a GUI, but this is opencv-python-headless: "
                           "pass --no-window (with --record and/or --virtual-cam), or install the GUI build "
                           "(pip install --force-reinstall opencv-python)")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RtAnimeError("the preview window needs a display (DISPLAY is not set); pass --no-window")
    return cv2

