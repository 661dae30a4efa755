"""``rt-anime batch INPUTS... -o OUTDIR``: stylize many videos, and long videos in chunks, on Ray.

INPUTS are video files, folders of videos, or text manifests (.txt/.list: one path per line). Each output is
OUTDIR/<input name> (or <stem>.EXT with --ext). Long videos are cut at keyframes into chunks of about
--chunk-seconds, run by a pool of Ray actors that load the model once, and joined without a second encode: the
output has exactly the source's frames and timestamps, and its audio/subtitle packets are copied from the source.

--ray local (default) starts a private Ray on this machine for the run; --ray auto joins the cluster this machine is part of
('ray start --head' on the head node, 'ray start --address HEAD:6379' on the others); --ray HOST:PORT joins that
one. Inputs must be readable at the same path on every node (a shared filesystem); outputs are written by this
process only.

A failed chunk is retried (--max-retries); an input whose chunk keeps failing is reported and leaves no output
while the others finish. Finished chunks are kept in OUTDIR/.rt-anime-batch/ so --resume redoes only what is
missing (and skips outputs that exist). A JSON summary goes to stdout; the exit status is 0 when every input was
done or skipped, 1 when some failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..backends import BACKEND_NAMES
from ..ensemble import ENSEMBLE_SIZES
from ..pipeline import EncodeConfig, PipelineConfig
from ..temporal.blend import TEMPORAL_MODES
from . import DEFAULT_MODEL, add_model_arguments, model_from_args, parse_size
from .run import check_tile_overlap, parse_tile

EXIT_SOME_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders of videos, or manifests")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created)")
    parser.add_argument("--ray", default="local", metavar="local|auto|ADDRESS",
                        help="local: embedded Ray on this machine (default); auto: the cluster this machine is "
                             "in; ADDRESS: HOST:6379 of a head node")
    parser.add_argument("--chunk-seconds", type=float, default=10.0, metavar="S",
                        help="target chunk length; cuts are at keyframes (default 10)")
    parser.add_argument("--workers", type=int, metavar="N", help="actors (default: one per CPU, or per GPU)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads per actor (default: CPUs / actors)")
    parser.add_argument("--max-retries", type=int, default=2, metavar="N", help="retries of a failed chunk (2)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished chunks of an interrupted run; skip outputs that exist")
    parser.add_argument("--overlap", type=int, default=8, metavar="K",
                        help="--temporal blend: frames of the previous chunk run first and discarded (8)")
    parser.add_argument("--ext", metavar="EXT", help="output extension instead of the input's (mkv, mp4, …)")
    add_model_arguments(parser, default=DEFAULT_MODEL)
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch", help="inference runtime (torch)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: the cluster's GPUs if any)")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="frames per model call (default 1)")
    parser.add_argument("--max-side", type=int, metavar="N", help="run the model with the longer side at most N")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1, metavar="N",
                        help="average the model over N flips / quarter-turns of each frame: 1, 2, 4 or 8 (N times "
                             "the work; as 'rt-anime INPUT OUTPUT --ensemble N'). Default 1")
    parser.add_argument("--tile", default="auto", metavar="auto|none|N",
                        help="overlapping N×N tiles; auto (default) tiles only frames whose activations would not "
                             "fit an actor's share of the node's memory (CPU actors), none never tiles")
    parser.add_argument("--tile-overlap", type=int, metavar="N",
                        help="tile overlap in pixels (default 32, less for tiles under 128)")
    parser.add_argument("--temporal", choices=TEMPORAL_MODES, default="none",
                        help="blend = flow-guided blending of the previous output (default none)")
    parser.add_argument("--temporal-strength", type=float, default=0.5, metavar="X", help="0..1 (default 0.5)")
    parser.add_argument("--size", metavar="WxH", help="output size (the model runs at this size)")
    parser.add_argument("--crf", type=float, default=18, help="x264/x265 constant rate factor (default 18)")
    parser.add_argument("--preset", default="medium", help="encoder preset (default medium)")
    parser.add_argument("--codec", default="auto",
                        help="video encoder (default auto: libx264, or the container's own for .webm and .gif)")
    parser.add_argument("--pix-fmt", default="yuv420p", help="encoder pixel format (default yuv420p)")
    parser.add_argument("--allow-partial", action="store_true", help="stylize what decodes of truncated inputs")
    parser.add_argument("--deinterlace", choices=("auto", "off"), default="auto",
                        help="frames flagged interlaced (DV, DVD, 1080i) are deinterlaced first (yadif, one frame per frame): auto "
                             "(default) or off")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class BatchProgressBar:
    """One tqdm bar for the whole batch (frames done / total, fps, ETA, live workers); only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self._workers = -1

    def __call__(self, done: int, total: int, workers: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr, desc="batch")
        if workers != self._workers:
            self._workers = workers
            self.bar.set_postfix(workers=workers, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchConfig, TranslateSpec, run_batch
    from ..batch.cluster import import_ray

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.max_side is not None and args.max_side < 8:
        raise ValueError(f"--max-side must be at least 8 pixels, got {args.max_side}")
    batch = BatchConfig(ray=args.ray, chunk_seconds=args.chunk_seconds, workers=args.workers, threads=args.threads,
                        max_retries=args.max_retries, resume=args.resume, overlap_frames=args.overlap, ext=args.ext)
    size = parse_size(args.size, flag="--size") if args.size else None
    import_ray()  # fail on a missing extra before loading a model or scanning inputs
    model = model_from_args(args)
    tile = parse_tile(args.tile)
    spec = TranslateSpec(backend=args.backend, device=args.device, tile=tile,
                         tile_overlap=check_tile_overlap(args.tile_overlap, tile, model.size_multiple),
                         ensemble=args.ensemble, temporal=args.temporal, temporal_strength=args.temporal_strength)
    pipeline = PipelineConfig(batch_size=args.batch, size_multiple=model.size_multiple, max_side=args.max_side,
                              size=size, allow_partial=args.allow_partial, deinterlace=args.deinterlace)
    encode = EncodeConfig(codec=args.codec, pix_fmt=args.pix_fmt, crf=args.crf, preset=args.preset)
    progress = BatchProgressBar(not args.quiet)
    started = time.perf_counter()
    try:
        summary = run_batch(args.inputs, args.output, model, batch=batch, pipeline=pipeline, encode=encode,
                            translate=spec, progress=progress)
    finally:
        progress.close()
    print(json.dumps(summary.to_dict(), indent=2))
    for item in summary.inputs:
        if item.status == "failed":
            print(f"rt-anime: error: {item.input}: {item.error}", file=sys.stderr)
    if not args.quiet:
        print(f"rt-anime batch: {sum(i.status == 'done' for i in summary.inputs)} done, "
              f"{sum(i.status == 'failed' for i in summary.inputs)} failed, "
              f"{sum(i.status == 'skipped' for i in summary.inputs)} skipped in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return 0 if summary.ok else EXIT_SOME_FAILED
