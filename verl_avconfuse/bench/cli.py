"""``avconfuse bench``: build AV-ConfuseBench sets from real media, evaluate a model on them.

    avconfuse bench build muted (--urmp ROOT | --manifest FILE) --out DIR [--controls] [--mute all|N] [--seed 0]
    avconfuse bench build modified (--videos DIR | --manifest FILE) --bank SPEC [--bank SPEC] --out DIR \\
        [--sound-types bird,drill,rain,thunderstorm,wind] [--per-video all|N] [--seed 0]
    avconfuse bench eval --setting muted|modified --questions FILE|published --video-dir DIR \\
        --backend hf:PATH|openai:URL#MODEL|jsonl:PATH --out DIR [--limit N] [--yes-prob] \\
        [--judge offline|openai:URL#MODEL] [--judge-cache FILE]

Bank specs: ``esc50:ROOT``, ``urbansound8k:ROOT``, ``folder:ROOT`` (or a bare ROOT, layout detected).
``--questions published`` reads the released file shipped with the package. Build and eval print a JSON
summary on stdout; errors about inputs exit with status 2 and a message naming the file and field.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _count_or_all(value: str) -> str | int:
    if value == "all":
        return value
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive integer, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected 'all' or a positive integer, got {value!r}")
    return count


def _add_build_arguments(build: argparse.ArgumentParser) -> None:
    from verl_avconfuse.bench.muted import (
        DEFAULT_LEVEL_TOLERANCE_DB,
        DEFAULT_MIX_CEILING_DBFS,
        DEFAULT_RESIDUAL_THRESHOLD_DB,
    )
    from verl_avconfuse.bench.schemas import ANNOTATION_TEMPLATE, MODIFIED_QUESTION, MUTED_QUESTION_TEMPLATE
    from verl_avconfuse.bench.sound_bank import (
        DEFAULT_CROSSFADE_S,
        DEFAULT_PEAK_CEILING_DBFS,
        DEFAULT_TARGET_RMS_DBFS,
        PAPER_SOUND_TYPES,
    )

    kinds = build.add_subparsers(dest="setting", metavar="SETTING", required=True)
    muted = kinds.add_parser("muted", help="remove one instrument's stem, keep the video of it playing")
    source = muted.add_mutually_exclusive_group(required=True)
    source.add_argument("--urmp", type=Path, help="URMP-layout folder (NN_Piece_inst1_inst2/ with AuSep_*.wav)")
    source.add_argument("--manifest", type=Path, help="JSON [{video, sources: {name: wav}}] or CSV video,source,stem")
    muted.add_argument("--out", type=Path, required=True, help="output folder")
    muted.add_argument("--controls", action="store_true", help="also ask about sources still audible (answer yes)")
    muted.add_argument("--mute", type=_count_or_all, default="all", help="sources muted per piece: all or N (seeded)")
    muted.add_argument("--seed", type=int, default=0)
    muted.add_argument("--question-template", default=MUTED_QUESTION_TEMPLATE, help="with a {source} field")
    muted.add_argument("--sample-rate", type=int, default=None, help="mix rate in Hz (default: the stems')")
    muted.add_argument("--audio-bitrate", type=int, default=None, help="AAC bits per second")
    muted.add_argument("--residual-threshold-db", type=float, default=DEFAULT_RESIDUAL_THRESHOLD_DB)
    muted.add_argument("--level-tolerance-db", type=float, default=DEFAULT_LEVEL_TOLERANCE_DB)
    muted.add_argument("--mix-ceiling-dbfs", type=float, default=DEFAULT_MIX_CEILING_DBFS)

    modified = kinds.add_parser("modified", help="replace a video's soundtrack with an environmental sound")
    source = modified.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", type=Path, help="folder of videos")
    source.add_argument("--manifest", type=Path, help="JSON [{video, visual?, id?}] or CSV video[,visual][,id]")
    modified.add_argument("--bank", action="append", required=True, help="esc50:ROOT, urbansound8k:ROOT, folder:ROOT")
    modified.add_argument("--out", type=Path, required=True, help="output folder")
    modified.add_argument("--sound-types", default=",".join(PAPER_SOUND_TYPES), help="comma-separated sound types")
    modified.add_argument("--per-video", type=_count_or_all, default="all", help="sound types per video: all or N")
    modified.add_argument("--seed", type=int, default=0)
    modified.add_argument("--question", default=MODIFIED_QUESTION)
    modified.add_argument("--annotation-template", default=ANNOTATION_TEMPLATE, help="{visual}, {sound}, {sound_type}")
    modified.add_argument("--sample-rate", type=int, default=44100)
    modified.add_argument("--channels", type=int, choices=(1, 2), default=2)
    modified.add_argument("--target-rms-dbfs", type=float, default=DEFAULT_TARGET_RMS_DBFS)
    modified.add_argument("--peak-ceiling-dbfs", type=float, default=DEFAULT_PEAK_CEILING_DBFS)
    modified.add_argument("--crossfade-s", type=float, default=DEFAULT_CROSSFADE_S)
    modified.add_argument("--audio-bitrate", type=int, default=None, help="AAC bits per second")


def _add_eval_arguments(ev: argparse.ArgumentParser) -> None:
    from verl_avconfuse.bench.evaluate import DEFAULT_MAX_NEW_TOKENS

    ev.add_argument("--setting", choices=("muted", "modified"), required=True)
    ev.add_argument("--questions", required=True, help="question JSON, or 'published' for the released file")
    ev.add_argument("--video-dir", type=Path, required=True, help="folder with {video_id}.mp4 / the filenames")
    ev.add_argument("--backend", required=True, help="hf:PATH, openai:URL#MODEL or jsonl:PATH")
    ev.add_argument("--out", type=Path, required=True, help="folder for predictions.jsonl and results.*")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    ev.add_argument("--skip-missing", action="store_true", help="evaluate the items whose videos exist")
    ev.add_argument("--yes-prob", action="store_true", help="muted, hf backend: P(yes) at the answer position")
    ev.add_argument("--no-format-instruction", action="store_true", help="ask the bare published question")
    ev.add_argument("--strict-format", action="store_true", help="muted: no <answer> block = no answer")
    ev.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    ev.add_argument("--use-audio-in-video", action="store_true", help="hf/openai: audio interleaved in the video")
    ev.add_argument("--fps", type=float, default=2.0, help="hf: frames sampled per second")
    ev.add_argument("--max-frames", type=int, default=32, help="hf: frames per video at most")
    ev.add_argument("--max-pixels", type=int, default=None, help="hf: pixels per frame at most")
    ev.add_argument("--batch-size", type=int, default=4, help="hf: requests per generate call")
    ev.add_argument("--device", default=None, help="hf: cuda, cpu, ...")
    ev.add_argument("--dtype", default="auto", help="hf: weight dtype (auto, bfloat16, float32)")
    ev.add_argument("--media", choices=("file", "base64"), default="file", help="openai: how media are sent")
    ev.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai backend: env var holding the key")
    ev.add_argument("--judge", default="offline", help="modified: 'offline' or openai:URL#MODEL")
    ev.add_argument("--judge-cache", type=Path, default=None, help="judge cache (default: OUT/judge_cache.jsonl)")
    ev.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="env var holding the judge's API key")
    ev.add_argument("--judge-temperature", type=float, default=0.0, help="the release used 1.0")
    ev.add_argument("--embedding-model", default=None, help="offline judge: sentence-transformers dir (MiniLM)")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_build_arguments(actions.add_parser("build", help="build a muted or modified set from real media"))
    _add_eval_arguments(actions.add_parser("eval", help="evaluate a model on a published or built set"))


def _progress_bar(description: str):
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="clip", file=sys.stderr)

    def update(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(label[:40], refresh=False)
        bar.refresh()

    return bar, update


def _build(args: argparse.Namespace) -> dict:
    if args.setting == "muted":
        from verl_avconfuse.bench.muted import build_muted, load_muted_manifest, scan_urmp

        pieces = scan_urmp(args.urmp) if args.urmp else load_muted_manifest(args.manifest)
        bar, update = _progress_bar("muted clips")
        with bar:
            result = build_muted(
                pieces,
                args.out,
                seed=args.seed,
                mute=args.mute,
                controls=args.controls,
                question_template=args.question_template,
                sample_rate=args.sample_rate,
                audio_bitrate=args.audio_bitrate,
                residual_threshold_db=args.residual_threshold_db,
                level_tolerance_db=args.level_tolerance_db,
                mix_ceiling_dbfs=args.mix_ceiling_dbfs,
                progress=update,
            )
        worst = max((r["checks"]["removed_residual_db"] for r in result.manifest["items"]), default=None)
        extra = {"skipped": result.manifest["skipped"], "worst_removed_residual_db": worst}
    else:
        from verl_avconfuse.bench.modified import build_modified, load_video_manifest, scan_videos
        from verl_avconfuse.bench.sound_bank import SoundBank, load_bank

        videos = scan_videos(args.videos) if args.videos else load_video_manifest(args.manifest)
        bank = SoundBank.merge(load_bank(spec) for spec in args.bank)
        bar, update = _progress_bar("modified clips")
        with bar:
            result = build_modified(
                videos,
                bank,
                args.out,
                sound_types=[t.strip() for t in args.sound_types.split(",") if t.strip()],
                per_video=args.per_video,
                seed=args.seed,
                question=args.question,
                annotation_template=args.annotation_template,
                sample_rate=args.sample_rate,
                channels=args.channels,
                target_rms_dbfs=args.target_rms_dbfs,
                peak_ceiling_dbfs=args.peak_ceiling_dbfs,
                crossfade_s=args.crossfade_s,
                audio_bitrate=args.audio_bitrate,
                progress=update,
            )
        extra = {"items_missing_visual": result.manifest["items_missing_visual"]}
    return {
        "setting": args.setting,
        "items": len(result.items),
        "clips": len(result.manifest["items"]),
        "built": result.built,
        "reused": result.reused,
        **{k: str(v) for k, v in result.paths.items()},
        **extra,
    }


def _questions_path(value: str, setting: str) -> Path:
    from verl_avconfuse.bench.schemas import published_questions

    return published_questions(setting) if value == "published" else Path(value)


def _backend(args: argparse.Namespace):
    from verl_avconfuse.evaluation.backends import load_backend

    kind = args.backend.partition(":")[0]
    if kind == "hf":
        kwargs = {
            "use_audio_in_video": args.use_audio_in_video,
            "fps": args.fps,
            "max_frames": args.max_frames,
            "max_pixels": args.max_pixels,
            "batch_size": args.batch_size,
            "device": args.device,
            "dtype": args.dtype,
        }
    elif kind == "openai":
        kwargs = {"api_key_env": args.api_key_env, "media": args.media, "use_audio_in_video": args.use_audio_in_video}
    else:
        kwargs = {}
    return load_backend(args.backend, **kwargs)


def _judge(args: argparse.Namespace):
    from verl_avconfuse.bench.judge import LLMJudge, OfflineJudge

    if args.setting != "modified":
        return None
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


def _eval(args: argparse.Namespace) -> dict:
    from verl_avconfuse.bench.evaluate import evaluate

    questions = _questions_path(args.questions, args.setting)
    judge = _judge(args)
    backend = _backend(args)
    bar, update = _progress_bar(f"{args.setting} replies")
    with bar:
        results = evaluate(
            questions,
            args.video_dir,
            backend,
            args.out,
            setting=args.setting,
            judge=judge,
            limit=args.limit,
            skip_missing=args.skip_missing,
            yes_prob=args.yes_prob,
            format_instruction=not args.no_format_instruction,
            strict_format=args.strict_format,
            max_new_tokens=args.max_new_tokens,
            progress=update,
        )
    return {
        "setting": results["setting"],
        "published": results["published"],
        "n_items": results["n_items"],
        "backend": results["backend"],
        "judge": results["judge"],
        "metrics": results["metrics"],
        **results["report_files"],
    }


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.bench.modified import ModifiedCheckError
    from verl_avconfuse.bench.muted import MutedCheckError
    from verl_avconfuse.bench.schemas import BenchFormatError
    from verl_avconfuse.media import MediaError

    try:
        summary = _build(args) if args.action == "build" else _eval(args)
    except (BenchFormatError, MediaError, FileNotFoundError, ValueError) as error:
        print(f"avconfuse bench {args.action}: {error}", file=sys.stderr)
        return 2
    except (MutedCheckError, ModifiedCheckError) as error:
        print(f"avconfuse bench {args.action}: verification failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0
