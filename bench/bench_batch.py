"""Throughput of ``rt-anime batch`` on Ray vs the single-process pipeline, and the per-chunk overheads.

On the same generated inputs (moving texture, VFR-free 25 fps, 1 keyframe per ``--gop`` frames, AAC audio):

* **single-process**: :func:`realtime.pipeline.run_file` on each input in turn (``rt-anime INPUT OUTPUT``), with 1
  and with 2 torch threads;
* **batch**: :func:`realtime.batch.run_batch` on a local Ray started once (``ray.init(num_cpus=2)``), for several
  worker × thread layouts and chunk lengths; wall time includes actor start-up (reported separately);
* **overheads**: keyframe scan per input, actor start, Ray round trip of an actor call, the fixed cost of one chunk
  (open + seek + encoder set-up + flush + Matroska write/read, fitted from chunks of 1–4 GOPs run with an identity
  model), and the join (remux + audio copy) per frame.

    python bench/bench_batch.py [--frames 60] [--inputs 2] [--size 192x108] [--gop 12] [--rounds 3]

Needs the ``cluster`` extra (``pip install 'rt-anime[cluster]'``).
"""

from __future__ import annotations

import argparse
import json
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
from bench._machine import machine_facts  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402
from realtime.batch import BatchConfig, ChunkTask, plan_input, run_batch, run_chunk  # noqa: E402
from realtime.batch.join import ChunkFile, join_chunks  # noqa: E402
from realtime.pipeline import EncodeConfig, PipelineConfig, run_file  # noqa: E402


def make_input(path: Path, width: int, height: int, frames: int, gop: int, seed: int) -> Path:
    """A drifting noise texture (incompressible enough to cost real encode time) with a sine AAC track."""
    rng = np.random.default_rng(seed)
    texture = (rng.random((height * 2, width * 2, 3)) * 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25, options={"g": str(gop), "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"
        for i in range(frames):
            y, x = (i * 2) % height, (i * 3) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y:y + height, x:x + width]),
                                               format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(int(48000 * frames / 25)) / 48000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(samples), 1024):
            af = av.AudioFrame.from_ndarray(samples[None, k:k + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 48000, k, Fraction(1, 48000)
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    return path


def single_process(inputs: list[Path], model, threads: int, work: Path, encode: EncodeConfig) -> dict:
    torch.set_num_threads(threads)
    backend = make_backend(model, BackendConfig(device="cpu", threads=threads))
    config = PipelineConfig(size_multiple=model.size_multiple)
    t0, frames, model_s = time.perf_counter(), 0, 0.0
    for i, path in enumerate(inputs):
        result = run_file(path, work / f"single-{threads}-{i}.mkv", backend, config=config, encode=encode)
        frames += result.frames_out
        model_s += result.model_seconds
    wall = time.perf_counter() - t0
    return {"layout": f"single process, {threads} thread(s)", "frames": frames, "wall_s": wall,
            "fps": frames / wall, "model_ms_per_frame": 1000 * model_s / frames}


def batch(inputs: list[Path], model, work: Path, encode: EncodeConfig, *, workers: int, threads: int,
          chunk_seconds: float, tag: str) -> dict:
    out = work / f"batch-{tag}"
    summary = run_batch(inputs, out, model, encode=encode,
                        pipeline=PipelineConfig(size_multiple=model.size_multiple),
                        batch=BatchConfig(ray="local", workers=workers, threads=threads,
                                          chunk_seconds=chunk_seconds))
    d = summary.to_dict()
    assert d["ok"], d
    start = d["timings"].get("actor_start", 0.0)
    chunks = sum(i["chunks"] for i in d["inputs"])
    return {"layout": f"batch, {workers} worker(s) × {threads} thread(s)", "chunk_s": chunk_seconds,
            "chunks": chunks, "frames": d["frames"], "wall_s": summary.seconds, "fps": d["frames"] / summary.seconds,
            "actor_start_s": start, "fps_after_start": d["frames"] / max(summary.seconds - start, 1e-9),
            "join_s": d["timings"].get("join", 0.0), "plan_s": d["timings"].get("plan", 0.0)}


def chunk_overhead(path: Path, work: Path, gop: int, encode: EncodeConfig) -> dict:
    """Fit ``seconds = a + b·frames`` over chunks of 1, 2 and 4 GOPs with an identity model (no model cost)."""
    torch.set_num_threads(1)
    config = PipelineConfig(size_multiple=4)
    xs, ys = [], []
    for gops in (1, 2, 4):
        plan = plan_input(path, work / "x.mkv", chunk_seconds=gops * gop / 25 - 1e-3)
        for chunk in plan.chunks[1:-1][:6]:  # whole chunks only (the first and last may be partial)
            task = ChunkTask(input_path=str(path), name="x.mkv", chunk=chunk, pipeline=config, encode=encode)
            t0 = time.perf_counter()
            run_chunk(task, lambda x: x, workdir=work)
            xs.append(chunk.frames)
            ys.append(time.perf_counter() - t0)
    b, a = np.polyfit(xs, ys, 1)
    return {"fixed_ms_per_chunk": 1000 * a, "io_ms_per_frame": 1000 * b, "chunks_timed": len(xs)}


def join_cost(path: Path, work: Path, gop: int, encode: EncodeConfig) -> dict:
    """Keyframe scan and join (remux + audio copy) of a long input, in chunks of 1 and 4 GOPs."""
    config = PipelineConfig(size_multiple=4)
    out: dict = {}
    t0 = time.perf_counter()
    for _ in range(3):
        plan = plan_input(path, work / "joined.mkv", chunk_seconds=gop / 25 - 1e-3)
    out["scan_ms"] = 1000 * (time.perf_counter() - t0) / 3
    out["scan_us_per_packet"] = 1000 * out["scan_ms"] / plan.frames
    out["frames"] = plan.frames
    for gops in (1, 4):
        plan = plan_input(path, work / "joined.mkv", chunk_seconds=gops * gop / 25 - 1e-3)
        files = []
        for chunk in plan.chunks:
            task = ChunkTask(input_path=str(path), name="joined.mkv", chunk=chunk, pipeline=config, encode=encode)
            result = run_chunk(task, lambda x: x, workdir=work)
            p = work / f"j{chunk.index}.mkv"
            p.write_bytes(result.data)
            files.append(ChunkFile(index=chunk.index, path=p, pts=result.pts, reorder=result.reorder))
        runs = []
        for _ in range(3):
            (work / "joined.mkv").unlink(missing_ok=True)
            t0 = time.perf_counter()
            join_chunks(plan, files, pipeline=config, encode=encode)
            runs.append(time.perf_counter() - t0)
        join = statistics.median(runs)
        out[f"join_ms_{len(plan.chunks)}_chunks"] = 1000 * join
        out[f"join_us_per_frame_{len(plan.chunks)}_chunks"] = 1e6 * join / plan.frames
    return out


def ray_round_trip() -> dict:
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def echo(self, data: bytes) -> int:
            return len(data)

    t0 = time.perf_counter()
    actor = Echo.remote()
    ray.get(actor.echo.remote(b""))
    start = time.perf_counter() - t0
    out = {"bare_actor_start_s": start}
    for size in (0, 1 << 20):
        payload = b"x" * size
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            ray.get(actor.echo.remote(payload))
            times.append(time.perf_counter() - t0)
        out[f"call_ms_{size >> 20}MiB"] = 1000 * statistics.median(times)
    ray.kill(actor)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames per input (default 60)")
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--size", default="192x108")
    parser.add_argument("--gop", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every layout (medians)")
    parser.add_argument("--long-frames", type=int, default=1500, help="frames of the input for scan/join costs")
    args = parser.parse_args()
    import ray

    width, height = (int(v) for v in args.size.split("x"))
    encode = EncodeConfig(crf=18, preset="veryfast")
    torch.manual_seed(0)
    model = realtime.create_generator("nijigan-lite").eval()
    facts = machine_facts()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = [make_input(work / f"in{i}.mkv", width, height, args.frames, args.gop, i) for i in range(args.inputs)]
        long_input = make_input(work / "long.mkv", width, height, args.long_frames, args.gop, 99)
        overhead = chunk_overhead(long_input, work, args.gop, encode)
        print(json.dumps(overhead), flush=True)
        joining = join_cost(long_input, work, args.gop, encode)
        print(json.dumps(joining), flush=True)
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        trip = ray_round_trip()
        print(json.dumps(trip), flush=True)
        # Interleaved rounds: the background load drifts, so every layout sees the same mix of it.
        for r in range(args.rounds):
            for threads in (1, 2):
                row = single_process(inputs, model, threads, work, encode)
                runs.setdefault(row["layout"], []).append(row)
                print(json.dumps(row), flush=True)
            for workers, threads in ((1, 1), (2, 1), (1, 2)):
                row = batch(inputs, model, work, encode, workers=workers, threads=threads, chunk_seconds=1.0,
                            tag=f"{r}-{workers}-{threads}")
                runs.setdefault(row["layout"], []).append(row)
                print(json.dumps(row), flush=True)
        ray.shutdown()
    report = {"machine": facts, "inputs": f"{args.inputs} × {args.frames} frames {width}x{height}, GOP {args.gop}",
              "model": "nijigan-lite (random weights)", "ray_start_s": ray_start, "ray": trip,
              "chunk_overhead": overhead, "join": joining, "runs": runs}
    print(json.dumps(report, indent=2))
    print("\n| layout | chunks | frames/s (wall, median) | frames/s after actor start (median) | actor start s | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for layout, rows in runs.items():
        fps = statistics.median(r["fps"] for r in rows)
        steady = statistics.median(r.get("fps_after_start", r["fps"]) for r in rows)
        start = statistics.median(r.get("actor_start_s", 0.0) for r in rows)
        each = ", ".join(f"{r['fps']:.2f}" for r in rows)
        print(f"| {layout} | {rows[0].get('chunks', '—')} | {fps:.2f} | {steady:.2f} | {start:.1f} | {each} |")


if __name__ == "__main__":
    main()
