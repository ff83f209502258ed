"""A CPU-scale replica of RL-CoMM's ablation: the effect on muted questions, not the paper's numbers.

    python benchmarks/ablation_replica.py OUT [--seeds 0 1 2] [--arms grpo step_rr step_rr_ansco] [OVERRIDES...]

1. **Task** (:mod:`verl_avconfuse.tiny.confusion`): instruments seen as shapes and heard as tones. Warm-up
   clips are synchronized; the RL clips are half synchronized, half with one player on screen silent (as in
   Music-AVQA); the test set is built by AV-ConfuseBench's muted builder (one instrument's stem removed,
   the instrument still on screen) with its controls.
2. **Reference**: the tiny Qwen2-Audio fitted to say what it hears on the RL clips, with the reference
   worker's own prompt (question + answer + audio). It never hears a test clip.
3. **Warm-up SFT** of the tiny Qwen2.5-Omni thinker on the synchronized clips only, through verl's SFT
   trainer (``+recipe=sft_warmup +machine=cpu_ablation_sft``).
4. **RL arms**, each from that checkpoint with the same budget (``+machine=cpu_ablation``), for every seed:
   ``grpo`` (``+recipe=grpo_baseline``: format + accuracy), ``step_rr`` (``+recipe=avconfuse``) and
   ``step_rr_ansco`` (``+recipe=avconfuse_ansco``). verl validates on the muted set before the first step
   and after the last; the dumped generations are scored by the evaluation harness's own muted metrics
   (:func:`verl_avconfuse.evaluation.tasks.muted_cell`, its strict answer rule).
5. **Report**: ``OUT/ablation.json``, ``OUT/ablation.md`` (mean ± std over seeds) and ``OUT/ablation.png``.

Every phase is resumable: a finished phase (its output folder, a run's ``result.json``) is kept and a
re-run goes on from the first missing one; outputs are written atomically, so an interrupted run leaves
nothing half-written. Extra arguments are Hydra overrides for every RL run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: arm -> (recipe, label)
ARMS: dict[str, tuple[str, str]] = {
    "grpo": ("grpo_baseline", "GRPO (format + accuracy)"),
    "step_rr": ("avconfuse", "Step-RR"),
    "step_rr_ansco": ("avconfuse_ansco", "Step-RR + Ans-CO"),
}
RL_MACHINE = "cpu_ablation"
SFT_MACHINE = "cpu_ablation_sft"
#: What the report shows for each run, from :func:`score_generations`.
REPORTED = (
    "muted_accuracy",
    "says_yes_on_muted",
    "control_accuracy",
    "balanced_accuracy",
    "a_think_hears_muted",
    "a_think_hears_control",
    "format_rate",
)
#: The instrument a test question asks about, in verl's decoded prompt.
ASKED = re.compile(r"Is there an? (\w+) sound\?")
REFERENCE_STEPS = 300
REFERENCE_LR = 5e-3


def log(message: str) -> None:
    print(f"[ablation {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_json(path: Path, payload: dict) -> None:
    from verl_avconfuse.io import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n", parents=True)


def run_logged(command: list[str], log_path: Path, *, cwd: Path, env: dict | None = None) -> str:
    """Run ``command`` with its output in ``log_path``; its text, or an error naming the log's last lines."""
    start = time.monotonic()
    with log_path.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, text=True)
    text = log_path.read_text()
    if result.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command[:3])} exited {result.returncode}; last lines of {log_path}:\n{tail}")
    log(f"{log_path.parent.name}: done in {time.monotonic() - start:.0f} s")
    return text


# ------------------------------------------------------------------------------------------- phases


def reference_phase(out: Path, examples_path: Path) -> Path:
    from verl_avconfuse.tiny.confusion import train_reference
    from verl_avconfuse.tiny.resolver import tiny_asset

    target = out / "reference"
    if (target / "config.json").exists():
        return target
    examples = [json.loads(line) for line in examples_path.read_text().splitlines()]
    log(f"reference: fitting the tiny Qwen2-Audio on {len(examples)} RL questions ({REFERENCE_STEPS} steps)")
    stats = train_reference(tiny_asset("models/qwen2_audio"), examples, target, steps=REFERENCE_STEPS, lr=REFERENCE_LR)
    log(f"reference: names exactly the instruments heard in {stats['heard_accuracy']:.0%} of the RL clips")
    write_json(out / "reference.json", {"steps": REFERENCE_STEPS, "lr": REFERENCE_LR, **stats})
    return target


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sft_phase(out: Path, train: Path, media_root: Path) -> Path:
    """verl's SFT trainer from the tiny thinker; its last checkpoint's ``huggingface/`` becomes ``OUT/sft_model``."""
    from verl_avconfuse.tiny.resolver import tiny_asset

    target = out / "sft_model"
    if (target / "config.json").exists():
        return target
    work = out / "sft"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = [
        sys.executable,
        "-m",
        "verl.trainer.sft_trainer",
        "+recipe=sft_warmup",
        f"+machine={SFT_MACHINE}",
        f"model.path={tiny_asset('models/omni_thinker')}",
        f"data.train_files={train}",
        f"data.media.root={media_root}",
        f"trainer.default_local_dir={work / 'checkpoints'}",
    ]
    # One process of torch.distributed, as torchrun would start it.
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    log("sft: verl's SFT trainer on the synchronized clips")
    text = run_logged(command, work / "sft.log", cwd=work, env=env)
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    losses = {step: m["train/loss"] for step, m in parse_console_metrics(text).items() if "train/loss" in m}
    steps = sorted((work / "checkpoints").glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps or not (steps[-1] / "huggingface" / "config.json").exists():
        raise RuntimeError(f"sft: no huggingface checkpoint under {work / 'checkpoints'}")
    os.replace(steps[-1] / "huggingface", target)
    write_json(out / "sft.json", {"losses": losses, "checkpoint": steps[-1].name})
    if losses:
        first, last = losses[min(losses)], losses[max(losses)]
        log(f"sft: train/loss {first:.3f} -> {last:.3f} over {len(losses)} steps")
    return target


def score_generations(path: Path) -> dict:
    """The muted metrics of one validation dump (verl's ``{step}.jsonl``), by the evaluation harness.

    Answers are graded by the harness's ``strict`` rule: the release's substring rule would count a reply
    such as "I cannot tell" (or "piano") as a right "no".

    ``says_yes_on_muted`` is the share of muted questions answered "yes" (the paper's Yes% is
    ``100 - muted_accuracy``, which also counts unparseable replies as "yes"). What the audio reasoning
    says, the mechanism the paper is about: ``a_think_hears_muted`` is the share of muted questions whose
    ``<a-think>`` names the muted instrument (it "hears" what it only sees), ``a_think_hears_control`` the
    share of controls whose ``<a-think>`` names the instrument still heard.
    """
    from verl_avconfuse.evaluation.tasks import EvalDoc, muted_cell, process_results
    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.tiny.confusion import names_heard

    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not entries:
        raise ValueError(f"{path}: no generations")
    scored = [
        process_results(
            EvalDoc(id=e["uid"], question="", video="", ground_truth=e["gts"], category=""), e["output"], "strict"
        )
        for e in entries
    ]
    overall = muted_cell(scored)
    muted = muted_cell([s for s in scored if s.ground_truth == "no"])
    hears: dict[str, list[bool]] = {"no": [], "yes": []}
    for entry in entries:
        asked = ASKED.findall(entry["input"])
        if not asked or entry["gts"] not in hears:
            raise ValueError(
                f"{path}: uid {entry['uid']}: expected a question 'Is there a X sound?' with a yes/no answer"
            )
        a_think = parse_response(entry["output"]).a_think or ""
        hears[entry["gts"]].append(asked[-1] in names_heard(a_think))
    return {
        "n_muted": overall["n_muted"],
        "n_controls": overall["n_controls"],
        "muted_accuracy": overall["muted_accuracy"],
        "paper_yes_rate": overall["paper_yes_rate"],
        "says_yes_on_muted": muted["yes_rate"],
        "control_accuracy": overall["control_accuracy"],
        "balanced_accuracy": overall["balanced_accuracy"],
        "format_rate": overall["format_rate"],
        "a_think_hears_muted": _pct(hears["no"]),
        "a_think_hears_control": _pct(hears["yes"]),
    }


def _pct(flags: list[bool]) -> float | None:
    return 100.0 * sum(flags) / len(flags) if flags else None


def rl_phase(out: Path, arm: str, seed: int, paths: dict[str, Path], overrides: list[str]) -> dict:
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    run_dir = out / "runs" / f"{arm}-seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        # A finished run: its validation dumps scored again, by this version of the scoring.
        result = json.loads(result_path.read_text())
        for when in ("before", "after"):
            step = result[when]["step"]
            result[when] = {"step": step, **score_generations(run_dir / "validation" / f"{step}.jsonl")}
        write_json(result_path, result)
        return result
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    recipe, label = ARMS[arm]
    command = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        f"+recipe={recipe}",
        f"+machine={RL_MACHINE}",
        f"actor_rollout_ref.model.path={paths['policy']}",
        f"avconfuse.reference.model_path={paths['reference']}",
        f"data.train_files={paths['train']}",
        f"data.val_files={paths['val']}",
        f"data.seed={seed}",
        f"trainer.validation_data_dir={run_dir / 'validation'}",
        f"trainer.experiment_name=ablation_{arm}_seed{seed}",
        *overrides,
    ]
    log(f"{arm} seed {seed}: {label}")
    text = run_logged(command, run_dir / "main_ppo.log", cwd=run_dir)
    dumps = sorted((run_dir / "validation").glob("*.jsonl"), key=lambda p: int(p.stem))
    if len(dumps) < 2:
        raise RuntimeError(f"{run_dir}: expected validation dumps before and after training, found {dumps}")
    result = {
        "arm": arm,
        "seed": seed,
        "before": {"step": int(dumps[0].stem), **score_generations(dumps[0])},
        "after": {"step": int(dumps[-1].stem), **score_generations(dumps[-1])},
        "train": parse_console_metrics(text),
    }
    write_json(result_path, result)
    before, after = result["before"], result["after"]
    log(
        f"{arm} seed {seed}: muted accuracy {before['muted_accuracy']:.1f} -> {after['muted_accuracy']:.1f}, "
        f"control accuracy {before['control_accuracy']:.1f} -> {after['control_accuracy']:.1f}"
    )
    return result


# ------------------------------------------------------------------------------------------- report


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: list[dict]) -> dict:
    """Per arm: mean and std over seeds of every reported metric after training, and the warm start's."""
    arms: dict[str, dict] = {}
    warm = [r["before"] for r in results]
    arms["warm_start"] = {
        "label": "Warm-up SFT (start of every run)",
        "seeds": sorted({r["seed"] for r in results}),
        **{m: _spread([w[m] for w in warm if w[m] is not None]) for m in REPORTED},
    }
    for arm, (_, label) in ARMS.items():
        runs = [r for r in results if r["arm"] == arm]
        if runs:
            arms[arm] = {
                "label": label,
                "seeds": [r["seed"] for r in runs],
                **{m: _spread([r["after"][m] for r in runs if r["after"][m] is not None]) for m in REPORTED},
            }
    return arms


def markdown(summary: dict) -> str:
    header = (
        "| | seeds | muted Acc | says yes (muted) | control Acc | balanced Acc "
        "| a-think hears the muted one | a-think hears the control | format |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for row in summary.values():
        cells = " | ".join(f"{row[m][0]:.1f} ± {row[m][1]:.1f}" for m in REPORTED)
        lines.append(f"| {row['label']} | {len(row['seeds'])} | {cells} |")
    return "\n".join(lines) + "\n"


def chart(summary: dict, results: list[dict], path: Path) -> str:
    """Bars (mean ± std over seeds) of the muted metrics after training, and each arm's training accuracy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 'chart not written: matplotlib is missing (pip install "verl-avconfuse[plots]")'
    from verl_avconfuse.io import atomic_write_figure

    metrics = ("muted_accuracy", "control_accuracy", "a_think_hears_muted")
    figure, axes = plt.subplots(1, len(metrics) + 1, figsize=(4.2 * (len(metrics) + 1), 3.4))
    labels = [row["label"].split(" (")[0] for row in summary.values()]
    colours = ["grey", "C0", "C1", "C2"][: len(summary)]
    for axis, metric in zip(axes, metrics, strict=False):
        means = [row[metric][0] for row in summary.values()]
        stds = [row[metric][1] for row in summary.values()]
        axis.bar(range(len(means)), means, yerr=stds, capsize=4, color=colours)
        axis.set_xticks(range(len(means)), labels, rotation=20, fontsize=8)
        axis.set_ylim(0, 100)
        axis.set_title(metric.replace("_", " ") + " (%)", fontsize=9)
    curves = axes[-1]
    for colour, (arm, (_, label)) in zip(colours[1:], ARMS.items(), strict=False):
        runs = [r["train"] for r in results if r["arm"] == arm]
        if not runs:
            continue
        steps = sorted({int(step) for run in runs for step, m in run.items() if "reward/acc/mean" in m})
        means = [
            statistics.fmean(run[str(s)]["reward/acc/mean"] for run in runs if "reward/acc/mean" in run.get(str(s), {}))
            for s in steps
        ]
        curves.plot(steps, means, marker="o", color=colour, label=label.split(" (")[0])
    curves.set_title("training reward/acc/mean (mean over seeds)", fontsize=9)
    curves.set_xlabel("step")
    curves.legend(fontsize=7)
    figure.tight_layout()
    atomic_write_figure(path, figure, dpi=110)
    return f"chart: {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/ablation_replica.py",
        description="CPU-scale replica of RL-CoMM's ablation on a synthetic muted task (module docstring)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="working folder (resumable) and report")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="RL seeds (data order, sampling)")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS), help="RL arms to run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every RL run")
    args = parser.parse_intermixed_args(argv)

    from verl_avconfuse.tiny.confusion import build_confusion_task

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        task = build_confusion_task(out / "task")
        paths = {
            "reference": reference_phase(out, task.reference_examples),
            "policy": sft_phase(out, task.sft_parquet, task.sft_parquet.parent / "clips"),
            "train": task.rl_train,
            "val": task.muted_parquet,
        }
        results = [rl_phase(out, arm, seed, paths, args.overrides) for seed in args.seeds for arm in args.arms]
    except (RuntimeError, ValueError) as error:
        print(f"ablation: error: {error}", file=sys.stderr)
        return 1
    summary = summarize(results)
    write_json(out / "ablation.json", {"summary": summary, "runs": results})
    from verl_avconfuse.io import atomic_write_text

    table = markdown(summary)
    atomic_write_text(out / "ablation.md", table)
    print()
    print(table)
    print(chart(summary, results, out / "ablation.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
