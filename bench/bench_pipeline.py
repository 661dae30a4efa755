"""End-to-end vs model-only throughput of ``rt-anime INPUT OUTPUT`` (results go to BENCHMARKS.md).

For each model and resolution, on one generated clip (moving shapes and texture, H.264 with AAC audio):

* **model-only**: the backend on already-decoded, already-converted frames, batch 1 (median per frame);
* **end-to-end**: ``realtime.jobs.run_job`` — decode, convert, model, convert, x264 encode, mux, audio copy, in
  three threads with bounded queues;
* **naive baseline** in the same process: OpenCV ``VideoCapture`` → model → ``VideoWriter('mp4v')``, one frame at a
  time in one thread (what AnimeGAN-style video scripts do; it also drops the audio).

    python bench/bench_pipeline.py [--frames 16] [--sizes 640x360,1280x720]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import realtime  # noqa: E402
from bench._machine import machine_facts, sgemm_gflops  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402
from realtime.jobs import classify_input, classify_output, run_job  # noqa: E402
from realtime.pipeline import EncodeConfig, PipelineConfig  # noqa: E402

MODELS = {
    "nijigan-lite euler:1": ("nijigan-lite", {}),
    "nijigan euler:1": ("nijigan", {"solver": "euler:1"}),
    "nijigan rk4:1": ("nijigan", {"solver": "rk4:1"}),
    "scenimefy (cut-resnet)": ("cut-resnet", {}),
}
SIZES = {"640x360": (640, 360), "1280x720": (1280, 720)}


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> None:
    """Moving discs over a textured gradient, with a sine-wave AAC track."""
    rng = np.random.default_rng(0)
    texture = (rng.random((height, width, 3)) * 40).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        for i in range(frames):
            img = np.stack([xx / width * 200, yy / height * 200, np.full_like(xx, 120)], -1) + texture
            for k in range(3):
                cx, cy = (0.2 + 0.25 * k + 0.01 * i) * width, (0.5 + 0.2 * np.sin(i / 5 + k)) * height
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < (height / 8) ** 2] = (255 - 60 * k, 80 * k, 40)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples = int(48000 * frames / fps)
        t = np.arange(samples) / 48000
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="flt",
                                            layout="mono")
            af.sample_rate, af.pts, af.time_base = 48000, start, Fraction(1, 48000)
            out.mux(audio.encode(af))
        out.mux(audio.encode())


def naive_baseline(src: Path, dst: Path, translate) -> tuple[int, float]:
    import cv2

    start = time.perf_counter()
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        x = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.inference_mode():
            y = translate(x)
        rgb = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        if writer is None:
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), int(fps), (rgb.shape[1], rgb.shape[0]))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        n += 1
    cap.release()
    writer.release()
    return n, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--preset", default="veryfast", help="x264 preset for the end-to-end runs")
    args = parser.parse_args(argv)
    facts = machine_facts()
    print(f"# machine: {facts['cpu']}, {facts['logical_cpus']} CPUs, torch {facts['torch']} "
          f"({facts['torch_threads']} threads); sgemm 2048²: {sgemm_gflops():.1f} GFLOP/s; {args.frames} frames, "
          f"x264 preset {args.preset}, backend torch (channels_last), batch 1", flush=True)
    print("| model | size | model-only fps | end-to-end fps | e2e / model-only | naive baseline fps | e2e / naive | "
          "stage busy s (decode / translate / encode) |")
    print("|---|---|---:|---:|---:|---:|---:|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = SIZES[size]
            clip = Path(tmp) / f"clip_{size}.mp4"
            make_clip(clip, w, h, args.frames)
            for label in args.models.split(","):
                name, config = MODELS[label]
                model = realtime.create_generator(name, **config).eval()
                backend = make_backend(model, BackendConfig(name="torch"))
                x = torch.rand(1, 3, h, w) * 2 - 1
                backend(x)  # warm-up
                times = []
                for _ in range(min(args.frames, 8)):
                    t0 = time.perf_counter()
                    backend(x)
                    times.append(time.perf_counter() - t0)
                model_fps = 1 / statistics.median(times)
                out = Path(tmp) / "out.mp4"
                result = run_job(classify_input(str(clip)), classify_output(str(out)), backend,
                                 config=PipelineConfig(size_multiple=model.size_multiple),
                                 encode=EncodeConfig(preset=args.preset))
                assert result.frames == args.frames
                n, naive_s = naive_baseline(clip, Path(tmp) / "naive.mp4", backend)
                naive_fps = n / naive_s
                st = result.pipeline.stage_seconds
                print(f"| {label} | {size} | {model_fps:.2f} | {result.fps:.2f} | {result.fps / model_fps:.2f} | "
                      f"{naive_fps:.2f} | {result.fps / naive_fps:.2f} | {st.get('decode', 0):.1f} / "
                      f"{st.get('translate', 0):.1f} / {st.get('encode', 0):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
