"""``rt-anime demo``: serve the Gradio live demo (webcam stream, video file, image) in the browser.

Binds 127.0.0.1 (this machine only) unless --host says otherwise; --share asks gradio for a public link (needs
internet). Only the --model values given here can be picked in the page. Needs the demo extra:
pip install 'rt-anime[demo]'.

Webcam tuning (CPU defaults): the browser sends a frame every --stream-every seconds and the server stylizes the
newest one at --live-max-side px (160 on CPU: a few frames per second with the lite model on 2 cores); a stream
stops after --time-limit seconds and --concurrency streams are served at once, so one visitor cannot hold the CPU.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from .._registry import list_generators
from ..backends import BACKEND_NAMES, PRECISION_CHOICES, BackendConfig, resolve_device, resolve_precision
from ..errors import RtAnimeError
from ..live.demo import DEFAULT_SOLVER, DemoConfig, ModelCache, launch
from .run import DEFAULT_MODEL, _model
from .webcam import parse_max_side

CPU_LIVE_MAX_SIDE = 160


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", metavar="NAME_OR_PATH",
                        help=f"a model offered in the page (repeat for several; default {DEFAULT_MODEL}); "
                             f"generators: {', '.join(list_generators())}")
    parser.add_argument("--random-weights", action="store_true",
                        help="build the --model generators with random weights (for tests and speed trials)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the demo to your network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link (internet)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch", help="inference runtime (default torch)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="model arithmetic: auto = fp16 on CUDA, fp32 on CPU (default auto)")
    parser.add_argument("--compute-device", default="auto", metavar="auto|cpu|cuda[:N]",
                        help="where the model runs (default auto)")
    parser.add_argument("--stream-every", type=float, default=0.1, metavar="S",
                        help="seconds between webcam frames sent by the browser (default 0.1)")
    parser.add_argument("--time-limit", type=int, default=120, metavar="S",
                        help="seconds a webcam stream runs before it must be restarted (default 120)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="webcam streams served at once; others wait in the queue (default 1)")
    parser.add_argument("--live-max-side", default="auto", metavar="N|auto|none",
                        help=f"model input side for webcam frames; auto = {CPU_LIVE_MAX_SIDE} on CPU, full on GPU")
    parser.add_argument("--max-upload-mb", type=int, default=50, metavar="MB", help="largest upload (default 50)")
    parser.add_argument("--max-video-seconds", type=float, default=60, metavar="S",
                        help="longest video accepted (default 60)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: allowed 1 .. 65535")
    models = tuple(dict.fromkeys(args.model or [DEFAULT_MODEL]))
    precision = resolve_precision(args.precision, resolve_device(args.compute_device, param="--compute-device"))
    backend = BackendConfig(name=args.backend, device=args.compute_device, precision=precision)
    device = backend.resolved_device()
    config = DemoConfig(models=models, random_weights=args.random_weights, backend=backend,
                        stream_every=args.stream_every, time_limit=args.time_limit,
                        concurrency_limit=args.concurrency,
                        live_max_side=parse_max_side(args.live_max_side, flag="--live-max-side",
                                                     device_type=device.type, cpu_default=CPU_LIVE_MAX_SIDE,
                                                     minimum=16),
                        max_upload_mb=args.max_upload_mb, max_video_seconds=args.max_video_seconds)
    # Load every offered model now: a missing default or a bad checkpoint is a command-line error, not a
    # surprise in the page later.
    def load(name: str, solver: str | None):
        return _model(argparse.Namespace(model=name, random_weights=args.random_weights, solver=solver))

    cache = ModelCache(config, loader=load)
    for name in models:
        cache.get(name, DEFAULT_SOLVER)
    if not _is_loopback(args.host):
        print(f"rt-anime: warning: serving on {args.host}: anyone who can reach this machine can use the demo",
              file=sys.stderr)
    try:
        launch(config, host=args.host, port=args.port, share=args.share, cache=cache)
    except OSError as error:
        raise RtAnimeError(f"cannot serve on {args.host}:{args.port} ({error}); pick another --port") from None
    return 0
