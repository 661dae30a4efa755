"""``rt-anime webcam``: the live anime filter for a camera, a video file or a stream URL.

A capture thread keeps only the newest camera frame; the model always runs on the newest frame (frames that arrive
while it is busy are dropped and counted, no queue grows); results go to a preview window with a HUD (keys: q or
Esc quit, m mirror, s stylization on/off), to a virtual camera (--virtual-cam) and/or to a recording (--record,
timestamped on the capture clock; H.264 for .mp4/.mkv/..., VP9 for .webm, an animated GIF for .gif). On exit it prints fps, latency p50/p95 (capture → shown) and drops.

Defaults, chosen for real time on a CPU: the lite model (the bundled default, or --model nijigan-lite
--random-weights until it ships) on 320x240 frames, with the model itself running at 160 px on the longer side
(--max-side auto) and scaled back. The model's cost grows with its pixel count, so 160x120 is 4x cheaper than
320x240: by the model-only numbers on an idle 2-core AVX2 CPU that is ~13 fps instead of ~4 (measured under heavy
load: 2.7-5.8 fps instead of 0.6-1.1; BENCHMARKS.md, "Live webcam"). On a CUDA GPU --max-side auto means full
size: use --size 640x360 or larger there.

Examples:
  rt-anime webcam                                    # camera 0, window
  rt-anime webcam --device clip.mp4 --loop --mirror  # try it without a camera
  rt-anime webcam --no-window --record out.mp4 --seconds 30
  rt-anime webcam --record clip.gif --seconds 5        # an animated GIF to share
  rt-anime webcam --virtual-cam --no-window          # pick "rt-anime" in your video-call app (v4l2loopback / OBS)
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..backends import (BACKEND_NAMES, PRECISION_CHOICES, BackendConfig, make_backend, resolve_device,
                        resolve_precision)
from ..ensemble import ENSEMBLE_SIZES, EnsembleTranslate
from ..live.camera import CameraConfig
from ..live.webcam import WebcamConfig, run_webcam
from ..temporal.blend import TEMPORAL_MODES, TemporalBlend
from . import add_model_arguments, parse_size
from .run import DEFAULT_MODEL, _model

DEFAULT_SIZE = "320x240"
CPU_MAX_SIDE = 160
"""Model input side used by ``--max-side auto`` on a CPU (see the module docstring for why)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="0", metavar="0|/dev/videoN|FILE|URL",
                        help="camera index or device, or a video file / stream URL used as the camera (default 0)")
    parser.add_argument("--size", default=DEFAULT_SIZE, metavar="WxH",
                        help=f"frame size, even numbers; the camera is asked for it (MJPG) and frames are "
                             f"centre-cropped and scaled to exactly this (default {DEFAULT_SIZE})")
    add_model_arguments(parser, default=DEFAULT_MODEL)
    parser.add_argument("--max-side", default="auto", metavar="N|auto|none",
                        help=f"run the model on frames scaled so the longer side is N, and scale back; auto = "
                             f"{CPU_MAX_SIDE} on CPU, full size on GPU (default auto)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch", help="inference runtime (default torch)")
    parser.add_argument("--compute-device", default="auto", metavar="auto|cpu|cuda[:N]",
                        help="where the model runs (default auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="model arithmetic: auto = fp16 on CUDA, fp32 on CPU (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for inference")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1, metavar="N",
                        help="average the model over N flips / quarter-turns of each frame: 1, 2, 4 or 8; N times "
                             "the work per frame, so fewer frames per second (default 1)")
    parser.add_argument("--temporal", choices=TEMPORAL_MODES, default="none",
                        help="blend = flow-guided blending of the previous output against flicker (default none)")
    parser.add_argument("--temporal-strength", type=float, default=0.5, metavar="X",
                        help="weight of the previous output with --temporal blend, 0..1 (default 0.5)")
    parser.add_argument("--mirror", action="store_true", help="flip horizontally (selfie view; key m toggles)")
    parser.add_argument("--loop", action="store_true", help="restart a video file or URL --device at its end")
    parser.add_argument("--virtual-cam", action="store_true",
                        help="also send frames to a virtual camera (pip install 'rt-anime[virtualcam]'; needs "
                             "v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS)")
    parser.add_argument("--record", metavar="OUT.mp4", help="also record the stylized frames (capture-clock times; .mp4, .mkv, .webm, .gif, ...)")
    parser.add_argument("--no-window", action="store_true", help="no preview window (headless, or recording only)")
    parser.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: until q / Ctrl-C)")


def parse_max_side(text: str, *, flag: str, device_type: str, cpu_default: int, minimum: int = 8) -> int | None:
    """``auto`` (``cpu_default`` on CPU, full size on a GPU), ``none`` (full size) or a side in pixels."""
    if text == "auto":
        return cpu_default if device_type == "cpu" else None
    if text == "none":
        return None
    if not text.isdigit() or int(text) < minimum:
        raise ValueError(f"{flag} {text!r}: expected auto, none or an integer >= {minimum}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.temporal_strength <= 1.0:
        raise ValueError(f"--temporal-strength must be in 0..1, got {args.temporal_strength}")
    if args.seconds is not None and not args.seconds > 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    if args.loop and args.device.isdigit():
        raise ValueError(f"--loop applies to a video file or URL --device, not to camera {args.device}")
    camera = CameraConfig(device=args.device, size=parse_size(args.size, flag="--size"), mirror=args.mirror,
                          loop=args.loop)
    precision = resolve_precision(args.precision, resolve_device(args.compute_device, param="--compute-device"))
    backend_config = BackendConfig(name=args.backend, device=args.compute_device, precision=precision,
                                   threads=args.threads)
    device = backend_config.resolved_device()
    max_side = parse_max_side(args.max_side, flag="--max-side", device_type=device.type, cpu_default=CPU_MAX_SIDE)
    record = Path(args.record).expanduser() if args.record else None
    config = WebcamConfig(camera=camera, window=not args.no_window, virtual_cam=args.virtual_cam, record=record,
                          seconds=args.seconds, max_side=max_side, device=str(device))
    model = _model(args)
    translate = make_backend(model, backend_config)
    if args.ensemble > 1:
        translate = EnsembleTranslate(translate, args.ensemble)
    if args.temporal == "blend":
        translate = TemporalBlend(translate, strength=args.temporal_strength)
    solver = getattr(model, "solver", None)
    label = args.model + (f" {solver.spec}" if solver is not None and hasattr(solver, "spec") else "")
    label += f" ensemble {args.ensemble}" if args.ensemble > 1 else ""
    model_side = f"model at {max_side}px" if max_side else "model at full size"
    config = dataclasses.replace(config, size_multiple=model.size_multiple, label=f"{label}, {model_side}")
    report = run_webcam(config, translate)
    print(report.summary())
    return 0

