"""Bundle trained weights into the package: ``python -m realtime.train.bundle FINAL NAME --license L --origin O``.

``rt-anime train`` writes ``final.safetensors`` (+ JSON with the training provenance). Bundling copies it into
``realtime/weights/<arch>.safetensors`` (float16; the JSON keeps the provenance and gains the file's sha256) and
adds or replaces its record in ``realtime/weights/index.json``, which :func:`realtime.checkpoint.load_weights_index`
reads at import so ``realtime.load_generator("niji-lite")`` and ``rt-anime --model niji-lite`` find it. The source may also be a
run's ``checkpoint.pt``: its generator is bundled with the run's provenance (iteration reached, marked not completed
when the run is still going), so weights can be shipped from a long run without stopping it. The
weights are loaded and run once before anything is written, so a broken file is never bundled, and every file is
replaced atomically, so an interrupted bundle leaves the previous one. ``--average-with OTHER`` bundles the key-by-key
mean of two generators of one architecture instead (e.g. a model and its own fine-tune, which lie in one basin:
``niji.cpu-v13`` was ``niji.cpu-v12`` averaged with a 256²-crop finish of it, ``niji.cpu-v14`` two finishes of v13
averaged; MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from .._fileio import write_atomic
from ..checkpoint import WEIGHTS_DIR, load_generator, save_generator, sha256_file
from ..errors import RtAnimeError

logger = logging.getLogger(__name__)

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def _read_index(index: Path) -> list[dict]:
    if not index.exists():
        return []
    records = json.loads(index.read_text())
    if not isinstance(records, list):
        raise RtAnimeError(f"{index} is not a list of weight records")
    return records


def load_trained(source: "str | Path") -> tuple[torch.nn.Module, dict | None]:
    """The generator at ``source`` and its training provenance (from the JSON beside it, or the checkpoint).

    ``source`` is anything :func:`realtime.load_generator` reads, or a training run's ``checkpoint.pt`` (built from
    the config recorded in it).
    """
    source = Path(source).expanduser()
    from .config import ModelSection, _build_section
    from .trainer import CHECKPOINT_FORMAT

    if source.suffix == ".pt" and source.exists():
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # zip/pickle corruption comes in many exception types
            raise RtAnimeError(f"cannot read {source}: {type(exc).__name__}: {exc}") from None
        if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
            config = json.loads(state["config"])
            model = _build_section(ModelSection, config["model"], str(source)).build_generator()
            model.load_state_dict(state["nets"]["G"])
            model.preset = config["model"]["preset"]
            training = {"recipe": config.get("name"), "description": config.get("description"),
                        "preset": config["model"]["preset"], "solver": config["model"].get("solver"),
                        "iterations": int(state["iteration"]), "total_iters": int(state["total_iters"]),
                        "completed": int(state["iteration"]) >= int(state["total_iters"]),
                        "cpu_seconds": round(float(state["cpu_seconds"]), 1),
                        "wall_seconds": round(float(state["wall_seconds"]), 1), "from_checkpoint": True,
                        "config": config}
            return model, training
    model = load_generator(source)
    config_src = source.with_suffix(".json")
    training = json.loads(config_src.read_text()).get("training") if config_src.exists() else None
    return model, training


def _average_into(model: torch.nn.Module, source: "str | Path", other: "str | Path", weight: float) -> dict | None:
    # The mean is taken in fp32 so two fp16-stored inputs average without a second rounding before storage.
    if not 0.0 < weight < 1.0:
        raise RtAnimeError(f"average weight must be in (0, 1) (the share of the source), got {weight!r}")
    partner, training = load_trained(other)
    ours, theirs = model.state_dict(), partner.float().state_dict()
    if type(partner) is not type(model) or ours.keys() != theirs.keys() or any(
            ours[k].shape != theirs[k].shape for k in ours):
        raise RtAnimeError(f"cannot average {source} with {other}: they are not the same architecture and size")
    model.load_state_dict({k: weight * ours[k] + (1.0 - weight) * theirs[k] if ours[k].is_floating_point()
                           else ours[k] for k in ours})
    return training


def bundle_weights(source: "str | Path", name: str, *, license: str, origin: str, default: bool = True,
                   weights_dir: Path = WEIGHTS_DIR, dtype: torch.dtype = torch.float16,
                   average_with: "str | Path | None" = None, average_weight: float = 0.5) -> dict:
    """Copy the generator at ``source`` into ``weights_dir`` under ``name`` and index it; returns its record.

    Args:
        source: A checkpoint ``load_generator`` reads (normally ``<train out>/final.safetensors``).
        name: ``arch`` or ``arch.tag`` (lowercase letters, digits, ``-_.``); ``arch`` alone resolves to the record
            marked default.
        license: Licence of the weights (recorded in the index and the model card).
        origin: One line on how they were made.
        default: Make this the tag ``arch`` alone resolves to.
        weights_dir: Target folder (the package's ``realtime/weights`` unless testing).
        dtype: Storage dtype of floating tensors.
        average_with: Bundle ``average_weight * source + (1 - average_weight) * average_with``, key by key (same
            architecture and size); its provenance is recorded beside the source's.
        average_weight: The source's share of the mean, in (0, 1).

    Raises:
        RtAnimeError: A bad name or average weight, weights that do not load, differ in architecture from the
            ones to average with, or produce non-finite output.
    """
    if not name or set(name) - _NAME_CHARS or name.startswith(".") or name.count(".") > 1:
        raise RtAnimeError(f"bundle name must be 'arch' or 'arch.tag' of lowercase letters, digits and -_, "
                           f"got {name!r}")
    model, training = load_trained(source)
    model = model.float().eval()
    averaged = None
    if average_with is not None:
        averaged = {"with": str(average_with), "weight": average_weight,
                    "training": _average_into(model, source, average_with, average_weight)}
    probe = torch.linspace(-1, 1, 3 * 32 * 32).reshape(1, 3, 32, 32)
    with torch.no_grad():
        if not torch.isfinite(model(probe)).all():
            raise RtAnimeError(f"{source}: the generator produces non-finite output; not bundling it")
    weights_dir.mkdir(parents=True, exist_ok=True)
    stem = name.replace(".", "_")
    extra = {"training": training} if training is not None else {}
    extra["bundle"] = {"name": name, "license": license, "origin": origin}
    if averaged is not None:
        extra["bundle"]["averaged"] = averaged
    save_generator(model, weights_dir / stem, dtype=dtype, extra=extra)
    weights = weights_dir / f"{stem}.safetensors"
    record = {"name": name, "file": weights.name, "sha256": sha256_file(weights), "license": license,
              "origin": origin, "default": bool(default)}
    index = weights_dir / "index.json"
    arch = name.partition(".")[0]
    records = [r for r in _read_index(index) if r.get("name") != name]
    if default:
        for r in records:
            if r.get("name", "").partition(".")[0] == arch:
                r["default"] = False
    records = sorted(records + [record], key=lambda r: r["name"])
    text = json.dumps(records, indent=2) + "\n"
    write_atomic(index, lambda tmp: Path(tmp).write_text(text))
    logger.info("bundled %s as %s (%s)", source, name, weights)
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.train.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="trained checkpoint, e.g. ~/.cache/rt-anime/train/<run>/final.safetensors")
    parser.add_argument("name", help="bundle name: arch or arch.tag, e.g. niji-lite")
    parser.add_argument("--license", required=True, help="licence of the weights")
    parser.add_argument("--origin", required=True, help="one line on how they were made")
    parser.add_argument("--no-default", action="store_true", help="do not make this the default tag of its arch")
    parser.add_argument("--average-with", metavar="OTHER", help="bundle the key-by-key mean of SOURCE and OTHER")
    parser.add_argument("--average-weight", type=float, default=0.5, metavar="W",
                        help="SOURCE's share of that mean (default 0.5)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        record = bundle_weights(args.source, args.name, license=args.license, origin=args.origin,
                                default=not args.no_default, weights_dir=args.weights_dir,
                                average_with=args.average_with, average_weight=args.average_weight)
    except (RtAnimeError, OSError) as exc:
        print(f"bundle: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
