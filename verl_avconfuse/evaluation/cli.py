"""``avconfuse eval TASK --data FILE --video-dir DIR --backend SPEC --out DIR [--limit N]``.

TASK and its file as published:

- ``music-avqa``: ``avqa-{train,val,test}.json`` from Music-AVQA's ``data/json`` or ``data/json_update``;
- ``avqa``: AVQA's ``train_qa.json`` / ``val_qa.json``;
- ``avhbench``: AVHBench's ``QA.json`` (or a folder of per-video json lists);
- ``avconfuse-muted`` / ``avconfuse-modified``: an AV-ConfuseBench question file, or ``published`` for the
  released file shipped with the package (the modified setting needs ``--judge``).

SPEC: ``hf:MODEL_DIR`` (a Qwen2.5-Omni thinker checkpoint), ``openai:URL#MODEL`` (an OpenAI-compatible
server; the key is read from ``--api-key-env``), ``jsonl:PREDICTIONS``. ``--prompt paper`` (default) asks the
benchmark's question verbatim, ``rl-comm`` adds the training format instruction; ``--match strict`` (default),
``release`` (the paper release's substring rule) or ``both``. Re-running the same command resumes from
``OUT/TASK.predictions.jsonl``. ``avconfuse bench eval --setting muted|modified`` is an alias of the
AV-ConfuseBench tasks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

TASK_NAMES = ("music-avqa", "avqa", "avhbench", "avconfuse-muted", "avconfuse-modified")


def add_run_arguments(parser: argparse.ArgumentParser, *, with_data: bool = True) -> None:
    """The options of every evaluation (shared with ``avconfuse bench eval``)."""
    if with_data:
        parser.add_argument("--data", required=True, help="the benchmark's file as published (or 'published')")
    parser.add_argument("--video-dir", required=True, help="folder holding the clips")
    parser.add_argument("--backend", required=True, help="hf:MODEL_DIR | openai:URL#MODEL | jsonl:PREDICTIONS")
    parser.add_argument("--out", required=True, type=Path, help="output folder (results, tables, chart, cache)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N questions only")
    parser.add_argument(
        "--prompt",
        choices=("paper", "rl-comm"),
        default="paper",
        help="paper: the benchmark's question verbatim (base-model protocol); rl-comm: + the training format",
    )
    parser.add_argument(
        "--match",
        choices=("strict", "release", "both"),
        default="strict",
        help="answer rule: strict (whole answer), release (the paper release's substring rule) or both",
    )
    parser.add_argument("--strict-format", action="store_true", help="a reply without <answer> has no answer")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per backend call (and per cache flush)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="reply budget (default: 256)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out questions whose clip is missing/unusable")
    parser.add_argument("--no-progress", action="store_true")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--avqa-options",
        choices=("pad", "skip"),
        default="pad",
        help="AVQA records with None or < 4 options: pad as the official code (default) or skip (reported)",
    )
    data.add_argument("--modality", default="all", help="music-avqa: Audio | Visual | Audio-Visual | all (default)")
    bench = parser.add_argument_group("AV-ConfuseBench")
    bench.add_argument("--yes-prob", action="store_true", help="muted, hf backend: P(yes) at the answer position")
    bench.add_argument("--judge", default=None, help="modified: 'offline' or openai:URL#MODEL")
    bench.add_argument("--judge-cache", type=Path, default=None, help="judge cache (default: OUT/judge_cache.jsonl)")
    bench.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="env var holding the judge's API key")
    bench.add_argument("--judge-temperature", type=float, default=0.0, help="the release used 1.0")
    bench.add_argument("--embedding-model", default=None, help="offline judge: sentence-transformers dir (MiniLM)")
    media = parser.add_argument_group("media (hf and openai backends)")
    media.add_argument(
        "--use-audio-in-video", action="store_true", help="interleave the soundtrack into the video (the release)"
    )
    hf = parser.add_argument_group("hf backend")
    hf.add_argument("--fps", type=float, default=2.0)
    hf.add_argument("--max-frames", type=int, default=32)
    hf.add_argument("--max-pixels", type=int, default=None)
    hf.add_argument("--device", default=None)
    hf.add_argument("--dtype", default="auto", help="auto | bfloat16 | float32 ...")
    hf.add_argument("--attn-implementation", default=None, help="sdpa (default) | flash_attention_2")
    hf.add_argument("--hf-batch-size", type=int, default=4, help="requests generated together")
    api = parser.add_argument_group("openai backend")
    api.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    api.add_argument("--media", choices=("file", "base64"), default="file", help="send media as file:// URLs or inline")
    api.add_argument("--timeout", type=float, default=120.0)
    api.add_argument("--concurrency", type=int, default=4)


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASK_NAMES, help="benchmark")
    add_run_arguments(parser)


def backend_kwargs(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options for the backend kind of ``spec``, from the parsed arguments."""
    kind = spec.partition(":")[0]
    if kind == "hf":
        return {
            "use_audio_in_video": args.use_audio_in_video,
            "fps": args.fps,
            "max_frames": args.max_frames,
            "max_pixels": args.max_pixels,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.hf_batch_size,
            "attn_implementation": args.attn_implementation,
        }
    if kind == "openai":
        return {
            "use_audio_in_video": args.use_audio_in_video,
            "api_key_env": args.api_key_env,
            "media": args.media,
            "timeout": args.timeout,
            "concurrency": args.concurrency,
        }
    return {}


def make_judge(args: argparse.Namespace):
    """The judge ``--judge`` names (``None`` when not given)."""
    if args.judge is None:
        return None
    from verl_avconfuse.bench.judge import LLMJudge, OfflineJudge

    if args.judge == "offline":
        return OfflineJudge(args.embedding_model)
    kind, _, target = args.judge.partition(":")
    url, sep, model = target.rpartition("#")
    if kind != "openai" or not sep or not url or not model:
        raise ValueError(f"--judge {args.judge!r}: expected 'offline' or openai:URL#MODEL")
    return LLMJudge(
        url,
        model,
        api_key_env=args.judge_api_key_env,
        cache_path=args.judge_cache or args.out / "judge_cache.jsonl",
        temperature=args.judge_temperature,
    )


def run_task(task_name: str, data: str, args: argparse.Namespace) -> dict[str, Any]:
    """Parse-free core of ``avconfuse eval``: build backend and judge, run, return the results."""
    from verl_avconfuse.data_preprocess.music_avqa import parse_modalities
    from verl_avconfuse.evaluation.backends import load_backend
    from verl_avconfuse.evaluation.runner import evaluate
    from verl_avconfuse.evaluation.tasks import LoadOptions, get_task

    task = get_task(task_name)
    judge = make_judge(args) if task.judged else None
    backend = load_backend(args.backend, **backend_kwargs(args.backend, args))
    return evaluate(
        task,
        backend,
        data,
        args.video_dir,
        args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        prompt=args.prompt,
        match=args.match,
        strict_format=args.strict_format,
        judge=judge,
        yes_prob=args.yes_prob,
        load_options=LoadOptions(avqa_options=args.avqa_options, modalities=parse_modalities(args.modality)),
    )


def summary_table(result: dict[str, Any], columns) -> str:
    from verl_avconfuse.evaluation.report import cell_value, format_value

    headers = " | ".join(header for _, header in columns)
    rows = [f"| match | {headers} |"]
    for rule, metrics in result["metrics_by_match"].items():
        rows.append(f"| {rule} | " + " | ".join(format_value(cell_value(metrics.get(k))) for k, _ in columns) + " |")
    return "\n".join(rows)


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.bench.schemas import BenchFormatError
    from verl_avconfuse.evaluation.tasks import get_task
    from verl_avconfuse.media import MediaError

    try:
        result = run_task(args.task, args.data, args)
    except (ValueError, KeyError, FileNotFoundError, BenchFormatError, MediaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary_table(result, get_task(args.task).columns))
    print(f"{result['n_docs']} questions ({result['generated']} generated now); results: {result['files']['json']}")
    return 0
