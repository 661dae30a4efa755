"""``rt-anime solvers``: how far each fixed-step solver is from a tight dopri5 solution, and what it costs.

A NijiGAN is a different function under each solver; this report shows how much image quality a cheaper solver gives
up (PSNR against dopri5 at rtol = atol = 1e-5) and what it costs (dynamics evaluations and ms per frame).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import RtAnimeError
from ..images import crop_to, image_to_tensor, pad_to_multiple, read_image
from ..models.nijigan import NijiGAN, ODEFunc
from ..solvers import parse_solver
from . import add_model_arguments, model_from_args

DEFAULT_SOLVERS = ("euler:1", "euler:2", "midpoint:1", "rk4:1", "rk4:2", "dopri5")
REFERENCE = "dopri5:rtol=1e-5,atol=1e-5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--max-side", type=int, default=256,
                        help="downscale images so their longer side is at most this (0 = full size; default 256)")
    parser.add_argument("--solvers", default=";".join(DEFAULT_SOLVERS),
                        help="semicolon-separated solver specs to compare")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per solver and image (median reported)")


class _CountCalls:
    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, ODEFunc)]

    def _hook(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _load(path: Path, max_side: int, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    x = image_to_tensor(read_image(path))
    h, w = x.shape[-2:]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    return pad_to_multiple(x, multiple)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) / 2).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    if not isinstance(model, NijiGAN):
        raise RtAnimeError(f"--model {args.model}: a {model.family} generator has no ODE solver to compare; "
                           "use a NijiGAN model")
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    solvers = [parse_solver(s) for s in args.solvers.replace(";", " ").split()]
    trained = model.solver
    images = [_load(p, args.max_side, model.size_multiple) for p in args.images]
    counter = _CountCalls(model)
    rows = []
    try:
        with torch.inference_mode():
            model.solver = REFERENCE
            references = [crop_to(model(x), size) for x, size in images]
            for solver in solvers:
                model.solver = solver
                scores, nfes, times = [], [], []
                for (x, size), ref in zip(images, references):
                    counter.calls = 0
                    out = crop_to(model(x), size)
                    nfes.append(counter.calls / model.config.n_ode_blocks)
                    scores.append(psnr(out, ref))
                    for _ in range(args.repeat):
                        start = time.perf_counter()
                        model(x)
                        times.append((time.perf_counter() - start) * 1000)
                rows.append((solver.spec, statistics.mean(scores), statistics.mean(nfes), statistics.median(times)))
    finally:
        counter.close()
        model.solver = trained
    print(f"model {args.model} (trained with {trained.spec}); reference {REFERENCE}; {len(images)} image(s), "
          f"{images[0][0].shape[-1]}x{images[0][0].shape[-2]} (first, padded); {torch.get_num_threads()} threads")
    print(f"{'solver':<34} {'PSNR vs ref (dB)':>17} {'NFE/block':>10} {'ms/frame':>10}")
    for spec, score, nfe, ms in rows:
        shown = "inf" if math.isinf(score) else f"{score:.2f}"
        print(f"{spec:<34} {shown:>17} {nfe:>10.1f} {ms:>10.1f}")
    return 0
