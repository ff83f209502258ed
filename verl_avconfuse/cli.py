"""The ``avconfuse`` command line.

Each subcommand lives next to the code it drives: :data:`COMMANDS` maps its name to a module with
``add_arguments(command, parser)`` and ``run(command, args) -> int``. Those modules are imported to
build the parser, so they keep heavy imports (torch, verl, transformers) inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> module defining ``add_arguments(parser)`` and ``run(args) -> int``, plus help text.
COMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny-models": ("verl_avconfuse.tiny.cli", "build the tiny offline models (HF directories) into a folder"),
    "tiny-asset": ("verl_avconfuse.tiny.cli", "print the path of a cached tiny asset, building it if needed"),
    "omni-params": ("verl_avconfuse.omni.cli", "parameter counts of a Qwen2.5-Omni config: thinker vs full model"),
    "extract-thinker": ("verl_avconfuse.omni.cli", "write the thinker of a full Qwen2.5-Omni checkpoint on its own"),
    "export-omni": ("verl_avconfuse.omni.cli", "merge a trained thinker back into the full Qwen2.5-Omni checkpoint"),
    "reference": ("verl_avconfuse.reference.cli", "the reference audio LM: `reference precompute` fills a dataset"),
    "preflight": (
        "verl_avconfuse.placement_cli",
        "where a run's roles (actor, reference audio LM, embedder) go on a Ray cluster, and whether they fit",
    ),
    "eval": ("verl_avconfuse.evaluation.cli", "evaluate a model on Music-AVQA, AVQA, AVHBench or AV-ConfuseBench"),
    "bench": (
        "verl_avconfuse.bench.cli",
        "AV-ConfuseBench: build muted/modified sets from real media, evaluate a model",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avconfuse", description="verl-avconfuse: RL-CoMM tools for verl")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(name, sub)
        sub.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.run(args.command, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
