"""Optical flow, warping and the occlusion masks of the warping-error metric (Lai et al., ECCV 2018).

Conventions (``../shared/reference/video-systems.md`` §8.1, checked against the authors' code,
``phoenix104104/fast_blind_video_consistency``: ``utils.detect_occlusion`` as called by
``compute_flow_occlusion.py``):

* A flow field is ``(H, W, 2)`` float32, channel 0 = horizontal (x, columns), channel 1 = vertical (y, rows), in
  pixels. The *forward* flow ``w_f = F_{t→t+1}`` says where pixel ``x`` of frame t is found in frame t+1:
  ``I_t(x) ≈ I_{t+1}(x + w_f(x))``. The *backward* flow ``w_b = F_{t+1→t}`` is the same for the reversed pair.
* :func:`warp` is a backward warp: ``warp(img, flow)(x) = img(x + flow(x))``, bilinear. So
  ``warp(I_{t+1}, w_f)`` brings frame t+1 into frame t's pixel grid. Samples that fall outside the image take the
  nearest border pixel (``cv2.BORDER_REPLICATE``), as the authors' ``Resample2d`` CUDA kernel clamps its indices;
  :func:`out_of_frame_mask` marks those pixels so a metric can leave them out.
* Flow is estimated on the *input* frames with OpenCV's DIS (Kroeger et al. 2016) on 8-bit grayscale. The authors
  used FlowNet2, whose weights cannot be obtained offline; numbers are comparable only between runs that name the
  same flow method and preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DIS_PRESETS", "DISFlow", "FlowConfig", "disocclusion_mask", "motion_boundary_mask", "occlusion_mask",
           "out_of_frame_mask", "to_gray_u8", "warp"]

DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Thresholds of the Ruder et al. (GCPR 2016) consistency check exactly as Lai et al. coded them
# (``utils.detect_occlusion``): squared magnitudes, flow in pixels.
CONSISTENCY_RELATIVE = 0.01
CONSISTENCY_ABSOLUTE = 0.5
BOUNDARY_RELATIVE = 0.01
BOUNDARY_ABSOLUTE = 0.002


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """Which optical flow the metric uses.

    Attributes:
        method: Only ``"dis"`` (OpenCV DIS optical flow) is available offline.
        preset: DIS preset, one of :data:`DIS_PRESETS`. ``"medium"`` is the default: the metric runs offline and
            every flow error is added to E_warp as if it were flicker, so the more accurate preset is worth its
            cost (≈14 ms per flow at 640×360 on 2 threads vs ≈3 ms for ``"fast"``, offline-assets.md §5; two
            flows per frame pair, still small next to decoding and LPIPS).
    """

    method: str = "dis"
    preset: str = "medium"

    def __post_init__(self) -> None:
        if self.method != "dis":
            raise ValueError(f"flow method {self.method!r} is not available; allowed: 'dis'")
        if self.preset not in DIS_PRESETS:
            raise ValueError(f"DIS preset {self.preset!r} is not known; allowed: {', '.join(DIS_PRESETS)}")

    def describe(self) -> dict[str, str]:
        """What a report must record about the flow (numbers are not comparable across flow methods)."""
        return {"method": f"opencv-dis {cv2.__version__}", "preset": self.preset, "computed_on": "input frames",
                "color": "grayscale uint8 (BT.601 luma of the RGB frame)"}


def to_gray_u8(frame: np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` in [0, 1] (float) or uint8 → ``(H, W)`` uint8 luma, the only input DIS accepts."""
    if frame.dtype == np.uint8:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    gray = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return np.clip(gray * 255.0 + 0.5, 0, 255).astype(np.uint8)


class DISFlow:
    """A reusable DIS optical-flow estimator (one OpenCV object; not safe to share between threads).

    Args:
        config: Method and preset.
    """

    def __init__(self, config: FlowConfig = FlowConfig()) -> None:
        self.config = config
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[config.preset])

    def __call__(self, gray_from: np.ndarray, gray_to: np.ndarray) -> np.ndarray:
        """Flow ``F_{from→to}``: ``gray_from(x) ≈ gray_to(x + flow(x))``, ``(H, W, 2)`` float32.

        Args:
            gray_from: ``(H, W)`` uint8 frame the flow is defined on.
            gray_to: ``(H, W)`` uint8 frame it points into.
        """
        if gray_from.shape != gray_to.shape or gray_from.ndim != 2 or gray_from.dtype != np.uint8:
            raise ValueError(f"DIS needs two (H, W) uint8 frames of one size, got {gray_from.shape} "
                             f"{gray_from.dtype} and {gray_to.shape} {gray_to.dtype}")
        return self._dis.calc(gray_from, gray_to, None)

    def pair(self, gray_t: np.ndarray, gray_t1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward ``F_{t→t+1}`` and backward ``F_{t+1→t}`` flows of one frame pair."""
        return self(gray_t, gray_t1), self(gray_t1, gray_t)


def _check_flow(flow: np.ndarray, name: str) -> np.ndarray:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name} must be an (H, W, 2) flow field, got shape {flow.shape}")
    return np.ascontiguousarray(flow, dtype=np.float32)


def _sample_maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp ``image`` by ``flow``: ``out(x) = image(x + flow(x))``, bilinear, border replicated.

    ``warp(frame_{t+1}, F_{t→t+1})`` aligns frame t+1 to frame t. ``cv2.remap`` interpolates with 1/32-pixel
    fixed-point weights, which is well below DIS's own error; out-of-frame samples clamp to the nearest border
    pixel like the authors' ``Resample2d``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array (C ≤ 4), any dtype ``cv2.remap`` takes (uint8, float32, …).
        flow: ``(H, W, 2)`` flow in pixels, same H and W.

    Returns:
        The warped image, same shape and dtype as ``image``.
    """
    flow = _check_flow(flow, "flow")
    if image.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and flow {flow.shape[:2]} must have the same (H, W)")
    map_x, map_y = _sample_maps(flow)
    out = cv2.remap(np.ascontiguousarray(image), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # remap drops a trailing channel axis of size 1; keep the caller's shape.
    return out.reshape(image.shape)


def out_of_frame_mask(flow: np.ndarray) -> np.ndarray:
    """``True`` where ``x + flow(x)`` lies outside ``[0, W−1] × [0, H−1]`` (the sample would be a clamped border).

    Not part of Lai et al.'s mask: their warp clamps, so a pixel that leaves the frame is compared with a replicated
    border pixel, which measures the frame edge rather than flicker.
    """
    flow = _check_flow(flow, "flow")
    h, w = flow.shape[:2]
    map_x, map_y = _sample_maps(flow)
    return (map_x < 0) | (map_x > w - 1) | (map_y < 0) | (map_y > h - 1)


def disocclusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """Forward–backward consistency check on frame t's grid (video-systems.md §8.1, Ruder et al. 2016).

    ``w̃_b(x) = w_b(x + w_f(x))`` (:func:`warp` of the backward flow); occluded where
    ``|w_f + w̃_b|² > 0.01·(|w_f|² + |w̃_b|²) + 0.5``.

    Args:
        flow_fw: ``w_f = F_{t→t+1}``, ``(H, W, 2)``.
        flow_bw: ``w_b = F_{t+1→t}``, ``(H, W, 2)``.

    Returns:
        ``(H, W)`` bool, ``True`` = occluded / inconsistent.
    """
    fw = _check_flow(flow_fw, "flow_fw")
    bw = _check_flow(flow_bw, "flow_bw")
    if fw.shape != bw.shape:
        raise ValueError(f"flow_fw {fw.shape} and flow_bw {bw.shape} must have the same shape")
    bw_warped = warp(bw, fw)
    total = fw + bw_warped
    lhs = np.sum(total * total, axis=2)
    rhs = CONSISTENCY_RELATIVE * (np.sum(fw * fw, axis=2) + np.sum(bw_warped * bw_warped, axis=2))
    return lhs > rhs + CONSISTENCY_ABSOLUTE


def motion_boundary_mask(flow_fw: np.ndarray) -> np.ndarray:
    """Motion-boundary check on the forward flow (video-systems.md §8.1).

    Occluded where ``|∇u|² + |∇v|² > 0.01·|w_f|² + 0.002`` with ``w_f = (u, v)``. Gradients are forward
    differences ``f(x) − f(x + 1)`` along columns and rows, zero in the last column / row, as in the authors'
    ``compute_flow_gradients``. Their ``detect_occlusion(fw_flow, bw_flow)`` takes the gradient of its second
    argument, but ``compute_flow_occlusion.py`` calls it as ``detect_occlusion(bw_flow, fw_flow)``: the boundary
    test therefore runs on the forward flow and the consistency test on ``w_f + w̃_b``, which is what is implemented
    here and in :func:`disocclusion_mask`.

    Args:
        flow_fw: ``w_f = F_{t→t+1}``, ``(H, W, 2)``.

    Returns:
        ``(H, W)`` bool, ``True`` = on a motion boundary.
    """
    fw = _check_flow(flow_fw, "flow_fw").astype(np.float64)
    grad = np.zeros(fw.shape[:2], dtype=np.float64)
    du = fw[:, :-1, :] - fw[:, 1:, :]
    dv = fw[:-1, :, :] - fw[1:, :, :]
    grad[:, :-1] += np.sum(du * du, axis=2)
    grad[:-1, :] += np.sum(dv * dv, axis=2)
    return grad > BOUNDARY_RELATIVE * np.sum(fw * fw, axis=2) + BOUNDARY_ABSOLUTE


def occlusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray, *, out_of_frame: bool = True) -> np.ndarray:
    """Lai et al.'s occlusion map on frame t's grid: disocclusion OR motion boundary (optionally OR out-of-frame).

    The warping error averages over ``M_t = 1 − occlusion``.

    Args:
        flow_fw: ``F_{t→t+1}``.
        flow_bw: ``F_{t+1→t}``.
        out_of_frame: Also mark pixels whose forward flow leaves the frame (:func:`out_of_frame_mask`). ``False``
            reproduces the authors' mask exactly; ``True`` (the metric's default) keeps clamped border samples out.

    Returns:
        ``(H, W)`` bool, ``True`` = excluded from the error.
    """
    mask = disocclusion_mask(flow_fw, flow_bw) | motion_boundary_mask(flow_fw)
    if out_of_frame:
        mask |= out_of_frame_mask(flow_fw)
    return mask
