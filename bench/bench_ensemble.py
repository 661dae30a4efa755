"""Cost of ``--ensemble N`` (realtime/ensemble.py): model-only and end-to-end, against N = 1 in the same process.

Model-only: median wall time of ``--runs`` forwards of one frame through the torch backend (as ``rt-anime`` runs it)
wrapped in the ensemble, for the bundled ``niji`` and ``niji-lite`` at the evaluation size (512x344) and 640x360,
with the conv GFLOP/s achieved (N forwards' convs) against the machine's sgemm peak measured right before.
End-to-end: ``rt-anime``'s file pipeline (decode → translate → encode) on a generated 24-frame 320x240 clip.

    python bench/bench_ensemble.py                 # ~4 min on 2 cores
    python bench/bench_ensemble.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import realtime  # noqa: E402
from bench._machine import machine_facts, sgemm_gflops, timed  # noqa: E402
from bench.bench_models import conv_macs  # noqa: E402
from realtime.backends import BackendConfig, make_backend  # noqa: E402
from realtime.ensemble import ENSEMBLE_SIZES, EnsembleTranslate  # noqa: E402

SIZES = {"512x344": (512, 344), "640x360": (640, 360)}


def model_only(name: str, runs: int) -> list[dict]:
    model = realtime.load_generator(name)
    backend = make_backend(model, BackendConfig(name="torch", device="cpu"))
    rows = []
    for label, (w, h) in SIZES.items():
        x = torch.rand(1, 3, h, w) * 2 - 1
        gmac = conv_macs(backend.module, x) / 1e9
        peak = sgemm_gflops()
        base = None
        for n in ENSEMBLE_SIZES:
            fn = EnsembleTranslate(backend, n) if n > 1 else backend
            ms = 1000 * statistics.median(timed(lambda: fn(x), runs=runs))
            base = base or ms
            gflops = 2 * gmac * n / (ms / 1000)
            rows.append({"model": name, "size": label, "ensemble": n, "ms_median": round(ms, 1),
                         "fps": round(1000 / ms, 2), "vs_1": round(ms / base, 2), "gflops": round(gflops, 1),
                         "frac_sgemm": round(gflops / peak, 3), "sgemm": round(peak, 1)})
            logging.info("%s %s ensemble %d: %.1f ms (%.2fx)", name, label, n, ms, ms / base)
    return rows


def end_to_end(name: str) -> list[dict]:
    from media import ClipSpec, make_clip

    from realtime.cli import main as cli

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", ClipSpec(width=320, height=240, frames=24))
        for n in (1, 4):
            out = Path(tmp) / f"out{n}.mp4"
            s = min(timed(lambda: cli([str(clip), str(out), "--model", name, "--ensemble", str(n), "--quiet"]),
                          runs=2, warmup=0))
            rows.append({"model": name, "clip": "24 frames 320x240", "ensemble": n, "seconds": round(s, 2),
                         "fps": round(24 / s, 2)})
            logging.info("%s end-to-end ensemble %d: %.2f fps", name, n, 24 / s)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="niji,niji-lite", help="bundled names, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    facts = machine_facts()
    result = {"machine": facts, "model_only": [], "end_to_end": []}
    for name in args.models.split(","):
        result["model_only"] += model_only(name, args.runs)
        result["end_to_end"] += end_to_end(name)
    print("| model | size | N | ms (median) | fps | × N=1 | conv GFLOP/s | of sgemm |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for r in result["model_only"]:
        print(f"| {r['model']} | {r['size']} | {r['ensemble']} | {r['ms_median']} | {r['fps']} | {r['vs_1']} | "
              f"{r['gflops']} | {r['frac_sgemm']:.0%} |")
    print()
    for r in result["end_to_end"]:
        print(f"end-to-end {r['model']} N={r['ensemble']}: {r['fps']} fps ({r['clip']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
