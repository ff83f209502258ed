"""What went wrong, in the words of the ``avconfuse`` command line: a user's input, or the run itself.

Every command exits with one of :data:`EXIT_CODES` (docs/cli.md). Errors raised anywhere in the package are
mapped by :func:`exit_code`:

- :class:`InputError` and the other errors a user's input causes (``ValueError``, a missing file, an
  undecodable medium, a missing optional dependency): status 2, before any model loads wherever the input
  can be checked that early;
- :class:`RunFailed` and anything else (a check of a built clip, a server that does not answer, a bug):
  status 1.

The command line prints one line ``avconfuse COMMAND: error: MESSAGE`` for both; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

EXIT_OK = 0
#: The inputs were fine but the run did not produce what it should (failed checks, failed requests).
EXIT_FAILED = 1
#: The command line, a file, a field or a value is wrong; nothing ran (or nothing was written).
EXIT_USAGE = 2
#: Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the run failed (checks, requests or items failed; the message says which)",
    EXIT_USAGE: "usage or input error: a wrong option, file, field or value; nothing was written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); finished work is cached, re-run to resume",
}


class InputError(ValueError):
    """A user's input is wrong: the message names the file, field or value, what was expected, and the fix."""


class RunFailed(RuntimeError):
    """The run started on valid inputs but failed; the message says what failed and what was kept."""


#: ValueError covers BenchFormatError, media's MediaError, JSON errors and pyarrow's ArrowInvalid; OSError's file
#: cases cover a mistyped path. ImportError: an optional dependency the chosen option needs is missing.
INPUT_ERROR_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    ImportError,
)


def exit_code(error: BaseException) -> int:
    """The exit status for ``error`` (module docstring)."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, RunFailed):
        return EXIT_FAILED
    if isinstance(error, INPUT_ERROR_TYPES):
        return EXIT_USAGE
    return EXIT_FAILED


def describe(error: BaseException) -> str:
    """One line for ``error``: its message, with the type for errors that are not ours to word."""
    message = " ".join(str(error).split()) if str(error) else ""
    if isinstance(error, (InputError, RunFailed)) and message:
        return message
    if isinstance(error, ModuleNotFoundError) and error.name:
        return f"the Python package {error.name!r} is not installed ({message})"
    if isinstance(error, KeyError):  # str(KeyError('x')) is "'x'": say what it is
        return f"missing key {message}"
    if message and (type(error) is ValueError or type(error).__module__.startswith("verl_avconfuse")):
        return message  # worded for the user where it was raised
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
