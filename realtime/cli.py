"""The ``rt-anime`` command line.

``rt-anime INPUT OUTPUT [options]`` stylizes a video, image or folder; ``rt-anime COMMAND …`` runs a tool
(``export``, ``solvers``, ``list``). Each command lives in ``realtime/commands/<name>.py`` with ``add_arguments`` and
``run``. User mistakes end with one ``rt-anime: error: …`` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from importlib import import_module
from typing import Sequence

from . import __version__
from ._signals import install_signal_handler, restore_signal_handlers
from .errors import RtAnimeError

COMMANDS: dict[str, str] = {
    "run": "stylize INPUT into OUTPUT (the default: 'rt-anime INPUT OUTPUT')",
    "export": "export a generator to ONNX, TorchScript or TensorRT and report parity",
    "solvers": "compare ODE solvers on images: PSNR vs dopri5, NFE, ms/frame",
    "list": "list generators and bundled weights",
    "teach": "render INPUT with the algorithmic anime teacher (the training targets) into OUTPUT",
    "train": "train a generator with the NijiGAN semi-supervised recipe (rt-anime train --config default-cpu)",
    "evaluate": "PSNR, LPIPS and FID of a generator against the teacher on held-out photos (model card table)",
    "eval-temporal": "score flicker: warping error (Lai et al.) of OUTPUT vs INPUT, LPIPS/PSNR vs --reference",
    "finetune": "fine-tune a generator on one clip for flicker-free video: rt-anime finetune CLIP -o MODEL",
    "batch": "stylize many videos (and long ones in keyframe chunks) on Ray: rt-anime batch IN... -o OUTDIR",
    "webcam": "live anime filter for a camera, video file or URL: window, virtual camera, recording",
    "demo": "serve the Gradio live demo (webcam stream, video, image) on 127.0.0.1",
}
EXIT_USER_ERROR = 2


def _parser_for(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = import_module(f".commands.{name.replace('-', '_')}", __package__)
    prog = "rt-anime" if name == "run" else f"rt-anime {name}"
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    _add_common(parser)
    return parser, module


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")


def _top_help() -> str:
    lines = [f"rt-anime {__version__}: real-time anime stylization for video, images and cameras", "",
             "usage: rt-anime INPUT OUTPUT [options]     stylize a video, image or folder",
             "       rt-anime COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'rt-anime COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help())
        return 0 if argv else EXIT_USER_ERROR
    if argv[0] == "--version":
        print(f"rt-anime {__version__}")
        return 0
    # Anything that is not a command name is the main job's INPUT.
    name, rest = (argv[0], argv[1:]) if argv[0] in COMMANDS else ("run", argv)
    parser, module = _parser_for(name)
    args = parser.parse_args(rest)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM (`kill`, `timeout`, `docker stop`, a scheduler) unwinds like Ctrl-C, so the same cleanup runs: no
    # temporary output left beside the output path. Commands with their own handling (train) install theirs inside.
    previous = install_signal_handler(_terminate)
    try:
        return int(module.run(args) or 0)
    except (RtAnimeError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if args.verbose >= 2:
            raise
        print(f"rt-anime: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"rt-anime: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except (MemoryError, RuntimeError) as exc:
        # PyTorch reports a failed allocation as RuntimeError ("can't allocate memory", "out of memory"); say what
        # to change instead of printing a traceback. Any other RuntimeError is a bug and keeps its traceback.
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, MemoryError) and "allocate" not in text and "out of memory" not in text:
            raise
        if args.verbose >= 2:
            raise
        print(f"rt-anime: error: out of memory ({text.splitlines()[0][:200]}); use a smaller --size or --max-side, "
              "--tile N, or --batch 1", file=sys.stderr)
        return 1
    finally:
        restore_signal_handlers(previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C's KeyboardInterrupt would be."""


def _terminate(signum: int, frame: object) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
