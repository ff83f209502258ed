"""``avconfuse diagnose layer-entropy``: per-layer answer uncertainty on muted vs intact sources.

    avconfuse diagnose layer-entropy --questions FILE|published --video-dir DIR --backend hf:MODEL_DIR \\
        [--backend hf:OTHER ...] [--label NAME ...] --out DIR [--compare RESULT.json ...] \\
        [--prompt rl-comm|paper] [--reasoning skip|generate] [--answer-prefix TEXT] [--limit N] [--skip-bad] \
        [--batch-size N]

One ``--backend``: ``OUT/layer_entropy.{json,md,png}``. Several (a trained checkpoint and its base): each
run in ``OUT/LABEL/`` and both on ``OUT/layer_entropy.compare.{md,png}``; ``--compare`` adds stored results
(``layer_entropy.json`` files or their folders) to that comparison, and with no ``--backend`` only plots
them. Every input (options, backend folders, the questions file, every clip, the stored results) is
checked before a model loads; errors are one line, exit status 2 (docs/cli.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from verl_avconfuse.errors import InputError


def _add_layer_entropy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--questions", default=None, help="AV-ConfuseBench muted question JSON (published or built), or 'published'"
    )
    parser.add_argument("--video-dir", type=Path, default=None, help="folder holding the clips ({video_id}.mp4)")
    parser.add_argument(
        "--backend",
        action="append",
        default=None,
        help="hf:MODEL_DIR, an Omni thinker (Qwen2.5-Omni or Qwen3-Omni); give it twice to compare two models",
    )
    parser.add_argument("--label", action="append", default=None, help="a name per --backend (default: folder name)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--compare", action="append", default=None, help="a stored layer_entropy.json (or its folder) to plot alongside"
    )
    parser.add_argument(
        "--prompt",
        choices=("rl-comm", "paper"),
        default="rl-comm",
        help="rl-comm: question + the RL-CoMM format, read after '<answer>'; paper: the question verbatim, "
        "read at the reply's first token",
    )
    parser.add_argument(
        "--answer-prefix", default=None, help="assistant text before the readout (default: by --prompt)"
    )
    parser.add_argument(
        "--reasoning",
        choices=("skip", "generate"),
        default="skip",
        help="skip: read right after the answer prefix (one forward); generate: the model writes its greedy reply "
        "first and the readout is where that reply's answer starts (as eval's --yes-prob)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=256, help="reply budget with --reasoning generate")
    parser.add_argument("--limit", type=int, default=None, help="the first N questions only")
    parser.add_argument("--skip-bad", action="store_true", help="leave out questions whose clip is missing or unusable")
    parser.add_argument("--batch-size", type=int, default=1, help="questions per forward (left-padded)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    media = parser.add_argument_group("media and model (as avconfuse eval's hf backend)")
    media.add_argument(
        "--use-audio-in-video", action="store_true", help="interleave the soundtrack into the video (the release)"
    )
    media.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second")
    media.add_argument("--max-frames", type=int, default=32, help="at most this many frames per clip")
    media.add_argument("--max-pixels", type=int, default=None, help="at most this many pixels per frame")
    media.add_argument("--device", default=None, help="cuda | cpu | cuda:1 ... (default: cuda when available)")
    media.add_argument("--dtype", default="auto", help="weights' dtype: auto (as saved) | bfloat16 | float32 ...")
    media.add_argument("--attn-implementation", default=None, help="sdpa (default) | flash_attention_2")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_layer_entropy_arguments(
        actions.add_parser(
            "layer-entropy",
            help="per-layer answer entropy and P(yes) on muted vs control questions (logit lens)",
            description="For each question of an AV-ConfuseBench muted file, the thinker's next-token "
            "distribution at the answer position at every layer (logit lens): entropy, P(yes), rank of the "
            "final answer; mean and CI per group (muted vs control, by instrument count). docs/diagnosis.md",
        )
    )


def _check(args: argparse.Namespace) -> None:
    from verl_avconfuse.evaluation.backends import check_backend_spec

    # Repeatable options default to None (argparse appends to a default list in place; help shows no "[]").
    args.backend, args.label, args.compare = args.backend or [], args.label or [], args.compare or []
    if not args.backend and not args.compare:
        raise InputError("give --backend hf:MODEL_DIR (to run a model) or --compare RESULT.json (to plot stored runs)")
    for option, value in (
        ("--batch-size", args.batch_size),
        ("--limit", args.limit),
        ("--max-new-tokens", args.max_new_tokens),
    ):
        if value is not None and value < 1:
            raise InputError(f"{option} {value}: expected a positive number")
    if not 0 < args.confidence < 1:
        raise InputError(f"--confidence {args.confidence}: expected a level between 0 and 1, e.g. 0.95")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: a file, expected a folder")
    if args.backend:
        if args.questions is None or args.video_dir is None:
            raise InputError("--backend needs --questions FILE and --video-dir DIR")
        for spec in args.backend:
            if not spec.startswith("hf:"):
                raise InputError(f"--backend {spec}: expected hf:MODEL_DIR (the logit lens reads the model's layers)")
            check_backend_spec(spec)
    if args.label and len(args.label) != len(args.backend):
        raise InputError(f"--label: {len(args.label)} given for {len(args.backend)} --backend; give one per --backend")
    labels = args.label or [Path(spec.partition(":")[2]).resolve().name for spec in args.backend]
    if len(set(labels)) != len(labels):
        raise InputError(f"--backend: two runs would share the label {labels}; name them with --label")
    args.label = labels


def _layer_entropy(args: argparse.Namespace) -> int:
    from verl_avconfuse.diagnosis.layer_entropy import (
        answer_prefix_for,
        answer_tokens,
        build_result,
        diagnose,
        load_diagnosis_questions,
        load_result,
        provenance,
        resolve_questions,
        write_comparison,
        write_outputs,
    )

    _check(args)
    stored = [load_result(path) for path in args.compare]
    questions, skipped = [], []
    if args.backend:
        questions, skipped = load_diagnosis_questions(
            args.questions, args.video_dir, limit=args.limit, skip_bad=args.skip_bad, progress=not args.no_progress
        )
    prefix = answer_prefix_for(args.prompt, args.answer_prefix)
    results = []
    for spec, label in zip(args.backend, args.label, strict=True):
        from tqdm import tqdm

        from verl_avconfuse.evaluation.backends import HFOmniBackend

        backend = HFOmniBackend(
            spec.partition(":")[2],
            use_audio_in_video=args.use_audio_in_video,
            fps=args.fps,
            max_frames=args.max_frames,
            max_pixels=args.max_pixels,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            attn_implementation=args.attn_implementation,
        )
        with tqdm(total=len(questions), desc=f"layer-entropy {label}", unit="q", disable=args.no_progress) as bar:
            records, checks = diagnose(
                backend,
                questions,
                prompt=args.prompt,
                answer_prefix=prefix,
                reasoning=args.reasoning,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                progress=lambda done, total: bar.update(done - bar.n),
            )
        result = build_result(
            records,
            model=spec,
            model_type=getattr(backend.model.config, "model_type", None),
            questions_file=str(resolve_questions(args.questions)),
            video_dir=str(args.video_dir),
            prompt=args.prompt,
            answer_prefix=prefix,
            tokens=answer_tokens(backend.tokenizer),
            reasoning=args.reasoning,
            checks=checks,
            skipped=skipped,
            label=label,
            settings={
                "use_audio_in_video": args.use_audio_in_video,
                "fps": args.fps,
                "max_frames": args.max_frames,
                "max_pixels": args.max_pixels,
                "dtype": str(backend.model.dtype).removeprefix("torch."),
                "device": str(backend.device),
                "batch_size": args.batch_size,
            },
            confidence=args.confidence,
            run_info=provenance(getattr(args, "_argv", None)),
        )
        results.append(result)
        del backend
    # Everything is computed before anything is written: a failed second run replaces no first result.
    single = len(results) == 1
    for result in results:
        files = write_outputs(result, args.out if single else args.out / result["label"])
        print(_summary_line(result, files["json"]))
    everything = results + stored
    if len(everything) > 1 or stored:
        files = write_comparison(everything, args.out)
        print(f"comparison of {', '.join(r['label'] for r in everything)}: {', '.join(files.values())}")
    return 0


def _summary_line(result: dict, path: str) -> str:
    groups = result["groups"]
    parts = []
    for name in ("muted", "control"):
        if name in groups:
            entropy = [p["mean"] for p in groups[name]["entropy"]]
            p_yes = groups[name]["p_yes"][-1]["mean"]
            parts.append(
                f"{name} (n={groups[name]['n']}): entropy {entropy[0]:.2f} -> {entropy[-1]:.2f} nats, "
                f"last-layer P(yes) {p_yes:.2f}"
            )
    return (
        f"{result['label']}: {result['num_hidden_layers'] + 1} rows (embedding output + {result['num_hidden_layers']} layers); "
        + "; ".join(parts)
        + f"; {path}"
    )


def run(command: str, args: argparse.Namespace) -> int:
    if args.action == "layer-entropy":
        return _layer_entropy(args)
    raise InputError(f"diagnose {args.action}: unknown action")  # argparse's choices prevent this
