"""Figures from real tiny RL-CoMM runs on this machine (verl's main_ppo, CPU).

    python benchmarks/bench_rl_comm_runs.py generations   # LALM generations over a 2-epoch run
    python benchmarks/bench_rl_comm_runs.py step-time     # RL-CoMM step time / GRPO-baseline step time
    python benchmarks/bench_rl_comm_runs.py ans-co        # actor update time with Ans-CO / without

generations: trains 2 epochs over ``--prompts`` prompts and reads ``reference/generated`` from the
last step; with the content-keyed cache it must equal the number of unique prompts (the second
epoch, and every rollout of a group after the first, generate nothing).

step-time: the same tiny setup with the Step-RR recipe and with the GRPO-baseline recipe, for
``--steps`` steps each; reports the mean ``timing_s/step`` without the first step (warm-up).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from verl_avconfuse.console_metrics import parse_console_metrics


def run(overrides: list[str], cwd: str) -> dict[int, dict[str, float]]:
    result = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *overrides], cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write((result.stdout + result.stderr)[-4000:])
        raise SystemExit(f"main_ppo failed ({result.returncode})")
    return parse_console_metrics(result.stdout + result.stderr)


def generations(args, cwd: str) -> None:
    batch = 2
    steps = run(
        [
            "+recipe=avconfuse",
            "+machine=cpu_tiny",
            f"data.train_max_samples={args.prompts}",
            f"data.train_batch_size={batch}",
            "trainer.total_training_steps=null",
            "trainer.total_epochs=2",
            f"avconfuse.reference.cache_dir={cwd}/reference",
        ],
        cwd,
    )
    last = steps[max(steps)]
    print(f"2 epochs x {args.prompts} prompts, rollout.n=4: {len(steps)} steps, {len(steps) * batch * 4} rollouts")
    print(f"  reference generations  {last['reference/generated']:.0f}")
    print(f"  unique prompts         {args.prompts}")
    print(f"  batched LALM calls     {last['reference/batched_calls']:.0f}")
    print(f"  equal: {last['reference/generated'] == args.prompts}")


def step_time(args, cwd: str) -> None:
    common = ["+machine=cpu_tiny", f"trainer.total_training_steps={args.steps}"]
    times = {}
    for name, recipes in (
        ("rl_comm", ["+recipe=avconfuse"]),
        ("grpo_baseline", ["+recipe=grpo_baseline"]),
    ):
        steps = run([*recipes, *common, f"avconfuse.reference.cache_dir={cwd}/{name}"], cwd)
        values = [steps[s]["timing_s/step"] for s in sorted(steps)[1:]]
        times[name] = sum(values) / len(values)
        print(f"  {name:14s} mean step {times[name]:.2f} s over steps 2..{args.steps}")
    print(f"  RL-CoMM / GRPO-baseline step time: {times['rl_comm'] / times['grpo_baseline']:.2f}")


def ans_co(args, cwd: str) -> None:
    common = ["+machine=cpu_tiny", f"trainer.total_training_steps={args.steps}"]
    stage3 = ["+recipe=avconfuse_ansco"]
    times = {}
    for name, overrides in (
        ("without", ["+recipe=avconfuse"]),
        ("with_ans_co", stage3),  # entropy at the answer tokens only (the recipe's default)
        ("with_ans_co_all_positions", [*stage3, "avconfuse.ans_co.entropy_positions=all"]),
    ):
        steps = run([*overrides, *common, f"avconfuse.reference.cache_dir={cwd}/{name}"], cwd)
        values = [steps[s]["timing_s/update_actor"] for s in sorted(steps)[1:]]
        times[name] = sum(values) / len(values)
        print(f"  {name:26s} mean actor update {times[name] * 1000:.0f} ms over steps 2..{args.steps}")
    for name in ("with_ans_co", "with_ans_co_all_positions"):
        print(f"  actor update time {name} / without: {times[name] / times['without']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("generations", "step-time", "ans-co"))
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        {"generations": generations, "step-time": step_time, "ans-co": ans_co}[args.what](args, cwd)


if __name__ == "__main__":
    main()
