"""``avconfuse bench``: build AV-ConfuseBench sets from real media, evaluate a model on them.

    avconfuse bench build muted (--urmp ROOT | --manifest FILE) --out DIR [--controls] [--mute all|N] [--seed 0]
    avconfuse bench build modified (--videos DIR | --manifest FILE) --bank SPEC [--bank SPEC] --out DIR \\
        [--sound-types bird,drill,rain,thunderstorm,wind] [--per-video all|N] [--seed 0]
    avconfuse bench eval --setting muted|modified --questions FILE|published --video-dir DIR \\
        --backend hf:PATH|openai:URL#MODEL|jsonl:PATH --out DIR [--limit N] [--yes-prob] \\
        [--judge offline|openai:URL#MODEL] [--judge-cache FILE] [--prompt paper|rl-comm] [--match ...]

``bench eval`` is an alias of ``avconfuse eval avconfuse-muted|avconfuse-modified`` (the same runner, cache
and report; :mod:`verl_avconfuse.evaluation.cli` has every option); its judge defaults to ``offline``.

Bank specs: ``esc50:ROOT``, ``urbansound8k:ROOT``, ``folder:ROOT`` (or a bare ROOT, layout detected).
``--questions published`` reads the released file shipped with the package. Build and eval print a JSON
summary on stdout; errors are one line on stderr and exit with the statuses of docs/cli.md (2: an input
names a missing file or a malformed field, nothing written; 1: a built clip failed its checks).
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
    muted = kinds.add_parser(
        "muted",
        help="remove one instrument's stem, keep the video of it playing",
        description="Build the muted setting from multi-track recordings: for each chosen source, the other "
        "stems remixed at their original gain under the video (copied), the question 'Is there a SOURCE "
        "sound?' (answer no), every clip verified (docs/avconfusebench.md).",
    )
    source = muted.add_mutually_exclusive_group(required=True)
    source.add_argument("--urmp", type=Path, help="URMP-layout folder (NN_Piece_inst1_inst2/ with AuSep_*.wav)")
    source.add_argument(
        "--manifest",
        type=Path,
        help="JSON [{video, sources: {name: wav or [wav, ...]}}] or CSV video,source,stem (paths relative to it)",
    )
    muted.add_argument("--out", type=Path, required=True, help="output folder (created; unchanged if the build fails)")
    muted.add_argument("--controls", action="store_true", help="also ask about sources still audible (answer yes)")
    muted.add_argument("--mute", type=_count_or_all, default="all", help="sources muted per piece: all or N (seeded)")
    muted.add_argument("--seed", type=int, default=0, help="seed of the --mute N picks")
    muted.add_argument("--question-template", default=MUTED_QUESTION_TEMPLATE, help="with a {source} field")
    muted.add_argument("--sample-rate", type=int, default=None, help="mix rate in Hz (default: the stems')")
    muted.add_argument("--audio-bitrate", type=int, default=None, help="AAC bits per second (default: FFmpeg's)")
    muted.add_argument(
        "--residual-threshold-db",
        type=float,
        default=DEFAULT_RESIDUAL_THRESHOLD_DB,
        help="the removed stem's fitted gain in the clip must stay below this (dB)",
    )
    muted.add_argument(
        "--level-tolerance-db",
        type=float,
        default=DEFAULT_LEVEL_TOLERANCE_DB,
        help="kept stems' fitted gains must match the mix scale within this (dB)",
    )
    muted.add_argument(
        "--mix-ceiling-dbfs",
        type=float,
        default=DEFAULT_MIX_CEILING_DBFS,
        help="the remix is scaled down only when its peak would pass this (dBFS)",
    )
    muted.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    modified = kinds.add_parser(
        "modified",
        help="replace a video's soundtrack with an environmental sound",
        description="Build the modified setting: each video gets soundtracks of environmental sounds from the "
        "banks (bird, drill, rain, thunderstorm, wind by default), video copied, level normalised and verified, "
        "with the published question and a reference annotation (docs/avconfusebench.md).",
    )
    source = modified.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", type=Path, help="folder of videos (each keyed by its file stem)")
    source.add_argument(
        "--manifest", type=Path, help="instead of --videos: JSON [{video, visual?, id?}] or CSV video[,visual][,id]"
    )
    modified.add_argument(
        "--bank", action="append", required=True, help="esc50:ROOT, urbansound8k:ROOT or folder:ROOT (repeatable)"
    )
    modified.add_argument(
        "--out", type=Path, required=True, help="output folder (created; unchanged if the build fails)"
    )
    modified.add_argument("--sound-types", default=",".join(PAPER_SOUND_TYPES), help="comma-separated sound types")
    modified.add_argument("--per-video", type=_count_or_all, default="all", help="sound types per video: all or N")
    modified.add_argument("--seed", type=int, default=0, help="seed of the sound-type and bank-clip picks")
    modified.add_argument(
        "--question", default=MODIFIED_QUESTION, help="the question asked (default: the published one)"
    )
    modified.add_argument("--annotation-template", default=ANNOTATION_TEMPLATE, help="{visual}, {sound}, {sound_type}")
    modified.add_argument("--sample-rate", type=int, default=44100, help="soundtrack rate in Hz")
    modified.add_argument("--channels", type=int, choices=(1, 2), default=2, help="soundtrack channels")
    modified.add_argument(
        "--target-rms-dbfs", type=float, default=DEFAULT_TARGET_RMS_DBFS, help="soundtrack loudness (RMS, dBFS)"
    )
    modified.add_argument(
        "--peak-ceiling-dbfs", type=float, default=DEFAULT_PEAK_CEILING_DBFS, help="no sample above this (dBFS)"
    )
    modified.add_argument(
        "--crossfade-s", type=float, default=DEFAULT_CROSSFADE_S, help="crossfade where a short clip loops (s)"
    )
    modified.add_argument("--audio-bitrate", type=int, default=None, help="AAC bits per second (default: FFmpeg's)")
    modified.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_actions(command: str, actions) -> None:
    """``bench build``; ``bench eval`` is the evaluation harness's (:func:`verl_avconfuse.evaluation.cli.add_actions`)."""
    _add_build_arguments(
        actions.add_parser(
            "build",
            help="build a muted or modified set from real media",
            description="Build an AV-ConfuseBench set (muted or modified) from media you have: clips, the "
            "published question schema, verl parquet rows and a manifest of every clip's checks.",
        )
    )


def _progress_bar(description: str, enabled: bool = True):
    from tqdm import tqdm

    bar = tqdm(desc=description, unit="clip", file=sys.stderr, disable=not enabled)

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
        bar, update = _progress_bar("muted clips", not args.no_progress)
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
        bar, update = _progress_bar("modified clips", not args.no_progress)
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


def run(command: str, args: argparse.Namespace) -> int:
    from verl_avconfuse.errors import InputError

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: a file, expected a folder")
    summary = _build(args)
    print(json.dumps(summary, indent=2, default=str))
    return 0
