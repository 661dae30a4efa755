"""Training-only networks of the CUT / Scenimefy / NijiGAN recipe: the patch projector F and the PatchGAN critics.

Layouts follow taesungp/contrastive-unpaired-translation ``models/networks.py`` (which Scenimefy copies), so a
CUT ``net_F`` / ``net_D`` state dict maps onto these modules key for key; the code is re-derived, not copied.
Reference facts: ``../shared/reference/models.md`` §6.

Differences from the reference, all deliberate:

* ``PatchSampleF`` returns ``(B, num_patches, nc)`` per layer instead of CUT's flattened ``(B·num_patches, nc)``:
  the losses then know the batch structure without a separate ``batch_size`` option (the official SRC/hDCE code
  hard-codes batch 1, bug 5 in §6.2).
* Patch ids come from an optional ``torch.Generator`` so a training run can be replayed exactly.
* The anti-alias blur of the discriminator is ``realtime.layers.Downsample`` (a non-persistent buffer), so our
  state dicts carry no ``filt`` keys; CUT's carry them as constants.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn as nn

from ..layers import Downsample, instance_norm

InitKind = Literal["normal", "xavier", "kaiming", "orthogonal"]
INIT_KINDS: tuple[str, ...] = InitKind.__args__  # type: ignore[attr-defined]

# CUT's base options: --init_type xavier --init_gain 0.02 for G, D and F alike.
DEFAULT_INIT: InitKind = "xavier"
DEFAULT_GAIN = 0.02


def init_weights(module: nn.Module, kind: InitKind = DEFAULT_INIT, gain: float = DEFAULT_GAIN) -> nn.Module:
    """Initialise every conv and linear layer in ``module`` as CUT's ``init_net`` does, and return ``module``.

    Conv (including transposed) and linear weights get ``kind``: ``normal`` = N(0, gain), ``xavier`` =
    xavier-normal with ``gain``, ``kaiming`` = kaiming-normal (fan-in, a=0; ``gain`` unused, as in CUT),
    ``orthogonal`` with ``gain``. Their biases are set to 0. BatchNorm weights get N(1, gain) and zero bias.

    Args:
        module: Network to initialise in place.
        kind: One of ``normal``, ``xavier``, ``kaiming``, ``orthogonal``.
        gain: Scale for ``normal`` (std), ``xavier`` and ``orthogonal``.

    Raises:
        ValueError: ``kind`` is not one of the four, or ``gain`` is not positive.
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"`kind` must be one of {INIT_KINDS}, got {kind!r}")
    if not gain > 0:
        raise ValueError(f"`gain` must be > 0, got {gain!r}")

    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    with torch.no_grad():
        module.apply(_init)
    return module


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-7) -> torch.Tensor:
    """``x / (‖x‖₂ + eps)`` along ``dim``; CUT's ``Normalize`` (eps outside the root, unlike ``F.normalize``)."""
    return x / (x.pow(2).sum(dim, keepdim=True).sqrt() + eps)


class PatchSampleF(nn.Module):
    """CUT's ``PatchSampleF`` (``--netF mlp_sample``): sample patch positions, project them by a 2-layer MLP, L2-norm.

    The per-layer heads ``mlp_<i> = Linear(C_i, nc) → ReLU → Linear(nc, nc)`` depend on the channel count of each
    feature map, so they are created on the first call (CUT's data-dependent initialisation). Build them
    explicitly with :meth:`initialize` (or :meth:`build`) before creating the optimizer or loading a state dict.

    Args:
        nc: Output dimension of the projection (CUT ``--netF_nc``).
        use_mlp: ``False`` is CUT's ``--netF sample``: no heads, the raw features are only sampled and normalised.
        init_kind: Weight initialisation of the heads (CUT default ``xavier``).
        init_gain: Its gain (CUT default 0.02).
        generator: Source of the random patch ids; ``None`` uses torch's global RNG. A CPU generator works for
            features on any device (ids are drawn on the CPU and moved).
    """

    def __init__(self, nc: int = 256, use_mlp: bool = True, *, init_kind: InitKind = DEFAULT_INIT,
                 init_gain: float = DEFAULT_GAIN, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
            raise ValueError(f"`nc` must be an integer >= 1, got {nc!r}")
        if init_kind not in INIT_KINDS:
            raise ValueError(f"`init_kind` must be one of {INIT_KINDS}, got {init_kind!r}")
        self.nc = nc
        self.use_mlp = use_mlp
        self.init_kind = init_kind
        self.init_gain = init_gain
        self.generator = generator
        self.in_channels: tuple[int, ...] | None = None

    @property
    def initialized(self) -> bool:
        return self.in_channels is not None

    def build(self, channels: Sequence[int], *, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> None:
        """Create the heads for feature maps with these channel counts (idempotent for the same counts)."""
        channels = tuple(int(c) for c in channels)
        if self.in_channels is not None:
            if channels != self.in_channels:
                raise ValueError(f"PatchSampleF was built for layer channels {self.in_channels}, got features with "
                                 f"channels {channels}; use one PatchSampleF per set of layers")
            return
        if not channels or min(channels) < 1:
            raise ValueError(f"`channels` must be a non-empty list of positive channel counts, got {channels}")
        if self.use_mlp:
            for i, c in enumerate(channels):
                mlp = nn.Sequential(nn.Linear(c, self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc))
                setattr(self, f"mlp_{i}", mlp.to(device=device, dtype=dtype))
            init_weights(self, self.init_kind, self.init_gain)
        self.in_channels = channels

    def initialize(self, feats: Sequence[torch.Tensor]) -> None:
        """Create the heads from example features (``(B, C_i, H_i, W_i)`` each), on their device and dtype."""
        if not feats:
            raise ValueError("`feats` is empty: pass the encoder features of at least one layer")
        self.build([f.shape[1] for f in feats], device=feats[0].device, dtype=feats[0].dtype)

    def sample_ids(self, feats: Sequence[torch.Tensor], num_patches: int) -> list[torch.Tensor]:
        """One random subset of ``min(num_patches, H·W)`` flat positions per layer (shared by the whole batch)."""
        ids = []
        for f in feats:
            hw = f.shape[2] * f.shape[3]
            perm = torch.randperm(hw, generator=self.generator)
            ids.append(perm[:min(num_patches, hw)].to(f.device))
        return ids

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project ``num_patches`` positions of each feature map.

        Args:
            feats: Encoder features, one ``(B, C_i, H_i, W_i)`` tensor per layer.
            num_patches: Positions per layer (CUT ``--num_patches``); all positions when the map is smaller.
            patch_ids: Ids from an earlier call, to sample the same positions of the paired tensor (the positive
                of query *i* is key *i*); ``None`` draws new ones.

        Returns:
            ``(projected, ids)``: per layer a ``(B, N, nc)`` tensor of unit vectors (``(B, N, C_i)`` without MLP)
            and the ``(N,)`` long tensor of flat positions used.
        """
        if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
            raise ValueError(f"`num_patches` must be an integer >= 1, got {num_patches!r}")
        feats = list(feats)
        if not self.initialized:
            self.initialize(feats)
        if len(feats) != len(self.in_channels):
            raise ValueError(f"PatchSampleF was built for {len(self.in_channels)} layers, got {len(feats)} "
                             "feature maps")
        if patch_ids is None:
            patch_ids = self.sample_ids(feats, num_patches)
        elif len(patch_ids) != len(feats):
            raise ValueError(f"`patch_ids` has {len(patch_ids)} entries for {len(feats)} feature maps")
        out = []
        for i, (f, ids) in enumerate(zip(feats, patch_ids)):
            b, c, h, w = f.shape
            if c != self.in_channels[i]:
                raise ValueError(f"layer {i} has {c} channels, PatchSampleF was built for {self.in_channels[i]}")
            x = f.flatten(2).transpose(1, 2)[:, ids.to(f.device)]  # (B, N, C)
            if self.use_mlp:
                x = getattr(self, f"mlp_{i}")(x)
            out.append(l2_normalize(x))
        return out, list(patch_ids)

    def extra_repr(self) -> str:
        return f"nc={self.nc}, use_mlp={self.use_mlp}, in_channels={self.in_channels}"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A fresh F has no heads yet; build them from the checkpoint's first-layer shapes so load_state_dict works
        # without a forward pass (CUT needs one, which is why its resume path runs data_dependent_initialize).
        if self.use_mlp and not self.initialized:
            channels, i = [], 0
            while f"{prefix}mlp_{i}.0.weight" in state_dict:
                channels.append(int(state_dict[f"{prefix}mlp_{i}.0.weight"].shape[1]))
                i += 1
            if channels:
                w = state_dict[f"{prefix}mlp_0.0.weight"]
                self.build(channels, device=w.device, dtype=w.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class NLayerDiscriminator(nn.Module):
    """CUT's PatchGAN critic (``--netD basic``, ``--normD instance``), anti-aliased unless ``antialias=False``.

    Anti-aliased: ``Conv(k4, s1, p1) → LeakyReLU(0.2) → Downsample`` for the first stage, ``Conv → IN → LeakyReLU
    → Downsample`` for the next ``n_layers − 1``, then ``Conv(k4, s1) → IN → LeakyReLU`` and a 1-channel ``Conv(k4,
    s1)``. At 256² input the output is a 30×30 map; at ndf 64 there are 2,764,737 parameters with 3 input channels
    (D) and 2,767,809 with 6 (D_p, the conditional critic on ``cat(x_p, y)``). Without anti-aliasing the strided
    convs give the pix2pix layout.

    Args:
        input_nc: Input channels (3 for D, 6 for D_p).
        ndf: Channels of the first conv.
        n_layers: Number of downsampling stages (3 = the 70×70 PatchGAN).
        antialias: Blur-pool downsampling, as CUT and Scenimefy default.
        init_kind: Weight initialisation applied at construction (CUT's ``define_D`` does it).
        init_gain: Its gain.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, antialias: bool = True, *,
                 init_kind: InitKind | None = DEFAULT_INIT, init_gain: float = DEFAULT_GAIN) -> None:
        super().__init__()
        for name, value in (("input_nc", input_nc), ("ndf", ndf), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
        self.input_nc, self.ndf, self.n_layers, self.antialias = input_nc, ndf, n_layers, antialias
        stride = 1 if antialias else 2
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=stride, padding=1), nn.LeakyReLU(0.2, True)]
        if antialias:
            layers.append(Downsample(ndf))
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1), instance_norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
            if antialias:
                layers.append(Downsample(ndf * mult))
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1), instance_norm(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        if init_kind is not None:
            init_weights(self, init_kind, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"NLayerDiscriminator expects (N, {self.input_nc}, H, W), got {tuple(x.shape)}")
        return self.model(x)

    def extra_repr(self) -> str:
        return f"input_nc={self.input_nc}, ndf={self.ndf}, n_layers={self.n_layers}, antialias={self.antialias}"


def output_size(size: int, n_layers: int = 3, antialias: bool = True) -> int:
    """Side of the critic's output map for an input side ``size`` (30 for 256 with the defaults)."""
    for _ in range(n_layers):
        size = size - 1 if antialias else (size + 2 - 4) // 2 + 1
        if antialias:
            size = (size + 1) // 2  # reflect-pad 1 + 3×3 stride-2 blur = ceil(size / 2)
    return size - 1 - 1  # two 4×4 stride-1 convs with padding 1


__all__ = ["INIT_KINDS", "NLayerDiscriminator", "PatchSampleF", "init_weights", "l2_normalize", "output_size"]
