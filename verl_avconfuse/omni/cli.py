"""``avconfuse omni-params``, ``avconfuse extract-thinker``, ``avconfuse export-omni``."""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

#: The recorded Qwen2.5-Omni-3B config (see docs/omni.md for the provenance of its values).
QWEN2_5_OMNI_3B = "qwen2_5_omni_3b.json"


def default_config_path() -> Path:
    return Path(str(resources.files("verl_avconfuse.omni") / "assets" / QWEN2_5_OMNI_3B))


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "omni-params":
        parser.add_argument(
            "--config",
            type=Path,
            default=None,
            help="a full Qwen2.5-Omni config.json (default: the recorded Qwen2.5-Omni-3B config)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    elif command == "extract-thinker":
        parser.add_argument("full", type=Path, help="full Qwen2.5-Omni checkpoint directory")
        parser.add_argument("out", type=Path, help="new thinker-only directory")
    elif command == "export-omni":
        parser.add_argument("full", type=Path, help="the original full Qwen2.5-Omni checkpoint (talker, token2wav)")
        parser.add_argument(
            "thinker", type=Path, help="the trained thinker (HF directory, e.g. a merged verl checkpoint)"
        )
        parser.add_argument("out", type=Path, help="new full checkpoint directory")


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.omni import checkpoint

    if command == "omni-params":
        path = args.config or default_config_path()
        counts = checkpoint.parameter_counts(json.loads(Path(path).read_text()))
        if args.json:
            print(json.dumps(counts, indent=2))
        else:
            print(f"parameters of {path}")
            for name, value in counts.items():
                print(f"  {name:24s} {value:>15,d}  ({value / 1e9:.3f} B)")
            print(f"  thinker share of total   {counts['thinker'] / counts['total']:.1%}")
        return 0
    if command == "extract-thinker":
        print(checkpoint.extract_thinker(args.full, args.out))
        return 0
    if command == "export-omni":
        print(checkpoint.merge_thinker(args.full, args.thinker, args.out))
        return 0
    raise ValueError(command)
