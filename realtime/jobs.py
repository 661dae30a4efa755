"""What ``rt-anime INPUT OUTPUT`` does: classify the input and output, then stylize video, images or folders.

Videos (and image sequences turned into videos) go through the streaming pipeline; images and folders of images
are stylized one by one with the same geometry rules (``--size``, ``--max-side``, padding to the model's multiple).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal

import av
import numpy as np
import torch

from ._fileio import write_atomic
from .errors import RtAnimeError
from .images import (ALPHA_SUFFIXES, IMAGE_SUFFIXES, INPUT_IMAGE_SUFFIXES, image_to_tensor, read_alpha, read_image,
                     tensor_to_image, write_image)
from .pipeline import EncodeConfig, PipelineConfig, PipelineResult, run_file
from .pipeline.translate import Geometry

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg",
                  ".y4m", ".nut", ".gif")
_PRINTF = re.compile(r"%0?\d*d")

InputKind = Literal["video", "image", "images"]
OutputKind = Literal["video", "image", "folder"]


@dataclass(frozen=True)
class InputSpec:
    kind: InputKind
    path: Path | str
    """A file or folder; a ``str`` only for a URL (``https://``, ``rtsp://``, ...), which ``Path`` would mangle."""
    files: tuple[Path, ...] = ()
    """Image files in order (``images`` only)."""
    pattern_start: int | None = None
    """First index of a printf pattern input."""


@dataclass(frozen=True)
class OutputSpec:
    kind: OutputKind
    path: Path


@dataclass
class JobResult:
    """What a job did, for the CLI's summary and ``--benchmark``."""

    frames: int
    seconds: float
    model_seconds: float
    pipeline: PipelineResult | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_fps(self) -> float:
        return self.frames / self.model_seconds if self.model_seconds > 0 else 0.0


def _printf_files(pattern: str) -> tuple[list[Path], int]:
    # FFmpeg's image2 looks for the first index in 0..4; we do the same, then take indices until the first gap.
    for start in range(5):
        if os.path.exists(pattern % start):
            files, i = [], start
            while os.path.exists(pattern % i):
                files.append(Path(pattern % i))
                i += 1
            return files, start
    return [], 0


def _check_no_gap(pattern: Path, files: list[Path]) -> None:
    """Refuse a numbered sequence with a hole in it: image2 (and so FFmpeg) stops at the first missing number, which
    would drop every frame after the hole without a word."""
    match = _PRINTF.search(pattern.name)
    assert match is not None  # classify_input only calls this for printf patterns
    digits = re.sub(r"\D", "", match.group()) or "1"
    number = rf"(\d{{{int(digits)},}})" if match.group().startswith("%0") else r"(\d+)"
    name = re.compile(re.escape(pattern.name[:match.start()]) + number + re.escape(pattern.name[match.end():]) + "$")
    last = int(name.match(files[-1].name).group(1))  # type: ignore[union-attr]
    folder = pattern.parent if str(pattern.parent) else Path(".")
    later = sorted(p.name for p in folder.iterdir() if (m := name.match(p.name)) and int(m.group(1)) > last)
    if later:
        raise RtAnimeError(f"input pattern {pattern}: {pattern.name % (last + 1)} is missing, so the sequence would "
                           f"stop after {files[-1].name} although {len(later)} more file(s) match ({later[0]}, …); "
                           "number them without gaps, or give the folder as INPUT")


def _output_name(path: Path) -> str:
    # A folder output keeps each input's name; greyscale-only formats cannot hold the colour result, so PNG.
    return path.name if path.suffix.lower() in IMAGE_SUFFIXES else f"{path.stem}.png"


def _is_still_gif(path: Path) -> bool:
    if path.suffix.lower() != ".gif":
        return False
    try:
        with av.open(str(path)) as container:
            return sum(1 for _, _ in zip(range(2), container.decode(video=0))) == 1
    except (av.error.FFmpegError, IndexError, ValueError):
        return False  # the video path reports what is wrong with it


def classify_input(text: str) -> InputSpec:
    """Decide what INPUT is: a video, an image, or an image sequence (folder or printf pattern); a URL is a video."""
    if "://" in text:  # as the webcam's --device and the decoder tell a URL
        return InputSpec("video", text)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_IMAGE_SUFFIXES)
        if not files:
            raise RtAnimeError(f"input folder {path} contains no images ({', '.join(INPUT_IMAGE_SUFFIXES)})")
        return InputSpec("images", path, tuple(files))
    if not path.exists() and _PRINTF.search(path.name):
        files, start = _printf_files(str(path))
        if not files:
            raise RtAnimeError(f"input pattern {path} matches no file (tried first indices 0 to 4)")
        _check_no_gap(path, files)
        return InputSpec("images", path, tuple(files), pattern_start=start)
    if not path.exists():
        raise RtAnimeError(f"input {path} does not exist")
    if path.suffix.lower() in INPUT_IMAGE_SUFFIXES:
        return InputSpec("image", path)
    return InputSpec("video", path)


def classify_output(text: str) -> OutputSpec:
    """Decide what OUTPUT is by its extension, or an existing directory; no extension means a folder."""
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir() or text.endswith(("/", os.sep)) or not suffix:
        return OutputSpec("folder", path)
    if suffix in VIDEO_SUFFIXES:
        return OutputSpec("video", path)
    if suffix in IMAGE_SUFFIXES:
        return OutputSpec("image", path)
    raise RtAnimeError(f"output {path}: unknown extension {suffix!r}; use a video ({', '.join(VIDEO_SUFFIXES[:5])}, "
                       f"…), an image ({', '.join(IMAGE_SUFFIXES)}) or a folder")


def parse_fps(text: str) -> Fraction:
    """``25``, ``29.97`` or ``30000/1001`` → an exact frame rate (29.97 means NTSC's 30000/1001)."""
    try:
        fps = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"--fps {text!r}: expected a positive number or ratio like 25, 29.97 or 30000/1001") from None
    if fps <= 0 or fps > 1000:
        raise ValueError(f"--fps {text!r}: must be in (0, 1000]")
    for ntsc in (24, 30, 60, 120):  # decimal spellings of the NTSC rates
        if abs(fps - Fraction(ntsc * 1000, 1001)) < Fraction(1, 200):
            return Fraction(ntsc * 1000, 1001)
    return fps.limit_denominator(1001)


def _same_images(files: tuple[Path, ...]) -> tuple[int, int]:
    """An image sequence becomes a video only when every image has one format and one size (no silent resize)."""
    import av

    suffixes = {p.suffix.lower() for p in files}
    if len(suffixes) > 1:
        raise RtAnimeError(f"image sequence mixes formats {sorted(suffixes)}; a video needs one format and one size")
    first = None
    for path in files:
        try:
            with av.open(str(path)) as c:
                stream = c.streams.video[0]
                size = (stream.codec_context.width, stream.codec_context.height)
        except (av.error.FFmpegError, IndexError):
            raise RtAnimeError(f"{path} is not a readable image") from None
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise RtAnimeError(f"image sequence mixes sizes: {first[0].name} is {first[1][0]}x{first[1][1]}, "
                               f"{path.name} is {size[0]}x{size[1]}; a video needs one size (resize them, or write "
                               "to a folder, which keeps each image's size)")
    assert first is not None
    return first[1]


def stylize_images(pairs: list[tuple[Path, Path]], translate: Callable[[torch.Tensor], torch.Tensor], *,
                   config: PipelineConfig, progress: Callable[[int, int | None], None] | None = None) -> JobResult:
    """Stylize each input image into its output path (written via a temporary file, then renamed)."""
    start, model_seconds = time.perf_counter(), 0.0
    for i, (src, dst) in enumerate(pairs):
        rgb = read_image(src)
        x = image_to_tensor(rgb)
        h, w = x.shape[-2:]
        output_hw = (config.size[1], config.size[0]) if config.size else (h, w)
        geometry = Geometry.plan((h, w), output_hw=output_hw, max_side=config.max_side,
                                 size_multiple=config.size_multiple)
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = geometry.from_model(translate(geometry.to_model(x)).float().cpu())
        model_seconds += time.perf_counter() - t0
        image = tensor_to_image(y)
        alpha = read_alpha(src, rgb.shape[:2]) if dst.suffix.lower() in ALPHA_SUFFIXES else None
        if alpha is not None:  # the model draws colour only; the picture keeps its own transparency
            import cv2

            alpha = cv2.resize(alpha, image.shape[1::-1], interpolation=cv2.INTER_AREA) \
                if alpha.shape != image.shape[:2] else alpha
            image = np.dstack([image, alpha])
        write_atomic(dst, lambda tmp: write_image(tmp, image))
        if progress is not None:
            progress(i + 1, len(pairs))
    return JobResult(frames=len(pairs), seconds=time.perf_counter() - start, model_seconds=model_seconds)


def run_job(source: InputSpec, target: OutputSpec, translate: Callable[[torch.Tensor], torch.Tensor], *,
            config: PipelineConfig, encode: EncodeConfig, fps: Fraction | None = None,
            progress: Callable[[int, int | None], None] | None = None) -> JobResult:
    """Dispatch one INPUT → OUTPUT job."""
    if source.kind == "video" and target.kind in ("image", "folder") and isinstance(source.path, Path) \
            and _is_still_gif(source.path):
        source = InputSpec("image", source.path)  # a one-frame GIF is a picture, as every viewer shows it
    if source.kind == "video":
        if target.kind != "video":
            raise RtAnimeError(f"input {source.path} is a video, so the output must be a video file "
                               f"({', '.join(VIDEO_SUFFIXES[:5])}, …), not {'an image' if target.kind == 'image' else 'a folder'}")
        if fps is not None:
            raise ValueError("--fps applies to image sequences only; a video keeps its own timestamps")
        result = run_file(source.path, target.path, translate, config=config, encode=encode, progress=progress)
        return JobResult(frames=result.frames_out, seconds=result.wall_seconds, model_seconds=result.model_seconds,
                         pipeline=result)
    if source.kind == "images" and target.kind == "video":
        if fps is None:
            raise ValueError(f"turning images into a video needs a frame rate: add --fps (e.g. --fps 25) for "
                             f"{source.path}")
        _same_images(source.files)
        if source.pattern_start is not None:
            pattern, options = str(source.path), {"start_number": str(source.pattern_start)}
        else:
            escaped = glob.escape(str(source.path))
            pattern, options = f"{escaped}/*{source.files[0].suffix}", {"pattern_type": "glob"}
        options["framerate"] = f"{fps.numerator}/{fps.denominator}"
        result = run_file(pattern, target.path, translate, config=config, encode=encode, progress=progress,
                          input_format="image2", input_options=options)
        if result.frames_out != len(source.files):
            raise RtAnimeError(f"wrote {result.frames_out} frames for {len(source.files)} images in {source.path}")
        return JobResult(frames=result.frames_out, seconds=result.wall_seconds, model_seconds=result.model_seconds,
                         pipeline=result)
    if fps is not None:
        raise ValueError("--fps applies only when writing a video from images")
    if source.kind == "image":
        if target.kind == "video" and target.path.suffix.lower() == ".gif":
            target = OutputSpec("image", target.path)  # a picture in, a still GIF out
        if target.kind == "video":
            raise RtAnimeError(f"input {source.path} is a single image; write an image or a folder, not a video")
        dst = target.path / _output_name(source.path) if target.kind == "folder" else target.path
        pairs = [(source.path, dst)]
    else:
        if target.kind != "folder":
            raise RtAnimeError(f"input {source.path} is an image sequence; write a folder or a video (with --fps), "
                               "not a single image")
        pairs = [(p, target.path / _output_name(p)) for p in source.files]
    for src, dst in pairs:
        if dst.exists() and os.path.samefile(src, dst):
            raise RtAnimeError(f"output {dst} is the input image; choose another output folder or name")
    out_dir = pairs[0][1].parent
    if target.kind == "folder":
        out_dir.mkdir(parents=True, exist_ok=True)
    if not out_dir.is_dir():
        raise RtAnimeError(f"output directory {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK):
        raise RtAnimeError(f"output directory {out_dir} is not writable")
    return stylize_images(pairs, translate, config=config, progress=progress)
