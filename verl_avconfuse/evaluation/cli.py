"""``avconfuse eval TASK --data FILE --video-dir DIR --backend SPEC --out DIR [--limit N]``.

TASK and its file as published:

- ``music-avqa``: ``avqa-{train,val,test}.json`` from Music-AVQA's ``data/json`` or ``data/json_update``;
- ``avqa``: AVQA's ``train_qa.json`` / ``val_qa.json``;
- ``avhbench``: AVHBench's ``QA.json`` (or a folder of per-video json lists);
- ``avconfuse-muted`` / ``avconfuse-modified``: an AV-ConfuseBench question file, or ``published`` for the
  released file shipped with the package (the modified setting needs ``--judge``).

SPEC: ``hf:MODEL_DIR`` (a Qwen2.5-Omni or Qwen3-Omni thinker checkpoint), ``openai:URL#MODEL`` (an OpenAI-compatible
server; the key is read from ``--api-key-env``), ``jsonl:PREDICTIONS``. ``--prompt paper`` (default) asks the
benchmark's question verbatim, ``rl-comm`` adds the training format instruction; ``--match strict`` (default),
``release`` (the paper release's substring rule) or ``both``. Re-running the same command resumes from
``OUT/TASK.predictions.jsonl``. ``avconfuse bench eval --setting muted|modified`` is an alias of the
AV-ConfuseBench tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from verl_avconfuse.errors import InputError, RunFailed

TASK_NAMES = ("music-avqa", "avqa", "avhbench", "avconfuse-muted", "avconfuse-modified")


def add_run_arguments(parser: argparse.ArgumentParser, *, with_data: bool = True) -> None:
    """The options of every evaluation (shared with ``avconfuse bench eval``: one vocabulary)."""
    if with_data:
        parser.add_argument("--data", required=True, help="the benchmark's file as published (or 'published')")
    parser.add_argument("--video-dir", required=True, help="folder holding the clips")
    parser.add_argument(
        "--backend",
        required=True,
        help="who answers: hf:MODEL_DIR | vllm:MODEL_DIR | openai:URL#MODEL | jsonl:PREDICTIONS",
    )
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
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="requests the model answers together (hf: one generate call; cached after each batch)",
    )
    # The old name of --batch-size for the hf backend (two batch sizes meant two meanings of one word).
    parser.add_argument("--hf-batch-size", dest="batch_size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="reply budget (default: the task's, 256)")
    parser.add_argument(
        "--skip-bad", action="store_true", help="leave out questions whose clip is missing or unusable (reported)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--avqa-options",
        choices=("pad", "skip"),
        default="pad",
        help="avqa: records with None or < 4 options are padded as the official code, or skipped (reported)",
    )
    data.add_argument("--modality", default="all", help="music-avqa: Audio | Visual | Audio-Visual | all")
    bench = parser.add_argument_group("AV-ConfuseBench")
    bench.add_argument("--yes-prob", action="store_true", help="muted, hf backend: P(yes) at the answer position")
    bench.add_argument("--judge", default=None, help="modified: offline | openai:URL#MODEL")
    bench.add_argument("--judge-cache", type=Path, default=None, help="judge cache (default: OUT/judge_cache.jsonl)")
    bench.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="env var holding the judge's API key")
    bench.add_argument(
        "--judge-temperature", type=float, default=0.0, help="the judge's sampling temperature; the release used 1.0"
    )
    bench.add_argument(
        "--embedding-model", default=None, help="offline judge: a sentence-transformers folder (default: MiniLM)"
    )
    media = parser.add_argument_group("media (hf and openai backends)")
    media.add_argument(
        "--use-audio-in-video", action="store_true", help="interleave the soundtrack into the video (the release)"
    )
    hf = parser.add_argument_group("hf backend")
    hf.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second")
    hf.add_argument("--max-frames", type=int, default=32, help="at most this many frames per clip")
    hf.add_argument("--max-pixels", type=int, default=None, help="at most this many pixels per frame (default: native)")
    hf.add_argument("--device", default=None, help="cuda | cpu | cuda:1 ... (default: cuda when available)")
    hf.add_argument("--dtype", default="auto", help="weights' dtype: auto (as saved) | bfloat16 | float32 ...")
    hf.add_argument("--attn-implementation", default=None, help="sdpa (default) | flash_attention_2")
    api = parser.add_argument_group("openai backend and judge")
    api.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    api.add_argument("--media", choices=("file", "base64"), default="file", help="send media as file:// URLs or inline")
    api.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request")
    api.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASK_NAMES, help="benchmark")
    add_run_arguments(parser)


def _add_bench_eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--setting", choices=("muted", "modified"), required=True, help="which AV-ConfuseBench set")
    ev.add_argument("--questions", required=True, help="question JSON, or 'published' for the released file")
    add_run_arguments(ev, with_data=False)
    # The old name of --skip-bad here (one vocabulary across eval, bench eval and reference precompute).
    ev.add_argument("--skip-missing", dest="skip_bad", action="store_true", help=argparse.SUPPRESS)
    ev.set_defaults(judge="offline")


def add_actions(command: str, actions) -> None:
    """``avconfuse bench eval``: the AV-ConfuseBench tasks under the ``bench`` command (``bench build`` is the
    builders', :mod:`verl_avconfuse.bench.cli`)."""
    _add_bench_eval_arguments(
        actions.add_parser(
            "eval",
            help="evaluate a model on a published or built set",
            description="Evaluate a model on an AV-ConfuseBench set: the alias of `avconfuse eval "
            "avconfuse-muted|avconfuse-modified` (same options; --questions for --data; judge offline by default).",
        )
    )


def backend_kwargs(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options for the backend kind of ``spec``, from the parsed arguments."""
    kind = spec.partition(":")[0]
    if kind in ("hf", "vllm"):
        return {
            "use_audio_in_video": args.use_audio_in_video,
            "fps": args.fps,
            "max_frames": args.max_frames,
            "max_pixels": args.max_pixels,
            "device": args.device,
            "dtype": args.dtype,
            "batch_size": args.batch_size,
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
    """The judge ``--judge`` names (``None`` when not given); an LLM judge is checked to be reachable."""
    if args.judge is None:
        return None
    from verl_avconfuse.evaluation.judge import LLMJudge, OfflineJudge

    if args.judge == "offline":
        return OfflineJudge(args.embedding_model)
    kind, _, target = args.judge.partition(":")
    url, sep, model = target.rpartition("#")
    if kind != "openai" or not sep or not url or not model:
        raise InputError(f"--judge {args.judge}: expected offline or openai:URL#MODEL")
    judge = LLMJudge(
        url,
        model,
        api_key_env=args.judge_api_key_env,
        cache_path=args.judge_cache or args.out / "judge_cache.jsonl",
        temperature=args.judge_temperature,
        timeout=args.timeout,
        concurrency=args.concurrency,
    )
    judge.client.check_reachable("--judge")
    return judge


def _check_numbers(args: argparse.Namespace) -> None:
    for option, value in (("--batch-size", args.batch_size), ("--concurrency", args.concurrency)):
        if value < 1:
            raise InputError(f"{option} {value}: expected a positive number")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}: expected a positive number")
    if args.timeout <= 0:
        raise InputError(f"--timeout {args.timeout}: expected a positive number of seconds")
    if args.embedding_model is not None and not Path(args.embedding_model).is_dir():
        raise InputError(f"--embedding-model {args.embedding_model}: no such folder")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: a file, expected a folder")


def run_task(task_name: str, data: str, args: argparse.Namespace) -> dict[str, Any]:
    """Parse-free core of ``avconfuse eval``: check every input, then load the model, run, return the results.

    Order: the options, the backend spec, the benchmark file and every clip, the servers (reachable?),
    and only then the model: a mistyped path costs no checkpoint load.
    """
    from verl_avconfuse.data_preprocess.music_avqa import parse_modalities
    from verl_avconfuse.evaluation.backends import (
        OpenAIBackend,
        PredictionsBackend,
        check_backend_spec,
        load_backend,
    )
    from verl_avconfuse.evaluation.runner import evaluate_prepared, prepare_docs
    from verl_avconfuse.evaluation.task import LoadOptions
    from verl_avconfuse.evaluation.tasks import get_task

    task = get_task(task_name)
    _check_numbers(args)
    check_backend_spec(args.backend)
    if task.judged and args.judge is None:
        raise InputError(f"{task.name}: needs a judge (--judge offline or openai:URL#MODEL)")
    if args.yes_prob and not task.yes_prob:
        raise InputError(f"{task.name}: --yes-prob applies to the muted setting only")
    if args.yes_prob and not args.backend.startswith(("hf:", "vllm:")):
        raise InputError("--yes-prob needs the hf: or vllm: backend (it reads the model's next-token probabilities)")
    prepared = prepare_docs(
        task,
        data,
        args.video_dir,
        limit=args.limit,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
        load_options=LoadOptions(avqa_options=args.avqa_options, modalities=parse_modalities(args.modality)),
    )
    judge = make_judge(args) if task.judged else None
    backend = load_backend(args.backend, **backend_kwargs(args.backend, args))
    if isinstance(backend, PredictionsBackend):
        backend.check_ids([d.id for d in prepared.docs])
    if isinstance(backend, OpenAIBackend):
        backend.check_reachable()
    result = evaluate_prepared(
        task,
        backend,
        prepared,
        args.out,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress,
        prompt=args.prompt,
        match=args.match,
        strict_format=args.strict_format,
        judge=judge,
        yes_prob=args.yes_prob,
    )
    if task.judged:
        check_judged(result)
    return result


def check_judged(result: dict[str, Any]) -> None:
    """Say so on stderr when the judge could not score some items; fail when it scored none.

    Raises:
        RunFailed: no item was judged (A-Acc and V-Acc would be empty); the report is written, the
            replies are cached, so re-running judges again without asking the model.
    """
    errors = [doc["judge_error"] for doc in result["docs"] if doc.get("judge_error")]
    if not errors:
        return
    if len(errors) == len(result["docs"]):
        raise RunFailed(
            f"the judge {result['judge']} scored none of the {len(errors)} items ({errors[0]}); the model's "
            f"replies are cached in {Path(result['files']['json']).parent}: re-run the same command to judge again"
        )
    print(
        f"warning: the judge {result['judge']} could not score {len(errors)} of {len(result['docs'])} items "
        f"(first: {errors[0]}); they are left out of A-Acc/V-Acc",
        file=sys.stderr,
    )


def summary_table(result: dict[str, Any], columns) -> str:
    from verl_avconfuse.evaluation.report import cell_value, format_value

    headers = " | ".join(header for _, header in columns)
    rows = [f"| match | {headers} |"]
    for rule, metrics in result["metrics_by_match"].items():
        rows.append(f"| {rule} | " + " | ".join(format_value(cell_value(metrics.get(k))) for k, _ in columns) + " |")
    return "\n".join(rows)


def _bench_eval(args: argparse.Namespace) -> dict:
    """``bench eval`` is ``avconfuse eval avconfuse-muted|avconfuse-modified`` (one harness)."""
    from verl_avconfuse.evaluation.tasks import SETTING_TASKS

    results = run_task(SETTING_TASKS[args.setting], args.questions, args)
    return {
        "setting": args.setting,
        "task": results["task"],
        "published": results["published"],
        "n_items": results["n_docs"],
        "backend": results["backend"],
        "judge": results["judge"],
        "prompt": results["prompt"],
        "metrics": {k: v for k, v in results["metrics"].items() if k != "groups"},
        **results["files"],
    }


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.evaluation.tasks import get_task

    if command == "bench":  # bench eval
        print(json.dumps(_bench_eval(args), indent=2, default=str))
        return 0

    result = run_task(args.task, args.data, args)
    print(summary_table(result, get_task(args.task).columns))
    print(f"{result['n_docs']} questions ({result['generated']} generated now); results: {result['files']['json']}")
    return 0
