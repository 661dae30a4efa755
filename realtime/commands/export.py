"""``rt-anime export``: write an ONNX, TorchScript or TensorRT file and print the parity it measured."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_model_arguments, model_from_args

# What each format's file is called. TensorRT engines are saved by torch-tensorrt as TorchScript modules. A name
# outside these is refused so that a slip such as ``-o clip.mp4`` cannot replace a video with a model file.
SUFFIXES = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".ts", ".torchscript", ".jit"),
    "tensorrt": (".ts", ".pt", ".torchscript", ".jit", ".engine"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript", "tensorrt"))
    parser.add_argument("-H", "--height", type=int, required=True, help="input height (a multiple of the model's)")
    parser.add_argument("-W", "--width", type=int, required=True, help="input width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dynamic", action="store_true", help="ONNX: symbolic batch, height and width")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                        help="file to write: .onnx, or .pt / .ts for torchscript and tensorrt")


def run(args: argparse.Namespace) -> int:
    import export

    if args.dynamic and args.format != "onnx":
        raise ValueError(f"--dynamic applies to --format onnx only, not {args.format!r}")
    allowed = SUFFIXES[args.format]
    if args.output.suffix.lower() not in allowed:
        raise ValueError(f"-o {args.output}: --format {args.format} writes {' or '.join(allowed)} files, "
                         f"not {args.output.suffix or 'a name without extension'}")
    if args.output.is_dir():
        raise ValueError(f"-o {args.output} is a directory; name the file to write")
    model = model_from_args(args)
    shape = dict(height=args.height, width=args.width, batch=args.batch)
    if args.format == "onnx":
        report = export.export_onnx(model, args.output, dynamic=args.dynamic, **shape)
    elif args.format == "torchscript":
        report = export.export_torchscript(model, args.output, **shape)
    else:
        report = export.export_tensorrt(model, args.output, precision=args.precision, **shape)
    solver = getattr(model, "solver", None)
    print(report.summary() + (f"; solver {solver.spec}" if solver is not None else ""))
    return 0
