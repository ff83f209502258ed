"""Does RL-CoMM learn? A run against a same-seed control that differs only in what it trains, on the CPU.

``python -m verl_avconfuse.experiments.learning OUT_DIR [--stage 2|3] [--machine NAME] [OVERRIDES...]`` (what
``examples/run_cpu_learning.sh`` runs) trains the tiny task twice through verl's own ``main_ppo``, with
the same seed, prompts and sampling settings:

- ``--stage 2`` (default): ``+recipe=avconfuse +machine=cpu_learning``, Step-RR GRPO,
  against the same run with ``actor_rollout_ref.actor.optim.lr=0``. The signal is ``critic/score/mean``
  (the Step-RR reward), which must rise.
- ``--stage 3``: ``+recipe=avconfuse_ansco +machine=cpu_ansco_learning`` (Ans-CO on top of
  Step-RR's policy gradient), against the same run with ``avconfuse.ans_co.ansco_coef=0``: the
  policy-gradient-only update, with the Ans-CO metrics still measured (the loss is ``pg + 0 * L_OP``).
  The signal is ``ansco/answer_entropy`` (the answer tokens' entropy under the policy being updated),
  which must fall.

``--machine NAME`` replaces the stage's machine for both runs (``cpu_learning_ci``: the short version
the slow test runs); ``--arm LABEL:OVERRIDES`` adds a further run, compared with the same control (the
paper's stage-3 objective: ``lop_only:avconfuse.ans_co.pg_coef=0``); ``--result FILE`` also writes
``learning.json`` with the command, commit, machine, dates and load average (:mod:`verl_avconfuse.experiments.provenance`;
the committed ones are ``benchmarks/results/learning_stage{2,3}.json``). verl's step lines of every run are
echoed as they come, prefixed with the run's name; the whole console logs are ``OUT_DIR/<name>.log``.
It prints the first-k and last-k step means of the metrics for both, writes the learning
curves (``curves.png``, when matplotlib is installed) and ``learning.json``, and ends with one line::

    LEARNING gain=G control_gain=C noise=S          (stage 2)
    ANSCO entropy_drop=G control_drop=C noise=S     (stage 3)

``G`` and ``C`` are the change of the signal from the first k to the last k steps (last minus first for a
rise, first minus last for a fall) of the run and of the control; ``S`` is the standard deviation of the
control's step means, i.e. how much the signal moves without the trained part. The exit status is 0
only when ``G > C + 2 S``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from verl_avconfuse.experiments.provenance import result_record, write_result
from verl_avconfuse.io import atomic_write_figure, atomic_write_json

#: verl's console step line (verl_avconfuse.experiments.console_metrics reads the same lines).
STEP_LINE = re.compile(r"step:\d+ - ")

#: The stage-2 learning signal.
SCORE = "critic/score/mean"
STEP_RR_METRICS = (SCORE, "reward/format/mean", "reward/acc/mean", "reward/arr/mean", "reward/arr_of_right/mean")
#: The stage-3 signal: mean entropy over the answer tokens of the responses with an answer (ansco/*).
ANSWER_ENTROPY = "ansco/answer_entropy"
ANS_CO_METRICS = (ANSWER_ENTROPY, "ansco/gated_fraction", "ansco/u_mean", "ansco/nll", SCORE, "reward/acc/mean")


@dataclass(frozen=True)
class Experiment:
    """A learning run and its control: recipe and machine, what the control changes, what must move."""

    recipe: str
    machine: str
    control_overrides: tuple[str, ...]
    signal: str
    #: +1: the signal must rise; -1: it must fall.
    direction: int
    table_metrics: tuple[str, ...]
    run_label: str
    control_label: str
    #: The final line: ``PREFIX <gain_name>=G <control_name>=C noise=S``.
    line_format: str


STAGES = {
    2: Experiment(
        recipe="avconfuse",
        machine="cpu_learning",
        control_overrides=("actor_rollout_ref.actor.optim.lr=0",),
        signal=SCORE,
        direction=+1,
        table_metrics=STEP_RR_METRICS,
        run_label="Step-RR",
        control_label="control (lr = 0)",
        line_format="LEARNING gain={gain:.4f} control_gain={control_gain:.4f} noise={noise:.4f}",
    ),
    3: Experiment(
        recipe="avconfuse_ansco",
        machine="cpu_ansco_learning",
        control_overrides=("avconfuse.ans_co.ansco_coef=0",),
        signal=ANSWER_ENTROPY,
        direction=-1,
        table_metrics=ANS_CO_METRICS,
        run_label="Step-RR + Ans-CO",
        control_label="control (PG only)",
        line_format="ANSCO entropy_drop={gain:.4f} control_drop={control_gain:.4f} noise={noise:.4f}",
    ),
}


def config_groups(experiment: Experiment, machine: str | None = None) -> tuple[str, str]:
    """The Hydra group selections of both runs: the stage's recipe, then its machine (or ``machine``)."""
    return (f"+recipe={experiment.recipe}", f"+machine={machine or experiment.machine}")


@dataclass(frozen=True)
class Verdict:
    gain: float
    control_gain: float
    noise: float
    k: int
    line_format: str = STAGES[2].line_format

    @property
    def learned(self) -> bool:
        return self.gain > self.control_gain + 2 * self.noise

    def line(self) -> str:
        return self.line_format.format(gain=self.gain, control_gain=self.control_gain, noise=self.noise)


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


def verdict(
    run: dict[int, dict[str, float]],
    control: dict[int, dict[str, float]],
    k: int,
    experiment: Experiment = STAGES[2],
) -> Verdict:
    """Change of the experiment's signal (in its direction) in the run and the control, and the control's spread."""
    first, last = first_last(series(run, experiment.signal), k)
    control_values = series(control, experiment.signal)
    control_first, control_last = first_last(control_values, k)
    sign = experiment.direction
    return Verdict(
        sign * (last - first),
        sign * (control_last - control_first),
        statistics.stdev(control_values),
        k,
        experiment.line_format,
    )


def table(run: dict, control: dict, k: int, metrics: tuple[str, ...] = STEP_RR_METRICS) -> str:
    lines = [
        f"{'metric':<28} {'run first-' + str(k):>12} {'run last-' + str(k):>12} {'ctrl first':>12} {'ctrl last':>12}"
    ]
    for metric in metrics:
        try:
            cells = [*first_last(series(run, metric), k), *first_last(series(control, metric), k)]
        except ValueError:
            continue
        lines.append(f"{metric:<28} " + " ".join(f"{value:>12.3f}" for value in cells))
    return "\n".join(lines)


def write_curves(run: dict, control: dict, path: Path, experiment: Experiment = STAGES[2]) -> str:
    """The learning curves as a PNG; a one-line note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 'curves not written: matplotlib is missing (pip install "verl-avconfuse[plots]")'
    metrics = [m for m in experiment.table_metrics if all(m in s for s in run.values())]
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for name, steps in ((experiment.run_label, run), (experiment.control_label, control)):
            values = [steps[s].get(metric) for s in sorted(steps)]
            axis.plot(sorted(steps), values, marker="o", label=name)
        axis.set_title(metric, fontsize=9)
        axis.set_xlabel("step")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    atomic_write_figure(path, figure, dpi=110)
    return f"curves: {path}"


def run_main_ppo(
    out_dir: Path, name: str, overrides: list[str], recipes: tuple[str, ...]
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """One ``main_ppo`` run: its per-step metrics, and its wall time and load.

    The console log is kept whole as ``<name>.log``; verl's step lines (``step:N - metric:value ...``)
    are echoed as they come, prefixed with ``[name]``, so the steps behind the final line are on screen.
    """
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    log_path = out_dir / f"{name}.log"
    command = [sys.executable, "-m", "verl.trainer.main_ppo", *recipes, *overrides]
    print(f"[{name}] {' '.join(command[1:])}  (log: {log_path})", flush=True)
    start = time.monotonic()
    load_start = os.getloadavg()[0]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=out_dir, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if STEP_LINE.search(line):
                print(f"[{name}] {line.strip()}", flush=True)
        returncode = process.wait()
    text = log_path.read_text()
    if returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise RuntimeError(f"[{name}] main_ppo exited {returncode}; last lines of {log_path}:\n{tail}")
    steps = parse_console_metrics(text)
    seconds = time.monotonic() - start
    print(f"[{name}] {len(steps)} steps in {seconds:.0f} s", flush=True)
    timing = {"wall_s": round(seconds, 1), "load_1min_at_start": round(load_start, 2)}
    timing["load_1min_at_end"] = round(os.getloadavg()[0], 2)
    return steps, timing


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``LABEL:OVERRIDE [OVERRIDE ...]`` -> ``(LABEL, [OVERRIDE, ...])``."""
    label, sep, overrides = text.partition(":")
    if not sep or not label.strip() or not overrides.split():
        raise argparse.ArgumentTypeError(f"--arm: expected LABEL:OVERRIDE [OVERRIDE ...], got {text!r}")
    return label.strip(), overrides.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_avconfuse.experiments.learning",
        description="A tiny CPU run against a same-seed control; exit 0 when the run moved its signal beyond noise",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="folder for the logs, learning.json and curves.png")
    parser.add_argument(
        "--stage", type=int, choices=sorted(STAGES), default=2, help="2: Step-RR vs lr = 0; 3: Ans-CO vs PG only"
    )
    parser.add_argument("--k", type=int, default=4, help="steps averaged at each end")
    parser.add_argument(
        "--machine", metavar="NAME", default=None, help="machine config for both runs (default: the stage's own)"
    )
    parser.add_argument(
        "--arm",
        type=parse_arm,
        action="append",
        default=[],
        metavar="LABEL:OVERRIDES",
        help="a further run compared with the control, e.g. 'lop_only:avconfuse.ans_co.pg_coef=0' (repeatable)",
    )
    parser.add_argument(
        "--result",
        type=Path,
        default=None,
        help="also write learning.json, with the command, commit, machine, dates and load, to this file "
        "(the committed figures: benchmarks/results/learning_stage{2,3}.json)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for both runs (e.g. trainer.total_training_steps=8)"
    )
    args = parser.parse_intermixed_args(argv)
    record = result_record(
        ["python", "-m", "verl_avconfuse.experiments.learning", *(sys.argv[1:] if argv is None else argv)]
    )
    experiment = STAGES[args.stage]
    recipes = config_groups(experiment, args.machine)
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict[str, float]] = {}
    arms: dict[str, dict] = {}
    try:
        run, timings["run"] = run_main_ppo(out_dir, "run", list(args.overrides), recipes)
        control, timings["control"] = run_main_ppo(
            out_dir, "control", [*args.overrides, *experiment.control_overrides], recipes
        )
        result = verdict(run, control, args.k, experiment)
        for label, overrides in args.arm:
            steps, timings[label] = run_main_ppo(out_dir, label, [*args.overrides, *overrides], recipes)
            arm_verdict = verdict(steps, control, args.k, experiment)
            arms[label] = {"overrides": overrides, "gain": arm_verdict.gain, "steps": steps}
    except (RuntimeError, ValueError) as error:
        print(f"learning: error: {error}", file=sys.stderr)
        return 2
    print()
    print(table(run, control, args.k, experiment.table_metrics))
    for label, arm in arms.items():
        print(f"\n{label} ({' '.join(arm['overrides'])}) against the control:")
        print(table(arm["steps"], control, args.k, experiment.table_metrics))
    print(write_curves(run, control, out_dir / "curves.png", experiment))
    summary = {
        **asdict(result),
        "stage": args.stage,
        "signal": experiment.signal,
        "recipes": list(recipes),
        "control_overrides": list(experiment.control_overrides),
        "overrides": list(args.overrides),
        "learned": result.learned,
        "line": result.line(),
        "run": run,
        "control": control,
        "arms": arms,
        "timings": timings,
    }
    atomic_write_json(out_dir / "learning.json", summary, indent=1, sort_keys=True)
    if args.result is not None:
        print(f"result: {write_result(args.result, record, summary)}")
    for label, arm in arms.items():
        print(f"ARM {label} gain={arm['gain']:.4f}  (the same measure as the final line's first value)")
    print(result.line())
    return 0 if result.learned else 1


if __name__ == "__main__":
    sys.exit(main())
