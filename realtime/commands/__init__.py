"""One module per ``rt-anime`` command; shared argument helpers live here."""

from __future__ import annotations

import argparse
import sys

from .._registry import create_generator, list_generators
from ..checkpoint import load_generator, pretrained_architecture, resolve_pretrained
from ..errors import RtAnimeError
from ..models._base import Generator

# The bundled model a command uses when --model is omitted: the lite NijiGAN (ngf 32, Euler-1), the one that runs
# near real time on a CPU; `niji` (ngf 64) is the quality choice.
DEFAULT_MODEL = "niji-lite"
MAX_SIDE = 16384


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    parser.add_argument("--model", default=default, required=default is None, metavar="NAME_OR_PATH",
                        help="bundled model name, or a checkpoint (.safetensors/.json, or an official CUT/Scenimefy/"
                             f"AnimeGANv2 .pth/.pt); generators: {', '.join(list_generators())}")
    parser.add_argument("--solver", metavar="SPEC",
                        help="ODE solver for NijiGAN models: euler:N, midpoint:N, rk4:N, dopri5[:rtol=…,atol=…]")
    parser.add_argument("--random-weights", action="store_true",
                        help="build --model NAME with random weights (for tests and benchmarks)")


def model_from_args(args: argparse.Namespace) -> Generator:
    """The generator ``--model`` / ``--solver`` / ``--random-weights`` ask for (a bundled name with
    ``--random-weights`` gives its architecture, untrained)."""
    overrides = {"solver": _solver_spec(args.solver)} if args.solver else {}
    bundled = resolve_pretrained(args.model)
    if args.random_weights:
        if bundled is None:
            return create_generator(args.model, **overrides).eval()
        preset, config = pretrained_architecture(args.model)
        return create_generator(preset, **{**config, **overrides}).eval()
    if args.model == DEFAULT_MODEL and bundled is None:
        raise RtAnimeError(f"this rt-anime has no bundled default model ({DEFAULT_MODEL}; the installation lacks "
                           "realtime/weights): pass --model CHECKPOINT (.safetensors, or an official "
                           "Scenimefy/CUT/AnimeGANv2 .pth), or --model NAME --random-weights")
    return load_generator(args.model, **overrides)


def _solver_spec(text: str) -> str:
    """``--solver`` checked here, so a bad spec is blamed on the flag rather than on the checkpoint's config."""
    from ..solvers import parse_solver

    try:
        parse_solver(text)
    except ValueError as exc:
        raise ValueError(f"--solver {text!r}: {str(exc).removeprefix(f'solver spec {text!r}: ')}") from None
    return text


def parse_size(text: str, *, flag: str) -> tuple[int, int]:
    """``WxH`` → (W, H), with an error naming the flag."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise ValueError(f"{flag} {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 640x360")
    if max(int(w), int(h)) > MAX_SIDE:
        raise ValueError(f"{flag} {text!r}: at most {MAX_SIDE} pixels a side (the largest H.264/HEVC/VP9 frame)")
    return int(w), int(h)


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """INPUT, OUTPUT and the encoding/geometry flags shared by every command that writes media."""
    parser.add_argument("input", metavar="INPUT", help="video, image, folder of images, or pattern (frames/%%05d.png)")
    parser.add_argument("output", metavar="OUTPUT", help="video (.mp4, .mkv, …), image (.png, …) or folder")
    parser.add_argument("--size", metavar="WxH", help="output size (the model runs at this size)")
    parser.add_argument("--fps", help="frame rate when writing a video from images (25, 29.97, 30000/1001)")
    parser.add_argument("--crf", type=float, default=18, help="x264/x265 constant rate factor (default 18)")
    parser.add_argument("--preset", default="medium", help="encoder preset (default medium)")
    parser.add_argument("--codec", default="auto",
                        help="video encoder (default auto: libx264, or the container's own for .webm (VP9) and .gif; "
                             "h264_nvenc where the GPU has NVENC: H100/H200 have none)")
    parser.add_argument("--pix-fmt", default="yuv420p", help="encoder pixel format (default yuv420p)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="keep the output of a truncated input (frames lost are still reported)")
    parser.add_argument("--deinterlace", choices=("auto", "off"), default="auto",
                        help="frames flagged interlaced (DV, DVD, 1080i) are deinterlaced first (yadif, one frame per frame): auto "
                             "(default) or off")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


class ProgressBar:
    """A tqdm bar on an interactive stderr; nothing otherwise (logs and CI stay clean)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def warn_about_input(result, input_name: str) -> None:
    """Tell the user what was lost from the input (truncation, corrupt packets) even when the run succeeded."""
    p = result.pipeline
    if p is None:
        return
    if p.truncated:
        lost = f"{p.frames_lost} frame(s) lost" if p.frames_lost else "frames lost at the end"
        print(f"rt-anime: warning: {input_name} is truncated: {lost}; kept {p.frames_out} (--allow-partial)",
              file=sys.stderr)
    if p.decode_errors:
        print(f"rt-anime: warning: {p.decode_errors} corrupt packet(s) in {input_name} did not decode",
              file=sys.stderr)
