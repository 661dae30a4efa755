"""The webcam anime filter: camera → :class:`~realtime.pipeline.LivePipeline` → window / virtual camera / recording.

Threads: the capture thread keeps the newest camera frame (:class:`~realtime.live.camera.LatestFrameCamera`); the
pipeline's source stage converts it, its translate stage runs the model on the newest frame (frames that arrive
meanwhile are dropped and counted), its sink stage hands the result to the virtual camera and the recorder and
posts it for the window; the calling (main) thread runs the window, the keys and the time limit.

Latency is measured per frame from its capture (the capture clock) to the moment it was presented: drawn in the
window, or, without a window, handed to the virtual camera / recorder. Statistics keep a bounded window of
samples, so a session can run for days in constant memory.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..frames import Frame
from ..images import tensor_to_image
from ..pipeline import LivePipeline, PipelineConfig, TranslateFn
from .camera import CameraConfig, LatestFrameCamera, RateMeter
from .sinks import LatestSlot, PreviewWindow, Recorder, VirtualCamera, check_record_path

__all__ = ["WebcamConfig", "WebcamReport", "LiveStats", "run_webcam", "Switch"]

logger = logging.getLogger(__name__)

_LATENCY_SAMPLES = 10_000  # ~5 minutes at 30 fps: percentiles describe the recent past, memory stays constant


@dataclass(frozen=True, kw_only=True, slots=True)
class WebcamConfig:
    """One webcam session.

    Attributes:
        camera: What to capture and at which size.
        window: Show a preview window (keys: q / Esc quit, m mirror, s stylization on/off).
        virtual_cam: Also send frames to a virtual camera (pyvirtualcam).
        virtual_cam_fps: Frame rate announced by the virtual camera.
        record: Also record the stylized frames to this file, timestamped on the capture clock.
        seconds: Stop after this many seconds (``None``: until quit, Ctrl-C, or the end of a non-looped file).
        max_side: Run the model on frames downscaled to this longer side and scale back (``None``: full size).
        size_multiple: The model's size multiple (frames are reflect-padded to it).
        device: Torch device the model runs on.
        label: Model description for the HUD.
    """

    camera: CameraConfig = CameraConfig()
    window: bool = True
    virtual_cam: bool = False
    virtual_cam_fps: int = 30
    record: Path | None = None
    seconds: float | None = None
    max_side: int | None = None
    size_multiple: int = 1
    device: str = "cpu"
    label: str = ""

    def __post_init__(self) -> None:
        if self.record is not None and not isinstance(self.record, Path):
            object.__setattr__(self, "record", Path(self.record))  # accept a str path too
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"--seconds must be > 0, got {self.seconds}")
        if self.max_side is not None and self.max_side < 8:
            raise ValueError(f"--max-side must be at least 8 pixels, got {self.max_side}")
        if not 1 <= self.virtual_cam_fps <= 240:
            raise ValueError(f"virtual camera fps must be in 1..240, got {self.virtual_cam_fps}")


@dataclass(frozen=True, kw_only=True, slots=True)
class WebcamReport:
    """What a session did (printed on exit)."""

    frames_shown: int
    seconds: float
    camera_fps: float
    latency_p50: float | None
    latency_p95: float | None
    dropped_capture: int
    """Camera frames overwritten before the pipeline took them."""
    dropped_pipeline: int
    """Frames dropped while the model was busy (latest frame wins)."""
    dropped_display: int
    """Stylized frames replaced before the window could draw them."""
    frames_captured: int
    frames_recorded: int = 0
    recorded: Path | None = None
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames_shown / self.seconds if self.seconds > 0 else 0.0

    @property
    def dropped(self) -> int:
        return self.dropped_capture + self.dropped_pipeline + self.dropped_display

    def summary(self) -> str:
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{1000 * v:.0f} ms"

        lines = [(f"webcam: {self.frames_shown} frames in {self.seconds:.1f} s = {self.fps:.2f} fps "
                  f"(camera delivered {self.frames_captured} at {self.camera_fps:.1f} fps)"),
                 f"latency capture→shown: p50 {ms(self.latency_p50)}, p95 {ms(self.latency_p95)}",
                 (f"dropped: {self.dropped} stale frames (capture {self.dropped_capture}, busy model "
                  f"{self.dropped_pipeline}, display {self.dropped_display}); no queue grows")]
        if self.recorded is not None:
            lines.append(f"recorded {self.frames_recorded} frames to {self.recorded}")
        return "\n".join(lines)


class LiveStats:
    """Presented frames, their rate, and capture→presented latency, in bounded memory; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self.rate = RateMeter()
        self.last_latency: float | None = None

    def presented(self, capture_time: float) -> None:
        now = self._clock()
        with self._lock:
            self.last_latency = now - capture_time
            self._latencies.append(self.last_latency)
            self.rate.tick(now)

    @property
    def frames(self) -> int:
        return self.rate.count

    def percentiles(self) -> tuple[float | None, float | None]:
        with self._lock:
            samples = list(self._latencies)
        if not samples:
            return None, None
        if len(samples) == 1:
            return samples[0], samples[0]
        q = statistics.quantiles(samples, n=20, method="inclusive")  # 19 cut points: [9] = p50, [18] = p95
        return q[9], q[18]


class Switch:
    """Translate wrapper that the ``s`` key turns off (the camera picture passes through unchanged)."""

    def __init__(self, translate: TranslateFn) -> None:
        self.translate = translate
        self.enabled = True
        self._was_enabled = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            self._was_enabled = False
            return x
        if not self._was_enabled:
            self._was_enabled = True
            reset = getattr(self.translate, "reset", None)
            if callable(reset):
                reset()  # a temporal blend must not blend across the gap
        return self.translate(x)


def run_webcam(config: WebcamConfig, translate: TranslateFn, *,
               on_frame: Callable[[np.ndarray, Frame], None] | None = None,
               gui: object | None = None) -> WebcamReport:
    """Run one session until quit, Ctrl-C, ``config.seconds`` or the end of the source; return its statistics.

    Args:
        config: The session.
        translate: The model call ``(N, 3, H, W) → (N, 3, H, W)`` in ``[-1, 1]`` (a backend, maybe blended).
        on_frame: Called on the sink thread with each stylized RGB picture and its Frame (tests, custom outputs).
        gui: Stand-in for ``cv2`` HighGUI (tests).

    Raises:
        RtAnimeError: the camera, recording path, window or virtual camera cannot be opened.
        Exception: whatever the model raised, unchanged.
    """
    if config.record is not None:
        check_record_path(config.record, device=config.camera.device)
    window = PreviewWindow(gui=gui) if config.window else None  # fail on a missing display before opening anything
    camera = LatestFrameCamera(config.camera)
    recorder: Recorder | None = None
    vcam: VirtualCamera | None = None
    switch = Switch(translate)
    stats = LiveStats()
    shown = LatestSlot()
    try:
        camera.start()
        logger.info("capturing from %s", camera.description)
        if config.virtual_cam:
            vcam = VirtualCamera(size=config.camera.size, fps=config.virtual_cam_fps)
        if config.record is not None:
            recorder = Recorder(config.record, size=config.camera.size, rate_hint=config.camera.request_fps)

        def sink(frame: Frame) -> None:
            rgb = tensor_to_image(frame.data)
            t = camera.capture_time(frame)
            if window is not None:
                shown.put((rgb, t))  # drawn, and its latency taken, by the main thread
            if vcam is not None:
                vcam.send(rgb)
            if window is None:
                stats.presented(t)
            if recorder is not None:
                recorder.write(rgb, t)
            if on_frame is not None:
                on_frame(rgb, frame)

        pipeline_config = PipelineConfig(mode="live", size_multiple=config.size_multiple, max_side=config.max_side,
                                         device=config.device, queue_size=2)
        live = LivePipeline(camera.frames(), sink, switch, config=pipeline_config)
        started = time.perf_counter()
        interrupted = False
        live.start()
        try:
            interrupted = _main_loop(live, config, camera, switch, stats, shown, window, started)
        finally:
            # The session ends here; joining below waits for an in-flight model call, whose frame is discarded.
            seconds = time.perf_counter() - started
            camera.close()  # ends the source iterator, so the source stage exits at once
            result = live.close()  # re-raises the first stage error
        recorded = recorder.finish() if recorder is not None else None
    except BaseException:
        camera.close()
        if recorder is not None:
            recorder.abort()
        raise
    finally:
        if vcam is not None:
            vcam.close()
        if window is not None:
            window.close()
    p50, p95 = stats.percentiles()
    return WebcamReport(frames_shown=stats.frames, seconds=seconds, camera_fps=camera.rate.average,
                        latency_p50=p50, latency_p95=p95, dropped_capture=camera.frames_dropped,
                        dropped_pipeline=result.frames_dropped, dropped_display=shown.overwritten,
                        frames_captured=camera.frames_captured, recorded=recorded, interrupted=interrupted,
                        frames_recorded=recorder.frames_written if recorder is not None else 0)


def _main_loop(live: LivePipeline, config: WebcamConfig, camera: LatestFrameCamera, switch: Switch,
               stats: LiveStats, shown: LatestSlot, window: PreviewWindow | None, started: float) -> bool:
    """Run until the end; ``True`` when stopped by Ctrl-C (a normal way to end a live session)."""
    deadline = None if config.seconds is None else started + config.seconds
    try:
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                return False
            if window is None:
                if live.wait(timeout=0.05):
                    return False
                continue
            if live.wait(timeout=0):
                return False
            item = shown.take(timeout=0.01)
            if item is not None:
                rgb, t = item
                window.show(rgb, _hud(config, camera, switch, stats))
                stats.presented(t)
            key = window.poll_key(1)
            if key in ("q", "esc", "closed"):
                return False
            if key == "m":
                camera.mirror = not camera.mirror
            elif key == "s":
                switch.enabled = not switch.enabled
    except KeyboardInterrupt:
        return True


def _hud(config: WebcamConfig, camera: LatestFrameCamera, switch: Switch, stats: LiveStats) -> list[str]:
    lat = stats.last_latency
    flags = ("" if switch.enabled else " [original]") + (" [mirror]" if camera.mirror else "")
    latency = "-" if lat is None else f"{1000 * lat:.0f}"
    return [f"{stats.rate.rate:4.1f} fps  {latency} ms  cam {camera.rate.rate:.0f} fps",
            f"{config.label}{flags}",
            "q quit  m mirror  s stylize"]
