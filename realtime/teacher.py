"""The algorithmic anime teacher: a deterministic photo → anime-background-style image function.

No anime generator weights are available offline, so rt-anime trains its default model on pseudo-pairs
``(photo, anime_teacher(photo))``. The teacher follows the decomposition of White-box cartoonization (Wang & Yu,
CVPR 2020) — a smooth *surface*, flat *structure* colour blocks, sparse *texture*/contour lines — and the way anime
background painters work from location photos (colour-balance the photo, paint over detail with flat picked
colours, multiply a bluish shadow layer, replace the sky with a gradient):

1. **Surface**: bilateral passes remove texture while keeping edges; a domain-transform filter then flattens
   large areas (both resolution-aware).
2. **Grade**: more chroma (soft-limited so saturated colours do not clip), foliage pulled towards anime
   yellow-green, a slight high-key lift.
3. **Structure**: a per-image k-means palette of *material* colours (chroma-weighted Lab, fixed seed), assigned
   with a two-nearest soft blend so regions are flat but their borders anti-aliased.
4. **Cel shading**: inside each region luminance is posterised into steps around the region's colour (soft
   steps), then shadows are pulled towards a cool tint and highlights towards a warm one.
5. **Sky**: bright, blue-ish, low-texture areas connected to the top, ending at real edges, become a clean
   vertical gradient (deep blue at the top to pale cyan at the horizon).
6. **Lines**: XDoG on luminance, gated by strong (post-smoothing) structure, specks removed; lines darken the
   colour underneath instead of painting black.

Everything is computed from the image alone with fixed seeds, so the same input gives byte-identical output. The
expensive filtering runs at a capped working resolution; the smooth layers are brought back to full size by guided
upsampling (the full-size image's edges), and palette assignment, shading and lines run at full size, so edges stay
crisp. All spatial sizes are given in *reference pixels* (an image whose short side is
256 px) and scaled with the image, so a 256² image and a 720p frame of the same scene look alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch

from .teacher_ops import (
    absorb_sky_fringe,
    flatten_surface,
    grade_lab,
    guided_upsample,
    kmeans_palette,
    line_alpha,
    posterize_shading,
    sky_gradient,
    sky_mask,
    soft_assign,
    tint_tones,
)

__all__ = ["TeacherConfig", "anime_teacher", "teacher_batch", "REFERENCE_SIDE"]

logger = logging.getLogger(__name__)

# Guided-upsampling regulariser (luminance in [0, 1], squared): luminance steps under ~0.03 are not edges.
GUIDE_EPS = 1e-3
REFERENCE_SIDE = 256
"""Short side (px) at which the spatial parameters of :class:`TeacherConfig` are given."""


def _rgb_tuple(name: str, value: object) -> None:
    if (not isinstance(value, tuple) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 255 for v in value)):
        raise ValueError(f"{name} must be an (R, G, B) tuple of numbers in 0..255, got {value!r}")


def _number(name: str, value: object, low: float, high: float, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} in [{low}, {high}], got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TeacherConfig:
    """Knobs of :func:`anime_teacher`. Spatial sizes are in reference pixels (short side 256)."""

    smooth_passes: int = 3
    """Bilateral-filter passes that remove texture before everything else (0 disables)."""
    smooth_sigma_color: float = 0.10
    """Bilateral range sigma in RGB [0, 1] units: differences above ~2× this are kept as edges."""
    smooth_sigma_space: float = 2.0
    """Bilateral spatial sigma (reference px)."""
    flatten_sigma_space: float = 12.0
    """Domain-transform (recursive edge-preserving) filter spatial sigma (reference px); 0 disables."""
    flatten_sigma_range: float = 0.25
    """Domain-transform range sigma in [0, 1]: lower keeps more edges, higher flattens more."""
    palette_size: int = 12
    """Number of material colours in the per-image k-means palette; 0 = no palette: colours stay continuous and cel
    shading posterises absolute luminance, so the output is a local function of the photo (a student network can
    learn it; a per-image palette is a global decision it can only guess)."""
    palette_softness: float = 1.5
    """Lab distance margin over which a pixel blends between its two nearest palette colours (anti-aliasing)."""
    shade_step: float = 13.0
    """Cel-shading luminance step (Lab L units, 0..100); 0 disables posterised shading."""
    shade_softness: float = 0.25
    """Width of each shading step's transition as a fraction of the step (0 = hard, 0.5 = no posterisation)."""
    saturation: float = 1.5
    """Chroma gain (soft-limited so already vivid colours do not clip)."""
    foliage_shift: float = 0.5
    """How far greens are pulled towards anime yellow-green (0 = unchanged, 1 = fully)."""
    brightness: float = 0.85
    """Gamma on Lab L (< 1 brightens mid-tones for a high-key look)."""
    shadow_tint: tuple[float, float, float] = (70.0, 80.0, 170.0)
    """RGB colour dark tones are pulled towards (cool blue-purple)."""
    shadow_tint_strength: float = 0.35
    """Largest fraction of the shadow tint's chroma mixed into the darkest tones."""
    highlight_tint: tuple[float, float, float] = (255.0, 236.0, 200.0)
    """RGB colour bright tones are pulled towards (warm cream)."""
    highlight_tint_strength: float = 0.25
    """Largest fraction of the highlight tint's chroma mixed into the brightest tones."""
    sky: bool = True
    """Replace detected sky (bright, blue-ish, low texture, connected to the top) with a clean gradient."""
    sky_top: tuple[float, float, float] = (48.0, 112.0, 214.0)
    """RGB colour of the sky gradient at the top of the sky."""
    sky_horizon: tuple[float, float, float] = (200.0, 234.0, 250.0)
    """RGB colour of the sky gradient at the lowest sky pixel (towards the horizon)."""
    lines: bool = True
    """Draw line art on strong structure."""
    line_strength: float = 0.75
    """How much a full-strength line darkens the colour under it (0 = invisible, 1 = black)."""
    line_threshold: float = 6.0
    """Minimum edge contrast (Lab L units per reference px, measured after smoothing) that gets a line."""
    line_sigma: float = 0.7
    """XDoG inner Gaussian sigma (reference px); line width grows with it."""
    max_side: int = 640
    """Working-resolution cap: filtering runs with the longer side at most this, colour and lines at full size."""
    scale: float | None = None
    """Override the automatic size scale (image short side / 256), e.g. to render crops of a larger frame with
    that frame's scale. ``None`` derives it from the image."""
    seed: int = 0
    """Seed of the palette's pixel sample (the only randomness)."""

    def __post_init__(self) -> None:
        _number("smooth_passes", self.smooth_passes, 0, 10, integer=True)
        _number("smooth_sigma_color", self.smooth_sigma_color, 0.001, 1.0)
        _number("smooth_sigma_space", self.smooth_sigma_space, 0.1, 20.0)
        _number("flatten_sigma_space", self.flatten_sigma_space, 0.0, 200.0)
        _number("flatten_sigma_range", self.flatten_sigma_range, 0.01, 1.0)
        size = self.palette_size
        if isinstance(size, bool) or not isinstance(size, int) or not (size == 0 or 2 <= size <= 64):
            raise ValueError(f"palette_size must be 0 (no palette) or an int in [2, 64], got {size!r}")
        _number("palette_softness", self.palette_softness, 0.01, 50.0)
        _number("shade_step", self.shade_step, 0.0, 50.0)
        _number("shade_softness", self.shade_softness, 0.0, 0.5)
        _number("saturation", self.saturation, 0.0, 4.0)
        _number("foliage_shift", self.foliage_shift, 0.0, 1.0)
        _number("brightness", self.brightness, 0.3, 3.0)
        _number("shadow_tint_strength", self.shadow_tint_strength, 0.0, 1.0)
        _number("highlight_tint_strength", self.highlight_tint_strength, 0.0, 1.0)
        _number("line_strength", self.line_strength, 0.0, 1.0)
        _number("line_threshold", self.line_threshold, 0.0, 100.0)
        _number("line_sigma", self.line_sigma, 0.3, 5.0)
        _number("max_side", self.max_side, 16, 16384, integer=True)
        _number("seed", self.seed, 0, 2**32 - 1, integer=True)
        if self.scale is not None:
            _number("scale", self.scale, 0.01, 100.0)
        for name in ("shadow_tint", "highlight_tint", "sky_top", "sky_horizon"):
            _rgb_tuple(name, getattr(self, name))
        for name in ("sky", "lines"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def describe(self) -> str:
        """One line with every field, for logs."""
        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))


def _rgb_to_lab(rgb01: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb01, cv2.COLOR_RGB2Lab)


def _color_lab(rgb: tuple[float, float, float]) -> np.ndarray:
    return _rgb_to_lab(np.array([[rgb]], np.float32) / 255.0)[0, 0]


class _Upsampler:
    """Working resolution → full size for smooth layers (not the quantised result): a guided filter on the full-size
    luminance puts region borders on the real edges, so quantising afterwards gives crisp borders."""

    def __init__(self, work_l: np.ndarray, full01: np.ndarray, unit_work: float) -> None:
        self.same = work_l.shape == full01.shape[:2]
        if not self.same:
            self.guide_low = work_l / 100.0
            self.guide_high = _rgb_to_lab(full01)[..., 0] / 100.0
            self.radius = max(1, round(unit_work))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.same:
            return a
        return guided_upsample(a, self.guide_low, self.guide_high, radius=self.radius, eps=GUIDE_EPS)


def anime_teacher(rgb: np.ndarray, config: TeacherConfig = TeacherConfig()) -> np.ndarray:
    """Render an RGB photo as anime background art.

    Args:
        rgb: ``uint8`` array ``(H, W, 3)``, RGB order, any size (odd sizes included).
        config: The stylisation knobs.

    Returns:
        ``uint8`` array ``(H, W, 3)``: same size, pixel-aligned with the input (no geometric change). The same input
        and config always give byte-identical output.

    Raises:
        ValueError: ``rgb`` is not a ``uint8`` ``(H, W, 3)`` array.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"rgb must be a uint8 array of shape (H, W, 3), got {type(rgb).__name__} "
                         f"{getattr(rgb, 'dtype', '')} {shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must be at least 1x1 pixels, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    factor = min(1.0, config.max_side / max(h, w))
    work_hw = (max(1, round(h * factor)), max(1, round(w * factor)))
    unit_full = config.scale if config.scale is not None else min(h, w) / REFERENCE_SIDE
    unit_work = unit_full * work_hw[0] / h
    full01 = np.ascontiguousarray(rgb).astype(np.float32) / 255.0
    work01 = full01 if work_hw == (h, w) else cv2.resize(full01, work_hw[::-1], interpolation=cv2.INTER_AREA)

    work_l = _rgb_to_lab(work01)[..., 0]
    smooth01, flat01 = flatten_surface(work01, config, unit_work)
    flat_lab = grade_lab(_rgb_to_lab(flat01), config)
    centers = kmeans_palette(flat_lab, config) if config.palette_size else None
    sky, sky_l = sky_mask(flat_lab, work_l, unit_work) if config.sky else (None, 0.0)
    logger.debug("teacher %dx%d: working %dx%d, unit %.2f, palette %d, sky %s", w, h, work_hw[1], work_hw[0],
                 unit_full, 0 if centers is None else len(centers), sky is not None and bool(sky.any()))
    up = _Upsampler(work_l, full01, unit_work)

    lab = up(flat_lab)
    region_lab = lab if centers is None else soft_assign(lab, centers, config)
    # Without a palette there are no regions: shading bands are absolute luminance, the same function everywhere.
    shaded = posterize_shading(lab[..., 0], region_lab, config, relative=centers is not None)
    shaded = tint_tones(shaded, _color_lab(config.shadow_tint), _color_lab(config.highlight_tint), config)
    out = np.clip(cv2.cvtColor(shaded, cv2.COLOR_Lab2RGB), 0.0, 1.0)
    sky_full = None
    if sky is not None and sky.any():
        sky_full = absorb_sky_fringe(np.clip(up(sky), 0.0, 1.0), region_lab, sky_l, unit_full)
        gradient = sky_gradient(sky_full, np.array(config.sky_top, np.float32) / 255.0,
                                np.array(config.sky_horizon, np.float32) / 255.0)
        out = out * (1.0 - sky_full[..., None]) + gradient * sky_full[..., None]
    if config.lines and config.line_strength > 0:
        alpha = line_alpha(up(_rgb_to_lab(smooth01)[..., 0]), lab[..., 0], config, unit_full)
        if sky_full is not None:
            alpha *= 1.0 - sky_full
        out *= (1.0 - config.line_strength * alpha)[..., None]
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def teacher_batch(x: torch.Tensor, config: TeacherConfig = TeacherConfig()) -> torch.Tensor:
    """:func:`anime_teacher` for a batch in the models' tensor space, for generating training targets.

    Args:
        x: ``(N, 3, H, W)`` float tensor, RGB in ``[-1, 1]`` (any device; values outside are clamped).
        config: The stylisation knobs.

    Returns:
        ``(N, 3, H, W)`` tensor in ``[-1, 1]`` with ``x``'s dtype and device; image ``i`` equals
        ``anime_teacher`` of image ``i`` rounded to ``uint8`` exactly as :func:`realtime.images.tensor_to_image`
        rounds.

    Raises:
        ValueError: ``x`` is not a 4-D tensor with 3 channels.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x must be a (N, 3, H, W) tensor, got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    images = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    outs = [anime_teacher(np.ascontiguousarray(image.numpy()), config) for image in images]
    y = torch.from_numpy(np.stack(outs)) if outs else torch.empty(0, x.shape[2], x.shape[3], 3, dtype=torch.uint8)
    return y.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device=x.device, dtype=x.dtype)
