"""RL-CoMM step time vs the GRPO baseline at the deployment topology, and the reference's generations.

    python benchmarks/bench_rl_comm_runs.py [--prompts 6] [--topology deployment|single]

Two real tiny runs of verl's ``main_ppo`` on this machine, 2 epochs over ``--prompts`` prompts (2 a
step, 4 rollouts each), placed as docs/deployment.md places a GPU node:

- ``deployment`` (default): 2 actor ranks (two FSDP ranks over gloo) in verl's pool and the reference
  audio LM in a pool of its own (``placement=separate``), on 3 logical Ray GPUs; the GRPO baseline gets
  the same 2 actor ranks on the same cluster (it has no reference);
- ``single``: one actor rank, the reference sharing nothing (``+machine=cpu_tiny`` as is).

Printed, each beside its limit: the RL-CoMM / GRPO-baseline step time (mean ``timing_s/step`` without
step 1, the warm-up), split into epoch 1 (references generated) and epoch 2 (every reference from the
cache); and the reference's generations over the whole run
against the number of unique prompts, which the content-keyed cache makes the exact count (each group's
other rollouts and all of epoch 2 generate nothing). ``uptime`` is printed before and after each run:
on a shared machine the absolute seconds move with the load; the ratios much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _common import REPO, machine_line

from verl_avconfuse.console_metrics import parse_console_metrics

BATCH = 2  # prompts per step (cpu_tiny's data.train_batch_size)
ROLLOUTS = 4  # rollouts per prompt (cpu_tiny's rollout.n)

TOPOLOGIES = {
    # 2 actor ranks + the reference on its own logical GPU, as tests/test_e2e_placement.py places them.
    "deployment": [
        "trainer.n_gpus_per_node=2",
        "avconfuse.reference.placement=separate",
        "avconfuse.reference.num_gpus=1",
        "ray_kwargs.ray_init.num_gpus=3",
    ],
    "single": [],
}


def run(overrides: list[str], cwd: str) -> tuple[dict[int, dict[str, float]], float]:
    """One ``main_ppo`` run in its own Ray instance: ({step: metrics}, wall seconds)."""
    ray_tmp = tempfile.mkdtemp(prefix="avc-bench-ray-", dir="/tmp")
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "verl.trainer.main_ppo", *overrides],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write((result.stdout + result.stderr)[-4000:])
        raise SystemExit(f"main_ppo failed ({result.returncode})")
    return parse_console_metrics(result.stdout + result.stderr), wall


def mean_of(steps: dict[int, dict[str, float]], key: str, which: list[int]) -> float:
    return statistics.fmean(steps[s][key] for s in which)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=6, help="unique prompts; 2 epochs of them (default 6)")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="deployment")
    args = parser.parse_args()
    if args.prompts % BATCH or args.prompts < 2 * BATCH:
        raise SystemExit(f"--prompts must be a multiple of {BATCH}, at least {2 * BATCH}")
    per_epoch = args.prompts // BATCH

    print(machine_line())
    print(
        f"topology {args.topology}: {' '.join(TOPOLOGIES[args.topology]) or 'cpu_tiny as is'}; "
        f"2 epochs x {args.prompts} prompts, {BATCH} a step, {ROLLOUTS} rollouts each"
    )
    common = [
        "+machine=cpu_tiny",
        f"data.train_max_samples={args.prompts}",
        "trainer.total_training_steps=null",
        "trainer.total_epochs=2",
        *TOPOLOGIES[args.topology],
    ]
    runs = {}
    with tempfile.TemporaryDirectory() as cwd:
        for name, recipes in (
            ("rl_comm", ["+recipe=avconfuse"]),
            ("grpo_baseline", ["+recipe=grpo_baseline"]),
        ):
            print(f"  {name}: load before {os.getloadavg()[0]:.2f}", end="", flush=True)
            steps, wall = run([*recipes, *common, f"avconfuse.reference.cache_dir={cwd}/{name}"], cwd)
            print(f", after {os.getloadavg()[0]:.2f}; {len(steps)} steps in {wall:.0f} s")
            if sorted(steps) != list(range(1, 2 * per_epoch + 1)):
                raise SystemExit(f"{name}: expected steps 1..{2 * per_epoch}, got {sorted(steps)}")
            runs[name] = steps

    epoch1 = list(range(2, per_epoch + 1))  # without step 1 (warm-up: first calls, caches, compiles)
    epoch2 = list(range(per_epoch + 1, 2 * per_epoch + 1))
    rl, base = runs["rl_comm"], runs["grpo_baseline"]
    print("\n  step time (s)                    RL-CoMM  GRPO-baseline  ratio")
    for label, which in (("epoch 1 (references generated)", epoch1), ("epoch 2 (references cached)", epoch2)):
        t_rl, t_base = mean_of(rl, "timing_s/step", which), mean_of(base, "timing_s/step", which)
        print(f"  {label:31s} {t_rl:7.2f}  {t_base:13.2f}  {t_rl / t_base:5.2f}")
    both = epoch1 + epoch2
    t_rl, t_base = mean_of(rl, "timing_s/step", both), mean_of(base, "timing_s/step", both)
    print(f"  {'steps 2..' + str(2 * per_epoch):31s} {t_rl:7.2f}  {t_base:13.2f}  {t_rl / t_base:5.2f}")

    last = rl[max(rl)]
    generated = last["reference/generated"]
    requests = last.get("reference/requests", float("nan"))
    print(f"\n  reference generations over the run  {generated:.0f}")
    print(f"  limit: unique prompts               {args.prompts}   (equal: {generated == args.prompts})")
    print(f"  reference requests (all rollouts)   {requests:.0f}   (= {2 * args.prompts * ROLLOUTS} rollouts)")
    print(f"  batched LALM calls                  {last['reference/batched_calls']:.0f}")


if __name__ == "__main__":
    main()
