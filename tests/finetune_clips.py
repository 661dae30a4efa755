"""Tiny clips for the fine-tuning tests: a smooth texture panning sideways, optionally with a hard scene cut."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

W, H = 64, 48


def texture(seed: int, width: int, height: int = H) -> np.ndarray:
    """Smooth random RGB texture, uint8 (DIS flow needs texture; smoothness keeps bilinear warps exact-ish)."""
    rng = np.random.default_rng(seed)
    small = rng.random((height // 6 + 1, width // 6 + 1, 3)).astype(np.float32)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    big = (big - big.min()) / (big.max() - big.min())
    return (big * 200 + 30).astype(np.uint8)


def panning_frames(count: int, *, seed: int = 0, speed: int = 2, noise: float = 0.0) -> list[np.ndarray]:
    """``count`` frames of one texture moving ``speed`` px left per frame, with optional per-frame sensor noise."""
    wide = texture(seed, W + speed * count)
    rng = np.random.default_rng(seed + 100)
    frames = []
    for i in range(count):
        frame = wide[:, i * speed:i * speed + W].astype(np.float32)
        if noise:
            frame = frame + rng.normal(0, noise, frame.shape)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], *, rate: int = 25) -> Path:
    """Encode RGB frames as near-lossless H.264 (yuv444p, crf 4) so decoded frames stay close to the originals."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": "4"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv444p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def clip_with_cut(path: Path, *, before: int = 10, after: int = 10) -> Path:
    """Shot A (``before`` frames) then a hard cut to an unrelated shot B (``after`` frames)."""
    shot_a = panning_frames(before, seed=1)
    shot_b = [255 - f for f in panning_frames(after, seed=7)]  # another texture, inverted: SSIM far below 0.2
    return write_clip(path, shot_a + shot_b)
