"""Files written atomically, and JSON Lines read with line numbers: the one place these patterns live.

Every output of the package (parquet datasets, result JSON, reports, media) is written to a hidden temp
file in the destination's own folder and moved onto the destination with ``os.replace`` once complete.
The move is a rename within one file system, so a reader sees the old file or the new one, never half a
file; any failure while writing (``KeyboardInterrupt`` included) deletes the temp file and leaves the old
destination untouched. Only a hard kill can leave a hidden ``.NAME.*.tmp`` behind.

Nothing here imports torch, verl or pandas at module level.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "JsonlLine",
    "check_model_location",
    "append_jsonl",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "iter_jsonl",
]

_TEMP_ATTEMPTS = 100
#: What the Hugging Face hub accepts as a repo id: ``name`` or ``owner/name``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def check_model_location(value: str, option: str, *, hub: bool = True) -> None:
    """Raise :class:`~verl_avconfuse.errors.InputError` unless ``value`` is an existing folder or (``hub``)
    a Hugging Face repo id. Called before a model loads, so a typo costs no checkpoint load and the message
    says which option was wrong, not the hub client's "Repo id must use alphanumeric chars"."""
    from verl_avconfuse.errors import InputError

    path = Path(os.path.expanduser(value))
    if path.is_dir():
        return
    if path.exists():
        raise InputError(f"{option} {value}: a file, expected a model folder (with config.json)")
    if hub and _HUB_ID.match(value) and not value.startswith((".", "~")):
        return
    raise InputError(f"{option} {value}: no such folder; expected a model folder (with config.json)" +
                     (" or a hub id such as Qwen/Qwen2-Audio-7B-Instruct" if hub else ""))  # fmt: skip


def _create_temp(path: Path, suffix: str) -> Path:
    """Create an empty, new, hidden file ``.NAME.RANDOM.tmpSUFFIX`` next to ``path``.

    Like ``tempfile.mkstemp`` but with mode ``0o666`` filtered by the umask, as a plain ``open()`` would
    create it: mkstemp's ``0o600`` would survive the rename and leave datasets unreadable to the group.
    """
    for _ in range(_TEMP_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temp file name next to {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "", parents: bool = False) -> Iterator[Path]:
    """Yield a new empty temp file next to ``path``; when the block ends, it replaces ``path``.

    The block writes the temp path however it likes (by name: pandas, FFmpeg, libsndfile); on success the
    temp file is moved onto ``path`` (``os.replace``), on any exception (``BaseException``:
    ``KeyboardInterrupt`` too) it is deleted and the exception propagates, ``path`` left as it was.

    Args:
        path: the destination file.
        suffix: appended to the temp name after ``.tmp``; pass ``path.suffix`` for writers that pick the
            format from the extension (FFmpeg, libsndfile).
        parents: create missing parent folders first. Without it a missing folder raises.

    Raises:
        FileNotFoundError: the parent folder does not exist and ``parents`` is false (names both paths).
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    tmp = _create_temp(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``out_dir``; on success it replaces ``out_dir`` in one rename.

    On an exception the temporary folder is removed; a killed process leaves at most a hidden
    ``.NAME.tmp-*`` folder, never a half-written ``out_dir``. An existing ``out_dir`` is replaced (moved
    aside first, then deleted).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    # mkdtemp makes the folder private (0700); give the result a normal directory's mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (module docstring); return ``path`` as a :class:`Path`."""
    with atomic_path(path, parents=parents) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8", parents: bool = False) -> Path:
    """Write ``text`` atomically; newlines are written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode(encoding), parents=parents)


def atomic_write_figure(
    path: str | os.PathLike, figure: Any, *, dpi: float | None = None, parents: bool = False
) -> Path:
    """Save a matplotlib ``figure`` as PNG atomically and close it. No timestamp goes into the file, so the
    same figure gives the same bytes."""
    import io as _io

    import matplotlib.pyplot as plt

    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue(), parents=parents)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, parents: bool = False, **json_kwargs: Any) -> Path:
    """Write ``json.dumps(obj, **json_kwargs)`` plus a final newline, UTF-8, atomically.

    ``json_kwargs`` go to :func:`json.dumps` unchanged (e.g. ``indent=2, ensure_ascii=False``), so each
    caller keeps its own file format.
    """
    return atomic_write_text(path, json.dumps(obj, **json_kwargs) + "\n", parents=parents)


def atomic_write_parquet(
    path: str | os.PathLike, data: Any, *, parents: bool = False, **to_parquet_kwargs: Any
) -> Path:
    """Write a ``pandas.DataFrame`` (or rows, a list of dicts, made into one) as parquet atomically.

    ``to_parquet_kwargs`` go to ``DataFrame.to_parquet`` (e.g. ``index=False``).
    """
    import pandas as pd

    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    with atomic_path(path, parents=parents) as tmp:
        frame.to_parquet(tmp, **to_parquet_kwargs)
    return Path(path)


class JsonlLine(NamedTuple):
    """One non-blank line of a JSON Lines file.

    Attributes:
        number: the line's number in the file, 1-based (blank lines are counted, not yielded).
        record: the parsed value (any JSON value, not only objects); ``None`` when ``error`` is set.
        error: why the line is not JSON, else ``None``; ``error.msg`` is the short reason.
    """

    number: int
    record: Any
    error: json.JSONDecodeError | None


def iter_jsonl(path: str | os.PathLike) -> Iterator[JsonlLine]:
    """The non-blank lines of a UTF-8 JSON Lines file, parsed, with their line numbers.

    A line that is not JSON is yielded with its error instead of raising, so each reader decides: drop it
    and report the line, skip it (a torn last line of an append-only cache), or stop with its own message.
    Lines end at ``\\n`` only, never at the other separators ``str.splitlines`` knows (U+2028, U+0085,
    ...): ``json.dumps(..., ensure_ascii=False)`` writes those unescaped inside strings.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnicodeDecodeError: the file is not UTF-8.
    """
    # newline="\n": split at "\n" only; the "\r" of a "\r\n" ending is whitespace to json.loads.
    with open(path, encoding="utf-8", newline="\n") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                parsed = JsonlLine(number, json.loads(line), None)
            except json.JSONDecodeError as error:
                parsed = JsonlLine(number, None, error)
            yield parsed


def append_jsonl(path: str | os.PathLike, records: Iterable[Any], *, fsync: bool = True) -> int:
    """Append ``records`` to an append-only JSON Lines cache, one ``json.dumps(..., ensure_ascii=False)`` each.

    A run killed mid-append leaves a torn last line with no newline; appending straight after it would glue
    the first new record onto the fragment and lose both. So a file that does not end with a newline gets
    one first: the fragment stays a line of its own that :func:`iter_jsonl` reports as not JSON.
    The parent folder is created. Returns the number of records written.
    """
    path = Path(path)
    payload = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")
    if not payload:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                payload = b"\n" + payload
        f.write(payload)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    return payload.count(b"\n") - (1 if payload.startswith(b"\n") else 0)
