"""The NijiGAN / Scenimefy semi-supervised trainer (``rt-anime train``).

Networks (``../shared/reference/models.md`` §6): G (the generator preset, NijiGAN by default), D (PatchGAN on the
anime domain Y), D_p (6-channel conditional PatchGAN on ``cat(x_p, y)``), F (PatchSampleF for SRC/hDCE) and F_s
(PatchSampleF for StylePatchNCE); all xavier-normal with gain 0.02 as CUT's ``init_net``; F and F_s get their heads
from the encoder's channel counts before the optimisers are built (CUT's data-dependent initialisation).

One iteration, as Scenimefy's ``semi_cut_model``: forward G on ``cat(x, y, x_p)`` (``y`` only with ``dce_idt``;
InstanceNorm is per image, so batching the three changes nothing), a D step and a D_p step (LSGAN), then one step of
G, F and F_s on::

    λ_GAN·GAN(D(G(x))) + λ_HDCE·½(hDCE(x→G(x)) + hDCE(y→G(y))) + λ_SRC·SRC(x, G(x))
      + λ_sup(t)·(λ_GAN_p·GAN(D_p(x_p ‖ G(x_p))) + λ_style·StylePatchNCE(G(x_p), y_p)
                  + λ_L1·L1(G(x_p), y_p) + λ_L2·MSE(G(x_p), y_p) + λ_perc·VGG16(G(x_p), y_p) + λ_TV·TV(G(x_p)))

(or, with ``perceptual_on = "content"``, λ_perc·VGG16(G(x), x) outside the bracket, as Scenimefy's λ_VGG)

with λ_sup(t) = cos(π/2 · i/total) (the papers' formula, not the official code's constant). Terms whose weight is 0
are not computed, and networks only they need are not built. An optional supervised warm-up (``optim.warmup_iters``,
AnimeGAN's ``init_epoch`` idea) first trains G alone on the pixel terms (L1, TV) with bigger pair batches:
an InstanceNorm encoder–decoder must first learn to carry colour and layout through its bottleneck, and doing that
under critics and patch losses that judge a grey blur wastes most of a small CPU budget. The schedules start after it. Losses are logged unweighted to ``<out>/log.jsonl``.

Checkpoints (``<out>/checkpoint.pt``) hold tensors and JSON-able values only, so they load with
``torch.load(weights_only=True)``; they carry every network, optimiser, scheduler, the RNG states, the iteration and
the config. Batches are a function of (seed, iteration) and patch sampling has its own RNG, so a resumed run repeats
the uninterrupted one exactly on the same machine and thread count.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from .._fileio import write_atomic
from .._signals import install_signal_handler, restore_signal_handlers
from ..backends import resolve_device
from ..checkpoint import save_generator
from ..ensemble import dihedral, self_ensemble, undo_dihedral
from ..errors import CheckpointError, MissingDependencyError
from ..images import image_to_tensor, pad_to_multiple, tensor_to_image, write_image
from .config import TrainConfig
from .data import TrainData
from .losses import (ContrastiveConfig, GANLoss, LPIPSLoss, PerceptualConfig, PerceptualLoss, SRCHDCELoss,
                     StylePatchNCE, StylePatchNCEConfig, edge_l1_loss, l1_loss, tv_loss)
from .networks import NLayerDiscriminator, PatchSampleF, init_weights
from .schedules import ScheduleConfig, linear_lr_scheduler

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "rt-anime/train-checkpoint"
WARMUP_CHECKPOINT = "warmup.pt"  # the checkpoint at the end of the supervised warm-up, in the run's folder
CHECKPOINT_VERSION = 1
NETS = ("G", "D", "D_p", "F", "F_s")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".") or "config"]


def _section_defaults(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """``{section: {field: default}}`` of the config's sections (fields with plain defaults)."""
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if dataclasses.is_dataclass(section):
            out[f.name] = {g.name: g.default for g in dataclasses.fields(section)
                           if g.default is not dataclasses.MISSING}
    return out


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (∞ when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


@dataclass
class TrainResult:
    """What a :meth:`Trainer.train` call did."""

    out_dir: Path
    iteration: int
    total_iters: int
    interrupted: bool
    final: Path | None
    wall_seconds: float
    cpu_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.iteration >= self.total_iters


class Trainer:
    """Builds the networks, losses and data of a :class:`TrainConfig` and runs (or resumes) training.

    Args:
        config: The validated recipe.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.device = resolve_device(config.run.device, param="run.device")
        self.out_dir = config.out_dir
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.log_path = self.out_dir / "log.jsonl"
        L, O = config.losses, config.optim
        self.warmup = O.warmup_iters
        self.warmup_batch = O.warmup_batch_size or config.data.batch_size
        self.schedule = ScheduleConfig(n_epochs=O.n_iters, n_epochs_decay=O.n_iters_decay, gamma0=L.gamma0,
                                       gamma_min=L.gamma_min, use_curriculum=L.curriculum,
                                       decay_supervised=L.decay_supervised)
        self.iteration = 0
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0
        self.data: TrainData | None = None
        self._stop_requested = False
        self._lpips: Any = None
        self._build()

    # --- construction ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg, L = self.config, self.config.losses
        torch.manual_seed(cfg.run.seed)
        gain, dev = cfg.model.init_gain, self.device
        self.G = init_weights(cfg.model.build_generator(), "xavier", gain).to(dev)
        if getattr(self.G.config, "input_skip", False):
            # Start as the identity: with the input skip a zero head outputs the photo, and the network learns the
            # change from there rather than from noise added to it.
            head = [m for m in self.G.model if isinstance(m, nn.Conv2d)][-1]
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.init_mode = "random"
        if cfg.model.init_from:
            from .bundle import load_trained
            from .widen import warm_start

            source, _ = load_trained(cfg.model.init_from)
            self.init_mode = warm_start(self.G, source, noise=cfg.model.init_noise, seed=cfg.run.seed)
        # Frozen before any step, and rebuilt from init_from on resume, so the target never drifts with G.
        self.G_init = copy.deepcopy(self.G).eval().requires_grad_(False) if L.lambda_ensemble_distill > 0 else None
        self.G.preset = cfg.model.preset
        # Terms with weight 0 cost nothing: their networks are not built and their forwards never run.
        self.contrastive = L.contrastive
        self.use_idt = self.contrastive and L.dce_idt
        self.D = NLayerDiscriminator(3, cfg.model.ndf, cfg.model.d_layers, init_gain=gain).to(dev) \
            if L.lambda_gan > 0 else None
        self.D_p = NLayerDiscriminator(6, cfg.model.ndf, cfg.model.d_layers, init_gain=gain).to(dev) \
            if L.lambda_gan_p > 0 else None
        self.patch_rng = {"F": torch.Generator().manual_seed(cfg.run.seed + 1),
                          "F_s": torch.Generator().manual_seed(cfg.run.seed + 2)}
        self.F = PatchSampleF(cfg.model.netf_nc, init_gain=gain, generator=self.patch_rng["F"]) \
            if self.contrastive else None
        self.F_s = PatchSampleF(cfg.model.netf_nc, init_gain=gain, generator=self.patch_rng["F_s"]) \
            if L.lambda_style > 0 else None
        if self.F is not None or self.F_s is not None:
            with torch.no_grad():
                probe = torch.zeros(1, 3, cfg.data.crop, cfg.data.crop, device=dev)
                feats = self.G.forward_features(probe, L.nce_layers, encode_only=True).features
            for f in (self.F, self.F_s):
                if f is not None:
                    f.initialize(feats)
        self.unpaired = self.D is not None or self.contrastive or (L.lambda_perceptual > 0
                                                                   and L.perceptual_on == "content")

        O = cfg.optim

        def adam(*modules: torch.nn.Module | None) -> torch.optim.Adam:
            params = [p for m in modules if m is not None for p in m.parameters()]
            return torch.optim.Adam(params, lr=O.lr, betas=(O.beta1, O.beta2))

        self.optimizers = {"G": adam(self.G, self.F, self.F_s)}
        if self.D is not None:
            self.optimizers["D"] = adam(self.D)
        if self.D_p is not None:
            self.optimizers["D_p"] = adam(self.D_p)
        self.schedulers = {k: linear_lr_scheduler(o, self.schedule) for k, o in self.optimizers.items()}

        self.gan = GANLoss(L.gan_mode)
        self.src_hdce = SRCHDCELoss(ContrastiveConfig(lambda_src=1.0, lambda_hdce=1.0, temperature=L.nce_t,
                                                      hard_negatives=L.hard_negatives))
        self.style = StylePatchNCE(StylePatchNCEConfig(layers=L.nce_layers, num_patches=L.num_patches,
                                                       temperature=L.nce_t, weight=1.0),
                                   sampler=self.F_s) if self.F_s is not None else None
        self.perceptual: PerceptualLoss | LPIPSLoss | None = None
        if L.lambda_perceptual > 0:
            self.perceptual = (LPIPSLoss() if L.perceptual_kind == "lpips"
                               else PerceptualLoss(PerceptualConfig(taps=(L.perceptual_layer,)))).to(dev)

    def nets(self) -> dict[str, torch.nn.Module]:
        return {name: net for name, net in zip(NETS, (self.G, self.D, self.D_p, self.F, self.F_s)) if net is not None}

    def lambda_sup(self, iteration: int) -> float:
        """λ_sup of 0-based ``iteration``: cos(π/2 · i / total), i counted from the end of the warm-up."""
        return self.schedule.lambda_sup(1 + max(0, iteration - self.warmup))

    # --- one iteration --------------------------------------------------------------------------------------------

    def step(self, iteration: int) -> dict[str, float]:
        """Run 0-based ``iteration`` and return its unweighted losses and schedule values."""
        assert self.data is not None
        if iteration < self.warmup:
            return self._warmup_step(iteration)
        if iteration == self.warmup > 0 and self.config.optim.reset_after_warmup:
            # A function of the iteration alone, so a run resumed from warmup.pt clears them too (see OptimSection).
            self.optimizers["G"].state.clear()
        L = self.config.losses
        batch = self.data.batch(iteration)
        lam_sup, gamma = self.lambda_sup(iteration), self.schedule.gamma(1 + iteration - self.warmup)
        b = batch.real_a.shape[0]
        parts = ([batch.real_a] if self.unpaired else []) + ([batch.real_b] if self.use_idt else []) \
            + [batch.real_a_p]
        layers = L.nce_layers if self.contrastive else ()
        out = self.G.forward_features(torch.cat(parts), layers)
        fakes = list(out.image.split(b))
        fake_p = fakes.pop()
        fake_b = fakes[0] if self.unpaired else None
        idt_b = fakes[1] if self.use_idt else None
        x_p, y_p = batch.real_a_p, batch.real_b_p
        log: dict[str, float] = {"lr": self.optimizers["G"].param_groups[0]["lr"], "lambda_sup": lam_sup}

        if self.D is not None:
            loss = self.gan.discriminator_loss(self.D(fake_b.detach()), self.D(batch.real_b))
            self._update("D", loss)
            log["D"] = loss.item()
        if self.D_p is not None:
            loss = self.gan.discriminator_loss(self.D_p(torch.cat([x_p, fake_p.detach()], 1)),
                                               self.D_p(torch.cat([x_p, y_p], 1)))
            self._update("D_p", loss)
            log["D_p"] = loss.item()

        for critic in (self.D, self.D_p):
            if critic is not None:
                critic.requires_grad_(False)  # G's step must not accumulate critic gradients
        total = torch.zeros((), device=self.device)
        if self.D is not None:
            g = self.gan(self.D(fake_b), True)
            total = total + L.lambda_gan * g
            log["G_GAN"] = g.item()

        # One encoder pass for every query image: G(x), G(y) and G(x_p).
        queries = ([fake_b] if self.contrastive else []) + ([idt_b] if self.use_idt else []) \
            + ([fake_p] if self.style is not None else [])
        if queries:
            q_feats = [f.split(b) for f in self.G.forward_features(torch.cat(queries), L.nce_layers,
                                                                   encode_only=True).features]
        if self.contrastive:
            src, hdce = self._contrastive([f[0] for f in q_feats], [f[:b] for f in out.features], gamma, True)
            if self.use_idt:
                _, hdce_y = self._contrastive([f[1] for f in q_feats], [f[b:2 * b] for f in out.features],
                                              gamma, False)
                hdce = 0.5 * (hdce + hdce_y)
            total = total + L.lambda_src * src + L.lambda_hdce * hdce
            log.update(SRC=src.item(), HDCE=hdce.item(), gamma=gamma)
        if self.perceptual is not None and L.perceptual_on == "content":
            term = self.perceptual(fake_b, batch.real_a)
            total = total + L.lambda_perceptual * term
            log["perceptual"] = term.item()

        sup = torch.zeros((), device=self.device)
        if self.D_p is not None:
            g = self.gan(self.D_p(torch.cat([x_p, fake_p], 1)), True)
            sup = sup + L.lambda_gan_p * g
            log["G_GAN_p"] = g.item()
        if self.style is not None:
            with torch.no_grad():
                k_feats = self.G.forward_features(y_p, L.nce_layers, encode_only=True).features
            nce = self.style.from_features([f[-1] for f in q_feats], k_feats)
            sup = sup + L.lambda_style * nce
            log["style"] = nce.item()
        if L.lambda_equivariance > 0:
            k = 1 + iteration % 7
            with torch.no_grad():
                turned = undo_dihedral(self.G(dihedral(x_p, k)), k)
            term = l1_loss(fake_p, turned)
            sup = sup + L.lambda_equivariance * term
            log["equivariance"] = term.item()
        if self.G_init is not None:
            with torch.no_grad():
                target = self_ensemble(self.G_init, x_p, L.distill_ensemble)
            term = l1_loss(fake_p, target)
            sup = sup + L.lambda_ensemble_distill * term
            log["ensemble_distill"] = term.item()
        total = total + lam_sup * (sup + self._pair_terms(fake_p, y_p, log))
        self._update("G", total)
        for critic in (self.D, self.D_p):
            if critic is not None:
                critic.requires_grad_(True)
        for scheduler in self.schedulers.values():
            scheduler.step()
        log["G_total"] = total.item()
        return log

    def _pair_terms(self, fake_p: torch.Tensor, y_p: torch.Tensor, log: dict[str, float], *,
                    perceptual: bool = True) -> torch.Tensor:
        """Weighted L1 + L2 + edge L1 + perceptual (on pairs, unless ``perceptual`` is off) + TV of G(x_p) against
        y_p; unweighted values go to ``log``."""
        L = self.config.losses
        sup = torch.zeros((), device=self.device)
        if L.lambda_l1 > 0:
            term = l1_loss(fake_p, y_p)
            sup = sup + L.lambda_l1 * term
            log["L1"] = term.item()
        if L.lambda_l2 > 0:
            term = nn.functional.mse_loss(fake_p, y_p)
            sup = sup + L.lambda_l2 * term
            log["L2"] = term.item()
        if L.lambda_edge_l1 > 0:
            term = edge_l1_loss(fake_p, y_p)
            sup = sup + L.lambda_edge_l1 * term
            log["edge_L1"] = term.item()
        if perceptual and self.perceptual is not None and L.perceptual_on == "pair":
            term = self.perceptual(fake_p, y_p)
            sup = sup + L.lambda_perceptual * term
            log["perceptual"] = term.item()
        if L.lambda_tv > 0:
            term = tv_loss(fake_p)
            sup = sup + L.lambda_tv * term
            log["TV"] = term.item()
        return sup

    def _warmup_step(self, iteration: int) -> dict[str, float]:
        """A supervised-only iteration: G on a batch of pairs, pixel terms only; the rest and the schedules wait."""
        assert self.data is not None
        x_p, y_p = self.data.pair_batch(iteration, self.warmup_batch)
        log: dict[str, float] = {"lr": self.optimizers["G"].param_groups[0]["lr"], "lambda_sup": 1.0,
                                 "warmup": 1.0}
        total = self._pair_terms(self.G(x_p), y_p, log, perceptual=False)
        self._update("G", total)
        log["G_total"] = total.item()
        return log

    def _contrastive(self, q: list[torch.Tensor], k: list[torch.Tensor], gamma: float,
                     with_src: bool) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.config.losses
        # Keys are detached inside the losses, so projecting them without a graph changes no gradient.
        with torch.no_grad():
            pool_k, ids = self.F([f.detach() for f in k], L.num_patches)
        pool_q, _ = self.F(q, L.num_patches, ids)
        terms = self.src_hdce(pool_q, pool_k, gamma=gamma, with_src=with_src)
        return terms.src, terms.hdce

    def _update(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # --- checkpoints ----------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; tensors and JSON-able values only (``weights_only=True`` loads it)."""
        rng = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in self.patch_rng.items()}}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "iteration": self.iteration,
                "total_iters": self.config.optim.total_iters, "config": json.dumps(self.config.to_dict()),
                "nets": {k: v.state_dict() for k, v in self.nets().items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
                "rng": rng, "cpu_seconds": self.cpu_seconds, "wall_seconds": self.wall_seconds}

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write ``<out>/checkpoint.pt`` (or ``path``) atomically (a crash mid-write leaves the previous one)."""
        path = path or self.checkpoint_path
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        write_atomic(path, lambda tmp: torch.save(state, tmp))
        logger.debug("checkpoint at iteration %d: %s", self.iteration, path)
        return path

    def load_checkpoint(self, path: Path | None = None) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` for the same config (``run`` may differ)."""
        path = path or self.checkpoint_path
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # zip/pickle corruption comes in many exception types
            raise CheckpointError(f"cannot read training checkpoint {path}: {type(exc).__name__}: {exc}; pass "
                                  "--no-resume to start over") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not an rt-anime training checkpoint")
        saved = json.loads(state["config"])
        saved.pop("run", None)
        saved.pop("description", None)
        saved.get("data", {}).pop("cache_dir", None)
        current = self.config.fingerprint()
        # Settings added to rt-anime after the checkpoint was written are absent from it: at their default values
        # they change nothing, so they do not block a resume.
        for section, fields_ in _section_defaults(self.config).items():
            for key, default in fields_.items():
                if key not in saved.get(section, {}) and current.get(section, {}).get(key) == default:
                    saved.setdefault(section, {})[key] = default
        diff = _differences(current, saved)
        if diff:
            raise CheckpointError(f"{path} was trained with a different config ({', '.join(diff[:6])} differ); pass "
                                  "--no-resume to start over, or --out DIR for a separate run")
        for name, net in self.nets().items():
            net.load_state_dict(state["nets"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        torch.set_rng_state(state["rng"]["torch"])
        for name, gen in self.patch_rng.items():
            gen.set_state(state["rng"][name])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.iteration = int(state["iteration"])
        self.cpu_seconds = float(state["cpu_seconds"])
        self.wall_seconds = float(state["wall_seconds"])

    # --- outputs --------------------------------------------------------------------------------------------------

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_log(self) -> None:
        """Drop log records past the checkpoint: those iterations run again after a resume."""
        if not self.log_path.exists():
            return
        keep = [line for line in self.log_path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("iter", 0) <= self.iteration]
        text = "".join(line + "\n" for line in keep)
        write_atomic(self.log_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    @torch.no_grad()
    def _translate(self, rgb: np.ndarray) -> np.ndarray:
        x, size = pad_to_multiple(image_to_tensor(rgb).to(self.device), self.G.size_multiple)
        return tensor_to_image(self.G(x)[..., :size[0], :size[1]])

    def write_samples(self) -> Path:
        """A grid of rows photo | teacher | G for the first held-out pairs (center squares)."""
        assert self.data is not None
        rows = []
        for photo, target in self.data.showcase(self.config.run.sample_count):
            h, w = photo.shape[:2]
            s = min(h, w, 256) // 4 * 4
            top, left = (h - s) // 2, (w - s) // 2
            crop = np.ascontiguousarray(photo[top:top + s, left:left + s])
            rows.append(np.hstack([crop, target[top:top + s, left:left + s], self._translate(crop)]))
        side = min(r.shape[0] for r in rows)
        grid = np.vstack([r[:side, :3 * side] for r in rows])
        path = self.out_dir / "samples" / f"iter_{self.iteration:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: write_image(tmp, grid))
        return path

    def evaluate(self) -> dict[str, float]:
        """PSNR (dB) and LPIPS of G vs the teacher on held-out photos at the working resolution."""
        assert self.data is not None
        pairs = self.data.showcase(self.config.run.eval_images)
        if not pairs:
            return {}
        outs = [self._translate(photo) for photo, _ in pairs]
        metrics = {"psnr": float(np.mean([min(psnr(o, t), 100.0) for o, (_, t) in zip(outs, pairs)])),
                   "n": len(pairs), "heldout": bool(self.data.heldout)}
        if self._lpips is None:
            try:
                from .vgg import LPIPS

                if isinstance(self.perceptual, LPIPSLoss):
                    self._lpips = self.perceptual.lpips
                else:
                    vgg = self.perceptual.vgg if self.perceptual is not None else None
                    self._lpips = LPIPS(vgg).to(self.device)
            except MissingDependencyError as exc:
                logger.warning("no LPIPS in evaluation: %s", exc)
                self._lpips = False
        if self._lpips:
            with torch.no_grad():
                values = [self._lpips(image_to_tensor(o).to(self.device), image_to_tensor(t).to(self.device)).item()
                          for o, (_, t) in zip(outs, pairs)]
            metrics["lpips"] = float(np.mean(values))
        return metrics

    def write_final(self, metrics: dict[str, float]) -> Path:
        """``<out>/final.safetensors`` (float16) + JSON with the training provenance."""
        assert self.data is not None
        cfg = self.config
        provenance = {"recipe": cfg.name, "description": cfg.description, "preset": cfg.model.preset,
                      "solver": self.G.solver.spec if hasattr(self.G, "solver") else None,
                      "iterations": self.iteration, "total_iters": cfg.optim.total_iters,
                      "completed": self.iteration >= cfg.optim.total_iters,
                      "cpu_seconds": round(self.cpu_seconds, 1), "wall_seconds": round(self.wall_seconds, 1),
                      "device": str(self.device), "threads": cfg.run.threads, "seed": cfg.run.seed,
                      "data": self.data.summary(), "eval": metrics, "config": cfg.to_dict()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_generator(self.G, self.out_dir / "final.safetensors", dtype=torch.float16,
                       extra={"training": provenance})
        return self.out_dir / "final.safetensors"

    # --- the loop -------------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current iteration, save a checkpoint and return (what the first Ctrl-C does)."""
        self._stop_requested = True

    def train(self, *, max_iters: int | None = None, resume: bool = True, progress: bool = True,
              callback: Callable[["Trainer", dict], None] | None = None) -> TrainResult:
        """Train (or resume) up to iteration ``max_iters`` (default: the recipe's total).

        Args:
            max_iters: Stop once this many iterations are done in total (the schedules still span the recipe's
                ``n_iters + n_iters_decay``, so a run continued later is the same run).
            resume: Continue from ``<out>/checkpoint.pt`` when it exists; ``False`` starts over.
            progress: Show a progress bar (terminal) or periodic log lines.
            callback: Called after every iteration with the trainer and the iteration's log record.
        """
        total = self.config.optim.total_iters
        stop = total if max_iters is None else min(max_iters, total)
        if max_iters is not None and max_iters > total:
            logger.warning("--max-iters %d exceeds the recipe's %d iterations; stopping at %d", max_iters, total,
                           total)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.run.threads)
        try:
            # Data first: a photo folder that is missing or empty must fail before the run folder exists.
            if self.data is None:
                self.data = TrainData(self.config.data, seed=self.config.run.seed, device=self.device)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if resume and self.checkpoint_path.exists():
                self.load_checkpoint()
                logger.info("resuming %s at iteration %d of %d", self.checkpoint_path, self.iteration, total)
                self._trim_log()
            else:
                self.log_path.unlink(missing_ok=True)
            return _Loop(self, stop, progress, callback).run()
        finally:
            torch.set_num_threads(threads)  # a library call must not leave the process's thread count changed


class _Loop:
    """The iteration loop with its clocks, progress display, Ctrl-C handling and periodic outputs."""

    def __init__(self, trainer: Trainer, stop: int, progress: bool,
                 callback: Callable[[Trainer, dict], None] | None) -> None:
        self.t, self.stop, self.callback = trainer, stop, callback
        self.show = progress
        self.bar = None
        if progress and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=stop, initial=trainer.iteration, unit="it", dynamic_ncols=True, file=sys.stderr)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.t._stop_requested:
            raise KeyboardInterrupt  # second Ctrl-C: abort now; the last checkpoint stays
        self.t.request_stop()
        logger.warning("%s: finishing iteration %d and saving a checkpoint (Ctrl-C again to abort)",
                       signal.Signals(signum).name, self.t.iteration + 1)

    def run(self) -> TrainResult:
        t, run = self.t, self.t.config.run
        # SIGTERM too: a session or job scheduler ending the run should leave a fresh checkpoint, not a 3-min-old one.
        old = install_signal_handler(self._on_sigint)
        start_iter, start_wall = t.iteration, time.monotonic()
        last_save = start_wall
        metrics: dict[str, float] = {}
        try:
            while t.iteration < self.stop and not t._stop_requested:
                w0, c0 = time.monotonic(), time.process_time()
                record = t.step(t.iteration)
                t.iteration += 1
                dw, dc = time.monotonic() - w0, time.process_time() - c0
                t.wall_seconds += dw
                t.cpu_seconds += dc
                record = {"iter": t.iteration, **record, "sec": round(dw, 4), "cpu_s": round(t.cpu_seconds, 2)}
                t._log(record)
                self._report(record, start_iter, start_wall)
                if run.sample_every and t.iteration % run.sample_every == 0:
                    t.write_samples()
                if run.eval_every and t.iteration % run.eval_every == 0 and t.iteration < self.stop:
                    metrics = t.evaluate()
                    t._log({"iter": t.iteration, "eval": metrics})
                if self.callback is not None:
                    self.callback(t, record)
                if t.warmup and t.iteration == t.warmup:
                    # Kept apart from the rolling checkpoint: the adversarial phase can diverge (measured: the
                    # pre_relu skip site collapsed within 20 iterations of it), and then only that phase is lost.
                    t.save_checkpoint(t.out_dir / WARMUP_CHECKPOINT)
                if time.monotonic() - last_save > 60 * run.checkpoint_minutes:
                    t.save_checkpoint()
                    last_save = time.monotonic()
        finally:
            restore_signal_handlers(old)
            if self.bar is not None:
                self.bar.close()
        interrupted = t._stop_requested and t.iteration < self.stop
        t._stop_requested = False
        t.save_checkpoint()
        final = None
        if not interrupted:
            metrics = t.evaluate()
            if metrics:
                t._log({"iter": t.iteration, "eval": metrics})
                logger.info("held-out evaluation at iteration %d: %s", t.iteration, metrics)
            t.write_samples()
            final = t.write_final(metrics)
        return TrainResult(out_dir=t.out_dir, iteration=t.iteration, total_iters=t.config.optim.total_iters,
                           interrupted=interrupted, final=final, wall_seconds=t.wall_seconds,
                           cpu_seconds=t.cpu_seconds, metrics=metrics)

    def _report(self, record: dict, start_iter: int, start_wall: float) -> None:
        if not self.show:
            return
        keys = [k for k in ("L1", "L2", "perceptual", "style", "G_GAN", "D", "HDCE") if k in record]
        if self.bar is not None:
            self.bar.set_postfix({k: f"{record[k]:.3g}" for k in keys[:4]}, refresh=False)
            self.bar.update(1)
            return
        done = self.t.iteration - start_iter
        if self.t.iteration % self.t.config.run.log_every and self.t.iteration != self.stop:
            return
        rate = (time.monotonic() - start_wall) / max(done, 1)
        eta = rate * (self.stop - self.t.iteration)
        losses = " ".join(f"{k} {record[k]:.4g}" for k in keys)
        logger.info("iter %d/%d | %.2f s/it | ETA %s | λ_sup %.3f | %s", self.t.iteration, self.stop, rate,
                    _clock(eta), record["lambda_sup"], losses)


__all__ = ["CHECKPOINT_FORMAT", "WARMUP_CHECKPOINT", "TrainResult", "Trainer", "psnr"]
