"""The command line as documented: every ``avconfuse`` line of the README and docs/ parses with the real
parser, and every option of every command has help and shows its default."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from verl_avconfuse.cli import build_parser, iter_parsers

from conftest import REPO

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([\w-]*)\s*$")
_COMMENT = re.compile(r"(^|\s)#.*$")  # "# ..." after a space; "URL#MODEL" is no comment
_OUTPUT = re.compile(r"^avconfuse( [\w-]+){1,2}: ")
_ALTERNATIVES = re.compile(r"([^\s|\[\]]+)(\|[^\s|\[\]]+)+")


def documented_commands(path: Path) -> list[tuple[int, str]]:
    """``(line number, command)`` of every ``avconfuse ...`` command in a shell block of ``path`` (continued
    lines joined, comments and a ``$`` prompt dropped)."""
    commands, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = _FENCE.match(line.strip())
        if fence:
            in_block = not in_block and fence.group(1) in ("", "bash", "sh", "shell", "console")
            continue
        if not in_block:
            continue
        text = _COMMENT.sub("", line).rstrip()
        if not pending:
            start = number
        pending += " " + text.rstrip("\\").strip()
        if text.endswith("\\"):
            continue
        command = pending.strip().removeprefix("$ ")
        pending = ""
        for part in command.split(" && "):
            part = part.strip()
            # "avconfuse eval: error: ..." in a block is output shown, not a command
            if part.startswith(("avconfuse ", "python -m verl_avconfuse.cli ")) and not _OUTPUT.match(part):
                commands.append((start, part.removeprefix("python -m verl_avconfuse.cli ").removeprefix("avconfuse ")))
    return commands


def concrete(command: str) -> list[str]:
    """A synopsis line as one runnable argument list: optional ``[...]`` parts included (so options the
    docs show together must work together), the first of ``a|b|c`` alternatives, ``...`` dropped, and a
    count placeholder ``N`` as 2."""
    command = command.replace("[", " ").replace("]", " ")
    command = _ALTERNATIVES.sub(lambda m: m.group(1), command)
    words = [w for w in shlex.split(command) if w not in ("...", "…")]
    return ["2" if w == "N" else w for w in words]


CASES = [
    pytest.param(words, id=f"{path.relative_to(REPO)}:{number}")
    for path in DOC_FILES
    for number, command in documented_commands(path)
    for words in [concrete(command)]
]


def test_the_docs_have_command_lines_to_check():
    files = {case.id.split(":")[0] for case in CASES}
    assert {"README.md", "docs/cli.md", "docs/avconfusebench.md", "docs/evaluation.md"} <= files
    assert len(CASES) >= 15


@pytest.mark.parametrize("words", CASES)
def test_documented_command_parses(words, capsys):
    parser = build_parser()
    try:
        parser.parse_args(words)
    except SystemExit as exit:
        # --help prints and exits 0; anything else is a documented command the parser refuses
        assert exit.code == 0 and "--help" in words, capsys.readouterr().err


def test_the_parser_refuses_what_the_docs_once_showed(capsys):
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(
            concrete("bench build modified --videos V --bank esc50:E --out o [--manifest videos.json]")
        )
    assert refused.value.code == 2 and "not allowed with argument --videos" in capsys.readouterr().err


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        yield action


def test_every_option_of_every_command_has_help_and_shows_its_default():
    for path, parser in iter_parsers(build_parser()):
        name = " ".join(("avconfuse", *path))
        text = parser.format_help()
        for action in _options(parser):
            flag = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"{name}: {flag} has no help"
            if action.option_strings and not any(action.default is e for e in (None, False, argparse.SUPPRESS)):
                shown = str(action.default).split("\n")[0][:20]
                assert f"(default: {shown}" in " ".join(text.split()), f"{name}: {flag} hides its default"


def test_every_command_has_a_description_and_names_the_exit_codes():
    for path, parser in iter_parsers(build_parser()):
        name = " ".join(("avconfuse", *path))
        if path:
            assert parser.description, f"{name} --help has no description"
    help_text = build_parser().format_help()
    assert "1 the run failed, 2 usage or input error" in help_text


def test_one_vocabulary_across_the_four_commands():
    parsers = dict(iter_parsers(build_parser()))
    flags = {
        path: {flag for action in p._actions for flag in action.option_strings}
        for path, p in parsers.items()
        if path in {("eval",), ("bench", "eval"), ("bench", "build", "muted"), ("bench", "build", "modified"),
                    ("reference", "precompute")}
    }  # fmt: skip
    for path, options in flags.items():
        assert {"--out", "--no-progress", "--debug"} <= options, path
    for path in (("eval",), ("bench", "eval"), ("reference", "precompute")):
        assert {"--skip-bad", "--batch-size"} <= flags[path], path
    for path in (("eval",), ("bench", "eval")):
        assert {"--timeout", "--concurrency", "--limit"} <= flags[path], path
    # eval and bench eval share one definition of every option they have in common
    ev, bench = parsers[("eval",)], parsers[("bench", "eval")]
    shared = {a.dest: (a.default, a.help, a.type) for a in _options(ev) if a.option_strings}
    for action in _options(bench):
        if action.dest in shared and action.dest != "judge":  # bench eval's judge defaults to offline
            assert shared[action.dest] == (action.default, action.help, action.type), action.dest
