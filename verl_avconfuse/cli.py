"""The ``avconfuse`` command line.

Each subcommand lives next to the code it drives: :data:`COMMANDS` maps its name to a module with
``add_arguments(command, parser)`` and ``run(command, args) -> int``, or, for a command whose actions come
from several parts (``bench build`` from the builders, ``bench eval`` from the evaluation harness), to those
modules, each with ``add_actions(command, actions)`` and ``run``. This module is the one place that knows them
all, so the parts need not know each other. They are imported to build the parser, so they keep heavy
imports (torch, verl, transformers) inside ``run``.

Errors are handled here, once for every command (docs/cli.md): one line ``avconfuse COMMAND: error: ...``
on stderr and the exit status of :func:`verl_avconfuse.errors.exit_code` (0 ok, 1 the run failed,
2 a usage or input error, 130 interrupted); ``--debug`` (or ``AVCONFUSE_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence

#: subcommand -> module defining ``add_arguments(command, parser)`` and ``run(command, args) -> int`` (or modules
#: defining ``add_actions(command, actions)`` and ``run``), plus help text.
COMMANDS: dict[str, tuple[str | tuple[str, ...], str]] = {
    "make-tiny-models": ("verl_avconfuse.tiny.cli", "build the tiny offline models (HF directories) into a folder"),
    "tiny-asset": ("verl_avconfuse.tiny.cli", "print the path of a cached tiny asset, building it if needed"),
    "omni-params": ("verl_avconfuse.omni.cli", "parameter counts of a Qwen2.5-Omni config: thinker vs full model"),
    "extract-thinker": ("verl_avconfuse.omni.cli", "write the thinker of a full Qwen2.5-Omni checkpoint on its own"),
    "export-omni": ("verl_avconfuse.omni.cli", "merge a trained thinker back into the full Qwen2.5-Omni checkpoint"),
    "reference": ("verl_avconfuse.reference.cli", "the reference audio LM: `reference precompute` fills a dataset"),
    "preflight": (
        "verl_avconfuse.integration.preflight",
        "where a run's roles (actor, reference audio LM, embedder) go on a Ray cluster, and whether they fit",
    ),
    "eval": ("verl_avconfuse.evaluation.cli", "evaluate a model on Music-AVQA, AVQA, AVHBench or AV-ConfuseBench"),
    "bench": (
        ("verl_avconfuse.bench.cli", "verl_avconfuse.evaluation.cli"),
        "AV-ConfuseBench: build muted/modified sets from real media, evaluate a model",
    ),
    "diagnose": (
        "verl_avconfuse.diagnosis.cli",
        "look inside the model: `diagnose layer-entropy`, per-layer answer uncertainty on muted vs intact clips",
    ),
}
EPILOG = "exit status: 0 ok, 1 the run failed, 2 usage or input error, 130 interrupted (docs/cli.md)"


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help, unless it has none to show (``None``, a flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # identity, not ==: a default of 0 is shown, a flag's False is not
        shown = not any(action.default is empty for empty in (None, False, argparse.SUPPRESS)) and action.default != []
        if shown and "%(default)" not in text and (action.option_strings or action.nargs in ("?", "*")):
            text += " (default: %(default)s)"
        return text


def iter_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, the root first (``("bench", "build", "muted")``)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, (*path, name))


def _is_leaf(parser: argparse.ArgumentParser) -> bool:
    return not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avconfuse", description="verl-avconfuse: RL-CoMM tools for verl", epilog=EPILOG
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
        if isinstance(module_name, str):
            importlib.import_module(module_name).add_arguments(name, sub)
            sub.set_defaults(_module=module_name)
            continue
        actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)
        for part in module_name:
            known = set(actions.choices)
            importlib.import_module(part).add_actions(name, actions)
            for action in set(actions.choices) - known:
                actions.choices[action].set_defaults(_module=part)
    for path, each in iter_parsers(parser):
        each.formatter_class = HelpFormatter
        if path and _is_leaf(each):
            each.add_argument(
                "--debug",
                action="store_true",
                default=argparse.SUPPRESS,
                help="show the traceback of an error instead of one line (also AVCONFUSE_DEBUG=1)",
            )
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """``eval``, ``bench build``, ``reference precompute``: the words naming the command in messages."""
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if isinstance(action, str) else args.command


def main(argv: Sequence[str] | None = None) -> int:
    from verl_avconfuse.errors import EXIT_FAILED, EXIT_INTERRUPTED, RunFailed, describe, exit_code

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = argv  # the command as typed, for the provenance a result file records
    debug = getattr(args, "debug", False) or os.environ.get("AVCONFUSE_DEBUG", "") not in ("", "0")
    name = _command_name(args)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args.command, args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\navconfuse {name}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place errors become messages and exit codes
        if debug:
            raise
        code = exit_code(error)
        unexpected = code == EXIT_FAILED and not isinstance(error, RunFailed)
        hint = " (run again with --debug to see the traceback)" if unexpected else ""
        print(f"avconfuse {name}: error: {describe(error)}{hint}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
