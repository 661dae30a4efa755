"""What rt-anime does on a CUDA GPU (results go to BENCHMARKS.md, "GPU").

One run measures, in one process:

* **peaks**: dense matmul TFLOP/s at fp32 (TF32 off), TF32 and fp16 -- the references the model rows report against;
* **models**: model-only median ms per call and fps of each generator through the project's own backends
  (``realtime.backends``: torch fp32 / fp16, channels-last, TorchScript) plus a CUDA-graph replay of the same module
  (a what-if: the backends do not capture graphs), conv TFLOP/s achieved and its fraction of the matching peak;
* **kernels**: the CuPy frame <-> tensor kernels against PyAV's CPU conversion at 1080p (median ms, max LSB
  difference from the torch specification);
* **end-to-end**: ``realtime.jobs.run_job`` (decode, convert, model on the GPU, convert, x264, mux, audio copy) on a
  generated 1080p clip, next to the model-only fps of the same backend; and whether the bundled FFmpeg's
  ``h264_nvenc`` encoder opens on this GPU;
* **training**: seconds per iteration of ``rt-anime train`` recipes on the GPU (a few iterations on generated photos).

Each section runs on its own; a failure is recorded with its error and the rest go on. Without CUDA, ``--quick``
runs the same code on the CPU at toy sizes (to check the script before spending GPU time).

    python bench/bench_gpu.py --out results/          # on the GPU machine, ~3 min on an H200
    python bench/bench_gpu.py --quick --out /tmp/q    # CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import export  # noqa: E402
import realtime  # noqa: E402
from bench._machine import machine_facts  # noqa: E402
from bench.bench_models import conv_macs  # noqa: E402
from bench.bench_pipeline import make_clip  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402

logger = logging.getLogger("bench_gpu")

MODELS = {  # label: (name, config); config None = bundled weights
    "niji (bundled)": ("niji", None),
    "niji-lite (bundled)": ("niji-lite", None),
    "nijigan rk4:1": ("nijigan", {"solver": "rk4:1"}),
    "scenimefy (cut-resnet)": ("cut-resnet", {}),
    "animeganv2": ("animeganv2", {}),
}
# variant: (backend name, precision, channels_last, CUDA graph)
VARIANTS = {
    "torch fp32": ("torch", "fp32", False, False),
    "torch fp16": ("torch", "fp16", False, False),
    "torch fp16 NHWC": ("torch", "fp16", True, False),
    "torchscript fp16 NHWC": ("torchscript", "fp16", True, False),
    "graph fp16 NHWC": ("torch", "fp16", True, True),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, *, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def peaks(device: torch.device, n: int) -> dict:
    out = {}
    for label, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                               ("fp16", torch.float16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms = median_ms(lambda: a @ b, device, runs=10)
        out[label] = 2 * n ** 3 / (ms / 1e3) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    return out


def graphed(backend, x: torch.Tensor):
    """Capture one forward of the backend's module into a CUDA graph; replay copies the input in first."""
    module, dtype, fmt = backend.module, backend.dtype, backend.memory_format
    static_in = x.to(dtype).contiguous(memory_format=fmt).clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):
            module(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = module(static_in)

    def run(inp: torch.Tensor) -> torch.Tensor:
        static_in.copy_(inp)
        graph.replay()
        return static_out.float()

    return run


def build(name: str, config: dict | None):
    return (realtime.load_generator(name) if config is None else realtime.create_generator(name, **config)).eval()


def bench_models(device, models, sizes, batches, runs, peak) -> list[dict]:
    rows = []
    for label in models:
        name, config = MODELS[label]
        model = build(name, config)
        for (w, h) in sizes:
            m = model.size_multiple
            hh, ww = -(-h // m) * m, -(-w // m) * m
            for n in batches:
                x = torch.rand(n, 3, hh, ww, device=device) * 2 - 1
                ref_module = export.unroll(copy.deepcopy(model)).to(device)
                macs = conv_macs(ref_module, x)
                with torch.inference_mode():
                    reference = ref_module(x)
                del ref_module
                for variant, (backend_name, precision, cl, graph) in VARIANTS.items():
                    if n > 1 and variant not in ("torch fp16 NHWC", "graph fp16 NHWC"):
                        continue
                    row = {"model": label, "size": f"{w}x{h}", "batch": n, "variant": variant}
                    try:
                        backend = make_backend(model, BackendConfig(name=backend_name, device=str(device),
                                                                    precision=precision, channels_last=cl))
                        fn = graphed(backend, x) if graph and device.type == "cuda" else backend
                        with torch.inference_mode():
                            out = fn(x)
                            err = (out - reference).abs().max().item()
                            ms = median_ms(lambda: fn(x), device, runs=runs)
                        key = "fp32" if precision == "fp32" else "fp16"
                        tflops = 2 * macs / (ms / 1e3) / 1e12
                        row.update(ms=round(ms, 3), fps=round(n * 1e3 / ms, 1), gmac_per_frame=round(macs / n / 1e9, 1),
                                   tflops=round(tflops, 2), frac_peak=round(tflops / peak.get(key, float("nan")), 3),
                                   max_abs_err_vs_fp32=round(err, 4))
                        del backend, fn
                    except Exception as exc:  # one variant failing must not hide the others
                        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    rows.append(row)
                    logger.info("%s", row)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    return rows


def bench_kernels(device, size, runs) -> list[dict]:
    import av

    import kernels

    w, h = size
    rng = np.random.default_rng(0)
    rgb = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    rows = []
    for fmt in ("yuv420p", "nv12"):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
        reference = kernels.frame_to_tensor(frame, method="reference")
        t_dev = reference.to(device)
        cases = {
            "in pyav (CPU)": (lambda: kernels.frame_to_tensor(frame, method="pyav"), torch.device("cpu")),
            "out pyav (CPU)": (lambda: kernels.tensor_to_frame(reference, format=fmt, method="pyav"),
                               torch.device("cpu")),
        }
        if device.type == "cuda":
            cases["in cuda (upload + kernel)"] = (lambda: kernels.frame_to_tensor(frame, device=device,
                                                                                   method="cuda"), device)
            cases["out cuda (kernel + download)"] = (lambda: kernels.tensor_to_frame(t_dev, format=fmt,
                                                                                      method="cuda"), device)
        for label, (fn, dev) in cases.items():
            row = {"format": fmt, "size": f"{w}x{h}", "case": label}
            try:
                ms = median_ms(fn, dev, runs=runs)
                row["ms"] = round(ms, 3)
                if label.startswith("in"):
                    got = fn().float().cpu()
                    row["max_lsb_vs_spec"] = round(((got - reference).abs().max() * 127.5).item(), 2)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            logger.info("%s", row)
    return rows


# End-to-end variants: where the frames are converted, the interpreter's GIL switch interval, CUDA-graph replay.
E2E_VARIANTS = {
    "cpu convert": {"convert": "cpu"},  # the pipeline before session 15: float32 RGB made on the CPU, then copied up
    "gpu convert": {"convert": "gpu"},  # 8-bit planes uploaded, CuPy conversion (the default since session 15)
    "gpu convert, switch 0.5 ms": {"convert": "gpu", "switch": 0.0005},
    "gpu convert, CUDA graph": {"convert": "gpu", "graph": True},
}


class _Graphed:
    """A backend whose forward is a CUDA-graph replay for one input shape (built on the first call)."""

    def __init__(self, backend) -> None:
        self.backend, self.name, self.device, self._run = backend, backend.name + "+graph", backend.device, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._run is None:
            self._run = graphed(self.backend, x)
        return self._run(x)


def _decode_loop(clip: Path, device: torch.device, convert: str, stop) -> None:
    """Decode and convert the clip over and over (the decode stage's CPU work, without the pipeline)."""
    import av

    from realtime.pipeline.convert import _frame_to_tensor

    target = device if convert == "gpu" else None
    while not stop.is_set():
        with av.open(str(clip)) as container:
            for vf in container.decode(video=0):
                _frame_to_tensor(vf, target)
                if stop.is_set():
                    return


def _encode_loop(path: Path, width: int, height: int, stop) -> None:
    """Encode one picture with x264 veryfast over and over (the encode stage's CPU work, without the pipeline)."""
    import av

    picture = av.VideoFrame.from_ndarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8),
                                         format="rgb24").reformat(format="yuv420p")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "veryfast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        i = 0
        while not stop.is_set():
            picture.pts = i
            out.mux(stream.encode(picture))
            i += 1
        out.mux(stream.encode(None))


def _min_frame_psnr(a: Path, b: Path) -> float:
    import av

    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        pairs = zip(ca.decode(video=0), cb.decode(video=0), strict=True)
        worst = float("inf")
        for fa, fb in pairs:
            d = fa.to_ndarray(format="rgb24").astype(np.float64) - fb.to_ndarray(format="rgb24")
            worst = min(worst, 10 * np.log10(255.0**2 / max(float((d**2).mean()), 1e-12)))
    return worst


def bench_end_to_end(device, size, frames, tmp: Path) -> list[dict]:
    import threading
    from unittest import mock

    from realtime.jobs import classify_input, classify_output, run_job
    from realtime.pipeline import EncodeConfig, PipelineConfig, convert, decode

    w, h = size
    clip = tmp / "clip.mp4"
    make_clip(clip, w, h, frames)
    rows = []
    cpu_convert = lambda vf, device=None: convert._frame_to_tensor(vf)  # noqa: E731
    for label, name in (("niji-lite (bundled)", "niji-lite"), ("niji (bundled)", "niji")):
        model = build(name, None)
        precision = "fp16" if device.type == "cuda" else "fp32"
        backend = make_backend(model, BackendConfig(name="torch", device=str(device), precision=precision))
        x = torch.rand(1, 3, h, w, device=device) * 2 - 1
        idle_ms = median_ms(lambda: backend(x), device, runs=10)
        # Model-only while another thread decodes and converts, or encodes: how much each stage's work slows it.
        probes = {"a cpu-convert decode thread": (_decode_loop, (clip, device, "cpu")),
                  "a gpu-convert decode thread": (_decode_loop, (clip, device, "gpu")),
                  "an x264 encode thread": (_encode_loop, (tmp / "probe.mp4", w, h))}
        for probe, (target, probe_args) in probes.items():
            stop = threading.Event()
            worker = threading.Thread(target=target, args=(*probe_args, stop), daemon=True)
            worker.start()
            try:
                loaded_ms = median_ms(lambda: backend(x), device, runs=10)
            finally:
                stop.set()
                worker.join()
            rows.append({"model": label, "size": f"{w}x{h}", "probe": f"model-only beside {probe}",
                         "ms": round(loaded_ms, 2), "idle_ms": round(idle_ms, 2)})
            logger.info("%s", rows[-1])
        reference = None
        for variant, spec in E2E_VARIANTS.items():
            if spec.get("graph") and device.type != "cuda":
                continue
            row = {"model": label, "size": f"{w}x{h}", "batch": 1, "frames": frames, "variant": variant,
                   "model_only_fps": round(1e3 / idle_ms, 1)}
            switch = sys.getswitchinterval()
            try:
                translate = _Graphed(backend) if spec.get("graph") else backend
                if "switch" in spec:
                    sys.setswitchinterval(spec["switch"])
                patch = (mock.patch.object(decode, "_frame_to_tensor", cpu_convert) if spec["convert"] == "cpu"
                         else contextlib.nullcontext())
                out = tmp / f"out_{name}_{len(rows)}.mp4"
                with patch:
                    result = run_job(classify_input(str(clip)), classify_output(str(out)), translate,
                                     config=PipelineConfig(size_multiple=model.size_multiple, batch_size=1,
                                                           device=str(device)),
                                     encode=EncodeConfig(preset="veryfast", overwrite=True))
                st = result.pipeline.stage_seconds
                if reference is None:
                    reference = out
                else:  # a stream race would show as a frame unlike the reference run's
                    row["min_frame_psnr_vs_first"] = round(float(_min_frame_psnr(reference, out)), 1)
                row.update(e2e_fps=round(result.fps, 1), frames_out=result.frames,
                           stage_busy_s={k: round(v, 2) for k, v in st.items()},
                           model_ms_per_frame=round(1e3 * result.model_seconds / max(result.frames, 1), 2))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                sys.setswitchinterval(switch)
            rows.append(row)
            logger.info("%s", row)
    return rows


def nvenc_check(tmp: Path) -> dict:
    import av

    row = {"h264_nvenc_in_bundled_ffmpeg": "h264_nvenc" in av.codecs_available}
    try:
        with av.open(str(tmp / "nvenc.mp4"), "w") as out:
            stream = out.add_stream("h264_nvenc", rate=25)
            stream.width, stream.height, stream.pix_fmt = 256, 128, "yuv420p"
            for i in range(5):
                img = np.full((128, 256, 3), 20 * i, np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(stream.encode())
        row["encodes"] = True
    except Exception as exc:
        row["encodes"] = False
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def bench_training(device, iters, tmp: Path, timeout: float, overrides: list[str]) -> list[dict]:
    """Seconds per iteration of the bundled recipes on this device, from the trainer's own log."""
    photos = tmp / "photos"
    photos.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    import cv2

    for i in range(12):
        img = cv2.GaussianBlur((rng.random((320, 480, 3)) * 255).astype(np.uint8), (0, 0), 6)
        cv2.imwrite(str(photos / f"p{i}.png"), cv2.resize(img, (480, 320)))
    # paper-gpu last: dopri5 on an untrained ODE takes many steps (on the CPU it ran out of 23 GB at 256^2).
    runs = [("finish-cpu", "nijigan", []), ("default-cpu", "nijigan-lite", []),
            ("paper-gpu", "nijigan", ["--teacher", "algorithmic"])]
    rows = []
    for recipe, preset, extra in runs:
        out = tmp / f"train-{recipe}-{preset}"
        cmd = [sys.executable, "-m", "realtime", "train", "--config", recipe, "--preset", preset, "--photos",
               str(photos), "--max-iters", str(iters), "--out", str(out), "--set", f"run.device={device}",
               "--quiet", *extra, *(a for o in overrides for a in ("--set", o))]
        row = {"recipe": recipe, "preset": preset, "iters": iters, "overrides": overrides}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            row["error"] = f"no result within {timeout} s"
            rows.append(row)
            continue
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            row["error"] = f"exit {proc.returncode}: " + (proc.stdout + proc.stderr)[-600:]
        else:
            log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
            secs = [r["sec"] for r in log if "sec" in r]
            row["sec_per_iter_median"] = round(statistics.median(secs[2:] or secs), 3)
            last = [r for r in log if "sec" in r][-1]
            row["last_iter"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}
        rows.append(row)
        logger.info("%s", row)
    return rows


def section(results: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"error": traceback.format_exc()[-1500:]}
    logger.info("section %s: %.1f s", name, time.perf_counter() - t0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json")
    parser.add_argument("--quick", action="store_true", help="toy sizes (a CPU smoke run)")
    parser.add_argument("--sections", default="peaks,models,kernels,nvenc,e2e,train")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated from {list(MODELS)}")
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH (models section)")
    parser.add_argument("--frames", type=int, default=120, help="clip length for the end-to-end section")
    parser.add_argument("--train-iters", type=int, default=12)
    parser.add_argument("--train-timeout", type=float, default=100, help="seconds per training run")
    parser.add_argument("--train-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="recipe override for the training runs (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    quick = args.quick or device.type != "cuda"
    sizes = [(128, 64)] if quick else [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    batches = (1, 2) if quick else (1, 8)
    runs = 2 if quick else args.runs
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"facts": machine_facts(), "device": str(device), "quick": quick}
    try:
        import cupy

        results["facts"]["cupy"] = cupy.__version__
    except Exception as exc:
        results["facts"]["cupy"] = f"unavailable: {type(exc).__name__}"
    if device.type == "cuda":
        results["facts"]["cuda_runtime"] = torch.version.cuda
        results["facts"]["cudnn"] = torch.backends.cudnn.version()
    wanted = args.sections.split(",")
    peak: dict = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        todo = {
            "peaks": lambda: peak.update(peaks(device, 512 if quick else 8192)) or dict(peak),
            "models": lambda: bench_models(device, args.models.split(","), sizes, batches, runs, peak),
            "kernels": lambda: bench_kernels(device, (128, 64) if quick else (1920, 1080), runs),
            "e2e": lambda: bench_end_to_end(device, (128, 64) if quick else (1920, 1080), 8 if quick else args.frames,
                                            tmp),
            "nvenc": lambda: nvenc_check(tmp),
            "train": lambda: bench_training(device, 2 if quick else args.train_iters, tmp,
                                         600 if quick else args.train_timeout, args.train_set),
        }
        for name in wanted:
            section(results, name, todo[name])
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
