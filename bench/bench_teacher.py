"""Benchmark the algorithmic anime teacher, and draw its before/after contact sheet.

Usage::

    .venv/bin/python bench/bench_teacher.py [--runs 9] [--threads 2] [--sizes 256x256,640x360,1280x720]
                                            [--image PHOTO]
    .venv/bin/python bench/bench_teacher.py --sheet docs/teacher_contact_sheet.png NAME=PHOTO ...

Timing: the median wall time of ``anime_teacher`` per size (after one warm-up call), plus the median time spent in
each stage (measured by wrapping the stage functions, so stage times add up to a little less than the total).
The input is ``--image`` resized to each size (INTER_AREA), or a synthetic photo-like image (smooth colour
gradients, texture noise, hard-edged shapes) when no image is given. Other processes on the machine distort the
numbers: the load average is printed with them.

Sheet: each ``NAME=PHOTO`` is resized so its short side is ``--sheet-side`` px, rendered by the teacher at that
size (the training resolution), and drawn as a labelled before/after pair, two pairs per row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import machine_facts  # noqa: E402
from realtime import teacher  # noqa: E402
from realtime.images import read_image  # noqa: E402
from realtime.teacher import TeacherConfig, anime_teacher  # noqa: E402

STAGES = ("flatten_surface", "grade_lab", "kmeans_palette", "sky_mask", "guided_upsample", "soft_assign",
          "posterize_shading", "tint_tones", "absorb_sky_fringe", "sky_gradient", "line_alpha")


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Gradients + texture noise + hard-edged shapes + a pale-blue top band, RGB uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([90 + 80 * x / width, 120 + 60 * y / height, 70 + 50 * (1 - y / height)], axis=-1)
    img[: height // 3] = (140, 175, 225)
    img += rng.normal(0, 9, img.shape)
    cv2.circle(img, (width // 3, height // 2), max(2, height // 6), (200, 60, 50), -1)
    cv2.rectangle(img, (width // 2, height // 2), (width * 4 // 5, height * 9 // 10), (40, 60, 140), -1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


class StageTimer:
    """Wraps the stage functions ``realtime.teacher`` calls and accumulates their time per call of the teacher."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.originals = {name: getattr(teacher, name) for name in STAGES}

    def __enter__(self) -> StageTimer:
        for name, fn in self.originals.items():
            setattr(teacher, name, self._wrap(name, fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, fn in self.originals.items():
            setattr(teacher, name, fn)

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[name] += time.perf_counter() - t0
        return timed

    def take(self) -> dict[str, float]:
        out, self.current = dict(self.current), defaultdict(float)
        return out


def bench(sizes: list[tuple[int, int]], runs: int, image: np.ndarray | None) -> None:
    config = TeacherConfig()
    print(f"{'size':>10} {'median ms':>10} {'min ms':>8}   stages (median ms)")
    for w, h in sizes:
        rgb = (cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if image is not None
               else synthetic_photo(w, h))
        anime_teacher(rgb, config)  # warm-up: OpenCV thread pool, allocations
        totals, stages = [], defaultdict(list)
        with StageTimer() as timer:
            for _ in range(runs):
                t0 = time.perf_counter()
                anime_teacher(rgb, config)
                totals.append(time.perf_counter() - t0)
                for name, seconds in timer.take().items():
                    stages[name].append(seconds)
        parts = ", ".join(f"{name} {1e3 * statistics.median(v):.0f}" for name, v in stages.items()
                          if statistics.median(v) >= 5e-4)
        print(f"{w}x{h:<6} {1e3 * statistics.median(totals):>10.1f} {1e3 * min(totals):>8.1f}   {parts}")


def contact_sheet(photos: list[tuple[str, Path]], out: Path, *, side: int, config: TeacherConfig) -> None:
    """Labelled before/after pairs, two pairs per row, written as PNG."""
    pairs = []
    for name, path in photos:
        rgb = read_image(path)
        scale = side / min(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        photo = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        t0 = time.perf_counter()
        styled = anime_teacher(photo, config)
        print(f"{name}: {photo.shape[1]}x{photo.shape[0]} in {1e3 * (time.perf_counter() - t0):.0f} ms")
        photo, styled = photo.copy(), styled.copy()
        for img, text in ((photo, name), (styled, "teacher")):
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            cv2.rectangle(img, (0, 0), (tw + 8, th + 9), (20, 20, 20), -1)
            cv2.putText(img, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        pairs.append(np.hstack([photo, np.full((side, 2, 3), 255, np.uint8), styled]))
    width = max(p.shape[1] for p in pairs)
    gap = 8
    rows = []
    for i in range(0, len(pairs), 2):
        row = [cv2.copyMakeBorder(p, 0, 0, 0, width - p.shape[1], cv2.BORDER_CONSTANT, value=(24, 24, 24))
               for p in pairs[i:i + 2]]
        if len(row) == 1:
            row.append(np.full_like(row[0], 24))
        rows.append(np.hstack([row[0], np.full((side, gap, 3), 24, np.uint8), row[1]]))
    sheet = np.vstack([np.vstack([r, np.full((gap, r.shape[1], 3), 24, np.uint8)]) for r in rows])[:-gap]
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"cannot encode {out}")
    out.write_bytes(data.tobytes())
    print(f"{out}: {sheet.shape[1]}x{sheet.shape[0]}, {out.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2, help="OpenCV and torch threads (default 2)")
    parser.add_argument("--sizes", default="256x256,640x360,1280x720")
    parser.add_argument("--image", type=Path, help="photo to time on (default: a synthetic image)")
    parser.add_argument("--sheet", type=Path, metavar="PNG", help="draw a contact sheet of the photos instead")
    parser.add_argument("--sheet-side", type=int, default=224, help="short side of each sheet image (224)")
    parser.add_argument("photos", nargs="*", metavar="NAME=PHOTO", help="labelled photos for --sheet")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    if args.sheet:
        photos = []
        for item in args.photos:
            name, sep, path = item.partition("=")
            if not sep:
                parser.error(f"photo {item!r}: expected NAME=PATH")
            photos.append((name, Path(path)))
        if not photos:
            parser.error("--sheet needs NAME=PHOTO arguments")
        contact_sheet(photos, args.sheet, side=args.sheet_side, config=TeacherConfig())
        return
    facts = machine_facts()
    print(f"cpu: {facts['cpu']} ({facts['logical_cpus']} logical), threads {args.threads}, "
          f"opencv {cv2.__version__}, numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    bench(sizes, args.runs, read_image(args.image) if args.image else None)


if __name__ == "__main__":
    main()
