"""``rt-anime list``: the generators that can be created and the bundled weights."""

from __future__ import annotations

import argparse

from .._registry import get_entry, list_generators
from ..checkpoint import list_pretrained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    print("generators:")
    for name in list_generators():
        print(f"  {name:<14} {get_entry(name).description}")
    bundled = list_pretrained()
    print("bundled weights:", ", ".join(bundled) if bundled else "none")
    return 0
