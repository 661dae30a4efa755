"""The temporal losses of per-video fine-tuning (StyleAnime, Li et al. TOG 2023, paper 004 §6.3) and their geometry.

For a triplet of consecutive frames ``(t−1, t, t+1)`` of one shot:

* **Latent smoothing** (eq. 15): ``‖½(w_{t+1} + w_{t−1}) − w_t‖₂`` on the generator's bottleneck state ``w``
  (NijiGAN / CUT: the output of the last ODE / residual block, 1/4 resolution; AnimeGANv2: block C).
* **Frame-interpolation consistency** (eq. 16): ``‖M(ŷ_{t−1}, ŷ_{t+1}) − ŷ_t‖₂`` with a frozen interpolator ``M``
  (:mod:`realtime.finetune.interpolators`).

Both norms are taken as root-mean-square over the counted elements (the L2 norm divided by √count) so a loss weight
means the same thing at every crop size; ``√(x + ε) − √ε`` keeps the gradient finite at 0 and the value exactly 0
there.

**Motion-aware latent smoothing.** Eq. 15 compares latents at the same position. StyleAnime's latent is a global
W+ code, where that is right; ours is a spatial feature map, and under camera or object motion the content at a
position changes between frames, so the plain formula would penalise genuine motion: the optimum is a latent
blurred along the motion, which the decoder turns into ghosting, while the anchor pulls the other way. We therefore
*align before comparing*: ``w_{t−1}`` and ``w_{t+1}`` are backward-warped onto frame t's grid with the DIS optical
flow of the **input** frames (``F_{t→t±1}``, averaged down to the bottleneck resolution, vectors scaled by the
same factor), and the residual is counted only where both flows are trustworthy: Lai et al.'s occlusion mask
(forward–backward inconsistency, motion boundary, out of frame; :func:`realtime.temporal.flow.occlusion_mask`)
min-pooled to the bottleneck grid, so a latent cell that sees any occluded pixel is left out. Warping was chosen over
simply masking high-motion regions because the shots where flicker shows most are pans, where masking would drop
nearly every cell; with zero flow the loss reduces to eq. 15 exactly, and latents that move with the flow and vary
linearly in time score 0. Flow comes from the inputs because the outputs are what is being changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..temporal.flow import DISFlow, occlusion_mask, to_gray_u8
from .ifnet import backward_warp

__all__ = ["TripletGeometry", "downsample_flow", "downsample_valid", "interpolation_consistency_loss",
           "latent_smoothing_loss", "masked_rms", "smoothed_anchor", "triplet_geometry"]

_EPS = 1e-12


@dataclass(frozen=True)
class TripletGeometry:
    """Flows and validity of a batch of triplets (all ``float32``, flows ``(B, 2, H, W)`` in pixels (x, y), validity
    ``(B, 1, H, W)`` with 1 = trustworthy, 0 = occluded / out of frame).

    Attributes:
        to_prev: ``F_{t→t−1}`` on the middle frame's grid: ``x_t(p) ≈ x_{t−1}(p + F(p))``.
        to_next: ``F_{t→t+1}``, same layout.
        valid_prev: Where ``to_prev`` is trustworthy.
        valid_next: Same for ``to_next``.
        from_prev: ``F_{t−1→t}`` on frame t−1's grid (the reverse flow; used by the smoothed anchor).
        from_next: ``F_{t+1→t}`` on frame t+1's grid.
        valid_from_prev: Where ``from_prev`` is trustworthy.
        valid_from_next: Same for ``from_next``.
    """

    to_prev: torch.Tensor
    to_next: torch.Tensor
    valid_prev: torch.Tensor
    valid_next: torch.Tensor
    from_prev: torch.Tensor | None = None
    from_next: torch.Tensor | None = None
    valid_from_prev: torch.Tensor | None = None
    valid_from_next: torch.Tensor | None = None

    @classmethod
    def static(cls, batch: int, height: int, width: int, *, device: "str | torch.device" = "cpu"
               ) -> "TripletGeometry":
        """Zero flow, everything valid (a still camera on a still scene)."""
        flow = torch.zeros(batch, 2, height, width, device=device)
        valid = torch.ones(batch, 1, height, width, device=device)
        return cls(*(t.clone() for t in (flow, flow, valid, valid, flow, flow, valid, valid)))

    def to(self, device: "str | torch.device") -> "TripletGeometry":
        return TripletGeometry(*(None if t is None else t.to(device) for t in (
            self.to_prev, self.to_next, self.valid_prev, self.valid_next, self.from_prev, self.from_next,
            self.valid_from_prev, self.valid_from_next)))


def triplet_geometry(triplets: np.ndarray, flow: DISFlow) -> TripletGeometry:
    """DIS flows and occlusion masks of input triplets (four flows per triplet: both directions to each neighbour).

    Args:
        triplets: ``(B, 3, H, W, 3)`` uint8 RGB input frames ``(t−1, t, t+1)``.
        flow: The estimator (its preset is the caller's choice).
    """
    if triplets.ndim != 5 or triplets.shape[1] != 3 or triplets.dtype != np.uint8:
        raise ValueError(f"triplets must be (B, 3, H, W, 3) uint8, got {triplets.shape} {triplets.dtype}")
    # Order: to_prev, to_next, valid_prev, valid_next, from_prev, from_next, valid_from_prev, valid_from_next.
    fields: list[list[np.ndarray]] = [[] for _ in range(8)]
    for prev, mid, nxt in triplets:
        g_prev, g_mid, g_next = to_gray_u8(prev), to_gray_u8(mid), to_gray_u8(nxt)
        for k, other in enumerate((g_prev, g_next)):
            forward, backward = flow(g_mid, other), flow(other, g_mid)
            fields[k].append(forward.transpose(2, 0, 1))
            fields[4 + k].append(backward.transpose(2, 0, 1))
            # occlusion_mask(a, b) is defined on the grid of the frame flow ``a`` starts from.
            fields[2 + k].append((~occlusion_mask(forward, backward, out_of_frame=True))[None].astype(np.float32))
            fields[6 + k].append((~occlusion_mask(backward, forward, out_of_frame=True))[None].astype(np.float32))
    return TripletGeometry(*(torch.from_numpy(np.ascontiguousarray(np.stack(f))) for f in fields))


def smoothed_anchor(base: torch.Tensor, inputs: torch.Tensor, geometry: TripletGeometry, *,
                    sigma: float = 0.05) -> torch.Tensor:
    """The base model's outputs of a triplet, each averaged with its neighbours warped onto it along the input flow.

    ``a_t = (b_t + Σ_n w_n·warp(b_n)) / (1 + Σ_n w_n)`` over the triplet's neighbours n of frame t (both for the
    middle frame, the middle one for the outer frames), with ``w_n`` = flow validity × ``exp(−d²/σ²)``, ``d²`` the
    mean squared difference between the warped and the actual *input* (RGB [0, 1]): the gate of ``--temporal
    blend``, so a wrong flow that the occlusion test missed does not smear a neighbour in. This is a flow-guided
    3-tap temporal filter of the per-frame output: as close to it as the flicker allows, without the flicker.

    Args:
        base: ``(B, 3, C, H, W)`` base outputs of frames ``(t−1, t, t+1)`` in [-1, 1].
        inputs: ``(B, 3, C, H, W)`` the inputs in [-1, 1].
        geometry: Flows of the triplets, with the reverse flows (``from_prev`` …) filled in.
        sigma: Input-difference scale (RGB [0, 1]).

    Returns:
        ``(B, 3, C, H, W)`` anchors.
    """
    g = geometry.to(base.device)
    if g.from_prev is None or g.from_next is None or g.valid_from_prev is None or g.valid_from_next is None:
        raise ValueError("smoothed_anchor needs the reverse flows (from_prev, from_next); use triplet_geometry")

    def combine(t: int, sources: list[tuple[int, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        total, weight_sum = base[:, t].clone(), torch.ones_like(base[:, t, :1])
        for n, flow, valid in sources:
            d2 = (backward_warp(inputs[:, n], flow) - inputs[:, t]).pow(2).mean(1, keepdim=True) * 0.25
            weight = valid * torch.exp(-d2 / (sigma * sigma))
            total = total + weight * backward_warp(base[:, n], flow)
            weight_sum = weight_sum + weight
        return total / weight_sum

    return torch.stack([combine(0, [(1, g.from_prev, g.valid_from_prev)]),
                        combine(1, [(0, g.to_prev, g.valid_prev), (2, g.to_next, g.valid_next)]),
                        combine(2, [(1, g.from_next, g.valid_from_next)])], dim=1)


def masked_rms(diff: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``√(Σ w·d² / (C·Σ w) + ε) − √ε`` per sample (0 for a sample with ``Σ w = 0``); ε = 1e-12.

    Args:
        diff: ``(B, C, H, W)`` residual.
        weight: ``(B, 1, H, W)`` in [0, 1], or ``None`` for all ones.
    """
    if weight is None:
        weight = diff.new_ones(diff.shape[0], 1, *diff.shape[2:])
    per_sample = (weight * diff.pow(2)).sum(dim=(1, 2, 3))
    count = weight.sum(dim=(1, 2, 3)) * diff.shape[1]
    mean_sq = torch.where(count > 0, per_sample / count.clamp_min(_EPS), torch.zeros_like(per_sample))
    return ((mean_sq + _EPS).sqrt() - math.sqrt(_EPS)).mean()


def downsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average a pixel flow field to ``size = (h, w)`` and rescale its vectors to the new grid."""
    h, w = size
    if flow.shape[-2:] == (h, w):
        return flow
    small = F.adaptive_avg_pool2d(flow, (h, w))
    scale = small.new_tensor([w / flow.shape[-1], h / flow.shape[-2]]).view(1, 2, 1, 1)
    return small * scale


def downsample_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Min-pool a 0/1 validity map to ``size``: a cell is valid only when every pixel it covers is."""
    if valid.shape[-2:] == tuple(size):
        return valid
    return 1.0 - F.adaptive_max_pool2d(1.0 - valid, size)


def latent_smoothing_loss(w_prev: torch.Tensor, w_mid: torch.Tensor, w_next: torch.Tensor,
                          geometry: TripletGeometry | None = None, *, scale: float = 1.0) -> torch.Tensor:
    """Motion-aware eq. 15 (module docstring): RMS of ``½(ŵ_{t+1} + ŵ_{t−1}) − w_t`` over valid cells, ÷ ``scale``.

    Args:
        w_prev: Bottleneck of frame t−1, ``(B, C, h, w)``.
        w_mid: Bottleneck of frame t.
        w_next: Bottleneck of frame t+1.
        geometry: Input flows and validity at image resolution; ``None`` = the plain, unaligned eq. 15.
        scale: Typical RMS of the base model's bottleneck, so the loss is relative and its weight model-independent.
    """
    if not (w_prev.shape == w_mid.shape == w_next.shape) or w_mid.dim() != 4:
        raise ValueError(f"latents must be three (B, C, h, w) tensors of one shape, got {tuple(w_prev.shape)}, "
                         f"{tuple(w_mid.shape)}, {tuple(w_next.shape)}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    weight = None
    if geometry is not None:
        size = (w_mid.shape[-2], w_mid.shape[-1])
        w_prev = backward_warp(w_prev, downsample_flow(geometry.to_prev, size))
        w_next = backward_warp(w_next, downsample_flow(geometry.to_next, size))
        weight = downsample_valid(geometry.valid_prev, size) * downsample_valid(geometry.valid_next, size)
    return masked_rms(0.5 * (w_prev + w_next) - w_mid, weight) / scale


def interpolation_consistency_loss(predicted: torch.Tensor, y_mid: torch.Tensor,
                                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 16: RMS of ``M(ŷ_{t−1}, ŷ_{t+1}) − ŷ_t`` (images in [-1, 1]) over ``weight``."""
    if predicted.shape != y_mid.shape:
        raise ValueError(f"interpolated frame {tuple(predicted.shape)} and middle frame {tuple(y_mid.shape)} must "
                         "have one shape")
    return masked_rms(predicted - y_mid, weight)
