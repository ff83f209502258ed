"""The layer-by-layer diagnosis on the CPU replica: the tiny thinker, the replica's warm start and its Step-RR
policies, muted vs control.

    python benchmarks/layer_entropy_replica.py OUT [--result benchmarks/results/layer_entropy_replica.json]

1. The replica's task and its SFT warm start, by ``benchmarks/ablation_replica.py``'s own phases (resumable:
   an ``OUT`` of an ablation run is reused as it is; from scratch ~1 min of verl's SFT trainer on 2 cores).
2. ``avconfuse diagnose layer-entropy`` on the task's muted set (AV-ConfuseBench's muted builder with its
   controls: 24 questions about the muted instrument, 24 about the one still heard), the tiny thinker, the
   warm start and -- when ``OUT`` is an ablation's -- Step-RR's last policy of every seed
   (``OUT/runs/step_rr-seedN/model``) compared in one command, once with the reasoning skipped (read right
   after ``<answer>``) and once after the model's own greedy reply.
3. The result file: each command's line and every run's ``layer_entropy.json`` as the command wrote it
   (per-group curves, every question's raw per-layer values, commit, machine, date), and the two charts
   ``docs/diagnosis_replica_{skip,generate}.png`` (the tiny thinker, the warm start and Step-RR seed 0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import ablation_replica
from _common import REPO, machine_line

MODES = ("skip", "generate")
LABELS = ("tiny_thinker", "warm_start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/layer_entropy_replica.py",
        description="per-layer answer entropy / P(yes) of the tiny thinker and the replica's warm start",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="working folder (the ablation replica's, or a new one)")
    parser.add_argument(
        "--result",
        type=Path,
        default=REPO / "benchmarks" / "results" / "layer_entropy_replica.json",
        help="result file",
    )
    parser.add_argument("--charts", type=Path, default=REPO / "docs", help="folder for the two PNG charts")
    args = parser.parse_args(argv)

    from verl_avconfuse import cli
    from verl_avconfuse.diagnosis.layer_entropy import load_result, plot_results, provenance
    from verl_avconfuse.io import atomic_write_json
    from verl_avconfuse.tiny.confusion import build_confusion_task
    from verl_avconfuse.tiny.resolver import tiny_asset

    print(machine_line(), flush=True)
    # Taken before the run: the charts it writes into docs/ would otherwise count as uncommitted changes.
    header = provenance(["python", "benchmarks/layer_entropy_replica.py", *(sys.argv[1:] if argv is None else argv)])
    out = args.out.resolve()
    task = build_confusion_task(out / "task")
    warm_start = ablation_replica.sft_phase(out, task.sft_parquet, task.sft_parquet.parent / "clips")
    models = {"tiny_thinker": tiny_asset("models/omni_thinker"), "warm_start": str(warm_start)}
    # The RL policies the replica keeps (Step-RR's last checkpoint of every seed), when OUT is an ablation's.
    for seed_dir in sorted((out / "runs").glob("step_rr-seed*/model/config.json")):
        models[f"step_rr_seed{seed_dir.parent.parent.name.removeprefix('step_rr-seed')}"] = str(seed_dir.parent)
    labels = list(models)
    charted = [label for label in labels if label in (*LABELS, "step_rr_seed0")]
    runs: dict[str, dict] = {}
    for mode in MODES:
        target = out / "diagnosis" / mode
        command = [
            "diagnose", "layer-entropy", "--questions", str(task.muted_json), "--video-dir", str(task.muted_videos),
            *[word for label in labels for word in ("--backend", f"hf:{models[label]}")],
            *[word for label in labels for word in ("--label", label)],
            "--reasoning", mode, "--dtype", "float32", "--batch-size", "4", "--no-progress", "--out", str(target),
        ]  # fmt: skip
        start = time.monotonic()
        code = cli.main(command)
        if code != 0:
            print(f"layer_entropy_replica: `avconfuse {' '.join(command)}` exited {code}", file=sys.stderr)
            return code
        print(f"{mode}: {time.monotonic() - start:.0f} s", flush=True)
        runs[mode] = {label: load_result(target / label) for label in labels}
        chart = plot_results([runs[mode][label] for label in charted], args.charts / f"diagnosis_replica_{mode}.png")
        print(chart)
    payload = {
        **header,
        "what": "avconfuse diagnose layer-entropy on the ablation replica's muted set (24 muted + 24 control "
        "questions), the tiny Qwen2.5-Omni thinker, the replica's SFT warm start and, where OUT holds them, "
        "Step-RR's last policy of every seed; reasoning skipped / generated",
        "runs": runs,
    }
    payload["command"] = payload["command"].removeprefix("avconfuse ")
    atomic_write_json(args.result, payload, parents=True, indent=1, ensure_ascii=False)
    print(f"result: {args.result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
