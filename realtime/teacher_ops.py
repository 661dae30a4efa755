"""The stages of :func:`realtime.teacher.anime_teacher`, each a pure array function.

Conventions: colour arrays are float32 ``(H, W, 3)``; RGB in ``[0, 1]``; Lab is OpenCV's float Lab (L in 0..100, a/b
roughly -127..127). ``unit`` is the image's size in reference pixels (short side / 256): every spatial parameter
is multiplied by it so the look does not depend on resolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .teacher import TeacherConfig

# Lab weight of L in the palette distance: below 1 so clusters follow material colour (hue/chroma) and leave the
# luminance variation inside a material to the cel-shading stage.
PALETTE_L_WEIGHT = 0.5
PALETTE_SAMPLES = 4096
KMEANS_ITERATIONS = 10
# Foliage: Lab hue angles (degrees) of greens, and the yellow-green anime foliage is pulled towards.
FOLIAGE_HUES = (95.0, 112.0, 160.0, 178.0)
FOLIAGE_TARGET = 112.0
# XDoG on Lab L (0..100): τ just under 1 adds a bias of 0.01·L that keeps bright areas from inking on weak ripples;
# ε (L units) is the response below which nothing inks, φ the sharpness of the soft threshold.
XDOG_K = 1.6
XDOG_TAU = 0.99
XDOG_EPS = 0.4
XDOG_PHI = 1.2
# Lab hue (degrees) where the rotation towards a tint changes direction.
SHADE_HUE_SPLIT = 100.0
# Chroma gain falls from ``saturation`` at grey to 1 at this chroma, so vivid colours are not pushed out of gamut.
CHROMA_LIMIT = 120.0


def ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Smoothstep from 0 at ``lo`` to 1 at ``hi`` (``lo > hi`` gives a falling step)."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigmaX=max(sigma, 0.3), borderType=cv2.BORDER_REFLECT)


def flatten_surface(rgb01: np.ndarray, config: TeacherConfig, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface representation: texture removed, edges kept, large areas flattened.

    Returns ``(smooth, flat)``: ``smooth`` after the bilateral passes (the lines are found on it: texture gone,
    contours still sharp) and ``flat`` after the domain-transform filter as well (the colours come from it).
    """
    smooth = rgb01
    for _ in range(config.smooth_passes):
        # Repeated small bilateral passes approximate one wide one at a fraction of the cost and remove texture
        # more evenly (each pass re-measures the range weights on the already-smoothed image).
        smooth = cv2.bilateralFilter(smooth, 0, config.smooth_sigma_color, config.smooth_sigma_space * unit)
    if config.flatten_sigma_space <= 0:
        return smooth, smooth
    u8 = np.clip(smooth * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Recursive domain-transform filter (Gastal & Oliveira 2011): O(1) per pixel whatever the spatial sigma, so it
    # can flatten whole regions, while its range term stops at colour edges.
    flat = cv2.edgePreservingFilter(u8, flags=cv2.RECURS_FILTER, sigma_s=config.flatten_sigma_space * unit,
                                    sigma_r=config.flatten_sigma_range)
    return smooth, flat.astype(np.float32) / 255.0


def guided_upsample(source: np.ndarray, guide_low: np.ndarray, guide_high: np.ndarray, *, radius: int,
                    eps: float) -> np.ndarray:
    """Fast guided filter upsampling (He & Sun 2015): bring a low-resolution filtered image to full size with the
    edges of the full-size guide.

    Inside a small window the output is modelled as ``a·guide + b``; ``a`` and ``b`` are fitted at low resolution
    (where ``source`` is flat, ``a`` ≈ 0 and guide texture does not come back), then upsampled and applied to the
    full-size guide, so region borders land on the full-resolution edges instead of being blurred by resizing.

    Args:
        source: ``(h, w)`` or ``(h, w, C)`` float32 at low resolution.
        guide_low: ``(h, w)`` guide (e.g. luminance in [0, 1]) at low resolution.
        guide_high: ``(H, W)`` the same guide at full resolution.
        radius: Box radius in low-resolution pixels.
        eps: Regulariser in guide units squared: guide variations below ~sqrt(eps) count as texture.
    """
    h, w = guide_high.shape
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    g = guide_low if source.ndim == 2 else guide_low[..., None]
    mean_g = box(guide_low)
    var_g = box(guide_low * guide_low) - mean_g * mean_g
    mean_s = box(source)
    mean_g = mean_g if source.ndim == 2 else mean_g[..., None]
    var_g = var_g if source.ndim == 2 else var_g[..., None]
    a = (box(g * source) - mean_g * mean_s) / (var_g + eps)
    b = mean_s - a * mean_g
    a = cv2.resize(box(a), (w, h), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(box(b), (w, h), interpolation=cv2.INTER_LINEAR)
    if source.ndim == 3 and source.shape[2] == 1:
        a, b = a[..., None], b[..., None]
    return a * (guide_high if source.ndim == 2 else guide_high[..., None]) + b


def grade_lab(lab: np.ndarray, config: TeacherConfig) -> np.ndarray:
    """Anime colour grade: vivid chroma, yellow-green foliage, high-key luminance."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    gain = 1.0 + (config.saturation - 1.0) * np.clip(1.0 - chroma / CHROMA_LIMIT, 0.0, 1.0)
    lo, lo_full, hi_full, hi = FOLIAGE_HUES
    # Only reasonably coloured greens count as foliage: grey-greens (chroma < 8) keep their hue.
    foliage = ramp(hue, lo, lo_full) * ramp(hue, hi, hi_full) * ramp(chroma, 4.0, 12.0)
    hue = hue + config.foliage_shift * foliage * (FOLIAGE_TARGET - hue)
    chroma = chroma * gain * (1.0 + 0.12 * config.foliage_shift * foliage)
    rad = np.radians(hue)
    out = np.empty_like(lab)
    out[..., 0] = 100.0 * np.power(np.clip(L, 0.0, 100.0) / 100.0, config.brightness)
    out[..., 1] = chroma * np.cos(rad)
    out[..., 2] = chroma * np.sin(rad)
    return out


def _weighted(lab: np.ndarray) -> np.ndarray:
    return lab * np.array([PALETTE_L_WEIGHT, 1.0, 1.0], np.float32)


def kmeans_palette(lab: np.ndarray, config: TeacherConfig) -> np.ndarray:
    """Per-image palette of ``palette_size`` Lab colours: k-means++ then Lloyd iterations on a seeded sample."""
    pixels = _weighted(lab.reshape(-1, 3))
    rng = np.random.default_rng(config.seed)
    if len(pixels) > PALETTE_SAMPLES:
        pixels = pixels[np.sort(rng.choice(len(pixels), PALETTE_SAMPLES, replace=False))]
    pixels = pixels.astype(np.float64)  # float64 cluster sums: 4096-pixel means without float32 round-off drift
    k = min(config.palette_size, len(pixels))
    centers = np.empty((k, 3))
    centers[0] = pixels[rng.integers(len(pixels))]
    nearest = ((pixels - centers[0]) ** 2).sum(1)
    for i in range(1, k):
        # k-means++ seeding spreads the centres, so small vivid regions (a red flower) get their own colour.
        total = nearest.sum()
        pick = rng.integers(len(pixels)) if total <= 0 else rng.choice(len(pixels), p=nearest / total)
        centers[i] = pixels[pick]
        nearest = np.minimum(nearest, ((pixels - centers[i]) ** 2).sum(1))
    for _ in range(KMEANS_ITERATIONS):
        d = (pixels**2).sum(1)[:, None] - 2.0 * pixels @ centers.T + (centers**2).sum(1)[None]
        labels = d.argmin(1)
        counts = np.bincount(labels, minlength=k)
        for c in range(3):
            sums = np.bincount(labels, weights=pixels[:, c], minlength=k)
            centers[:, c] = np.where(counts > 0, sums / np.maximum(counts, 1), centers[:, c])
    return (centers / np.array([PALETTE_L_WEIGHT, 1.0, 1.0])).astype(np.float32)


def soft_assign(lab: np.ndarray, centers: np.ndarray, config: TeacherConfig) -> np.ndarray:
    """Replace each pixel by its nearest palette colour, blended with the second nearest near region borders.

    Only the two nearest colours take part, so regions are exactly flat away from borders, and a border is a
    narrow ramp (anti-aliased) instead of a jagged step.
    """
    if len(centers) < 2:
        return np.broadcast_to(centers[0], lab.shape).copy()
    x = [np.ascontiguousarray(plane) for plane in cv2.split(_weighted(lab))]
    c = _weighted(centers)
    shape = lab.shape[:2]
    best1 = np.full(shape, np.inf, np.float32)
    best2 = np.full(shape, np.inf, np.float32)
    idx1 = np.zeros(shape, np.int32)
    idx2 = np.zeros(shape, np.int32)
    d = np.empty(shape, np.float32)
    t = np.empty(shape, np.float32)
    closer = np.empty(shape, bool)
    for k in range(len(c)):
        # In-place float32 passes: this loop is the teacher's hottest spot at full resolution.
        np.subtract(x[0], c[k, 0], out=d)
        np.square(d, out=d)
        for ch in (1, 2):
            np.subtract(x[ch], c[k, ch], out=t)
            np.square(t, out=t)
            d += t
        np.less(d, best2, out=closer)  # new second best (or better)
        np.copyto(best2, d, where=closer)
        np.copyto(idx2, k, where=closer)
        np.less(d, best1, out=closer)  # new best: the old best becomes second
        np.copyto(best2, best1, where=closer)
        np.copyto(idx2, idx1, where=closer)
        np.copyto(best1, d, where=closer)
        np.copyto(idx1, k, where=closer)
    margin = (np.sqrt(best2) - np.sqrt(best1)) / config.palette_softness
    w1 = 0.5 + 0.5 * ramp(margin, 0.0, 1.0)
    out = np.empty_like(lab)
    for ch in range(3):
        first, second = centers[:, ch].take(idx1), centers[:, ch].take(idx2)
        out[..., ch] = second + w1 * (first - second)
    return out


def posterize_shading(luminance: np.ndarray, region_lab: np.ndarray, config: TeacherConfig, *,
                      relative: bool = True) -> np.ndarray:
    """Cel shading: the pixel's luminance relative to its region colour (``relative``) or to black, rounded to
    ``shade_step`` steps (soft)."""
    out = region_lab.copy()
    if config.shade_step <= 0:
        return out
    base = region_lab[..., 0] if relative else 0.0
    r = (luminance - base) / config.shade_step
    n = np.floor(r)
    width = config.shade_softness
    q = n + ramp(r - n, 0.5 - width, 0.5 + width) if width > 0 else np.floor(r + 0.5)
    out[..., 0] = np.clip(base + config.shade_step * q, 0.0, 100.0)
    return out


def _hue_delta(hue_deg: np.ndarray, target_lab: np.ndarray) -> np.ndarray:
    """Signed hue rotation (radians, within ±90°) from ``hue_deg`` towards the target's hue.

    It turns the short way except that the cut sits at SHADE_HUE_SPLIT (between yellow and green) instead of
    opposite the target: greens turn towards teal/blue; yellows, oranges and reds towards crimson/violet; nothing
    turns brown or green.
    """
    goal = float(np.degrees(np.arctan2(target_lab[2], target_lab[1])))
    arc = (goal - SHADE_HUE_SPLIT) % 360.0
    delta = (goal - hue_deg) % 360.0
    delta = np.where(delta > arc, delta - 360.0, delta)
    return np.radians(np.clip(delta, -90.0, 90.0)).astype(np.float32)


def tint_tones(lab: np.ndarray, shadow_lab: np.ndarray, highlight_lab: np.ndarray,
               config: TeacherConfig) -> np.ndarray:
    """Turn dark tones' hue towards the cool shadow tint and bright tones' towards the warm highlight tint.

    Anime background painters shade with a bluish/purple multiply layer rather than black (outdoor shadows are lit
    by the blue sky), and warm the sunlit tones. Rotating the hue (rather than mixing in the tint) keeps shadows
    saturated: green foliage shades to blue-green, orange to red-violet, never to grey. Near-greys have no hue to
    rotate; they get part of the tint's chroma added instead.
    """
    L = lab[..., 0]
    ws = (config.shadow_tint_strength * ramp(L, 60.0, 15.0)).astype(np.float32)
    wh = (config.highlight_tint_strength * ramp(L, 70.0, 96.0)).astype(np.float32)
    a, b = np.ascontiguousarray(lab[..., 1]), np.ascontiguousarray(lab[..., 2])
    chroma, hue = cv2.cartToPolar(a, b, angleInDegrees=True)
    angle = ws * _hue_delta(hue, shadow_lab) + wh * _hue_delta(hue, highlight_lab)
    grey = ramp(chroma, 25.0, 5.0) * 0.5
    angle += hue * np.float32(np.pi / 180)
    out = lab.copy()
    out[..., 1] = chroma * np.cos(angle) + grey * (ws * shadow_lab[1] + wh * highlight_lab[1])
    out[..., 2] = chroma * np.sin(angle) + grey * (ws * shadow_lab[2] + wh * highlight_lab[2])
    return out


def sky_color(lab: np.ndarray, top_l: float | None = None) -> np.ndarray:
    """Soft score in [0, 1] of sky-coloured pixels: blue-ish, not too red/green, bright, and (once the sky's top
    luminance ``top_l`` is known) not much darker than the top of the sky."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    score = ramp(b, -4.0, -14.0) * ramp(np.abs(a), 35.0, 22.0) * ramp(L, 42.0, 58.0)
    if top_l is not None:
        # Photographed skies get lighter towards the horizon, while blue water or a blue wall below is darker than
        # the sky above it: anything much darker than the sky's top is not sky, even when connected to it.
        score *= ramp(L, top_l - 10.0, top_l - 4.0)
    return score


def sky_mask(lab: np.ndarray, raw_luminance: np.ndarray, unit: float) -> tuple[np.ndarray, float]:
    """Soft mask of clear sky: bright, blue-ish, untextured, cut at strong edges, connected to the top border.

    Args:
        lab: Graded, flattened Lab image (working resolution).
        raw_luminance: L of the unfiltered image at the same size (texture is measured on it).
        unit: Reference-pixel scale.

    Returns:
        ``(mask, top_l)``: the mask (all zero when there is no clear sky) and the sky's luminance near its top.
    """
    h, w = lab.shape[:2]
    L = lab[..., 0]
    mean = gaussian(raw_luminance, 2.0 * unit)
    std = np.sqrt(np.maximum(gaussian(raw_luminance * raw_luminance, 2.0 * unit) - mean * mean, 0.0))
    gx = cv2.Sobel(L, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(L, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    edge = np.hypot(gx, gy) * unit
    color = sky_color(lab) > 0.5
    core = color & (ramp(std, 5.0, 2.0) * ramp(edge, 3.0, 1.5) > 0.5)
    top_limit = max(1, round(0.08 * h))
    seeds = _top_components(core, top_limit, min_area=0.004 * h * w)
    none = np.zeros((h, w), np.float32), 0.0
    if not seeds.any():
        return none
    upper = seeds & (np.arange(h)[:, None] < max(top_limit, h // 6))
    top_l = float(np.median(L[upper] if upper.any() else L[seeds]))
    soft = sky_color(lab, top_l)
    color &= soft > 0.5
    seeds = _top_components(core & color, top_limit, min_area=0.004 * h * w)
    if not seeds.any():
        return none
    # The texture test fails within a few pixels of any object (its window straddles the edge); grow the sky back
    # over sky-coloured pixels there so the sky reaches the object's outline instead of leaving a halo.
    r = max(1, round(5.0 * unit))
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = (cv2.dilate(seeds.astype(np.uint8), grow, borderType=cv2.BORDER_REPLICATE) > 0) & color
    mask = mask.astype(np.uint8)
    if not _ends_at_edges(mask, edge, unit):
        return none
    r = max(1, round(1.0 * unit))
    # Close pin-holes (noise specks) but not clouds.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)),
                            borderType=cv2.BORDER_REPLICATE)
    # Where the sky fades into something else without an edge (a storm front), the soft colour score spreads the
    # blend out, so there is no seam; at real edges both terms change abruptly and the outline stays crisp.
    return np.minimum(gaussian(mask.astype(np.float32), 0.5 * unit), gaussian(soft.astype(np.float32), unit)), top_l


def absorb_sky_fringe(mask: np.ndarray, region_lab: np.ndarray, top_l: float, unit: float) -> np.ndarray:
    """Extend the full-size sky mask over nearby pixels whose *palette* colour is sky-like.

    Thin or out-of-focus objects against the sky leave a fringe of mixed pixels that the working-resolution mask
    misses; quantised, they take a pale sky colour and would show as a halo next to the gradient.
    """
    r = max(1, round(3.0 * unit))
    inside = mask > 0.5
    near = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    # Never below the sky's lowest pixel in that column: pale water under the horizon is sky-coloured too.
    h = mask.shape[0]
    lowest = np.where(inside.any(0), h - 1 - np.argmax(inside[::-1], axis=0), -1)
    near &= (np.arange(h)[:, None] <= lowest[None, :]).astype(np.uint8)
    return np.maximum(mask, near.astype(np.float32) * sky_color(region_lab, top_l).astype(np.float32))


def _ends_at_edges(mask: np.ndarray, edge: np.ndarray, unit: float) -> bool:
    """Whether most of the sky's outline (image border excluded) lies on a strong edge.

    A clear sky ends at the outlines of what is in front of it; a bright patch of an overcast or stormy sky fades
    into darker cloud without an edge, and replacing only that patch would leave a visible seam.
    """
    inner = mask.copy()
    inner[1:-1, 1:-1] = cv2.erode(mask, np.ones((3, 3), np.uint8))[1:-1, 1:-1]
    outline = (mask > 0) & (inner == 0)
    if not outline.any():
        return True
    r = max(1, round(2.0 * unit))
    near_edge = cv2.dilate(edge, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 2.5
    return float(near_edge[outline].mean()) >= 0.5


def _top_components(binary: np.ndarray, top_limit: int, *, min_area: float) -> np.ndarray:
    """Pixels of the 4-connected components of ``binary`` that reach above row ``top_limit`` and are large."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=4)
    keep = (stats[:, cv2.CC_STAT_TOP] < top_limit) & (stats[:, cv2.CC_STAT_AREA] >= min_area)
    keep[0] = False
    return keep[labels]


def sky_gradient(mask: np.ndarray, top_rgb: np.ndarray, horizon_rgb: np.ndarray) -> np.ndarray:
    """Vertical gradient from ``top_rgb`` at the sky's highest row to ``horizon_rgb`` at its lowest."""
    h, w = mask.shape
    rows = np.nonzero((mask > 0.5).any(1))[0]
    y0, y1 = (int(rows[0]), int(rows[-1])) if len(rows) else (0, h - 1)
    t = np.clip((np.arange(h, dtype=np.float32) - y0) / max(y1 - y0, 1), 0.0, 1.0) ** 1.3
    colors = top_rgb[None] * (1.0 - t[:, None]) + horizon_rgb[None] * t[:, None]
    return np.broadcast_to(colors[:, None, :], (h, w, 3)).astype(np.float32)


def line_alpha(smooth_l: np.ndarray, flat_l: np.ndarray, config: TeacherConfig, unit: float) -> np.ndarray:
    """Line-art opacity in ``[0, 1]``: XDoG dark-side response, only where the flattened image has strong edges.

    XDoG (Winnemöller et al. 2012): ``D = G_σ − τ·G_kσ`` with ``k = 1.6``; a pixel is ink where ``D < −ε``, with
    opacity ``tanh(φ·(−D − ε))`` (the paper's soft threshold, mirrored so ink is the high value). Gating by the
    gradient of the *flattened* image keeps lines off texture (grass, foliage noise) that the bilateral passes
    removed, and small connected specks are dropped.
    """
    sigma = max(config.line_sigma * unit, 0.5)
    dog = gaussian(smooth_l, sigma) - XDOG_TAU * gaussian(smooth_l, XDOG_K * sigma)
    ink = np.tanh(np.maximum(-dog - XDOG_EPS, 0.0) * XDOG_PHI)
    blurred = gaussian(flat_l, sigma)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    strength = gaussian(np.hypot(gx, gy) * unit, sigma)
    alpha = (ink * ramp(strength, 0.6 * config.line_threshold, 1.2 * config.line_threshold)).astype(np.float32)
    binary = (alpha > 0.25).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count > 1:
        min_extent = 3.0 * unit
        extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
        keep = extent >= min_extent
        keep[0] = True  # background: its faint alpha stays (anti-aliasing around kept lines)
        alpha *= keep[labels]
    return alpha
