"""Still images in and out of the model's tensor space: RGB uint8 HWC ⇄ float NCHW in [-1, 1], pad and crop."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RtAnimeError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pnm")
"""Still-image formats read and written (by extension; 16-bit TIFF/PNG inputs are read as 8-bit)."""
INPUT_IMAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".pgm", ".pbm")
"""Also read, never written: greyscale-only formats (expanded to RGB on reading; the output is colour)."""


def read_image(path: "str | os.PathLike") -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); alpha is dropped, grayscale is expanded."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise RtAnimeError(f"image {path} does not exist")
    if path.is_dir():
        raise RtAnimeError(f"{path} is a directory, expected an image file")
    # imdecode on the bytes (rather than imread) keeps non-ASCII paths working on every platform.
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise RtAnimeError(f"{path} is not a readable image (supported: {', '.join(INPUT_IMAGE_SUFFIXES)})")
    if path.suffix.lower() in _MULTI_FRAME_SUFFIXES:
        _warn_if_multi_frame(path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# Formats whose alpha channel is read and written: a transparent sticker stays transparent. Not TIFF: OpenCV writes
# its fourth channel without marking it as alpha (ExtraSamples), so other readers would not take it for one.
ALPHA_SUFFIXES = (".png", ".webp")


def read_alpha(path: "str | os.PathLike", shape: tuple[int, int]) -> np.ndarray | None:
    """The picture's alpha as uint8 (H, W), or ``None`` when it has none (or when its stored shape is not ``shape``,
    the shape :func:`read_image` returned after applying an EXIF rotation, which the raw read does not apply)."""
    import cv2

    path = Path(path)
    if path.suffix.lower() not in ALPHA_SUFFIXES:
        return None
    raw = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] != 4 or raw.shape[:2] != tuple(shape):
        return None
    alpha = raw[..., 3]
    return (alpha >> 8).astype(np.uint8) if alpha.dtype == np.uint16 else alpha.astype(np.uint8)


# Formats that can hold several pictures in one file (animated WebP, multi-page TIFF). FFmpeg cannot decode
# animated WebP, so they are read as pictures: the first frame, said out loud rather than silently.
_MULTI_FRAME_SUFFIXES = (".webp", ".tif", ".tiff")


def _warn_if_multi_frame(path: Path) -> None:
    import cv2

    try:
        count = cv2.imcount(str(path))
    except cv2.error:
        return
    if count > 1:
        kind = "an animated WebP" if path.suffix.lower() == ".webp" else "a multi-page TIFF"
        logger.warning("%s is %s with %d frames; only the first is read (export the frames to a folder or a video "
                       "to stylize them all)", path, kind, count)


def write_image(path: "str | os.PathLike", rgb: np.ndarray) -> None:
    """Write RGB uint8 (H, W, 3), or RGBA (H, W, 4) to a format in :data:`ALPHA_SUFFIXES`, in the format of
    ``path``'s extension (a still GIF too, see :func:`encode_gif`)."""
    import cv2

    path = Path(path)
    if path.suffix.lower() == ".gif":
        path.write_bytes(encode_gif(rgb[..., :3]))
        return
    if rgb.shape[-1] == 4 and path.suffix.lower() not in ALPHA_SUFFIXES:
        rgb = rgb[..., :3]
    code = cv2.COLOR_RGBA2BGRA if rgb.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, code))
    if not ok:
        raise RtAnimeError(f"cannot encode an image as {path.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    data.tofile(path)


def encode_gif(rgb: np.ndarray) -> bytes:
    """A one-frame GIF with the picture's own 256-colour palette, as animated GIF output makes each frame."""
    import io

    import av

    from .pipeline.codecs import PaletteQuantizer

    height, width = rgb.shape[:2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="gif") as container:
        stream = container.add_stream("gif")
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        frame = PaletteQuantizer(width, height)(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float32 (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """Float (1, 3, H, W) or (3, H, W) in [-1, 1] → RGB uint8 (H, W, 3), rounded to nearest."""
    x = x[0] if x.dim() == 4 else x
    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def pad_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad H and W at the bottom/right up to ``size`` = (H, W).

    Reflect keeps edge statistics natural for the generators (their InstanceNorm sees the whole frame); it needs the
    pad to be smaller than the side it mirrors, so tiny images fall back to edge replication.
    """
    h, w = x.shape[-2:]
    ph, pw = size[0] - h, size[1] - w
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to ``multiple`` (see :func:`pad_to`); returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    return pad_to(x, (h + -h % multiple, w + -w % multiple)), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]
