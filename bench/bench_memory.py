"""Memory per pixel (realtime/memory.py): the probe's estimate against the process's measured peak, and a tiled run.

For each bundled model: ``bytes_per_pixel`` (two probe passes under the live-tensor tracker, times ``RSS_FACTOR``),
then the peak RSS of fresh processes that run one whole frame at a few sizes (random photo-like content, the torch
backend as ``rt-anime`` builds it). The slope of peak RSS over pixels is what a frame really costs; the estimate
should be at or above it. Last, ``niji`` on the largest frame under ``--tile auto`` with a budget set below what the
frame needs whole: its peak should stay near the budget plus the process's fixed memory.

    python bench/bench_memory.py                  # ~3 min on 2 cores
    python bench/bench_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._machine import machine_facts  # noqa: E402

SIDES = [(64, 64), (1000, 752), (2000, 1504)]  # multiples of 4, as the pipeline pads frames
_CHILD = r"""
import resource, sys, torch
import realtime, realtime.memory as memory
from realtime.backends import BackendConfig, make_backend
from realtime.tiling import AutoTiles
name, w, h, threads, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
torch.set_num_threads(threads)
model = realtime.load_generator(name)
translate = make_backend(model, BackendConfig(name="torch", device="cpu"))
if budget > 0:
    available = int(budget * 2**30 / memory.BUDGET_FRACTION)
    planner = memory.TilePlanner(model, multiple=model.size_multiple, available=available)
    translate = AutoTiles(translate, planner, multiple=model.size_multiple)
x = torch.rand(1, 3, h // 8 + 1, w // 8 + 1)
x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear") * 2 - 1
y = translate(x)
plan = translate.planner.plan_for(h, w) if budget > 0 else None
tile = plan.tile if plan else None
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, tile)
"""


def peak_rss(name: str, w: int, h: int, threads: int, budget_gib: float = 0.0) -> tuple[int, int | None]:
    done = subprocess.run([sys.executable, "-c", _CHILD, name, str(w), str(h), str(threads), str(budget_gib)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{name} {w}x{h} failed:\n{done.stderr}")
    out = done.stdout.split()
    return int(out[0]), (None if out[1] in ("None", "0") else int(out[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="niji-lite,niji", help="bundled names, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write results as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    import realtime
    from realtime.memory import bytes_per_pixel

    torch.set_num_threads(args.threads)
    result: dict = {"machine": machine_facts(), "models": [], "tiled": None}
    for name in args.models.split(","):
        model = realtime.load_generator(name)
        estimate = bytes_per_pixel(model, multiple=model.size_multiple)
        peaks = {(w, h): peak_rss(name, w, h, args.threads)[0] for w, h in SIDES}
        (w0, h0), (w1, h1) = SIDES[1], SIDES[2]
        slope = (peaks[(w1, h1)] - peaks[(w0, h0)]) / (w1 * h1 - w0 * h0)
        row = {"model": name, "estimate_bytes_per_px": round(estimate), "rss_slope_bytes_per_px": round(slope),
               "estimate_over_rss": round(estimate / slope, 2),
               "peak_rss_gib": {f"{w}x{h}": round(p / 2**30, 2) for (w, h), p in peaks.items()}}
        logging.info("%s", row)
        result["models"].append(row)
    w, h = SIDES[-1]
    name = args.models.split(",")[-1]
    whole = result["models"][-1]["peak_rss_gib"][f"{w}x{h}"]
    budget = round(whole / 2, 1)
    peak, tile = peak_rss(name, w, h, args.threads, budget)
    result["tiled"] = {"model": name, "frame": f"{w}x{h}", "budget_gib": budget, "tile": tile,
                       "peak_rss_gib": round(peak / 2**30, 2), "whole_peak_rss_gib": whole}
    logging.info("%s", result["tiled"])
    print("| model | estimate (B/px) | peak RSS slope (B/px) | estimate / slope "
          "| peak RSS, 64² / 1000×752 / 2000×1504 |")
    print("|---|--:|--:|--:|---|")
    for r in result["models"]:
        print(f"| {r['model']} | {r['estimate_bytes_per_px']:,} | {r['rss_slope_bytes_per_px']:,} | "
              f"{r['estimate_over_rss']} | {' / '.join(f'{v} GiB' for v in r['peak_rss_gib'].values())} |")
    t = result["tiled"]
    print(f"\n{t['model']} {t['frame']} with --tile auto at a {t['budget_gib']} GiB budget: {t['tile']}-px tiles, "
          f"peak RSS {t['peak_rss_gib']} GiB (whole: {t['whole_peak_rss_gib']} GiB)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
