"""Runtime temporal stabilization: flow-guided blending of the previous output into the current one.

For each frame t, in order, with model output ``y_t`` and input ``x_t`` (RGB in [0, 1]):

    F      = DIS flow on the grayscale inputs, current → previous: x_t(p) ≈ x_{t-1}(p + F(p))
    Ô      = warp(O_{t-1}, F)         previous *blended* output aligned to frame t (recursive, so an EMA along flow)
    X̂      = warp(x_{t-1}, F)         previous input aligned the same way
    d²(p)  = mean_c (X̂(p, c) − x_t(p, c))²
    w(p)   = strength · (1 − occlusion(p)) · exp(−d²(p) / σ²)
    O_t    = w · Ô + (1 − w) · y_t

``occlusion`` is Lai et al.'s mask (:func:`realtime.temporal.flow.occlusion_mask`: forward–backward inconsistency,
motion boundary, out of frame) on frame t's grid. The input-difference term is what prevents ghosting: wherever
the flow is wrong (a moving object's boundary, uncovered background, a new object) the warped previous input
does not match the current input, so the previous output gets no weight there. σ = 0.05 (RGB in [0, 1]): sensor
and codec noise of a few /255 keeps most of the weight (2/255 → 0.94, 5/255 → 0.85), a difference of 0.1 keeps
e⁻⁴ ≈ 2 %. Where the flow is wrong by a small input difference d, the error the blend can add to a model of
Lipschitz constant L is at most strength·L·d·exp(−d²/σ²) ≤ strength·L·σ·e^(−1/2)/√2, so σ trades ghost size against
how much flicker on noisy input is removed.

State is reset (the frame is passed through unchanged) on the first frame, after :meth:`TemporalBlend.reset`, when
the frame size changes, and on a scene cut: SSIM of 32×32 grayscale input thumbnails below ``cut_ssim`` (the rule
of the warping-error metric, :mod:`realtime.temporal.warping_error`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np
import torch

from .flow import DISFlow, FlowConfig, occlusion_mask, to_gray_u8, warp
from .warping_error import thumbnail_ssim

__all__ = ["BlendConfig", "TEMPORAL_MODES", "TemporalBlend", "wrap_temporal"]

TEMPORAL_MODES = ("none", "blend")


@dataclass(frozen=True, slots=True)
class BlendConfig:
    """Settings of :class:`TemporalBlend`.

    Attributes:
        strength: Largest weight of the warped previous output, in [0, 1]; 0 turns blending off (output = model
            output exactly), values near 1 freeze the picture along the flow.
        sigma: Scale of the input-difference term in RGB [0, 1] units, > 0 (see the module docstring).
        cut_ssim: Input thumbnails with SSIM below this mark a scene cut and reset the state; in [-1, 1], -1 never
            resets.
        thumbnail_size: Side of the grayscale thumbnails compared for cuts, 8..256.
        flow: DIS optical flow; ``"fast"`` by default because it runs twice per frame on the live path.
        occlusion: Also zero the weight on Lai et al.'s occlusion mask (needs a second, reverse flow per frame).
    """

    strength: float = 0.5
    sigma: float = 0.05
    cut_ssim: float = 0.2
    thumbnail_size: int = 32
    flow: FlowConfig = field(default_factory=lambda: FlowConfig(preset="fast"))
    occlusion: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"temporal strength {self.strength} is out of range; allowed: 0 .. 1")
        if not self.sigma > 0.0:
            raise ValueError(f"temporal sigma {self.sigma} is out of range; allowed: > 0")
        if not -1.0 <= self.cut_ssim <= 1.0:
            raise ValueError(f"cut_ssim {self.cut_ssim} is out of range; allowed: -1 (never cut) .. 1")
        if not 8 <= self.thumbnail_size <= 256:
            raise ValueError(f"thumbnail_size {self.thumbnail_size} is out of range; allowed: 8..256")


@dataclass(slots=True)
class _State:
    rgb: np.ndarray  # (H, W, 3) float32 input in [0, 1]
    gray: np.ndarray  # (H, W) uint8
    thumb: np.ndarray  # (s, s) float64 in [0, 1]
    out: np.ndarray  # (H, W, 3) float32 blended output in [-1, 1]


class TemporalBlend:
    """Wraps a translate function ``(N, 3, H, W) [-1, 1] → (N, 3, H, W)``; blends each output with the previous.

    Stateful: call it with consecutive batches of one stream, frames in order (one instance per video or camera;
    not thread-safe). Live mode may drop frames between calls; the flow simply spans the gap.

    Args:
        translate: The backend (or any function) producing the per-frame output.
        strength: See :class:`BlendConfig`.
        sigma: See :class:`BlendConfig`.
        cut_ssim: See :class:`BlendConfig`.
        flow: See :class:`BlendConfig`.
        occlusion: See :class:`BlendConfig`.
        config: A complete :class:`BlendConfig`; when given, the keyword settings above must be left out.
    """

    def __init__(self, translate: Callable[[torch.Tensor], torch.Tensor], *, strength: float | None = None,
                 sigma: float | None = None, cut_ssim: float | None = None, flow: FlowConfig | None = None,
                 occlusion: bool | None = None, config: BlendConfig | None = None) -> None:
        overrides: dict[str, Any] = {k: v for k, v in dict(strength=strength, sigma=sigma, cut_ssim=cut_ssim,
                                                           flow=flow, occlusion=occlusion).items() if v is not None}
        if config is not None and overrides:
            raise ValueError(f"pass either config or the settings {sorted(overrides)}, not both")
        self.config = config if config is not None else BlendConfig(**overrides)
        self.translate = translate
        self.name = f"{getattr(translate, 'name', 'model')}+blend{self.config.strength:g}"
        self.device = getattr(translate, "device", torch.device("cpu"))
        self._flow = DISFlow(self.config.flow)
        self._state: _State | None = None
        self.cuts = 0
        """Scene cuts detected so far (state resets)."""
        self.blended_frames = 0
        """Frames that were blended with a previous output."""

    def reset(self) -> None:
        """Forget the previous frame (call between streams, or after a seek)."""
        self._state = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.translate(x)
        if self.config.strength == 0.0:
            return y
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise ValueError(f"translate must return a tensor of its input's shape {tuple(x.shape)}, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        # Flow and remap run on the CPU with OpenCV, so the whole per-frame update works on NumPy copies.
        inputs = ((x.detach().float().cpu().permute(0, 2, 3, 1).numpy() + 1.0) * 0.5).clip(0.0, 1.0)
        outputs = y.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        frames: list[torch.Tensor] = []
        for i in range(x.shape[0]):
            blended = self._step(np.ascontiguousarray(inputs[i], dtype=np.float32),
                                 np.ascontiguousarray(outputs[i], dtype=np.float32))
            # An unblended frame is returned as the model made it, bit for bit.
            frames.append(y[i] if blended is None
                          else torch.from_numpy(blended).permute(2, 0, 1).to(device=y.device, dtype=y.dtype))
        return torch.stack(frames)

    def _step(self, rgb: np.ndarray, out: np.ndarray) -> np.ndarray | None:
        """One frame: update the state; return the blended output, or ``None`` when the raw output stands."""
        gray = to_gray_u8(rgb)
        side = self.config.thumbnail_size
        thumb = cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64) / 255.0
        prev = self._state
        blended: np.ndarray | None = None
        if prev is not None and prev.gray.shape == gray.shape:
            if thumbnail_ssim(prev.thumb, thumb) < self.config.cut_ssim:
                self.cuts += 1
            else:
                blended = self._blend(prev, rgb, gray, out)
                self.blended_frames += 1
        self._state = _State(rgb=rgb, gray=gray, thumb=thumb, out=out if blended is None else blended)
        return blended

    def _blend(self, prev: _State, rgb: np.ndarray, gray: np.ndarray, out: np.ndarray) -> np.ndarray:
        cfg = self.config
        to_prev = self._flow(gray, prev.gray)  # current grid → previous frame: x_t(p) ≈ x_{t-1}(p + F(p))
        warped_out = warp(prev.out, to_prev)
        warped_in = warp(prev.rgb, to_prev)
        d2 = np.mean(np.square(warped_in - rgb), axis=2)
        weight = cfg.strength * np.exp(-d2 / (cfg.sigma * cfg.sigma))
        if cfg.occlusion:
            # occlusion_mask is defined on the grid of its first flow's source frame, here the current frame.
            occluded = occlusion_mask(to_prev, self._flow(prev.gray, gray), out_of_frame=True)
            weight[occluded] = 0.0
        weight = weight.astype(np.float32)[..., None]
        return weight * warped_out + (1.0 - weight) * out


def wrap_temporal(translate: Callable[[torch.Tensor], torch.Tensor], mode: str, *, strength: float = 0.5
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``translate`` for ``--temporal MODE``: unchanged for ``"none"``, a :class:`TemporalBlend` for ``"blend"``."""
    if mode not in TEMPORAL_MODES:
        raise ValueError(f"temporal mode {mode!r} is not known; allowed: {', '.join(TEMPORAL_MODES)}")
    return translate if mode == "none" else TemporalBlend(translate, strength=strength)
