"""The warping error E_warp of Lai et al. (ECCV 2018), with scene cuts left out.

Definition (``../shared/reference/video-systems.md`` §8.1; the authors' ``evaluate_WarpError.py``): for output frames
``O_t`` in RGB [0, 1] and forward flow ``F_{t→t+1}`` computed on the **input** frames,

    Ô_{t+1}(x) = O_{t+1}(x + F_{t→t+1}(x))                          (bilinear backward warp into frame t's grid)
    E_warp(O_t, O_{t+1}) = Σ_{x,c} M_t(x)·(O_t(x,c) − Ô_{t+1}(x,c))² / (C · Σ_x M_t(x)),    C = 3
    E_warp(video) = mean over the evaluated pairs (t, t+1)

``M_t = 1 − occlusion_t`` (:func:`realtime.temporal.flow.occlusion_mask`). When ``Σ M_t = 0`` the authors divide
the (then zero) sum by ``H·W·C``, so such a pair scores 0; that is kept, and the pair is counted in
``pairs_without_valid_pixels``. Direction: frame t is the reference grid and frame t+1 is warped back onto it (the
authors' convention); pair ``t`` in every report means frames ``(t, t+1)``, 0-based.

Two additions, both stated in every report:

* **Scene cuts** are detected on the input and the pair is excluded (and counted): SSIM of 32×32 grayscale
  thumbnails (INTER_AREA) below ``cut_threshold`` = 0.2 marks a cut, the rule Practical-RIFE uses
  (video-systems.md §4). Flow across a cut is meaningless and one such pair can outweigh a whole clip.
* **Out-of-frame pixels** (``x + F(x)`` outside the image) are masked by default; the authors' warp clamps them to
  the border. ``mask_out_of_frame=False`` reproduces the original mask exactly.

The same flows and masks also score the input video (the floor: flow error plus genuine change) and, when given,
the per-frame reference output (the baseline a temporal method should beat).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .flow import DISFlow, FlowConfig, occlusion_mask, to_gray_u8, warp

__all__ = ["PairGeometry", "PairResult", "WarpingErrorConfig", "WarpingErrorMeter", "WarpingErrorResult",
           "analyze_inputs", "masked_warp_mse", "thumbnail_ssim", "warping_error"]

logger = logging.getLogger(__name__)

# SSIM constants for signals in [0, 1] (Wang et al. 2004: K1 = 0.01, K2 = 0.03, L = 1).
_SSIM_C1 = 0.01 ** 2
_SSIM_C2 = 0.03 ** 2


@dataclass(frozen=True, slots=True)
class WarpingErrorConfig:
    """Settings of the metric; :meth:`describe` goes into every report.

    Attributes:
        flow: Optical flow used on the input frames.
        cut_threshold: A pair whose input thumbnails have SSIM below this is a scene cut and is excluded; in
            [-1, 1]; -1 disables cut detection.
        thumbnail_size: Side of the square grayscale thumbnails compared for cuts, 8..256.
        mask_out_of_frame: Exclude pixels whose forward flow leaves the frame (see the module docstring).
    """

    flow: FlowConfig = FlowConfig()
    cut_threshold: float = 0.2
    thumbnail_size: int = 32
    mask_out_of_frame: bool = True

    def __post_init__(self) -> None:
        if not -1.0 <= self.cut_threshold <= 1.0:
            raise ValueError(f"cut_threshold {self.cut_threshold} is out of range; allowed: -1 (off) .. 1")
        if not 8 <= self.thumbnail_size <= 256:
            raise ValueError(f"thumbnail_size {self.thumbnail_size} is out of range; allowed: 8..256")

    def describe(self) -> dict[str, Any]:
        return {
            "flow": {**self.flow.describe(),
                     "direction": "forward F(t->t+1); O(t+1) backward-warped into frame t's grid",
                     "warp": "bilinear cv2.remap, BORDER_REPLICATE"},
            "occlusion": {"rule": "Lai et al. 2018 (Ruder 2016): |wf+wb~|^2 > 0.01(|wf|^2+|wb~|^2)+0.5 or "
                                  "|grad wf|^2 > 0.01|wf|^2+0.002",
                          "mask_out_of_frame": self.mask_out_of_frame},
            "cut_detection": {"method": f"SSIM of {self.thumbnail_size}x{self.thumbnail_size} grayscale thumbnails "
                                        "of the input", "threshold": self.cut_threshold},
        }


@dataclass(frozen=True, slots=True)
class PairGeometry:
    """What the input frames of pair ``(index, index+1)`` fix for every video scored on them.

    Attributes:
        index: The pair's first frame, 0-based.
        ssim: Input thumbnail SSIM (the cut score).
        cut: ``True`` when the pair is excluded as a scene cut; ``flow_fw`` and ``valid`` are then ``None``.
        flow_fw: ``F_{t→t+1}`` on the input, ``(H, W, 2)`` float32.
        valid: ``M_t`` as ``(H, W)`` bool, ``True`` = counted.
    """

    index: int
    ssim: float
    cut: bool
    flow_fw: np.ndarray | None = field(default=None, repr=False)
    valid: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class PairResult:
    """Scores of one frame pair ``(index, index+1)``; the E_warp fields are ``None`` for an excluded cut."""

    index: int
    ssim: float
    cut: bool
    valid_fraction: float | None
    e_warp: float | None
    e_warp_input: float | None
    e_warp_reference: float | None = None


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True, slots=True)
class WarpingErrorResult:
    """E_warp of a video (mean over evaluated pairs; NaN when no pair could be evaluated).

    Attributes:
        e_warp: The output's warping error.
        e_warp_input: The input's own warping error with the same flows and masks (the floor).
        e_warp_reference: The per-frame reference output's, when one was scored.
        frames: Frames read.
        size: ``(width, height)``.
        pairs: Pairs evaluated (``frames − 1 − cuts_excluded``).
        cut_pairs: Indices of the pairs excluded as scene cuts.
        pairs_without_valid_pixels: Evaluated pairs whose mask was empty (scored 0, as the authors do).
        per_pair: One :class:`PairResult` per pair, cuts included.
        config: The settings used.
    """

    e_warp: float
    e_warp_input: float
    e_warp_reference: float | None
    frames: int
    size: tuple[int, int]
    pairs: int
    cut_pairs: tuple[int, ...]
    pairs_without_valid_pixels: int
    per_pair: tuple[PairResult, ...]
    config: WarpingErrorConfig

    @property
    def cuts_excluded(self) -> int:
        return len(self.cut_pairs)

    def to_dict(self, *, per_pair: bool = False) -> dict[str, Any]:
        """JSON-ready summary (non-finite numbers become ``None``)."""
        out: dict[str, Any] = {
            "e_warp": _json_float(self.e_warp), "e_warp_input": _json_float(self.e_warp_input),
            "frames": self.frames, "size": list(self.size), "pairs": self.pairs,
            "cuts_excluded": self.cuts_excluded, "cut_pairs": list(self.cut_pairs),
            "pairs_without_valid_pixels": self.pairs_without_valid_pixels,
        }
        if self.e_warp_reference is not None:
            out["e_warp_reference"] = _json_float(self.e_warp_reference)
            if self.e_warp_reference > 0 and math.isfinite(self.e_warp):
                out["e_warp_reduction_pct"] = 100.0 * (1.0 - self.e_warp / self.e_warp_reference)
        out.update(self.config.describe())
        if per_pair:
            out["per_pair"] = [self._pair_dict(p) for p in self.per_pair]
        return out

    def _pair_dict(self, pair: PairResult) -> dict[str, Any]:
        row: dict[str, Any] = {"index": pair.index, "ssim": _json_float(pair.ssim), "cut": pair.cut,
                               "valid_fraction": _json_float(pair.valid_fraction), "e_warp": _json_float(pair.e_warp),
                               "e_warp_input": _json_float(pair.e_warp_input)}
        if self.e_warp_reference is not None:
            row["e_warp_reference"] = _json_float(pair.e_warp_reference)
        return row


def _as_rgb01(frame: np.ndarray, name: str) -> np.ndarray:
    """uint8 → float32 / 255; floating → float32 as is (assumed in [0, 1], as the paper reads its frames)."""
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB frame, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) * np.float32(1.0 / 255.0)
    if np.issubdtype(array.dtype, np.floating):
        return np.ascontiguousarray(array, dtype=np.float32)
    raise ValueError(f"{name} has dtype {array.dtype}; allowed: uint8 (0..255) or float (0..1)")


def _thumbnail(rgb01: np.ndarray, side: int) -> np.ndarray:
    gray = cv2.cvtColor(rgb01, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).astype(np.float64)


def thumbnail_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two small grayscale images in [0, 1] (11×11 Gaussian window, σ = 1.5, borders replicated)."""
    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REPLICATE)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + _SSIM_C1) * (2 * cov + _SSIM_C2)
            / ((mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)))
    return float(ssim.mean())


def masked_warp_mse(frame_t: np.ndarray, frame_t1: np.ndarray, flow_fw: np.ndarray, valid: np.ndarray) -> float:
    """Lai et al.'s per-pair E_warp: per-channel MSE of ``frame_t`` vs ``warp(frame_t1, flow_fw)`` over ``valid``.

    Args:
        frame_t: ``O_t``, ``(H, W, C)`` float in [0, 1].
        frame_t1: ``O_{t+1}``, same shape.
        flow_fw: ``F_{t→t+1}`` of the input frames.
        valid: ``M_t``, ``(H, W)`` bool.

    Returns:
        ``Σ M·(O_t − Ô_{t+1})² / (C·Σ M)``; 0 when ``Σ M = 0`` (the authors' fallback divides a zero sum).
    """
    count = int(np.count_nonzero(valid))
    if count == 0:
        return 0.0
    diff = frame_t[valid] - warp(frame_t1, flow_fw)[valid]
    return float(np.sum(np.square(diff, dtype=np.float64)) / (frame_t.shape[2] * count))


class WarpingErrorMeter:
    """Streaming E_warp: feed frames one at a time (only the previous frame is kept), then call :meth:`result`.

    Args:
        config: Metric settings.

    Example::

        meter = WarpingErrorMeter()
        for inp, out in zip(input_frames, output_frames):
            meter.update(inp, out)
        print(meter.result().e_warp)
    """

    def __init__(self, config: WarpingErrorConfig = WarpingErrorConfig()) -> None:
        self.config = config
        self._flow = DISFlow(config.flow)
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None = None  # I, O, thumb, P
        self._pairs: list[PairResult] = []
        self._frames = 0
        self._size: tuple[int, int] | None = None
        self._has_reference: bool | None = None

    def geometry(self, input_t: np.ndarray, input_t1: np.ndarray, *, index: int = 0) -> PairGeometry:
        """Cut score, forward flow and mask of one input pair (frames RGB uint8 or float [0, 1])."""
        a, b = _as_rgb01(input_t, "input frame"), _as_rgb01(input_t1, "input frame")
        side = self.config.thumbnail_size
        return self._geometry(a, b, _thumbnail(a, side), _thumbnail(b, side), index)

    def _geometry(self, a: np.ndarray, b: np.ndarray, thumb_a: np.ndarray, thumb_b: np.ndarray,
                  index: int) -> PairGeometry:
        ssim = thumbnail_ssim(thumb_a, thumb_b)
        if ssim < self.config.cut_threshold:
            logger.info("pair %d: input thumbnail SSIM %.3f < %.3f, excluded as a scene cut", index, ssim,
                        self.config.cut_threshold)
            return PairGeometry(index, ssim, True)
        flow_fw, flow_bw = self._flow.pair(to_gray_u8(a), to_gray_u8(b))
        valid = ~occlusion_mask(flow_fw, flow_bw, out_of_frame=self.config.mask_out_of_frame)
        return PairGeometry(index, ssim, False, flow_fw, valid)

    def update(self, input_frame: np.ndarray, output_frame: np.ndarray, reference_frame: np.ndarray | None = None,
               *, geometry: PairGeometry | None = None) -> PairResult | None:
        """Add frame t; scores pair (t−1, t) and returns it (``None`` for the first frame).

        Args:
            input_frame: Input ``I_t``, ``(H, W, 3)`` RGB uint8 or float in [0, 1].
            output_frame: Output ``O_t``, same size.
            reference_frame: Optional per-frame reference ``P_t`` (given for every frame or for none).
            geometry: Precomputed :class:`PairGeometry` of pair (t−1, t) (from :func:`analyze_inputs`), to skip
                the flow computation when several outputs are scored on one input clip.
        """
        inp = _as_rgb01(input_frame, "input frame")
        out = _as_rgb01(output_frame, "output frame")
        ref = None if reference_frame is None else _as_rgb01(reference_frame, "reference frame")
        t = self._frames
        size = (inp.shape[1], inp.shape[0])
        if self._size is None:
            self._size = size
        for name, frame in (("input", inp), ("output", out), ("reference", ref)):
            if frame is not None and (frame.shape[1], frame.shape[0]) != self._size:
                raise ValueError(f"frame {t}: {name} is {frame.shape[1]}x{frame.shape[0]}, expected "
                                 f"{self._size[0]}x{self._size[1]} (the first input frame's size)")
        if self._has_reference is None:
            self._has_reference = ref is not None
        elif self._has_reference != (ref is not None):
            raise ValueError(f"frame {t}: reference_frame must be given for every frame or for none")
        thumb = _thumbnail(inp, self.config.thumbnail_size)
        prev, self._prev = self._prev, (inp, out, thumb, ref)
        self._frames += 1
        if prev is None:
            return None
        p_in, p_out, p_thumb, p_ref = prev
        if geometry is None:
            geometry = self._geometry(p_in, inp, p_thumb, thumb, t - 1)
        elif geometry.index != t - 1:
            raise ValueError(f"geometry is for pair {geometry.index}, but frame {t} closes pair {t - 1}")
        if geometry.cut:
            result = PairResult(t - 1, geometry.ssim, True, None, None, None, None)
        else:
            flow, valid = geometry.flow_fw, geometry.valid
            assert flow is not None and valid is not None
            result = PairResult(
                t - 1, geometry.ssim, False, float(np.count_nonzero(valid)) / valid.size,
                masked_warp_mse(p_out, out, flow, valid), masked_warp_mse(p_in, inp, flow, valid),
                None if ref is None else masked_warp_mse(p_ref, ref, flow, valid))
            if result.valid_fraction == 0.0:
                logger.warning("pair %d: every pixel is occluded; it scores 0 as in Lai et al.'s code", t - 1)
        self._pairs.append(result)
        return result

    @property
    def frames(self) -> int:
        return self._frames

    def result(self) -> WarpingErrorResult:
        """The summary so far (E_warp values are NaN until a non-cut pair has been scored)."""
        scored = [p for p in self._pairs if not p.cut]
        reference = None
        if self._has_reference:
            reference = _mean([p.e_warp_reference for p in scored if p.e_warp_reference is not None])
        return WarpingErrorResult(
            e_warp=_mean([p.e_warp for p in scored if p.e_warp is not None]),
            e_warp_input=_mean([p.e_warp_input for p in scored if p.e_warp_input is not None]),
            e_warp_reference=reference, frames=self._frames, size=self._size or (0, 0), pairs=len(scored),
            cut_pairs=tuple(p.index for p in self._pairs if p.cut),
            pairs_without_valid_pixels=sum(1 for p in scored if p.valid_fraction == 0.0),
            per_pair=tuple(self._pairs), config=self.config)


def _config(flow: FlowConfig | str | None, cut_threshold: float, mask_out_of_frame: bool) -> WarpingErrorConfig:
    if isinstance(flow, str):
        flow = FlowConfig(preset=flow)
    return WarpingErrorConfig(flow=flow or FlowConfig(), cut_threshold=cut_threshold,
                              mask_out_of_frame=mask_out_of_frame)


def analyze_inputs(inputs: Sequence[np.ndarray], *, flow: FlowConfig | str | None = None, cut_threshold: float = 0.2,
                   mask_out_of_frame: bool = True) -> list[PairGeometry]:
    """Cut scores, flows and masks of every input pair, to reuse when scoring several outputs of one clip.

    Memory: one ``(H, W, 2)`` float32 flow and one ``(H, W)`` bool mask per pair.
    """
    meter = WarpingErrorMeter(_config(flow, cut_threshold, mask_out_of_frame))
    return [meter.geometry(inputs[t], inputs[t + 1], index=t) for t in range(len(inputs) - 1)]


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], *,
                  flow: FlowConfig | str | None = None, cut_threshold: float = 0.2, mask_out_of_frame: bool = True,
                  references: Sequence[np.ndarray] | None = None,
                  geometry: Sequence[PairGeometry] | None = None) -> WarpingErrorResult:
    """E_warp of ``outputs`` with flow and masks from ``inputs`` (Lai et al. 2018; module docstring).

    Args:
        inputs: Input frames ``I_t``, ``(H, W, 3)`` RGB, uint8 or float in [0, 1].
        outputs: Output frames ``O_t``, same count and size.
        flow: A :class:`FlowConfig` or a DIS preset name (``"medium"`` by default).
        cut_threshold: Input thumbnail SSIM below which a pair is a scene cut (excluded); -1 disables.
        mask_out_of_frame: Exclude pixels whose flow leaves the frame (``False`` = the authors' mask exactly).
        references: Optional per-frame reference outputs ``P_t``, also scored (``e_warp_reference``).
        geometry: Precomputed :func:`analyze_inputs` result for these inputs (then ``flow``, ``cut_threshold``
            and ``mask_out_of_frame`` must be the ones it was computed with).

    Raises:
        ValueError: Fewer than two frames, or counts, sizes or dtypes that do not match.
    """
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs has {len(inputs)} frames but outputs has {len(outputs)}; they must match")
    if references is not None and len(references) != len(inputs):
        raise ValueError(f"references has {len(references)} frames but inputs has {len(inputs)}; they must match")
    if len(inputs) < 2:
        raise ValueError(f"the warping error needs at least 2 frames, got {len(inputs)}")
    if geometry is not None and len(geometry) != len(inputs) - 1:
        raise ValueError(f"geometry has {len(geometry)} pairs, expected {len(inputs) - 1}")
    meter = WarpingErrorMeter(_config(flow, cut_threshold, mask_out_of_frame))
    for t in range(len(inputs)):
        meter.update(inputs[t], outputs[t], None if references is None else references[t],
                     geometry=None if geometry is None or t == 0 else geometry[t - 1])
    return meter.result()
