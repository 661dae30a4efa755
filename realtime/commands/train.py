"""``rt-anime train --config RECIPE``: train a generator with the NijiGAN / Scenimefy semi-supervised recipe.

RECIPE is a bundled recipe name (``default-cpu``: imitate the algorithmic teacher on a CPU in a few hours;
``paper-gpu``: the paper's settings with a Scenimefy teacher) or a TOML file. Outputs go to ``--out`` (default
``~/.cache/rt-anime/train/<recipe>-<preset>``): ``checkpoint.pt`` (every few minutes, at the end and on Ctrl-C),
``warmup.pt`` (the same at the end of a supervised warm-up, kept; a starting point for ``model.init_from``),
``log.jsonl`` (losses per iteration), ``samples/`` (photo | teacher | G grids) and ``final.safetensors`` (float16
generator with its training provenance; load it with ``rt-anime --model PATH``). Running the same command again
resumes from the checkpoint.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import RtAnimeError
from ..train.config import load_config, recipe_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="RECIPE",
                        help=f"bundled recipe ({', '.join(recipe_names())}) or a recipe .toml file")
    parser.add_argument("--preset", metavar="NAME",
                        help="generator preset to train (e.g. nijigan-lite, nijigan); selects the recipe's "
                             "[variants.NAME] budget")
    parser.add_argument("--max-iters", type=int, metavar="N",
                        help="stop after N iterations in total (schedules keep the recipe's length, so a later run "
                             "with a larger N continues the same run)")
    parser.add_argument("--out", metavar="DIR", help="output folder (checkpoint, log, samples, final weights)")
    parser.add_argument("--photos", action="append", metavar="DIR", help="folder of real photos (repeatable)")
    parser.add_argument("--anime", action="append", metavar="DIR",
                        help="folder of anime images for the unpaired branch (repeatable; default: teacher outputs "
                             "of other photos)")
    parser.add_argument("--pairs", action="append", metavar="DIR",
                        help="folder of photos for pseudo-pairs (repeatable; default: the --photos)")
    parser.add_argument("--heldout", action="append", metavar="DIR",
                        help="folder of held-out photos: evaluated and shown in samples, never trained on")
    parser.add_argument("--teacher", metavar="NAME_OR_PATH",
                        help="'algorithmic' or a generator checkpoint that makes the pseudo-targets")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                        help="override a recipe value, e.g. --set losses.lambda_l1=10 (repeatable)")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue from OUT/checkpoint.pt when it exists (default); --no-resume starts over")
    parser.add_argument("--quiet", action="store_true", help="no progress display or summary")


def _absolute(paths: list[str]) -> list[str]:
    return [str(Path(p).expanduser().resolve()) for p in paths]


def _check_out(config) -> None:
    """The run folder must be a folder, and not inside the data: images are found recursively, so a run written
    into the photo folder would feed its own sample grids back in as photos."""
    out = config.out_dir.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise RtAnimeError(f"--out {config.out_dir} is a file; the run writes a folder (checkpoint.pt, log.jsonl, "
                           "samples/, final.safetensors)")
    for key in ("photos", "anime", "pairs", "heldout"):
        for folder in getattr(config.data, key):
            root = Path(folder).expanduser().resolve()
            if out == root or root in out.parents:
                raise RtAnimeError(f"--out {config.out_dir} is inside `data.{key}` folder {folder}; its sample "
                                   "images would be read as training data: choose a folder outside the data")


def run(args: argparse.Namespace) -> int:
    from ..train.trainer import Trainer

    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max-iters must be >= 1, got {args.max_iters}")
    cli: dict[str, object] = {}
    for flag, key in (("photos", "data.photos"), ("anime", "data.anime"), ("pairs", "data.pairs"),
                      ("heldout", "data.heldout")):
        if getattr(args, flag):
            cli[key] = _absolute(getattr(args, flag))
    if args.teacher:
        teacher = Path(args.teacher).expanduser()
        cli["data.teacher"] = str(teacher.resolve()) if teacher.exists() else args.teacher
    if args.out:
        cli["run.out"] = str(Path(args.out).expanduser().resolve())
    overrides = [o for o in args.overrides]
    config = load_config(args.config, preset=args.preset, overrides=overrides, cli=cli)
    if not args.quiet:
        # Progress lines go through logging; show them without -v unless --quiet.
        logging.getLogger("realtime.train").setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
    _check_out(config)
    trainer = Trainer(config)
    result = trainer.train(max_iters=args.max_iters, resume=args.resume, progress=not args.quiet)
    if not args.quiet:
        rate = result.wall_seconds / max(result.iteration, 1)
        state = ("interrupted" if result.interrupted else "complete" if result.completed else "stopped")
        print(f"{result.out_dir}: {state} at iteration {result.iteration}/{result.total_iters} "
              f"({rate:.2f} s/it, {result.cpu_seconds / 3600:.2f} CPU hours)")
        if result.metrics:
            print("held-out vs teacher: " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()
                                                       if isinstance(v, float)))
        if result.final is not None:
            print(f"weights: {result.final}")
        if result.interrupted:
            print("checkpoint saved; run the same command again to resume")
    return 130 if result.interrupted else 0
