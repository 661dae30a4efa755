"""Layers shared by the CUT-style generator families (Scenimefy/CUT ``cut-resnet`` and ``nijigan``).

Layouts follow taesungp/contrastive-unpaired-translation ``models/networks.py`` so that official state-dict keys map
one to one onto ``model.<index>`` entries; the numerics are re-derived, not copied.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    # CUT's 'instance' norm: no affine parameters and no running statistics, so nothing lands in the state dict.
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


NORMS = ("instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The generator's normalisation: CUT's InstanceNorm, or none (an ``Identity`` in its place, so layer indices and
    checkpoint keys stay those of CUT)."""
    if kind not in NORMS:
        raise ValueError(f"`norm` must be one of {', '.join(NORMS)}, got {kind!r}")
    return instance_norm(channels) if kind == "instance" else nn.Identity()


def _binomial(size: int) -> torch.Tensor:
    row = {3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0]}[size]
    a = torch.tensor(row, dtype=torch.float32)
    filt = a[:, None] * a[None, :]
    return filt / filt.sum()


class Downsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 1, then a fixed [1,2,1]² blur applied depthwise at stride 2.

    Output size is ceil(H/2) × ceil(W/2). The blur kernel is a non-persistent buffer: it is a constant of the
    architecture, so our checkpoints do not carry it (official checkpoints do; their adapters check and drop it).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", _binomial(3)[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=self.channels)

    @staticmethod
    def reference_filter(channels: int) -> torch.Tensor:
        return _binomial(3)[None, None].repeat(channels, 1, 1, 1)


class Upsample(nn.Module):
    """Anti-aliased ×2 upsampling.

    CUT computes it as a replicate pad and a depthwise transposed conv with the [1,3,3,1]² filter (×4), cropped.
    That filter is separable and equals bilinear interpolation with ``align_corners=False`` exactly, borders
    included, so we call ``F.interpolate``: it is faster on CPU and exports as a single ONNX/TensorRT ``Resize``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    @staticmethod
    def reference_filter(channels: int) -> torch.Tensor:
        return (_binomial(4) * 4.0)[None, None].repeat(channels, 1, 1, 1)


def conv_block(dim: int, hidden: int | None = None, *, norm: str = "instance") -> nn.Sequential:
    """CUT's ResnetBlock body: reflect-pad, conv3×3, IN, ReLU, reflect-pad, conv3×3, IN (indices 1 and 5 are convs).

    ``hidden`` widens the middle (NijiGAN design B); by default it is ``dim``.
    """
    hidden = dim if hidden is None else hidden
    return nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(dim, hidden, 3, bias=True), norm_layer(norm, hidden), nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(hidden, dim, 3, bias=True), norm_layer(norm, dim),
    )


def cut_encoder(*, input_nc: int, ngf: int, antialias: bool, norm: str = "instance") -> list[nn.Module]:
    """Stem and two downsampling stages, as CUT's ResnetGenerator indices 0 … 11 (antialiased) or 0 … 9."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=True), norm_layer(norm, ngf),
                               nn.ReLU(True)]
    for mult in (1, 2):
        cin, cout = ngf * mult, ngf * mult * 2
        if antialias:
            layers += [nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=True), norm_layer(norm, cout), nn.ReLU(True),
                       Downsample(cout)]
        else:
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=True), norm_layer(norm, cout),
                       nn.ReLU(True)]
    return layers


def cut_decoder(*, output_nc: int, ngf: int, antialias_up: bool, norm: str = "instance") -> list[nn.Module]:
    """Two upsampling stages and the Tanh head, as in CUT's ResnetGenerator."""
    layers: list[nn.Module] = []
    for mult in (4, 2):
        cin, cout = ngf * mult, ngf * mult // 2
        if antialias_up:
            layers += [Upsample(cin), nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=True),
                       norm_layer(norm, cout), nn.ReLU(True)]
        else:
            layers += [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=True),
                       norm_layer(norm, cout), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=True), nn.Tanh()]
    return layers
