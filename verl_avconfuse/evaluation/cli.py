"""``avconfuse eval TASK --data FILE --video-dir DIR --backend SPEC --out DIR [--limit N]``.

TASK: ``music-avqa`` (``avqa-test.json``), ``avqa`` (``val_qa.json``), ``avhbench`` (the ``json``
folder). SPEC: ``hf:MODEL_DIR`` (a Qwen2.5-Omni thinker checkpoint), ``openai:URL#MODEL`` (an
OpenAI-compatible server; the key is read from ``--api-key-env``), ``jsonl:PREDICTIONS``.
Re-running the same command resumes from ``OUT/TASK.predictions.jsonl``.
"""

from __future__ import annotations

import argparse
from typing import Any

TASK_NAMES = ("music-avqa", "avqa", "avhbench")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASK_NAMES, help="benchmark")
    parser.add_argument("--data", required=True, help="the benchmark's release file (AVHBench: its json folder)")
    parser.add_argument("--video-dir", required=True, help="folder holding the clips")
    parser.add_argument("--backend", required=True, help="hf:MODEL_DIR | openai:URL#MODEL | jsonl:PREDICTIONS")
    parser.add_argument("--out", required=True, help="output folder (results, table, prediction cache)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N questions only")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per backend call (and per cache flush)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="reply budget (default: 256)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out questions whose clip is unusable")
    parser.add_argument("--no-progress", action="store_true")
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


def run(command: str, args: argparse.Namespace) -> int:
    import sys

    from verl_avconfuse.evaluation.backends import load_backend
    from verl_avconfuse.evaluation.report import format_value
    from verl_avconfuse.evaluation.runner import evaluate
    from verl_avconfuse.evaluation.tasks import get_task

    task = get_task(args.task)
    try:
        backend = load_backend(args.backend, **backend_kwargs(args.backend, args))
        result = evaluate(
            task,
            backend,
            args.data,
            args.video_dir,
            args.out,
            limit=args.limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            skip_bad=args.skip_bad,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    headers = " | ".join(header for _, header in task.columns)
    values = " | ".join(format_value(result["metrics"][key].get("accuracy")) for key, _ in task.columns)
    print(f"| {headers} |\n| {values} |")
    print(f"{result['n_docs']} questions ({result['generated']} generated now); results: {result['files']['json']}")
    return 0
