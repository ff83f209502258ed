"""``avconfuse reference precompute``: write the reference a-think into a dataset before training.

    avconfuse reference precompute --data train.parquet --model /models/Qwen2-Audio-7B-Instruct \\
        [--out train.ref.parquet] [--backend hf|vllm] [--cache-dir DIR] [--batch-size 8] [--media-root DIR]

Each row gets ``extra_info.reference_a_think`` (``None`` where its audio could not be used; those
rows are listed). Work is resumable: every generated reference goes to the persistent cache as its
batch finishes, so an interrupted run restarts where it stopped, and a finished one re-runs for
free. The output parquet is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from verl_avconfuse.io import atomic_write_parquet


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pre = actions.add_parser("precompute", help="write extra_info.reference_a_think into a verl parquet")
    pre.add_argument("--data", type=Path, required=True, help="verl RL parquet (rows with videos and/or audios)")
    pre.add_argument("--model", required=True, help="the reference audio LM (e.g. Qwen2-Audio-7B-Instruct)")
    pre.add_argument("--out", type=Path, default=None, help="output parquet (default: DATA with .ref before .parquet)")
    pre.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    pre.add_argument("--cache-dir", default=None, help="reference cache (default: the trainer's, see settings.py)")
    pre.add_argument("--batch-size", type=int, default=8)
    pre.add_argument("--media-root", default=None, help="folder relative media paths are resolved against")
    pre.add_argument("--seed", type=int, default=0)


def _row_request(row: dict, media_root: str | None):
    from verl_avconfuse.rewards.manager import reference_request_for

    messages = [{"role": "user", "content": []}]
    for key, kind in (("audios", "audio"), ("videos", "video")):
        for item in row.get(key) if row.get(key) is not None else []:
            messages[0]["content"].append({"type": kind, kind: item})
    for message in row.get("prompt") if row.get("prompt") is not None else []:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            text = content.replace("<video>", "").replace("<audio>", "").replace("<image>", "")
            messages[0]["content"].append({"type": "text", "text": text})
    non_tensor = {
        "raw_prompt": messages,
        "extra_info": row.get("extra_info") or {},
        "reward_model": row.get("reward_model") or {},
    }
    return reference_request_for(non_tensor, media_root)


def precompute(data: Path, out: Path, service, *, media_root: str | None = None, batch_size: int = 8) -> dict:
    import pandas as pd
    from tqdm import tqdm

    frame = pd.read_parquet(data)
    rows = frame.to_dict(orient="records")
    requests = [_row_request(row, media_root) for row in rows]
    unique = sorted({r for r in requests if r is not None}, key=lambda r: (r.audio_path, r.question, r.answer))
    answers: dict = {}
    with tqdm(total=len(unique), desc="reference a-think", unit="prompt") as progress:
        for start in range(0, len(unique), batch_size):
            chunk = unique[start : start + batch_size]
            for request, result in zip(chunk, service.get_many(chunk), strict=True):
                answers[request] = result
            progress.update(len(chunk))
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
    frame = frame.assign(extra_info=extra_infos)
    atomic_write_parquet(out, frame, parents=True)
    return {"rows": len(rows), "prompts": len(unique), "failures": failures, **service.stats.as_metrics()}


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.reference.backends import SamplingOptions, load_audio_lm
    from verl_avconfuse.reference.cache import ReferenceCache
    from verl_avconfuse.reference.service import ReferenceService
    from verl_avconfuse.settings import ReferenceSettings

    if not args.data.is_file():
        raise SystemExit(f"--data {args.data}: no such file")
    defaults = ReferenceSettings()
    out = args.out or args.data.with_name(args.data.name.replace(".parquet", "") + ".ref.parquet")
    sampling = SamplingOptions(defaults.temperature, defaults.top_p, defaults.max_new_tokens, args.seed)
    service = ReferenceService(
        load_audio_lm(args.backend, args.model, sampling=sampling),
        ReferenceCache(args.cache_dir or defaults.cache_dir),
        batch_size=args.batch_size,
    )
    summary = precompute(args.data, out, service, media_root=args.media_root, batch_size=args.batch_size)
    print(json.dumps({**summary, "failures": summary["failures"][:20], "out": str(out)}, indent=2))
    return 1 if summary["rows"] and len(summary["failures"]) == summary["rows"] else 0
