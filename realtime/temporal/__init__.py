"""Temporal-consistency tools: optical flow, warping, occlusion masks and the warping error E_warp.

``warping_error(inputs, outputs)`` scores a stylized clip against its input as Lai et al. (ECCV 2018) define it;
``rt-anime eval-temporal`` does the same for video files. Facts and formulas:
``../shared/reference/video-systems.md`` §8.1.
"""

from __future__ import annotations

from .flow import (DIS_PRESETS, DISFlow, FlowConfig, disocclusion_mask, motion_boundary_mask, occlusion_mask,
                   out_of_frame_mask, to_gray_u8, warp)
from .warping_error import (PairGeometry, PairResult, WarpingErrorConfig, WarpingErrorMeter, WarpingErrorResult,
                            analyze_inputs, masked_warp_mse, thumbnail_ssim, warping_error)

__all__ = ["DIS_PRESETS", "DISFlow", "FlowConfig", "PairGeometry", "PairResult", "WarpingErrorConfig",
           "WarpingErrorMeter", "WarpingErrorResult", "analyze_inputs", "disocclusion_mask", "masked_warp_mse",
           "motion_boundary_mask", "occlusion_mask", "out_of_frame_mask", "thumbnail_ssim", "to_gray_u8", "warp",
           "warping_error"]
