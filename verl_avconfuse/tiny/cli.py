"""``avconfuse make-tiny-models`` and ``avconfuse tiny-asset``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "make-tiny-models":
        from verl_avconfuse.tiny.models import DEFAULT_SET, TINY_MODELS

        parser.add_argument("out", type=Path, help="folder to write one HF directory per model into")
        parser.add_argument(
            "--which",
            nargs="+",
            default=list(DEFAULT_SET),
            choices=sorted(TINY_MODELS),
            help=f"models to build (default: {' '.join(DEFAULT_SET)})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    elif command == "tiny-asset":
        parser.add_argument(
            "name", help="models/NAME or data/SET/SPLIT.parquet, e.g. models/omni_thinker or data/omni/train.parquet"
        )


def run(command: str, args: argparse.Namespace) -> int:
    if command == "make-tiny-models":
        from verl_avconfuse.tiny.models import make_tiny_models

        start = time.perf_counter()
        paths = make_tiny_models(args.out, which=args.which, seed=args.seed)
        for name, path in paths.items():
            print(f"{name}\t{path}")
        print(f"built {len(paths)} models in {time.perf_counter() - start:.1f} s")
        return 0
    if command == "tiny-asset":
        from verl_avconfuse.tiny.resolver import tiny_asset

        print(tiny_asset(args.name))
        return 0
    raise ValueError(command)
