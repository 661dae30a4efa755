"""Checkpoint I/O: rt-anime's own format, bundled weights, and third-party PyTorch files.

rt-anime's format is a ``.safetensors`` file plus a ``.json`` config beside it (same stem). The JSON names the family,
the full config (architecture and solver), the preprocessing contract and the sha256 of the weights file, which is
verified on load. The config is also embedded in the safetensors header so a lone weights file still loads.

Third-party ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)`` and never unpickled otherwise; each
family's ``checkpoint_filter_fn`` recognises its layout from sentinel keys, infers the config and checks coverage and
shapes before a strict load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from ._fileio import write_atomic
from ._registry import Family, families, get_entry, get_family
from .errors import CheckpointError
from .models._base import Generator

logger = logging.getLogger(__name__)

FORMAT = "rt-anime/generator"
FORMAT_VERSION = 1
NATIVE_SUFFIXES = (".safetensors", ".json")
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_CONTAINER_KEYS = ("state_dict", "params_ema", "params", "model", "netG", "generator", "g_ema")
_PREFIXES = ("module.", "_orig_mod.")
WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class PretrainedCfg:
    """A bundled weight file, addressed as ``arch.tag`` (timm's pretrained record).

    Attributes:
        name: ``arch.tag``, e.g. ``nijigan.rt-anime-v1``; ``arch`` alone resolves to the default tag.
        file: Path of the ``.safetensors`` file relative to ``realtime/weights/`` (the JSON sits beside it).
        sha256: Expected digest of the weights file.
        license: Licence of the weights.
        origin: How the weights were made (recipe, data).
    """

    name: str
    file: str
    sha256: str
    license: str
    origin: str


_PRETRAINED: dict[str, PretrainedCfg] = {}
_DEFAULT_TAG: dict[str, str] = {}
_WEIGHTS_DIRS: dict[str, Path] = {}


def register_pretrained(cfg: PretrainedCfg, *, default: bool = False) -> None:
    arch = cfg.name.partition(".")[0]
    _PRETRAINED[cfg.name] = cfg
    if default or arch not in _DEFAULT_TAG:
        _DEFAULT_TAG[arch] = cfg.name


def list_pretrained() -> list[str]:
    return sorted(_PRETRAINED)


def resolve_pretrained(name: str) -> str | None:
    """The bundled record ``name`` stands for (``arch`` → its default ``arch.tag``), or None when not bundled."""
    full = _DEFAULT_TAG.get(name, name)
    return full if full in _PRETRAINED else None


def _pretrained_record(name: str) -> dict:
    full = resolve_pretrained(name)
    if full is None:
        raise CheckpointError(f"{name!r} is not a bundled model; bundled: {list_pretrained() or 'none'}")
    return json.loads((_WEIGHTS_DIRS.get(full, WEIGHTS_DIR) / _PRETRAINED[full].file).with_suffix(".json").read_text())


def pretrained_preset(name: str) -> str:
    """The generator preset a bundled model was built from."""
    record = _pretrained_record(name)
    return record.get("preset") or record["family"]


def pretrained_training(name: str) -> dict[str, Any]:
    """A bundled model's training provenance (recipe, config, iterations…), ``{}`` when it has none."""
    training = _pretrained_record(name).get("training")
    return training if isinstance(training, dict) else {}


def pretrained_architecture(name: str) -> tuple[str, dict[str, Any]]:
    """The preset and full config of a bundled model: what ``--random-weights`` re-creates untrained (the preset
    alone would miss settings such as NijiGAN's ``input_skip``)."""
    record = _pretrained_record(name)
    return record.get("preset") or record["family"], dict(record.get("config", {}))


def load_weights_index(weights_dir: Path = WEIGHTS_DIR) -> int:
    """Register the bundled weights listed in ``<weights_dir>/index.json``; returns how many were registered.

    The index is a list of ``{"name", "file", "sha256", "license", "origin", "default"?}`` records; files are
    checked (sha256) when loaded, not here, so importing rt-anime stays cheap.
    """
    index = weights_dir / "index.json"
    if not index.exists():
        return 0
    try:
        records = json.loads(index.read_text())
        for record in records:
            register_pretrained(PretrainedCfg(name=record["name"], file=record["file"], sha256=record["sha256"],
                                              license=record["license"], origin=record["origin"]),
                                default=bool(record.get("default", False)))
            _WEIGHTS_DIRS[record["name"]] = weights_dir
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"bundled weights index {index} is malformed ({exc}): the installation is corrupt") from None
    return len(records)


def sha256_file(path: "str | os.PathLike") -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- saving --------------------------------------------------------------------------------------------------------

def save_generator(model: Generator, path: "str | os.PathLike", *, dtype: torch.dtype = torch.float32,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Save ``model`` as ``<stem>.safetensors`` + ``<stem>.json`` and return the JSON path.

    Args:
        model: A registered-family generator.
        path: Target path; ``.safetensors``, ``.json`` or no suffix all name the same pair of files.
        dtype: Storage dtype of floating tensors (``torch.float16`` halves the file; loads upcast to float32).
        extra: Additional JSON-able fields for the config file (e.g. training provenance).
    """
    from safetensors.torch import save_file

    if not isinstance(model, Generator) or getattr(model, "family", None) is None:
        raise TypeError(f"save_generator needs an rt-anime Generator, got {type(model).__name__}")
    path = Path(path)
    if path.suffix in NATIVE_SUFFIXES:
        path = path.with_suffix("")
    weights_path, config_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not path.parent.is_dir():
        raise CheckpointError(f"cannot save to {weights_path}: directory {path.parent} does not exist")
    tensors = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in model.state_dict().items()}
    header = {"family": model.family, "preset": getattr(model, "preset", None), "config": model.config_dict()}
    write_atomic(weights_path, lambda tmp: save_file(tensors, tmp, metadata={"rt_anime": json.dumps(header)}))
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, **header,
        "preprocessing": {"color": "RGB", "layout": "NCHW", "input_range": [-1.0, 1.0],
                          "output_range": [-1.0, 1.0], "size_multiple": model.size_multiple},
        "weights": weights_path.name, "sha256": sha256_file(weights_path), "dtype": str(dtype).replace("torch.", ""),
        "num_params": sum(p.numel() for p in model.parameters()), "rt_anime_version": __version__,
        **(dict(extra) if extra else {}),
    }
    write_atomic(config_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    return config_path


# --- loading -------------------------------------------------------------------------------------------------------

def _apply_overrides(family: Family, config: Any, overrides: Mapping[str, Any], source: str) -> Any:
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"cannot override {unknown} when loading {source}: family {family.name!r} has config "
                              f"fields {sorted(known)}")
    return dataclasses.replace(config, **overrides)


def _build_and_load(family: Family, config: Any, state_dict: Mapping[str, torch.Tensor], source: str) -> Generator:
    model = family.build(config)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:4]) or first[0]
        raise CheckpointError(f"weights in {source} do not fit {family.name} with config {config}: {detail}") from None
    return model.eval()


def _load_native(path: Path, overrides: Mapping[str, Any]) -> Generator:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    weights_path, config_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    record: dict | None = None
    if config_path.exists():
        try:
            record = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CheckpointError(f"{config_path} is not an rt-anime generator config (expected \"format\": "
                                  f"\"{FORMAT}\")")
        weights_path = config_path.parent / record.get("weights", weights_path.name)
    if not weights_path.exists():
        raise CheckpointError(f"weights file {weights_path} not found (config {config_path})")
    try:
        if record is not None:
            digest = sha256_file(weights_path)
            if record.get("sha256") and digest != record["sha256"]:
                raise CheckpointError(f"sha256 of {weights_path} is {digest[:16]}…, its config {config_path.name} "
                                      f"records {record['sha256'][:16]}…: the file is corrupt or was changed")
        else:
            with safe_open(str(weights_path), framework="pt") as f:
                meta = (f.metadata() or {}).get("rt_anime")
            if meta is None:
                raise CheckpointError(f"{weights_path} has no {config_path.name} beside it and no embedded rt-anime "
                                      "config: cannot tell which generator it is")
            record = json.loads(meta)
            logger.warning("%s has no config file beside it: using the embedded config, sha256 not verified",
                           weights_path)
        state_dict = load_file(str(weights_path))
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {weights_path}: {exc}") from None
    family = get_family(record["family"])
    try:
        config = family.config_from_dict(record["config"])
        config = _apply_overrides(family, config, overrides, str(path))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: bad config: {exc}") from None
    model = _build_and_load(family, config, state_dict, str(weights_path))
    model.preset = record.get("preset")
    return model


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        raise CheckpointError(f"{source} holds no state dict of tensors (top-level type {type(obj).__name__}"
                              f"{', keys ' + str(list(obj)[:6]) if isinstance(obj, Mapping) else ''})")
    out = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _closest_layout(keys: set[str]) -> str:
    best = None
    for family in families():
        for name, expected in family.layouts().items():
            score = len(keys & expected) / max(1, len(keys | expected))
            if best is None or score > best[0]:
                best = (score, name, expected)
    assert best is not None
    _, name, expected = best
    missing, unexpected = sorted(expected - keys), sorted(keys - expected)
    return (f"closest known layout: {name} ({len(missing)} missing keys, e.g. {missing[:4]}; {len(unexpected)} "
            f"unexpected keys, e.g. {unexpected[:4]})")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a third-party PyTorch checkpoint with ``weights_only=True`` and unwrap it to a flat state dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch raises UnpicklingError both for refused globals (code execution) and for garbage bytes.
        detail = str(exc)
        noise = ("Weights only load failed", "Please file an issue", "Check the documentation")
        reason = next((line.strip() for line in detail.splitlines() if line.strip() and not line.startswith(noise)),
                      detail)[:200]
        if "GLOBAL" not in detail:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {reason}") from None
        raise CheckpointError(f"refusing to load {path}: unpickling it would need to run code ({reason}). rt-anime "
                              "loads checkpoints with weights_only=True; re-save the generator's state_dict only") from None
    except Exception as exc:  # zip/pickle corruption comes in many exception types
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {type(exc).__name__}: {exc}") from None
    return _unwrap(obj, str(path))


def _load_third_party(path: Path, overrides: Mapping[str, Any]) -> Generator:
    state_dict = load_state_dict_file(path)
    for family in families():
        try:
            found = family.checkpoint_filter_fn(state_dict)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if found is None:
            continue
        config, cleaned = found
        config = _apply_overrides(family, config, overrides, str(path))
        model = _build_and_load(family, config, cleaned, str(path))
        model.preset = None
        logger.info("loaded %s as %s %s", path, family.name, config)
        return model
    raise CheckpointError(f"{path} matches no known generator layout; {_closest_layout(set(state_dict))}")


def load_generator(path_or_name: "str | os.PathLike", **overrides: Any) -> Generator:
    """Load a generator from a checkpoint path or a bundled weight name, in eval mode.

    Args:
        path_or_name: ``.safetensors``/``.json`` (rt-anime), ``.pth``/``.pt``/``.ckpt``/``.bin`` (CUT, Scenimefy,
            AnimeGANv2 or raw NijiGAN state dicts), or a bundled name (``arch`` or ``arch.tag``).
        **overrides: Config fields to change, e.g. ``solver="rk4:1"``.
    """
    text = os.fspath(path_or_name)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory; expected a checkpoint file "
                                  f"({', '.join(NATIVE_SUFFIXES + TORCH_SUFFIXES)})")
        suffix = path.suffix.lower()
        if suffix in NATIVE_SUFFIXES:
            return _load_native(path, overrides)
        if suffix in TORCH_SUFFIXES:
            return _load_third_party(path, overrides)
        raise CheckpointError(f"{path}: unknown checkpoint extension {suffix!r}; expected one of "
                              f"{', '.join(NATIVE_SUFFIXES + TORCH_SUFFIXES)}")
    name = _DEFAULT_TAG.get(text, text)
    if name in _PRETRAINED:
        cfg = _PRETRAINED[name]
        weights = _WEIGHTS_DIRS.get(name, WEIGHTS_DIR) / cfg.file
        if sha256_file(weights) != cfg.sha256:
            raise CheckpointError(f"bundled weights {weights} fail their sha256 check: the installation is corrupt")
        return _load_native(weights, overrides)
    if any(sep in text for sep in ("/", os.sep)) or Path(text).suffix.lower() in NATIVE_SUFFIXES + TORCH_SUFFIXES:
        raise CheckpointError(f"checkpoint file {text} not found")
    try:
        get_entry(text.partition(".")[0])
    except ValueError:
        raise CheckpointError(f"{text!r} is neither an existing checkpoint file nor a bundled model name; bundled: "
                              f"{list_pretrained() or 'none'}") from None
    raise CheckpointError(f"generator {text!r} has no bundled weights (bundled: {list_pretrained() or 'none'}); "
                          "pass a checkpoint path, or use realtime.create_generator for random initialisation")
