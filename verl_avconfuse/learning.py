"""Does RL-CoMM learn? A stage-2 run against a same-seed control with lr = 0, on the CPU.

``python -m verl_avconfuse.learning OUT_DIR [OVERRIDES...]`` (what ``examples/run_cpu_learning.sh`` runs)
trains ``+recipe=avconfuse +machine=cpu_learning`` twice through verl's own ``main_ppo``:
once as the recipe says and once with ``actor_rollout_ref.actor.optim.lr=0`` (same seed, same prompts,
same sampling; nothing but the updates differs). It prints the first-k and last-k step means of the
Step-RR metrics for both, writes the learning curves (``curves.png``, when matplotlib is installed) and
``learning.json``, and ends with one line::

    LEARNING gain=G control_gain=C noise=S

``G`` and ``C`` are the last-k minus first-k means of ``critic/score/mean`` (the Step-RR reward) of the
run and of the control; ``S`` is the standard deviation of the control's step means, i.e. how much the
reward moves by sampling alone. The exit status is 0 only when ``G > C + 2 S``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

#: The learning signal and what is tabled beside it.
SCORE = "critic/score/mean"
TABLE_METRICS = (SCORE, "reward/format/mean", "reward/acc/mean", "reward/arr/mean", "reward/arr_of_right/mean")
RECIPES = ("+recipe=avconfuse", "+machine=cpu_learning")
CONTROL_OVERRIDE = "actor_rollout_ref.actor.optim.lr=0"


@dataclass(frozen=True)
class Verdict:
    gain: float
    control_gain: float
    noise: float
    k: int

    @property
    def learned(self) -> bool:
        return self.gain > self.control_gain + 2 * self.noise

    def line(self) -> str:
        return f"LEARNING gain={self.gain:.4f} control_gain={self.control_gain:.4f} noise={self.noise:.4f}"


def series(steps: dict[int, dict[str, float]], metric: str) -> list[float]:
    """The metric's value at every step, in step order (a step without it is an error)."""
    missing = [step for step in sorted(steps) if metric not in steps[step]]
    if missing:
        raise ValueError(f"{metric}: missing at steps {missing}")
    return [steps[step][metric] for step in sorted(steps)]


def first_last(values: list[float], k: int) -> tuple[float, float]:
    if len(values) < 2 * k:
        raise ValueError(f"{len(values)} steps: need at least 2k = {2 * k} to compare the first and last {k}")
    return statistics.fmean(values[:k]), statistics.fmean(values[-k:])


def verdict(run: dict[int, dict[str, float]], control: dict[int, dict[str, float]], k: int) -> Verdict:
    first, last = first_last(series(run, SCORE), k)
    control_values = series(control, SCORE)
    control_first, control_last = first_last(control_values, k)
    return Verdict(last - first, control_last - control_first, statistics.stdev(control_values), k)


def table(run: dict, control: dict, k: int) -> str:
    lines = [
        f"{'metric':<28} {'run first-' + str(k):>12} {'run last-' + str(k):>12} {'ctrl first':>12} {'ctrl last':>12}"
    ]
    for metric in TABLE_METRICS:
        try:
            cells = [*first_last(series(run, metric), k), *first_last(series(control, metric), k)]
        except ValueError:
            continue
        lines.append(f"{metric:<28} " + " ".join(f"{value:>12.3f}" for value in cells))
    return "\n".join(lines)


def write_curves(run: dict, control: dict, path: Path) -> str:
    """The learning curves as a PNG; a one-line note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 'curves not written: matplotlib is missing (pip install "verl-avconfuse[plots]")'
    metrics = [m for m in TABLE_METRICS if all(m in s for s in run.values())]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for name, steps in (("Step-RR", run), ("control (lr = 0)", control)):
            values = [steps[s].get(metric) for s in sorted(steps)]
            axis.plot(sorted(steps), values, marker="o", label=name)
        axis.set_title(metric, fontsize=9)
        axis.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return f"curves: {path}"


def run_main_ppo(out_dir: Path, name: str, overrides: list[str]) -> dict[int, dict[str, float]]:
    """One ``main_ppo`` run; its console log kept as ``<name>.log``; its per-step metrics."""
    from verl_avconfuse.console_metrics import parse_console_metrics

    log_path = out_dir / f"{name}.log"
    command = [sys.executable, "-m", "verl.trainer.main_ppo", *RECIPES, *overrides]
    print(f"[{name}] {' '.join(command[1:])}  (log: {log_path})", flush=True)
    start = time.monotonic()
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=out_dir)
    text = log_path.read_text()
    if result.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise RuntimeError(f"[{name}] main_ppo exited {result.returncode}; last lines of {log_path}:\n{tail}")
    steps = parse_console_metrics(text)
    print(f"[{name}] {len(steps)} steps in {time.monotonic() - start:.0f} s", flush=True)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_avconfuse.learning",
        description="Stage 2 on the tiny CPU task against a same-seed lr = 0 control; exit 0 when it learned",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="folder for the logs, learning.json and curves.png")
    parser.add_argument("--k", type=int, default=4, help="steps averaged at each end")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for both runs (e.g. trainer.total_training_steps=8)"
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = run_main_ppo(out_dir, "step_rr", list(args.overrides))
        control = run_main_ppo(out_dir, "control", [*args.overrides, CONTROL_OVERRIDE])
        result = verdict(run, control, args.k)
    except (RuntimeError, ValueError) as error:
        print(f"learning: error: {error}", file=sys.stderr)
        return 2
    print()
    print(table(run, control, args.k))
    print(write_curves(run, control, out_dir / "curves.png"))
    summary = {**asdict(result), "learned": result.learned, "run": run, "control": control}
    tmp = out_dir / "learning.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True))
    tmp.replace(out_dir / "learning.json")
    print(result.line())
    return 0 if result.learned else 1


if __name__ == "__main__":
    sys.exit(main())
