"""Live webcam throughput and latency with a video file as the camera (results go to BENCHMARKS.md).

For each model, solver, frame size and model resolution, ``realtime.live.run_webcam`` runs for a fixed time on a
generated 25 fps clip played in real time and looped (the camera stand-in: frames arrive at 25 fps whether or not
the model keeps up, and stale ones are dropped), with no window: "shown" = the stylized frame reached the sink.
Reported: shown fps, capture → shown latency p50/p95, the share of camera frames dropped, and the model's own time
per frame (measured around the backend call, so the gap to 1/fps is conversion, scaling and hand-over).

    python bench/bench_webcam.py [--seconds 20] [--configs all|quick] [--json out.json]

Random weights: speed only depends on the architecture and the solver, not on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import realtime  # noqa: E402
from bench._machine import machine_facts  # noqa: E402
from bench.bench_pipeline import make_clip  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402
from realtime.live import CameraConfig, WebcamConfig, run_webcam  # noqa: E402

# (label, generator, solver, frame size, model max side)
CONFIGS = {
    "quick": [
        ("nijigan-lite", "nijigan-lite", "euler:1", (320, 240), 160),
        ("nijigan-lite", "nijigan-lite", "euler:1", (320, 240), None),
    ],
    "all": [
        ("nijigan-lite", "nijigan-lite", "euler:1", (320, 240), 160),
        ("nijigan-lite", "nijigan-lite", "euler:1", (320, 240), None),
        ("nijigan-lite", "nijigan-lite", "midpoint:1", (320, 240), None),
        ("nijigan-lite", "nijigan-lite", "rk4:1", (320, 240), None),
        ("nijigan-lite", "nijigan-lite", "euler:1", (640, 360), 320),
        ("nijigan-lite", "nijigan-lite", "euler:1", (640, 360), None),
        ("nijigan-lite", "nijigan-lite", "midpoint:1", (640, 360), None),
        ("nijigan", "nijigan", "euler:1", (320, 240), None),
    ],
}


class Timed:
    """Backend wrapper recording the wall time of every model call."""

    def __init__(self, translate) -> None:
        self.translate = translate
        self.seconds: list[float] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        y = self.translate(x)
        self.seconds.append(time.perf_counter() - t0)
        return y


def run_one(clip: Path, generator: str, solver: str, size: tuple[int, int], max_side: int | None,
            seconds: float) -> dict:
    model = realtime.create_generator(generator, solver=solver).eval()
    timed = Timed(make_backend(model, BackendConfig(name="torch", device="cpu")))
    config = WebcamConfig(camera=CameraConfig(device=str(clip), size=size, loop=True), window=False,
                          seconds=seconds, max_side=max_side, size_multiple=model.size_multiple)
    report = run_webcam(config, timed)
    model_side = max_side or max(size)
    return {
        "model": generator, "solver": solver, "size": f"{size[0]}x{size[1]}",
        "model_input": f"{round(size[0] * model_side / max(size))}x{round(size[1] * model_side / max(size))}",
        "seconds": round(report.seconds, 1), "frames": report.frames_shown, "fps": round(report.fps, 2),
        "camera_fps": round(report.camera_fps, 1),
        "latency_p50_ms": None if report.latency_p50 is None else round(1000 * report.latency_p50),
        "latency_p95_ms": None if report.latency_p95 is None else round(1000 * report.latency_p95),
        "dropped_pct": round(100 * report.dropped / max(report.frames_captured, 1), 1),
        "model_ms": round(1000 * statistics.median(timed.seconds[1:] or timed.seconds), 1) if timed.seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="run time per configuration (default 20)")
    parser.add_argument("--configs", choices=sorted(CONFIGS), default="all")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    facts = machine_facts()
    print(f"# {facts['cpu']}, {facts['logical_cpus']} CPUs, torch {facts['torch']} ({facts['torch_threads']} threads)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips: dict[tuple[int, int], Path] = {}
        print("| model | solver | frames | model input | fps | latency p50 / p95 ms | dropped | model ms/frame |")
        print("|---|---|---|---|---:|---:|---:|---:|")
        for label, generator, solver, size, max_side in CONFIGS[args.configs]:
            if size not in clips:
                clips[size] = Path(tmp) / f"cam{size[0]}x{size[1]}.mp4"
                make_clip(clips[size], *size, frames=50)  # moving shapes over texture, 25 fps; looped
            row = run_one(clips[size], generator, solver, size, max_side, args.seconds)
            rows.append(row)
            print(f"| {label} | {solver} | {row['size']} | {row['model_input']} | {row['fps']:.2f} | "
                  f"{row['latency_p50_ms']} / {row['latency_p95_ms']} | {row['dropped_pct']:.0f} % | "
                  f"{row['model_ms']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
