"""RL-CoMM step time vs the GRPO baseline at the deployment topology, with the reference prefetch off and on.

    python benchmarks/bench_rl_comm_runs.py [--prompts 8] [--prefetch none,batch,next] [--topology deployment]
                                            [--out benchmarks/results/rl_comm_runs.json]

Real tiny runs of verl's ``main_ppo`` on this machine, in one invocation, 2 epochs over ``--prompts`` prompts
(2 a step, 4 rollouts each), placed as docs/deployment.md places a GPU node:

- ``deployment`` (default): 2 actor ranks (two FSDP ranks over gloo) in verl's pool and the reference audio
  LM in a pool of its own (``placement=separate``), on 3 logical Ray GPUs; the GRPO baseline gets the same 2
  actor ranks on the same cluster (it has no reference);
- ``single``: one actor rank, the reference sharing nothing (``+machine=cpu_tiny`` as is).

One GRPO-baseline run, then one RL-CoMM run per ``avconfuse.reference.prefetch`` value (``none`` = off:
a reward asks for its prompt's reference when it scores; ``batch`` = on: the trainer asks when it draws the
batch, before the rollout; ``next``: the next batch's too). For each: the RL-CoMM / baseline step time
(mean ``timing_s/step`` without step 1, the warm-up), in epoch 1 (references generated) and epoch 2 (every
reference from the cache); ``timing_s/reference_wait`` per step (how long the reward loop waited on the
reference); ``reference_wait_fraction`` = mean wait / mean ``timing_s/reference_generate`` over epoch 1; the
step's critical path (rollout + wait + update); and the reference's generations against the unique prompts.

On this 2-core machine the reference, the embedder and the policy share the cores, so the step ratio also
carries their contention, which a GPU cluster does not have; :func:`paper_scale_estimate` puts the
components at the paper's sizes (3B policy on 7 GPUs, 7B reference on 1) by FLOPs and bytes instead.

Everything measured goes to ``--out`` (atomically): the command, commit, machine, date, the load before and
after each run, every run's per-step timings, and the summary figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _common import REPO, machine_line

from verl_avconfuse.experiments.console_metrics import parse_console_metrics

BATCH = 2  # prompts per step (cpu_tiny's data.train_batch_size)
ROLLOUTS = 4  # rollouts per prompt (cpu_tiny's rollout.n)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "rl_comm_runs.json"
PREFETCH_NAMES = {"none": "off", "batch": "on", "next": "next"}
#: verl's replay buffer poll (avconfuse.sampler_poll_interval_s) for these runs, instead of its 2 s.
POLL_INTERVAL_S = 0.05

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

#: The metrics kept per step in the results file (verl's timings and the reference's counters).
KEPT_PREFIXES = ("timing_s/", "reference/", "similarity/batched_calls")
#: verl's timings after the rollout that make up the actor's side of a sync step.
UPDATE_TIMINGS = ("timing_s/old_log_prob", "timing_s/adv", "timing_s/update_actor", "timing_s/update_weights")

#: Parameters of the tiny models these runs use (counted from their safetensors) and of the paper's.
TINY_PARAMS = {"policy": 282_464, "reference": 214_720, "embedder": 22_713_216}  # embedder: all-MiniLM-L6-v2
PAPER = {
    "policy_params": 3.0e9,  # Qwen2.5-Omni-3B thinker's language model (+ towers, small beside it)
    "policy_gpus": 7,
    "reference_params": 7.0e9,  # Qwen2-Audio-7B-Instruct
    "reference_gpus": 1,
    "embedder_params": 0.6e9,  # Qwen3-Embedding-0.6B, beside the reference on its GPU
    "prompts_per_step": 56,  # 8 prompts per policy GPU
    "group": 6,  # G
    "policy_prompt_tokens": 2048,  # a clip's audio + video tokens + the question (device_check's length)
    "policy_new_tokens": 256,
    "reference_prompt_tokens": 850,  # 30 s of audio (750 tokens) + instruction, question and answer
    "reference_new_tokens": 128,
    "embedded_tokens_per_response": 3.17 * 40,  # distinct texts a response (bench_step_rr) x ~40 tokens
    # One H100 SXM, bf16: dense matmul peak, the share of it prefill and training reach, HBM bandwidth.
    "peak_flops": 989e12,
    "mfu": 0.4,
    "hbm_bytes_per_s": 3.35e12,
}


def paper_scale_estimate(p: dict = PAPER) -> dict:
    """The step's components at the paper's sizes, from FLOPs (prefill, training, embedding) and from bytes
    (decoding reads every weight once a step); seconds on the devices that run each.

    A rough model, not a measurement: it assumes a decoder at the bandwidth limit (vLLM-like; HF ``generate``
    is several times slower, which only makes the rollout longer and the reference easier to hide) and the
    same MFU for every compute-bound part. What it is for: the ratio of the reference's time to the rollout's.
    """
    flops_rate = p["peak_flops"] * p["mfu"]
    responses_per_gpu = p["prompts_per_step"] * p["group"] / p["policy_gpus"]
    policy_tokens = p["policy_prompt_tokens"] + p["policy_new_tokens"]
    rollout = (
        2 * p["policy_params"] * p["policy_prompt_tokens"] * responses_per_gpu / flops_rate
        + p["policy_new_tokens"] * 2 * p["policy_params"] / p["hbm_bytes_per_s"]
    )
    # old log-probs (forward) and the update (forward + backward) over every token of every response
    update = (2 + 6) * p["policy_params"] * policy_tokens * responses_per_gpu / flops_rate
    prompts_per_reference_gpu = p["prompts_per_step"] / p["reference_gpus"]
    reference = (
        2 * p["reference_params"] * p["reference_prompt_tokens"] * prompts_per_reference_gpu / flops_rate
        + p["reference_new_tokens"] * 2 * p["reference_params"] / p["hbm_bytes_per_s"]
    )
    embedding = (
        2 * p["embedder_params"] * p["embedded_tokens_per_response"] * p["prompts_per_step"] * p["group"] / flops_rate
    )
    baseline = rollout + update
    # Off: the reference starts when a group's first rollout is scored, i.e. as the batched rollout ends, so
    # the rewards wait for all of it. On: it runs beside the rollout; only what outlasts it is waited for.
    # The embedder scores after the last rollout either way (its reference embeddings are ready when on).
    wait = {"off": reference, "on": max(0.0, reference - rollout)}
    steps = {name: baseline + wait[name] + embedding for name in wait}
    return {
        "assumptions": p,
        "seconds": {"rollout": rollout, "update": update, "reference": reference, "embedding": embedding},
        "reference_over_rollout": reference / rollout,
        "step_ratio": {name: steps[name] / baseline for name in steps},
        "step_ratio_epoch2_cached": (baseline + embedding) / baseline,
    }


#: A run whose torch.distributed rendezvous port was taken by another job on the machine is started again.
PORT_TAKEN = "EADDRINUSE"
RETRIES = 2


def run(overrides: list[str], cwd: str, retries: int = RETRIES) -> tuple[dict[int, dict[str, float]], float, str]:
    """One ``main_ppo`` run in its own Ray instance: ({step: metrics}, wall seconds, the run summary)."""
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
    output = result.stdout + result.stderr
    if result.returncode != 0 and PORT_TAKEN in output and retries > 0:
        print(" [port taken by another job: run again]", end="", flush=True)
        return run(overrides, cwd, retries - 1)
    if result.returncode != 0:
        sys.stderr.write(output[-4000:])
        raise SystemExit(f"main_ppo failed ({result.returncode})")
    summary = output[output.find("avconfuse: training finished") :].split("\n\n")[0].strip()
    return parse_console_metrics(output), wall, summary


def mean_of(steps: dict[int, dict[str, float]], key: str, which: list[int]) -> float:
    return statistics.fmean(steps[s].get(key, 0.0) for s in which)


def critical_path(steps: dict[int, dict[str, float]], which: list[int]) -> dict[str, float]:
    """Mean seconds of the step's chain: rollout (verl's ``gen`` less the reward loop's wait on the
    reference, which happens inside it), the wait, and the actor's side (old log-probs through the update)."""
    gen = mean_of(steps, "timing_s/gen", which)
    wait = mean_of(steps, "timing_s/reference_wait", which)
    update = sum(mean_of(steps, key, which) for key in UPDATE_TIMINGS)
    return {"rollout": gen - wait, "reference_wait": wait, "update": update, "total": gen + update}


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def summarize(runs: dict, prefetches: list[str], per_epoch: int, prompts: int):
    """The figures of the runs, printed: (per prefetch, the baseline's critical path, the epochs' steps)."""
    epoch1_all = list(range(1, per_epoch + 1))
    epoch1 = epoch1_all[1:]  # without step 1 (warm-up: first calls, caches, compiles)
    epoch2 = list(range(per_epoch + 1, 2 * per_epoch + 1))
    base = runs["grpo_baseline"]["steps"]
    results: dict[str, dict] = {}
    print("\n  step time (s)                  RL-CoMM  GRPO  ratio | wait/step epoch 1  wait/generation  prefetched")
    for value in prefetches:
        steps = runs[f"rl_comm_prefetch_{value}"]["steps"]
        ratios = {}
        for label, which in (("epoch1", epoch1), ("epoch2", epoch2), ("all", epoch1 + epoch2)):
            ratios[label] = mean_of(steps, "timing_s/step", which) / mean_of(base, "timing_s/step", which)
        wait, generate = (
            mean_of(steps, key, epoch1_all) for key in ("timing_s/reference_wait", "timing_s/reference_generate")
        )
        last = steps[max(steps)]
        results[PREFETCH_NAMES[value]] = {
            "prefetch": value,
            "step_ratio": ratios,
            "step_s": {
                label: mean_of(steps, "timing_s/step", which)
                for label, which in (("epoch1", epoch1), ("epoch2", epoch2))
            },
            "reference_wait_s_per_step": [steps[s].get("timing_s/reference_wait") for s in sorted(steps)],
            "reference_generate_s_per_step": [steps[s].get("timing_s/reference_generate") for s in sorted(steps)],
            "similarity_s_per_step": [steps[s].get("timing_s/similarity") for s in sorted(steps)],
            "reference_wait_fraction": ratio(wait, generate),
            "reference_wait_fraction_without_step_1": ratio(
                mean_of(steps, "timing_s/reference_wait", epoch1), mean_of(steps, "timing_s/reference_generate", epoch1)
            ),
            "critical_path_s": {
                "epoch1": critical_path(steps, epoch1),
                "epoch2": critical_path(steps, epoch2),
            },
            "reference_generated": last.get("reference/generated"),
            "reference_requests": last.get("reference/requests"),
            "reference_prefetched": sum(steps[s].get("reference/prefetched", 0.0) for s in steps),
        }
        r = results[PREFETCH_NAMES[value]]
        print(
            f"  prefetch {value:5s} epoch 1 / 2 / all   {r['step_s']['epoch1']:5.2f}  "
            f"{mean_of(base, 'timing_s/step', epoch1):5.2f}  {ratios['epoch1']:.2f} / {ratios['epoch2']:.2f} / "
            f"{ratios['all']:.2f} | {wait:6.3f} s   {r['reference_wait_fraction'] or float('nan'):.3f}   {r['reference_prefetched']:.0f}"
        )
    base_path = {"epoch1": critical_path(base, epoch1), "epoch2": critical_path(base, epoch2)}
    print("\n  critical path, epoch 1 (s)     rollout   wait  update   total")
    for label, path in [("GRPO baseline", base_path["epoch1"])] + [
        (f"prefetch {r['prefetch']}", r["critical_path_s"]["epoch1"]) for r in results.values()
    ]:
        print(
            f"  {label:30s} {path['rollout']:7.2f} {path['reference_wait']:6.3f} {path['update']:7.2f} "
            f"{path['total']:7.2f}"
        )
    for r in results.values():
        print(
            f"  prefetch {r['prefetch']}: reference generations {r['reference_generated'] or 0:.0f} (unique prompts "
            f"{prompts}), reward requests {r['reference_requests'] or 0:.0f} (= {2 * prompts * ROLLOUTS} rollouts)"
        )
    return results, base_path, (epoch1_all, epoch1, epoch2)


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "verl_avconfuse", "benchmarks", "recipes")
    return commit + (" (with uncommitted changes)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="unique prompts; 2 epochs of them (default 8)")
    parser.add_argument("--topology", choices=sorted(TOPOLOGIES), default="deployment")
    parser.add_argument(
        "--prefetch", default="none,batch,next", help="avconfuse.reference.prefetch values to run (default: all)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"results file (default {DEFAULT_OUT})")
    args = parser.parse_args()
    if args.prompts % BATCH or args.prompts < 2 * BATCH:
        raise SystemExit(f"--prompts must be a multiple of {BATCH}, at least {2 * BATCH}")
    prefetches = [value.strip() for value in args.prefetch.split(",") if value.strip()]
    if not prefetches or any(value not in PREFETCH_NAMES for value in prefetches):
        raise SystemExit(f"--prefetch: a comma-separated list of {sorted(PREFETCH_NAMES)}")
    per_epoch = args.prompts // BATCH

    machine = machine_line()
    commit = git_commit()  # the code that runs is the code at the start
    started = datetime.datetime.now(datetime.timezone.utc)
    print(machine)
    print(
        f"topology {args.topology}: {' '.join(TOPOLOGIES[args.topology]) or 'cpu_tiny as is'}; "
        f"2 epochs x {args.prompts} prompts, {BATCH} a step, {ROLLOUTS} rollouts each"
    )
    common = [
        "+machine=cpu_tiny",
        # verl's replay buffer polls for finished rollouts every 2 s: at tiny sizes that quantum, not the work,
        # would set every step's rollout phase (2.01 or 4.02 s whatever ran in it).
        f"avconfuse.sampler_poll_interval_s={POLL_INTERVAL_S}",
        f"data.train_max_samples={args.prompts}",
        "trainer.total_training_steps=null",
        "trainer.total_epochs=2",
        *TOPOLOGIES[args.topology],
    ]
    variants = [("grpo_baseline", ["+recipe=grpo_baseline"])] + [
        (f"rl_comm_prefetch_{value}", ["+recipe=avconfuse", f"avconfuse.reference.prefetch={value}"])
        for value in prefetches
    ]
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as cwd:
        for name, recipes in variants:
            overrides = [*recipes, *common, f"avconfuse.reference.cache_dir={cwd}/{name}"]
            load_before = os.getloadavg()
            print(f"  {name}: load before {load_before[0]:.2f}", end="", flush=True)
            steps, wall, summary = run(overrides, cwd)
            load_after = os.getloadavg()
            print(f", after {load_after[0]:.2f}; {len(steps)} steps in {wall:.0f} s")
            if sorted(steps) != list(range(1, 2 * per_epoch + 1)):
                raise SystemExit(f"{name}: expected steps 1..{2 * per_epoch}, got {sorted(steps)}")
            runs[name] = {
                "overrides": overrides[:-1],  # the cache folder is a temporary one
                "wall_s": wall,
                "load_before": list(load_before),
                "load_after": list(load_after),
                "summary": summary,
                "steps": {
                    step: {key: value for key, value in metrics.items() if key.startswith(KEPT_PREFIXES)}
                    for step, metrics in sorted(steps.items())
                },
            }

    results, base_path, split = summarize(runs, prefetches, per_epoch, args.prompts)
    epoch1_all, epoch1, epoch2 = split
    base = runs["grpo_baseline"]["steps"]

    estimate = paper_scale_estimate()
    print(
        f"\n  at the paper's sizes (estimate): reference {estimate['seconds']['reference']:.2f} s vs rollout "
        f"{estimate['seconds']['rollout']:.2f} s; step ratio off {estimate['step_ratio']['off']:.2f}, "
        f"on {estimate['step_ratio']['on']:.2f}, cached {estimate['step_ratio_epoch2_cached']:.2f}"
    )
    finished = datetime.datetime.now(datetime.timezone.utc)
    payload = {
        "command": "python benchmarks/bench_rl_comm_runs.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "machine": machine,
        "date": f"{started:%Y-%m-%d %H:%M}-{finished:%H:%M} UTC",
        "load_1min": {name: [run["load_before"][0], run["load_after"][0]] for name, run in runs.items()},
        "setup": {
            "topology": args.topology,
            "topology_overrides": TOPOLOGIES[args.topology],
            "prompts": args.prompts,
            "prompts_per_step": BATCH,
            "rollouts_per_prompt": ROLLOUTS,
            "epochs": 2,
            "epoch1_steps_for_step_time": epoch1,
            "epoch1_steps_for_wait_fraction": epoch1_all,
            "epoch2_steps": epoch2,
            "tiny_params": TINY_PARAMS,
        },
        "prefetch": results,
        "grpo_baseline": {"step_s": {"epoch1": mean_of(base, "timing_s/step", epoch1),
                                     "epoch2": mean_of(base, "timing_s/step", epoch2)},
                          "critical_path_s": base_path},
        "paper_scale_estimate": estimate,
        "runs": runs,
    }  # fmt: skip
    from verl_avconfuse.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(payload, indent=1) + "\n", parents=True)
    print(f"\n  written: {args.out}")


if __name__ == "__main__":
    main()
