"""``rt-anime teach INPUT OUTPUT``: render photos or video with the algorithmic anime teacher (no model).

The teacher is the deterministic photo → anime-background function whose outputs are rt-anime's training targets;
this command shows what it does to your footage. INPUT and OUTPUT follow ``rt-anime INPUT OUTPUT``: an image, a
folder or printf pattern of images, or a video (which keeps its timestamps, audio and subtitles); OUTPUT is a
video, an image or a folder, chosen by its extension. Images to a video need ``--fps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from ..jobs import classify_input, classify_output, parse_fps, run_job
from ..pipeline import EncodeConfig, PipelineConfig
from ..teacher import TeacherConfig, teacher_batch
from . import parse_size

_DEFAULTS = TeacherConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="video, image, folder of images, or pattern (frames/%%05d.png)")
    parser.add_argument("output", metavar="OUTPUT", help="video (.mp4, .mkv, …), image (.png, …) or folder")
    style = parser.add_argument_group("style (teacher settings)")
    style.add_argument("--palette", type=int, default=_DEFAULTS.palette_size, metavar="N",
                       help=f"material colours per image, 2..64 (default {_DEFAULTS.palette_size})")
    style.add_argument("--smooth", type=int, default=_DEFAULTS.smooth_passes, metavar="N",
                       help=f"bilateral passes that remove texture, 0..10 (default {_DEFAULTS.smooth_passes})")
    style.add_argument("--saturation", type=float, default=_DEFAULTS.saturation, metavar="X",
                       help=f"chroma gain, 0..4 (default {_DEFAULTS.saturation})")
    style.add_argument("--shade-step", type=float, default=_DEFAULTS.shade_step, metavar="L",
                       help=f"cel-shading step in Lab L units, 0 = off (default {_DEFAULTS.shade_step})")
    style.add_argument("--lines", action=argparse.BooleanOptionalAction, default=_DEFAULTS.lines,
                       help="draw line art on strong edges (default on)")
    style.add_argument("--line-strength", type=float, default=_DEFAULTS.line_strength, metavar="X",
                       help=f"how much lines darken, 0..1 (default {_DEFAULTS.line_strength})")
    style.add_argument("--line-threshold", type=float, default=_DEFAULTS.line_threshold, metavar="X",
                       help=f"minimum edge contrast that gets a line (default {_DEFAULTS.line_threshold})")
    style.add_argument("--sky", action=argparse.BooleanOptionalAction, default=_DEFAULTS.sky,
                       help="repaint clear skies as a clean gradient (default on)")
    style.add_argument("--work-side", type=int, default=_DEFAULTS.max_side, metavar="N",
                       help=f"filter at most N px on the longer side, colour and lines at full size "
                            f"(default {_DEFAULTS.max_side})")
    parser.add_argument("--size", metavar="WxH", help="output size (the teacher runs at this size)")
    parser.add_argument("--fps", help="frame rate when writing a video from images (25, 29.97, 30000/1001)")
    parser.add_argument("--crf", type=float, default=18, help="x264/x265 constant rate factor (default 18)")
    parser.add_argument("--preset", default="medium", help="encoder preset (default medium)")
    parser.add_argument("--codec", default="libx264", help="video encoder (default libx264)")
    parser.add_argument("--pix-fmt", default="yuv420p", help="encoder pixel format (default yuv420p)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="keep the output of a truncated input (frames lost are still reported)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def config_from_args(args: argparse.Namespace) -> TeacherConfig:
    """Map the style flags onto a :class:`TeacherConfig`, naming the flag when a value is out of range."""
    flags = {"palette_size": ("--palette", args.palette), "smooth_passes": ("--smooth", args.smooth),
             "saturation": ("--saturation", args.saturation), "shade_step": ("--shade-step", args.shade_step),
             "lines": ("--lines", args.lines), "line_strength": ("--line-strength", args.line_strength),
             "line_threshold": ("--line-threshold", args.line_threshold), "sky": ("--sky", args.sky),
             "max_side": ("--work-side", args.work_side)}
    values = {field: value for field, (_, value) in flags.items()}
    try:
        return dataclasses.replace(_DEFAULTS, **values)
    except ValueError as exc:
        # TeacherConfig names its field; the user typed a flag.
        message = str(exc)
        for field, (flag, _) in flags.items():
            if message.startswith(field + " "):
                message = flag + message[len(field):]
                break
        raise ValueError(message) from None


class _Progress:
    """A tqdm bar on an interactive stderr; nothing otherwise (logs and CI stay clean)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    size = parse_size(args.size, flag="--size") if args.size else None
    fps = parse_fps(args.fps) if args.fps else None
    source = classify_input(args.input)
    target = classify_output(args.output)

    def translate(batch: torch.Tensor) -> torch.Tensor:
        return teacher_batch(batch, config)

    pipeline = PipelineConfig(batch_size=1, size_multiple=1, size=size, allow_partial=args.allow_partial)
    encode = EncodeConfig(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, preset=args.preset)
    progress = _Progress(not args.quiet)
    start = time.perf_counter()
    try:
        result = run_job(source, target, translate, config=pipeline, encode=encode, fps=fps, progress=progress)
    finally:
        progress.close()
    p = result.pipeline
    if p is not None and p.truncated:
        lost = f"{p.frames_lost} frame(s) lost" if p.frames_lost else "frames lost at the end"
        print(f"rt-anime: warning: {args.input} is truncated: {lost}; kept {p.frames_out} (--allow-partial)",
              file=sys.stderr)
    if not args.quiet:
        per_frame = 1000 * result.model_seconds / result.frames
        print(f"{args.output}: {result.frames} frame(s) in {time.perf_counter() - start:.1f} s with the anime "
              f"teacher ({per_frame:.0f} ms/frame)")
    return 0
