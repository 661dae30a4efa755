"""Model-only throughput of the generators on each inference backend (results go to BENCHMARKS.md).

For each model × resolution × backend: median wall time of ``--runs`` single-frame forwards after warm-up, fps, the
conv GFLOP/s achieved (conv MACs counted with hooks; IN, pads and activations are not counted, as in
../shared/reference/models.md §8) and that as a fraction of the machine's sgemm GFLOP/s. The sgemm reference is
measured again right before each model × size (the shared VMs this runs on drift by 2× over minutes, so one
number per run would mislead).

    python bench/bench_models.py                  # full table (about 40 min on 2 cores)
    python bench/bench_models.py --quick          # 256x256, NijiGAN lite and full, 2 backends (~30 s)
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import export  # noqa: E402
import realtime  # noqa: E402
from bench._machine import machine_facts, sgemm_gflops, timed  # noqa: E402

MODELS = {  # label: (generator name, config); config None = the bundled weights of that name (realtime.load_generator)
    "nijigan euler:1": ("nijigan", {"solver": "euler:1"}),
    "nijigan midpoint:1": ("nijigan", {"solver": "midpoint:1"}),
    "nijigan rk4:1": ("nijigan", {"solver": "rk4:1"}),
    "nijigan rk4:2": ("nijigan", {"solver": "rk4:2"}),
    "scenimefy (cut-resnet)": ("cut-resnet", {}),
    "animeganv2": ("animeganv2", {}),
    "nijigan-lite euler:1": ("nijigan-lite", {}),
    # What `rt-anime` runs by default: no InstanceNorm, input and LinkNet skips (MODEL_CARD.md, Architecture).
    "niji-lite (bundled)": ("niji-lite", None),
    "niji (bundled)": ("niji", None),
}
SIZES = {"256x256": (256, 256), "640x360": (640, 360), "1280x720": (1280, 720)}
BACKENDS = ("eager", "eager-cl", "torchscript", "onnxruntime")


@dataclass
class Row:
    model: str
    size: str
    backend: str
    ms_median: float
    ms_all: list
    fps: float
    gmac: float
    gflops: float
    sgemm_local: float
    frac_sgemm: float


def conv_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every conv / transposed conv in one forward of ``x``."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels // module.groups * k
        else:
            total += output.numel() * module.in_channels // module.groups * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def make_runner(backend: str, model, x: torch.Tensor, onnx_path: Path | None):
    static = export.unroll(model)
    if backend == "eager":
        return lambda: static(x)
    if backend == "eager-cl":
        # A copy: .to(memory_format=...) converts parameters in place, and unroll() shares them with the model.
        cl = copy.deepcopy(static).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        return lambda: cl(xc)
    if backend == "torchscript":
        cl = copy.deepcopy(static).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        traced = export.trace(cl, xc)
        return lambda: traced(xc)
    if backend == "onnxruntime":
        session = export.ort_session(onnx_path, threads=torch.get_num_threads())
        feed = {"image": x.numpy()}
        return lambda: session.run(None, feed)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(list(MODELS)[:6]),
                        help=f"comma-separated labels from: {'; '.join(MODELS)}")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated from {list(SIZES)}")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated from {BACKENDS}")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small smoke benchmark (256x256, 2 models, 2 backends)")
    parser.add_argument("--json", type=Path, help="also write results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.models, args.sizes, args.backends, args.runs = ("nijigan-lite euler:1,nijigan euler:1", "256x256",
                                                              "eager,torchscript", 3)
    models = [m.strip() for m in args.models.split(",")]
    sizes = [s.strip() for s in args.sizes.split(",")]
    backends = [b.strip() for b in args.backends.split(",")]
    for name, allowed in (("models", MODELS), ("sizes", SIZES), ("backends", BACKENDS)):
        bad = [v for v in locals()[name] if v not in allowed]
        if bad:
            parser.error(f"--{name}: unknown {bad}; allowed: {list(allowed)}")
    torch.manual_seed(0)
    facts = machine_facts()
    peak_start = sgemm_gflops()
    print(f"# machine: {facts['cpu']}, {facts['logical_cpus']} CPUs, torch {facts['torch']} "
          f"({facts['torch_threads']} threads, {facts['cpu_capability']}); sgemm 2048²: {peak_start:.1f} GFLOP/s",
          flush=True)
    print("| model | size | backend | ms (median) | fps | conv GMAC | GFLOP/s | sgemm GFLOP/s (local) | % of sgemm |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in models:
            name, config = MODELS[label]
            model = (realtime.load_generator(name) if config is None
                     else realtime.create_generator(name, **config)).float().eval()
            onnx_path = None
            if "onnxruntime" in backends:
                onnx_path = Path(tmp) / f"{len(rows)}.onnx"
                export.export_onnx(model, onnx_path, height=64, width=64, dynamic=True)
            for size in sizes:
                w, h = SIZES[size]
                x = torch.rand(1, 3, h, w) * 2 - 1
                gmac = conv_macs(export.unroll(model), x) / 1e9
                peak = sgemm_gflops(runs=5)
                for backend in backends:
                    runner = make_runner(backend, model, x, onnx_path)
                    with torch.inference_mode():
                        times = timed(runner, runs=args.runs, warmup=2 if backend == "torchscript" else 1)
                    t = statistics.median(times)
                    gflops = 2 * gmac / t
                    row = Row(label, size, backend, t * 1000, [round(v * 1000, 1) for v in times], 1 / t, gmac,
                              gflops, peak, gflops / peak)
                    rows.append(row)
                    print(f"| {label} | {size} | {backend} | {row.ms_median:.1f} | {row.fps:.2f} | {gmac:.2f} | "
                          f"{gflops:.1f} | {peak:.0f} | {100 * row.frac_sgemm:.0f} % |", flush=True)
                    del runner
    peak_end = sgemm_gflops()
    print(f"# sgemm at the end: {peak_end:.1f} GFLOP/s (start {peak_start:.1f}); runs per cell: {args.runs}")
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "sgemm_gflops": [peak_start, peak_end],
                                         "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
