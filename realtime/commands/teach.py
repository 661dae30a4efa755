"""``rt-anime teach INPUT OUTPUT``: render photos or video with the algorithmic anime teacher (no model).

The teacher is the deterministic photo → anime-background function whose outputs are rt-anime's training targets;
this command shows what it does to your footage. INPUT and OUTPUT follow ``rt-anime INPUT OUTPUT``: an image, a
folder or printf pattern of images, or a video (which keeps its timestamps, audio and subtitles); OUTPUT is a
video, an image or a folder, chosen by its extension. Images to a video need ``--fps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from ..jobs import classify_input, classify_output, parse_fps, run_job
from ..pipeline import EncodeConfig, PipelineConfig
from ..teacher import TeacherConfig, teacher_batch
from . import ProgressBar, add_io_arguments, parse_size, warn_about_input

_DEFAULTS = TeacherConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser)
    style = parser.add_argument_group("style (teacher settings)")
    style.add_argument("--palette", type=int, default=_DEFAULTS.palette_size, metavar="N",
                       help="material colours per image, 2..64, or 0 for none (continuous colour; "
                            f"default {_DEFAULTS.palette_size})")
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


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    size = parse_size(args.size, flag="--size") if args.size else None
    fps = parse_fps(args.fps) if args.fps else None
    source = classify_input(args.input)
    target = classify_output(args.output)

    def translate(batch: torch.Tensor) -> torch.Tensor:
        return teacher_batch(batch, config)

    pipeline = PipelineConfig(batch_size=1, size_multiple=1, size=size, allow_partial=args.allow_partial,
                              deinterlace=args.deinterlace)
    encode = EncodeConfig(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, preset=args.preset)
    progress = ProgressBar(not args.quiet)
    start = time.perf_counter()
    try:
        result = run_job(source, target, translate, config=pipeline, encode=encode, fps=fps, progress=progress)
    finally:
        progress.close()
    warn_about_input(result, args.input)
    if not args.quiet:
        per_frame = 1000 * result.model_seconds / result.frames
        print(f"{args.output}: {result.frames} frame(s) in {time.perf_counter() - start:.1f} s with the anime "
              f"teacher ({per_frame:.0f} ms/frame)")
    return 0
