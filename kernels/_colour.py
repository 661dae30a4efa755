"""Colour-matrix constants and frame-tag resolution shared by every conversion.

All conversions here follow one specification, chosen so that it is reproducible with PyAV/libswscale:

* **Matrices** are the ITU/SMPTE luma weights ``(kr, kb)``; ``kg = 1 - kr - kb``.  Untagged frames
  (``AVCOL_SPC_UNSPECIFIED``) and ``AVCOL_SPC_RGB`` use BT.601, exactly as ``sws_getCoefficients`` does.
* **Ranges**: limited ("tv", ``AVCOL_RANGE_MPEG``) codes are ``Y = (16 + 219 y) * 2^(b-8)`` and
  ``C = (128 + 224 c) * 2^(b-8)``; full ("pc", ``AVCOL_RANGE_JPEG``) codes are ``Y = (2^b - 1) y`` and
  ``C = 2^(b-1) + (2^b - 1) c``.  Unspecified range means limited, as in libswscale for ``yuv*`` formats.
* **Chroma siting** is centred (MPEG-1/JPEG) by default, which is what libswscale assumes when
  ``AVFrame.chroma_location`` is unspecified, as on every frame PyAV creates.  ``"left"`` (horizontally
  co-sited, vertically centred: the H.264/HEVC/MPEG-2 default, which FFmpeg's decoders tag and libswscale then
  honours) is supported on the input side.  PyAV 18 exposes ``chroma_location`` neither to read nor to write,
  so the caller has to say which one a stream uses.
* **Chroma filters** are libswscale's ``SWS_BILINEAR`` filters on the chroma planes: upsampling is bilinear
  with ``src = (dst + 0.5) * n_in / n_out - offset`` (offset 0.5 for centred siting, 0.25 horizontally for
  left siting) and edge replication; downsampling is a triangle whose
  support is stretched by the ratio ``n_in / n_out`` (``[1, 3, 3, 1] / 8`` for even sizes), again with edge
  replication.  Odd sizes use ``ceil(n / 2)`` chroma samples and the same formulas.

The PyAV conversion that realises this specification is ``reformat(..., interpolation=REFERENCE_SWS_FLAGS)``
(PyAV 18.1 / libswscale 9.5); with it the kernels agree with libswscale to <= 1 step of the output's bit depth.
Known places where libswscale itself departs from the specification, so the bar cannot hold there:

* planes narrower or shorter than 7 pixels: libswscale shortens its filters to ``plane length - 2`` taps;
* limited-range input with illegal codes (Y > 235 together with extreme chroma): libswscale's full-chroma
  RGB output overflows and wraps (e.g. blue 255 -> 0); the specification clamps;
* 16-bit or float RGB (``rgb48``, ``gbrp16``, ``gbrpf32``) in either direction: libswscale is biased by
  about -0.4 8-bit steps on output and up to +4 10-bit codes of luma on input, so only 8-bit RGB is used as
  the reference.

PyAV's *default* flags (``BILINEAR`` alone) are not the reference: they take the unscaled ``yuv2rgb``
fast path with nearest-neighbour chroma and ~3 LSB arithmetic error (tens of LSB at colour edges).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from av.video.reformatter import Interpolation

#: libswscale flags that make PyAV's ``reformat`` compute the specification above:
#: ``ACCURATE_RND`` disables the table-driven ``yuv2rgb`` fast path (nearest chroma, ~3 LSB error),
#: ``FULL_CHR_H_INT`` interpolates chroma horizontally for RGB output instead of reusing one sample per
#: pixel pair, ``FULL_CHR_H_INP`` filters every input column for RGB input instead of averaging pairs, and
#: ``BITEXACT`` keeps the result identical on every CPU (no SIMD rounding shortcuts).
REFERENCE_SWS_FLAGS: Final[int] = int(
    Interpolation.BILINEAR
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
    | Interpolation.BITEXACT
)

#: Luma weights (kr, kb) per matrix name.
MATRICES: Final[dict[str, tuple[float, float]]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
}
RANGES: Final[tuple[str, ...]] = ("limited", "full")

# AVColorSpace value -> matrix, following sws_getCoefficients(); values libswscale rejects are absent.
_AVCOL_SPC_TO_MATRIX: Final[dict[int, str]] = {
    0: "bt601",  # AVCOL_SPC_RGB on a YUV frame: libswscale falls back to its default
    1: "bt709",
    2: "bt601",  # unspecified
    4: "fcc",
    5: "bt601",  # BT470BG
    6: "bt601",  # SMPTE170M
    7: "smpte240m",
    9: "bt2020",  # BT2020_NCL
}
# Matrix -> AVColorSpace value written on output frames.
MATRIX_TO_AVCOL_SPC: Final[dict[str, int]] = {
    "bt601": 6,
    "bt709": 1,
    "bt2020": 9,
    "fcc": 4,
    "smpte240m": 7,
}
#: Supported chroma sitings and the position of a chroma sample inside its cell, in chroma samples from the
#: cell's left edge (libswscale's ``get_local_pos``: ``(pos + 128) >> 1`` of 256ths).  Vertically both are 0.5.
CHROMA_H_OFFSET: Final[dict[str, float]] = {"center": 0.5, "left": 0.25}
# AVChromaLocation value -> siting; unspecified reads as centred, as in libswscale.
_AVCHROMA_LOC_TO_SITING: Final[dict[int, str]] = {0: "center", 1: "left", 2: "center"}
_AVCOL_RANGE_TO_RANGE: Final[dict[int, str]] = {0: "limited", 1: "limited", 2: "full"}
RANGE_TO_AVCOL_RANGE: Final[dict[str, int]] = {"limited": 1, "full": 2}
_RANGE_ALIASES: Final[dict[str, str]] = {"tv": "limited", "mpeg": "limited", "pc": "full", "jpeg": "full"}
_MATRIX_ALIASES: Final[dict[str, str]] = {
    "itu601": "bt601",
    "bt470bg": "bt601",
    "smpte170m": "bt601",
    "itu709": "bt709",
    "bt2020nc": "bt2020",
    "bt2020_ncl": "bt2020",
}


def resolve_matrix(colorspace: str | int | None) -> str:
    """Normalise a colour-matrix designation.

    Args:
        colorspace: A matrix name (``"bt601"``, ``"bt709"``, ``"bt2020"``, ``"fcc"``, ``"smpte240m"`` or a
            common alias), an ``AVColorSpace`` integer as found in ``VideoFrame.colorspace``, or ``None``
            for untagged (BT.601, the libswscale default).

    Returns:
        The canonical matrix name.

    Raises:
        ValueError: If the designation is unknown or is one libswscale cannot convert either.
    """
    if colorspace is None:
        return "bt601"
    if isinstance(colorspace, str):
        name = colorspace.lower()
        name = _MATRIX_ALIASES.get(name, name)
        if name in MATRICES:
            return name
        raise ValueError(f"colorspace={colorspace!r} is not supported; expected one of: {', '.join(MATRICES)}")
    value = int(colorspace)
    if value in _AVCOL_SPC_TO_MATRIX:
        return _AVCOL_SPC_TO_MATRIX[value]
    allowed = ", ".join(str(k) for k in _AVCOL_SPC_TO_MATRIX)
    raise ValueError(f"colorspace={value} (AVColorSpace) is not supported; expected one of: {allowed}")


def resolve_range(color_range: str | int | None) -> str:
    """Normalise a range designation.

    Args:
        color_range: ``"limited"``/``"tv"``/``"mpeg"``, ``"full"``/``"pc"``/``"jpeg"``, an ``AVColorRange``
            integer as found in ``VideoFrame.color_range``, or ``None`` for unspecified (limited).

    Returns:
        ``"limited"`` or ``"full"``.

    Raises:
        ValueError: If the designation is unknown.
    """
    if color_range is None:
        return "limited"
    if isinstance(color_range, str):
        name = color_range.lower()
        name = _RANGE_ALIASES.get(name, name)
        if name in RANGES:
            return name
        raise ValueError(f"color_range={color_range!r} is not supported; expected one of: limited, full, tv, pc")
    value = int(color_range)
    if value in _AVCOL_RANGE_TO_RANGE:
        return _AVCOL_RANGE_TO_RANGE[value]
    raise ValueError(f"color_range={value} (AVColorRange) is not supported; expected one of: 0, 1, 2")


def resolve_chroma_location(chroma_location: str | int | None) -> str:
    """Normalise a chroma-siting designation.

    Args:
        chroma_location: ``"center"`` or ``"left"``, an ``AVChromaLocation`` integer (0 unspecified, 1 left,
            2 center), or ``None`` for unspecified (centred, as libswscale reads it).

    Returns:
        ``"center"`` or ``"left"``.

    Raises:
        ValueError: If the siting is unknown or not supported.
    """
    if chroma_location is None:
        return "center"
    if isinstance(chroma_location, str):
        name = chroma_location.lower()
        if name in CHROMA_H_OFFSET:
            return name
        raise ValueError(f"chroma_location={chroma_location!r} is not supported; expected one of: center, left")
    value = int(chroma_location)
    if value in _AVCHROMA_LOC_TO_SITING:
        return _AVCHROMA_LOC_TO_SITING[value]
    raise ValueError(f"chroma_location={value} (AVChromaLocation) is not supported; expected one of: 0, 1, 2")


def _code_scale(color_range: str, bits: int) -> tuple[float, float, float, float]:
    """(y_offset, y_scale, c_offset, c_scale) such that ``code = offset + scale * normalised``."""
    if color_range == "limited":
        k = float(1 << (bits - 8))
        return 16.0 * k, 219.0 * k, 128.0 * k, 224.0 * k
    top = float((1 << bits) - 1)
    return 0.0, top, float(1 << (bits - 1)), top


def yuv_to_rgb_affine(matrix: str, color_range: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine map from YUV codes to RGB in [-1, 1] (before clamping).

    Args:
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the YUV codes (8 or 10).

    Returns:
        ``(a, b)`` with ``a`` of shape (3, 3) and ``b`` of shape (3,), float64, such that
        ``rgb = a @ [Y, U, V] + b`` where ``rgb`` is in [-1, 1] for in-gamut input.
    """
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    # Normalised Y'CbCr (y in [0, 1], c in [-0.5, 0.5]) -> R'G'B' in [0, 1].
    m = np.array(
        [
            [1.0, 0.0, 2.0 * (1.0 - kr)],
            [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
            [1.0, 2.0 * (1.0 - kb), 0.0],
        ]
    )
    y_off, y_scale, c_off, c_scale = _code_scale(color_range, bits)
    scale = np.array([1.0 / y_scale, 1.0 / c_scale, 1.0 / c_scale])
    offset = np.array([y_off, c_off, c_off])
    a = 2.0 * m * scale[None, :]  # the factor 2 and the -1 below map [0, 1] onto [-1, 1]
    b = -a @ offset - 1.0
    return a, b


def rgb_to_yuv_affine(matrix: str, color_range: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine map from RGB in [-1, 1] to unrounded YUV codes.

    Args:
        matrix: Canonical matrix name.
        color_range: ``"limited"`` or ``"full"``.
        bits: Bit depth of the YUV codes (8 or 10).

    Returns:
        ``(a, b)`` with ``a`` of shape (3, 3) and ``b`` of shape (3,), float64, such that
        ``[Y, U, V] = a @ rgb + b``.
    """
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    m = np.array(
        [
            [kr, kg, kb],
            [-kr / (2.0 * (1.0 - kb)), -kg / (2.0 * (1.0 - kb)), 0.5],
            [0.5, -kg / (2.0 * (1.0 - kr)), -kb / (2.0 * (1.0 - kr))],
        ]
    )
    y_off, y_scale, c_off, c_scale = _code_scale(color_range, bits)
    scale = np.array([y_scale, c_scale, c_scale])
    offset = np.array([y_off, c_off, c_off])
    # rgb01 = (rgb + 1) / 2, and chroma rows of m sum to zero, luma row to one.
    a = 0.5 * m * scale[:, None]
    b = offset + a.sum(axis=1)
    return a, b


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """Chroma plane size (width, height) of a 4:2:0 frame; odd sizes round up like ffmpeg."""
    return (width + 1) // 2, (height + 1) // 2


def upsample_taps(n_in: int, n_out: int, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gather indices and weight of libswscale's bilinear chroma upsampling along one axis.

    Args:
        n_in: Input length (chroma samples).
        n_out: Output length (luma samples).
        offset: Chroma sample position inside its cell (:data:`CHROMA_H_OFFSET`).

    Returns:
        ``(i0, i1, w)``: int64 indices of the two neighbours and the float32 weight of ``i1``.
    """
    pos = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - offset, 0.0)
    i0 = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (pos - i0).astype(np.float32)


def downsample_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices and weights of libswscale's bilinear downscaling filter along one axis.

    The triangle is centred on ``(j + 0.5) * s - 0.5`` with half-width ``s = n_in / n_out``; taps outside
    the plane are clamped to the edge sample (libswscale folds their weight onto the edge coefficient).

    Args:
        n_in: Input length (luma samples).
        n_out: Output length (chroma samples).

    Returns:
        ``(idx, w)``: int64 indices and float32 weights, both of shape (n_out, k), weights summing to one.
    """
    s = n_in / n_out
    k = 2 * math.ceil(s) + 1
    centres = (np.arange(n_out) + 0.5) * s - 0.5
    first = np.floor(centres - s).astype(np.int64) + 1
    idx = first[:, None] + np.arange(k)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs(idx - centres[:, None]) / s)
    w /= w.sum(axis=1, keepdims=True)
    keep = w.any(axis=0)  # drop tap columns that are zero for every output
    return np.clip(idx[:, keep], 0, n_in - 1), w[:, keep].astype(np.float32)


def check_size(width: int, height: int) -> None:
    """Reject empty frames, which neither libswscale nor the kernels can convert."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size {width}x{height} is not supported; width and height must be >= 1")
