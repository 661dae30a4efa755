"""One module per ``rt-anime`` command; shared argument helpers live here."""

from __future__ import annotations

import argparse

from .._registry import create_generator, list_generators
from ..checkpoint import load_generator
from ..models._base import Generator


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    parser.add_argument("--model", default=default, required=default is None, metavar="NAME_OR_PATH",
                        help="bundled model name, or a checkpoint (.safetensors/.json, or an official CUT/Scenimefy/"
                             f"AnimeGANv2 .pth/.pt); generators: {', '.join(list_generators())}")
    parser.add_argument("--solver", metavar="SPEC",
                        help="ODE solver for NijiGAN models: euler:N, midpoint:N, rk4:N, dopri5[:rtol=…,atol=…]")
    parser.add_argument("--random-weights", action="store_true",
                        help="build --model NAME with random weights (for tests and benchmarks)")


def model_from_args(args: argparse.Namespace) -> Generator:
    overrides = {"solver": args.solver} if args.solver else {}
    if args.random_weights:
        return create_generator(args.model, **overrides).eval()
    return load_generator(args.model, **overrides)


def parse_size(text: str, *, flag: str) -> tuple[int, int]:
    """``WxH`` → (W, H), with an error naming the flag."""
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 1 or int(h) < 1:
        raise ValueError(f"{flag} {text!r}: expected WIDTHxHEIGHT with positive integers, e.g. 640x360")
    return int(w), int(h)
