"""``rt-anime INPUT OUTPUT``: stylize a video, an image, or a folder / printf pattern of images.

INPUT is any video libav reads, an image, a folder of images or a pattern like ``frames/%05d.png``; OUTPUT is a video,
an image or a folder, chosen by its extension (no extension, or an existing directory, means a folder). Images to
a video need ``--fps``. Videos keep every frame, their timestamps, audio and subtitles.
"""

from __future__ import annotations

import argparse

from ..backends import (BACKEND_NAMES, PRECISION_CHOICES, BackendConfig, make_backend, resolve_device,
                        resolve_precision)
from ..ensemble import ENSEMBLE_SIZES, EnsembleTranslate
from ..errors import RtAnimeError
from ..jobs import classify_input, classify_output, parse_fps, run_job
from ..memory import MIN_TILE, TilePlanner
from ..pipeline import EncodeConfig, PipelineConfig
from ..temporal.blend import TEMPORAL_MODES, TemporalBlend
from ..tiling import AutoTiles, TiledTranslate
from . import (DEFAULT_MODEL, ProgressBar, add_io_arguments, add_model_arguments, model_from_args, parse_size,
               warn_about_input)
from .finetune import add_finetune_options, stabilized_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_io_arguments(parser)
    add_model_arguments(parser, default=DEFAULT_MODEL)
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch",
                        help="inference runtime (graph backends need a fixed-step solver; tensorrt needs CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="model arithmetic: auto = fp16 on CUDA, fp32 on CPU (default auto)")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="frames per model call (default 1)")
    parser.add_argument("--max-side", type=int, metavar="N",
                        help="run the model on frames downscaled so the longer side is at most N, scale back")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1, metavar="N",
                        help="average the model over N flips / quarter-turns of each frame: 1, 2, 4 or 8; N times "
                             "the model's work, closer to what it was trained to imitate (8: +0.44 dB against the "
                             "teacher for niji; MODEL_CARD.md). Default 1")
    parser.add_argument("--tile", default="auto", metavar="auto|none|N",
                        help="run the model on overlapping N×N tiles; auto (default) tiles only frames whose "
                             "activations would not fit 3/4 of the available memory (on the CPU; measured per "
                             "model), none never tiles")
    parser.add_argument("--tile-overlap", type=int, metavar="N",
                        help="tile overlap in pixels (default 32, less for tiles under 128)")
    parser.add_argument("--temporal", choices=TEMPORAL_MODES, default="none",
                        help="temporal stabilization for videos and frame sequences: blend = flow-guided blending "
                             "of the previous output (default none)")
    parser.add_argument("--temporal-strength", type=float, default=0.5, metavar="X",
                        help="weight of the previous output with --temporal blend, 0..1 (default 0.5)")
    parser.add_argument("--stabilize", choices=("none", "finetune"), default="none",
                        help="finetune = first fine-tune a copy of the model on this video for temporal stability "
                             "(as 'rt-anime finetune'; cached under ~/.cache/rt-anime/finetune), then stylize with "
                             "it; tune with the --finetune-* flags (default none)")
    add_finetune_options(parser.add_argument_group("fine-tuning (--stabilize finetune)"), prefix="finetune-")
    parser.add_argument("--threads", type=int, help="CPU threads for inference")
    parser.add_argument("--benchmark", action="store_true", help="print model-only fps, end-to-end fps, stage times")


def parse_tile(text: str) -> int | str | None:
    """``--tile``: ``"auto"``, ``None`` for ``none``, or a side in pixels (at least 8)."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    if not text.isdigit() or int(text) < 8:
        raise ValueError(f"--tile {text!r}: expected auto, none or a tile side in pixels >= 8")
    return int(text)


DEFAULT_TILE_OVERLAP = 32


def check_tile_overlap(overlap: int | None, tile: int | str | None, multiple: int) -> int:
    """``--tile-overlap``, or its default for this tile: a quarter of a small tile (``--tile 32`` gets 8) rather than
    a refusal of the user's own tile for a value they never gave. A given overlap the tiling would reject mid-run is
    refused here (auto tiles can be as small as ``MIN_TILE``)."""
    limit = tile if isinstance(tile, int) else MIN_TILE
    if overlap is None:
        return min(DEFAULT_TILE_OVERLAP, limit // 4 // multiple * multiple)
    if tile is None:
        return overlap
    if overlap < 0 or overlap % multiple or overlap >= limit:
        what = f"--tile {tile}" if isinstance(tile, int) else f"the smallest tile --tile auto uses, {MIN_TILE}"
        raise ValueError(f"--tile-overlap {overlap}: must be a multiple of the model's size multiple ({multiple}), "
                         f">= 0 and less than {what}")
    return overlap


def _model(args: argparse.Namespace):
    return model_from_args(args)


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.max_side is not None and args.max_side < 8:
        raise ValueError(f"--max-side must be at least 8 pixels, got {args.max_side}")
    if not 0.0 <= args.temporal_strength <= 1.0:
        raise ValueError(f"--temporal-strength must be in 0..1, got {args.temporal_strength}")
    size = parse_size(args.size, flag="--size") if args.size else None
    fps = parse_fps(args.fps) if args.fps else None
    source = classify_input(args.input)
    if args.temporal != "none" and source.kind == "image":
        raise RtAnimeError(f"--temporal {args.temporal} needs a video or a sequence of frames; {args.input} is a "
                           "single image (allowed for images: --temporal none)")
    if args.stabilize == "finetune" and source.kind != "video":
        what = "an image" if source.kind == "image" else "a sequence of images"
        raise RtAnimeError(f"--stabilize finetune needs a video; {args.input} is {what} (allowed for it: "
                           "--stabilize none)")
    target = classify_output(args.output)
    model = _model(args)
    if args.stabilize == "finetune":
        model = stabilized_model(model, args)
    precision = resolve_precision(args.precision, resolve_device(args.device, param="--device"))
    backend = make_backend(model, BackendConfig(name=args.backend, device=args.device, precision=precision,
                                                threads=args.threads))
    if args.ensemble > 1:
        # Inside the tiling, so each tile's orientations fit in the memory a tile was chosen for.
        backend = EnsembleTranslate(backend, args.ensemble)
    tile = parse_tile(args.tile)
    overlap = check_tile_overlap(args.tile_overlap, tile, model.size_multiple)
    if isinstance(tile, int):
        backend = TiledTranslate(backend, tile=tile, overlap=overlap, multiple=model.size_multiple)
    elif tile == "auto" and backend.device.type == "cpu":
        backend = AutoTiles(backend, TilePlanner(model, multiple=model.size_multiple), overlap=overlap,
                            multiple=model.size_multiple)
    if args.temporal == "blend":
        # Outermost, so it sees whole frames in order; one instance per job = one stream's state.
        backend = TemporalBlend(backend, strength=args.temporal_strength)
    # Frames decode onto the model's device: on CUDA their 8-bit planes go up and convert there (BENCHMARKS.md, GPU).
    config = PipelineConfig(batch_size=args.batch, size_multiple=model.size_multiple, max_side=args.max_side,
                            size=size, allow_partial=args.allow_partial, device=str(backend.device),
                            deinterlace=args.deinterlace)
    encode = EncodeConfig(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, preset=args.preset)
    progress = ProgressBar(not args.quiet)
    try:
        result = run_job(source, target, backend, config=config, encode=encode, fps=fps, progress=progress)
    finally:
        progress.close()
    warn_about_input(result, args.input)
    p = result.pipeline
    if not args.quiet:
        print(f"{args.output}: {result.frames} frame(s) in {result.seconds:.1f} s ({result.fps:.2f} fps) with "
              f"{args.model} on {backend.name}/{backend.device}")
    if args.benchmark:
        print(f"model-only: {result.model_fps:.2f} fps ({1000 * result.model_seconds / max(result.frames, 1):.1f} "
              f"ms/frame); end-to-end: {result.fps:.2f} fps; ratio {result.fps / max(result.model_fps, 1e-9):.2f}")
        if p is not None:
            stages = ", ".join(f"{k} {v:.2f} s" for k, v in p.stage_seconds.items())
            print(f"stage busy time: {stages}; wall {p.wall_seconds:.2f} s")
    return 0
