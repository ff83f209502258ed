"""A CPU-scale replica of RL-CoMM's ablation: does Step-RR teach a confusable model to listen, beyond GRPO?

    python benchmarks/ablation_replica.py OUT --seeds 0 1 2 3 4 [--arms grpo step_rr step_rr_ansco] [OVERRIDES...]

1. **Task** (:mod:`verl_avconfuse.tiny.confusion`): instruments seen as shapes and heard as tones; every
   question falls in one of four cells (muted, control, offscreen_heard, offscreen_silent), two of which
   (muted, offscreen_heard) only listening answers. The RL set is two-thirds such conflicts.
2. **Reference**: the tiny Qwen2-Audio fitted to say what it hears on the RL clips, with the reference
   worker's own prompt (question + answer + audio). It never hears a validation clip.
3. **Warm start**: verl's SFT trainer (``+recipe=sft_warmup +machine=cpu_ablation_sft``) on synchronized
   clips only, then **gated** before any RL by one validation pass of verl (greedy): it must answer >= 90% of
   held-out synchronized questions right (it knows the instruments) and say "yes" to >= 80% of muted ones
   (it is fooled). The replica stops, saying so, when the gate fails.
4. **Arms**, per seed, each with the same budget (``+machine=cpu_ablation``): warm start -> ``grpo``
   (format + accuracy), warm start -> ``step_rr`` (``+recipe=avconfuse``) and, as the paper, Step-RR's last
   checkpoint -> ``step_rr_ansco`` (stage 3, ``+recipe=avconfuse_ansco``). Every run validates after its last
   step; each step logs where the advantage lands (``adv/nonzero_group_frac``, ``adv/mass_frac/{cell}``).
5. **Report**: ``OUT/ablation_replica.json`` (every run: the gate, every cell before and after, the
   hyperparameters, the per-step signal), ``OUT/ablation.md`` (mean and 95% CI over seeds; the paired
   difference Step-RR - GRPO) and ``OUT/ablation.png``.

Resumable: a finished phase (its folder, a run's ``result.json``) is kept; outputs are written atomically,
so an interrupted run leaves nothing half-written. Extra arguments are Hydra overrides for every RL run.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: arm -> (recipe, label, the run it starts from: "warm_start" or another arm)
ARMS: dict[str, tuple[str, str, str]] = {
    "grpo": ("grpo_baseline", "GRPO (format + accuracy)", "warm_start"),
    "step_rr": ("avconfuse", "Step-RR", "warm_start"),
    "step_rr_ansco": ("avconfuse_ansco", "Step-RR -> Ans-CO", "step_rr"),
}
#: Overrides of one arm. Stage 3 runs one epoch of the RL set. (At 24 steps its policy's entropy fell to 0.005
#: and verl's log-prob pass once stopped: every sequence of that batch had one length, verl issue #7899, which
#: ``patches.MROPE_POSITION_IDS`` now fixes.)
ARM_OVERRIDES: dict[str, tuple[str, ...]] = {"step_rr_ansco": ("trainer.total_training_steps=12",)}
RL_MACHINE = "cpu_ablation"
SFT_MACHINE = "cpu_ablation_sft"
CELLS = ("muted", "control", "offscreen_heard", "offscreen_silent")
CONFLICT_CELLS = ("muted", "offscreen_heard")
#: The warm start's gate: held-out synchronized accuracy and the muted yes-rate, in %.
GATE_SYNC_ACCURACY = 90.0
GATE_MUTED_YES = 80.0
#: What the report shows for each run (:func:`score_generations`), in %.
REPORTED = (
    "listening_accuracy",
    "conflict_accuracy",
    "muted_accuracy",
    "muted_yes_rate",
    "control_accuracy",
    "offscreen_heard_accuracy",
    "offscreen_silent_accuracy",
    "sync_accuracy",
    "a_think_hears_muted",
    "format_rate",
)
#: The hyperparameters each RL run records, read from the config verl composes for it.
HYPERPARAMETERS = (
    "algorithm.adv_estimator",
    "algorithm.norm_adv_by_std_in_grpo",
    "algorithm.use_kl_in_reward",
    "actor_rollout_ref.actor.optim.lr",
    "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
    "actor_rollout_ref.actor.optim.weight_decay",
    "actor_rollout_ref.actor.optim.clip_grad",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.ppo_epochs",
    "actor_rollout_ref.actor.clip_ratio_low",
    "actor_rollout_ref.actor.clip_ratio_high",
    "actor_rollout_ref.actor.loss_agg_mode",
    "actor_rollout_ref.actor.use_kl_loss",
    "actor_rollout_ref.actor.entropy_coeff",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.rollout.temperature",
    "actor_rollout_ref.rollout.top_p",
    "actor_rollout_ref.rollout.top_k",
    "actor_rollout_ref.rollout.response_length",
    "actor_rollout_ref.rollout.val_kwargs.do_sample",
    "data.train_batch_size",
    "data.max_response_length",
    "data.shuffle",
    "data.seed",
    "trainer.total_training_steps",
    "avconfuse",
)
SFT_HYPERPARAMETERS = (
    "model.path",
    "optim.lr",
    "optim.lr_scheduler_type",
    "optim.lr_warmup_steps_ratio",
    "optim.weight_decay",
    "optim.clip_grad",
    "data.train_batch_size",
    "data.micro_batch_size_per_gpu",
    "data.media.max_frames",
    "trainer.total_epochs",
)
REFERENCE_STEPS = 300
REFERENCE_LR = 5e-3
#: Two-sided 95% quantiles of Student's t by degrees of freedom (1..30); beyond, the normal's 1.96.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def log(message: str) -> None:
    print(f"[ablation {time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_json(path: Path, payload: dict) -> None:
    from verl_avconfuse.io import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n", parents=True)


def run_logged(command: list[str], log_path: Path, *, cwd: Path, env: dict | None = None) -> str:
    """Run ``command`` with its output in ``log_path``; its text, or an error naming the log's last lines.

    verl's ``ray.init()`` joins the latest Ray instance started on the machine, if any (another replica's
    run, a test's): every run here starts its own (``RAY_ADDRESS=local``, a session folder of its own)."""
    import tempfile

    env = {**(env if env is not None else os.environ), "RAY_ADDRESS": "local"}
    env.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    start = time.monotonic()
    with log_path.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, text=True)
    text = log_path.read_text()
    if result.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(command[:3])} exited {result.returncode}; last lines of {log_path}:\n{tail}")
    log(f"{log_path.parent.name}: done in {time.monotonic() - start:.0f} s")
    return text


def composed(config_name: str, overrides: list[str], keys: tuple[str, ...]) -> dict:
    """The values of ``keys`` in the config verl composes from ``config_name`` + ``overrides`` (as its
    trainer would, recipes and machines included); interpolations resolved where they can be."""
    import verl
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from verl_avconfuse.tiny.resolver import register_resolver

    register_resolver()  # ${avconfuse_tiny:...}, as the plugin registers it in verl's own processes

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name=config_name, overrides=overrides)
    values = {}
    for key in keys:
        try:
            value = OmegaConf.select(config, key, throw_on_resolution_failure=True)
        except Exception:  # noqa: BLE001 -- recorded as written when it cannot resolve here
            value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
        if OmegaConf.is_config(value):
            try:
                value = OmegaConf.to_container(value, resolve=True)
            except Exception:  # noqa: BLE001
                value = OmegaConf.to_container(value, resolve=False)
        values[key] = value
    return values


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


#: The warm-up SFT's two stages: (name, overrides of ``+machine=cpu_ablation_sft``). At a constant 5e-3 the
#: tiny thinker's answers swing between "always yes", "always no" and right from one epoch count to another
#: (measured: 48 epochs right on 89.6% of the gate, 56 and 64 epochs one answer for everything); a short
#: stage at 1e-3 from the first stage's checkpoint settles them.
SFT_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sft", ()),
    ("sft_settle", ("trainer.total_epochs=8", "optim.lr=1e-3")),
)


def sft_overrides(out: Path, train: Path, media_root: Path, stage: str = "sft", start: str | None = None) -> list[str]:
    from verl_avconfuse.tiny.resolver import tiny_asset

    extra = dict(SFT_STAGES)[stage]
    return [
        "+recipe=sft_warmup",
        f"+machine={SFT_MACHINE}",
        f"model.path={start or tiny_asset('models/omni_thinker')}",
        f"data.train_files={train}",
        f"data.media.root={media_root}",
        f"trainer.default_local_dir={out / stage / 'checkpoints'}",
        *extra,
    ]


def sft_phase(out: Path, train: Path, media_root: Path) -> Path:
    """verl's SFT trainer from the tiny thinker, stage by stage (:data:`SFT_STAGES`); the last stage's last
    checkpoint's ``huggingface/`` becomes ``OUT/sft_model``."""
    target = out / "sft_model"
    if (target / "config.json").exists():
        return target
    start = None
    record: dict = {}
    for stage, _ in SFT_STAGES:
        start = _sft_stage(out, train, media_root, stage, start)
        record[stage] = json.loads((out / f"{stage}.json").read_text())
    shutil.copytree(start, target.with_name(target.name + ".tmp"), dirs_exist_ok=True)
    os.replace(target.with_name(target.name + ".tmp"), target)
    write_json(out / "sft.json", {"stages": record})
    return target


def _sft_stage(out: Path, train: Path, media_root: Path, stage: str, start: Path | None) -> Path:
    """One SFT stage; its model at ``OUT/{stage}_model`` (kept: a finished stage is not run again)."""
    target = out / f"{stage}_model"
    if (target / "config.json").exists():
        return target
    work = out / stage
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    overrides = sft_overrides(out, train, media_root, stage, os.fspath(start) if start else None)
    command = [sys.executable, "-m", "verl.trainer.sft_trainer", *overrides]
    # One process of torch.distributed, as torchrun would start it.
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    env["MASTER_PORT"] = str(_free_port())
    # One intra-op thread: a tiny model gains nothing from two, and two threads spinning on a core another
    # process holds made a step ~20x slower on the 2-core machine (0.2 -> 4.5 s).
    env.setdefault("OMP_NUM_THREADS", "1")
    log(f"{stage}: verl's SFT trainer on the synchronized clips")
    start = time.monotonic()
    text = run_logged(command, work / "sft.log", cwd=work, env=env)
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    losses = {step: m["train/loss"] for step, m in parse_console_metrics(text).items() if "train/loss" in m}
    steps = sorted((work / "checkpoints").glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps or not (steps[-1] / "huggingface" / "config.json").exists():
        raise RuntimeError(f"{stage}: no huggingface checkpoint under {work / 'checkpoints'}")
    os.replace(steps[-1] / "huggingface", target)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    write_json(
        out / f"{stage}.json",
        {
            "losses": losses,
            "checkpoint": steps[-1].name,
            "seconds": round(time.monotonic() - start, 1),
            "hyperparameters": composed("sft_trainer_engine", overrides, SFT_HYPERPARAMETERS),
        },
    )
    if losses:
        first, last = losses[min(losses)], losses[max(losses)]
        log(f"{stage}: train/loss {first:.3f} -> {last:.3f} over {len(losses)} steps")
    return target


def score_generations(path: Path, rows: list[dict]) -> dict:
    """Every cell's figures (in %) from one validation dump (verl's ``{step}.jsonl``) of the task's ``val.parquet``.

    verl sorts its dump by a random uid; each generation is joined to its row by the ``data_index`` the
    reward reports (the row's ``extra_info.index``) and checked against it (question and answer), so a dump
    of another set is refused. Replies are graded by the evaluation harness's ``strict``
    rule (the release's substring rule counts "I cannot tell" and "piano" as a right "no").

    - ``{cell}_accuracy`` for the four cells; ``listening_accuracy`` their mean (50 for a model that only
      looks and for one that always says "yes"); ``conflict_accuracy`` the mean of the two conflict cells
      (0 for a model that only looks); ``sync_accuracy`` on the gate's held-out synchronized questions;
    - ``muted_yes_rate``: the share of muted questions answered "yes" (the paper's Yes% also counts
      unparseable replies);
    - ``a_think_hears_muted``: the share of muted questions whose ``<a-think>`` names the muted instrument
      (it "hears" what it only sees); ``format_rate``: well-formed replies over the whole set.
    """
    from verl_avconfuse.evaluation.tasks import EvalDoc, process_results
    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.tiny.confusion import names_heard

    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(entries) != len(rows):
        raise ValueError(f"{path}: {len(entries)} generations, expected one per validation row ({len(rows)})")
    by_index = {int(row["extra_info"]["index"]): row for row in rows}
    graded: dict[str, list] = {cell: [] for cell in (*CELLS, "sync")}
    hears_muted = []
    formats = []
    seen: set[int] = set()
    for number, entry in enumerate(entries):
        index = entry.get("data_index")
        row = by_index.get(int(index)) if index is not None else None
        if row is None or index in seen:
            raise ValueError(
                f"{path}: generation {number}: data_index {index!r}: expected the index of a validation row, "
                "once (the reward reports the row's extra_info.index as data_index)"
            )
        seen.add(index)
        info = row["extra_info"]
        if entry["gts"] != row["reward_model"]["ground_truth"] or info["question"] not in entry["input"]:
            raise ValueError(
                f"{path}: generation {number}: expected {info['question']!r} answered "
                f"{row['reward_model']['ground_truth']!r} (validation row {index}), got gts {entry['gts']!r}; "
                "the dump is not of this validation set"
            )
        doc = EvalDoc(id=str(index), question=info["question"], video="", ground_truth=entry["gts"], category="")
        scored = process_results(doc, entry["output"], "strict")
        formats.append(scored.well_formed)
        graded["sync" if info["set"] == "gate" else info["cell"]].append(scored)
        if info["set"] != "gate" and info["cell"] == "muted":
            asked = info["question"].split("Is there a ", 1)[-1].split(" sound", 1)[0]
            hears_muted.append(asked in names_heard(parse_response(entry["output"]).a_think or ""))
    figures = {f"{cell}_accuracy": _pct([s.correct for s in graded[cell]]) for cell in CELLS}
    figures["sync_accuracy"] = _pct([s.correct for s in graded["sync"]])
    figures["listening_accuracy"] = _mean([figures[f"{cell}_accuracy"] for cell in CELLS])
    figures["conflict_accuracy"] = _mean([figures[f"{cell}_accuracy"] for cell in CONFLICT_CELLS])
    figures["muted_yes_rate"] = _pct([s.polarity == "yes" for s in graded["muted"]])
    figures["a_think_hears_muted"] = _pct(hears_muted)
    figures["format_rate"] = _pct(formats)
    figures["n"] = {cell: len(graded[cell]) for cell in graded}
    return figures


def _pct(flags: list[bool]) -> float | None:
    return 100.0 * sum(flags) / len(flags) if flags else None


def _mean(values: list[float | None]) -> float | None:
    return statistics.fmean(values) if values and None not in values else None


def gate_failures(figures: dict) -> list[str]:
    """Why a warm start fails the gate (empty: it passes)."""
    problems = []
    if figures["sync_accuracy"] is None or figures["sync_accuracy"] < GATE_SYNC_ACCURACY:
        problems.append(
            f"it answers {figures['sync_accuracy']:.1f}% of held-out synchronized questions right "
            f"(needs >= {GATE_SYNC_ACCURACY:.0f}%: it does not know the instruments yet)"
        )
    if figures["muted_yes_rate"] is None or figures["muted_yes_rate"] < GATE_MUTED_YES:
        problems.append(
            f"it says 'yes' to {figures['muted_yes_rate']:.1f}% of muted questions "
            f"(needs >= {GATE_MUTED_YES:.0f}%: it is not confused, so there is nothing to correct)"
        )
    return problems


def validation_rows(val: Path) -> list[dict]:
    import pandas as pd

    return pd.read_parquet(val).to_dict("records")


def rl_overrides(
    arm: str, seed: int, run_dir: Path, policy: Path, paths: dict[str, Path], extra: list[str]
) -> list[str]:
    recipe = ARMS[arm][0] if arm in ARMS else "grpo_baseline"
    return [
        f"+recipe={recipe}",
        f"+machine={RL_MACHINE}",
        f"actor_rollout_ref.model.path={policy}",
        f"avconfuse.reference.model_path={paths['reference']}",
        f"data.train_files={paths['train']}",
        f"data.val_files={paths['val']}",
        f"data.seed={seed}",
        f"trainer.validation_data_dir={run_dir / 'validation'}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"trainer.experiment_name=ablation_{arm}_seed{seed}",
        *ARM_OVERRIDES.get(arm, ()),
        *extra,
    ]


def gate_phase(out: Path, paths: dict[str, Path]) -> dict:
    """One validation pass of verl over ``val.parquet`` with the warm start (greedy, as every run's last)."""
    run_dir = out / "runs" / "warm_start"
    result_path = run_dir / "result.json"
    rows = validation_rows(paths["val"])
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        overrides = rl_overrides("warm_start", 0, run_dir, paths["policy"], paths, [])
        command = [
            sys.executable, "-m", "verl.trainer.main_ppo", *overrides,
            "trainer.val_only=true", "trainer.val_before_train=true",
        ]  # fmt: skip
        log("gate: the warm start on the held-out synchronized clips and the four test cells")
        run_logged(command, run_dir / "main_ppo.log", cwd=run_dir)
        dumps = sorted((run_dir / "validation").glob("*.jsonl"))
        if len(dumps) != 1:
            raise RuntimeError(f"{run_dir}: expected one validation dump, found {dumps}")
        result = {"dump": os.fspath(dumps[0].relative_to(run_dir))}
        write_json(result_path, result)
    result["figures"] = score_generations(run_dir / result["dump"], rows)
    result["failures"] = gate_failures(result["figures"])
    result["thresholds"] = {"sync_accuracy": GATE_SYNC_ACCURACY, "muted_yes_rate": GATE_MUTED_YES}
    write_json(result_path, result)
    figures = result["figures"]
    log(
        f"gate: synchronized {figures['sync_accuracy']:.1f}% right, muted 'yes' {figures['muted_yes_rate']:.1f}%, "
        f"listening accuracy {figures['listening_accuracy']:.1f}%"
    )
    return result


def signal_per_step(train: dict[int, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per step: the share of groups with advantage, the share of advantage mass on conflict questions,
    the policy entropy and the training accuracy (verl's metric names where verl has them)."""
    keep = ("adv/nonzero_group_frac", "actor/entropy", "reward/acc/mean", "critic/score/mean")
    steps = {}
    for step, metrics in sorted(train.items()):
        row = {key: metrics[key] for key in keep if key in metrics}
        masses = [metrics[f"adv/mass_frac/{cell}"] for cell in CONFLICT_CELLS if f"adv/mass_frac/{cell}" in metrics]
        if masses:
            row["adv/mass_frac/conflict"] = sum(masses)
        steps[str(step)] = row
    return steps


def step_timing(train: dict[int, dict[str, float]], seconds: float) -> dict[str, float]:
    """Where a run's seconds go: verl's ``timing_s/*`` per step (mean over steps 2..N, the first step also
    warms up), the steps' total, and the rest of the run (start-up, validation, shutdown)."""
    steps = [metrics for step, metrics in sorted(train.items()) if step > 1] or list(train.values())
    keys = sorted({key for metrics in steps for key in metrics if key.startswith("timing_s/")})
    timing = {key: statistics.fmean(m[key] for m in steps if key in m) for key in keys}
    total = sum(m.get("timing_s/step", 0.0) for m in train.values())
    timing["steps_total_s"] = total
    timing["outside_steps_s"] = seconds - total
    return {key: round(value, 3) for key, value in timing.items()}


def rl_phase(out: Path, arm: str, seed: int, paths: dict[str, Path], gate: dict, extra: list[str]) -> dict:
    from verl_avconfuse.experiments.console_metrics import parse_console_metrics

    run_dir = out / "runs" / f"{arm}-seed{seed}"
    result_path = run_dir / "result.json"
    rows = validation_rows(paths["val"])
    start_from = ARMS[arm][2]
    if start_from == "warm_start":
        policy, before = paths["policy"], gate["figures"]
    else:
        parent = out / "runs" / f"{start_from}-seed{seed}"
        policy = parent / "model"
        if not (policy / "config.json").exists():
            raise RuntimeError(f"{arm} seed {seed}: starts from {start_from}'s last checkpoint, missing at {policy}")
        before = json.loads((parent / "result.json").read_text())["after"]
    if result_path.exists():
        # A finished run: its dump scored again, by this version of the scoring.
        result = json.loads(result_path.read_text())
        result["after"] = score_generations(run_dir / "validation" / f"{result['after_step']}.jsonl", rows)
        result["before"] = before
        write_json(result_path, result)
        return result
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    overrides = rl_overrides(arm, seed, run_dir, policy, paths, extra)
    later_stage = any(parent == arm for _, _, parent in ARMS.values())
    if later_stage:
        # A later stage starts from this run: keep its last policy as a Hugging Face checkpoint.
        overrides += [
            "trainer.save_freq=${trainer.total_training_steps}",
            "actor_rollout_ref.actor.checkpoint.save_contents=[hf_model]",
        ]
    hyperparameters = composed("ppo_trainer", overrides, HYPERPARAMETERS)
    log(f"{arm} seed {seed}: {ARMS[arm][1]}")
    start = time.monotonic()
    text = run_logged(
        [sys.executable, "-m", "verl.trainer.main_ppo", *overrides], run_dir / "main_ppo.log", cwd=run_dir
    )
    seconds = time.monotonic() - start
    dumps = sorted((run_dir / "validation").glob("*.jsonl"), key=lambda p: int(p.stem))
    if not dumps:
        raise RuntimeError(f"{run_dir}: expected a validation dump after training, found none")
    if later_stage:
        saved = sorted((run_dir / "checkpoints").glob("global_step_*/**/huggingface/config.json"))
        if not saved:
            raise RuntimeError(f"{run_dir}: expected a huggingface checkpoint under checkpoints/, found none")
        os.replace(saved[-1].parent, run_dir / "model")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    train = parse_console_metrics(text)
    result = {
        "arm": arm,
        "seed": seed,
        "starts_from": start_from,
        "before": before,
        "after_step": int(dumps[-1].stem),
        "after": score_generations(dumps[-1], rows),
        "hyperparameters": {"recipe": ARMS[arm][0], "overrides": overrides, **hyperparameters},
        "signal": signal_per_step(train),
        "seconds": round(seconds, 1),
        "timing": step_timing(train, seconds),
    }
    write_json(result_path, result)
    b, a = result["before"], result["after"]
    log(
        f"{arm} seed {seed}: listening accuracy {b['listening_accuracy']:.1f} -> {a['listening_accuracy']:.1f}, "
        f"conflict {b['conflict_accuracy']:.1f} -> {a['conflict_accuracy']:.1f}, muted 'yes' "
        f"{b['muted_yes_rate']:.1f} -> {a['muted_yes_rate']:.1f} ({seconds:.0f} s)"
    )
    return result


# ------------------------------------------------------------------------------------------- report


def mean_ci(values: list[float]) -> dict:
    """Mean, sample std and the half-width of the two-sided 95% t interval of ``values``."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    t = T_975[n - 2] if 1 < n <= len(T_975) + 1 else 1.96
    return {"n": n, "mean": mean, "std": std, "ci95": t * std / math.sqrt(n) if n > 1 else None}


def run_signal(result: dict) -> dict:
    """A run's signal figures averaged over its steps; the share of advantage mass on conflicts over the
    steps that had any advantage (a step without has no mass to share)."""
    steps = list(result["signal"].values())
    out = {}
    for key in ("adv/nonzero_group_frac", "adv/mass_frac/conflict", "actor/entropy", "reward/acc/mean"):
        values = [
            s[key]
            for s in steps
            if key in s and (key != "adv/mass_frac/conflict" or s.get("adv/nonzero_group_frac", 0.0) > 0)
        ]
        out[key] = statistics.fmean(values) if values else None
    return out


def summarize(results: list[dict], gate: dict) -> dict:
    """Per arm: mean and 95% CI over seeds of every reported figure after training, and of the step-averaged
    signal; the warm start's figures; the paired differences of each arm against GRPO, seed by seed."""
    summary: dict = {"warm_start": {"label": "warm start (SFT, gated)", **{m: gate["figures"][m] for m in REPORTED}}}
    arms: dict[str, dict] = {}
    for arm, (_, label, _) in ARMS.items():
        runs = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["seed"])
        if not runs:
            continue
        row = {"label": label, "seeds": [r["seed"] for r in runs]}
        for metric in REPORTED:
            values = [r["after"][metric] for r in runs if r["after"][metric] is not None]
            row[metric] = mean_ci(values) if values else None
        signals = [run_signal(r) for r in runs]
        for key in signals[0]:
            values = [s[key] for s in signals if s[key] is not None]
            row[key] = mean_ci(values) if values else None
        arms[arm] = row
    summary["arms"] = arms
    paired = {}
    base = {r["seed"]: r for r in results if r["arm"] == "grpo"}
    for arm in ARMS:
        if arm == "grpo":
            continue
        pairs = [(r, base[r["seed"]]) for r in results if r["arm"] == arm and r["seed"] in base]
        if not pairs:
            continue
        paired[f"{arm}-grpo"] = {
            metric: mean_ci([r["after"][metric] - g["after"][metric] for r, g in pairs])
            for metric in ("listening_accuracy", "conflict_accuracy", "muted_accuracy", "muted_yes_rate")
        }
        paired[f"{arm}-grpo"]["seeds"] = sorted(r["seed"] for r, _ in pairs)
    summary["paired"] = paired
    return summary


def _cell(stat: dict | float | None) -> str:
    if stat is None:
        return "-"
    if isinstance(stat, (int, float)):
        return f"{stat:.1f}"
    if stat["ci95"] is None:
        return f"{stat['mean']:.1f}"
    return f"{stat['mean']:.1f} ± {stat['ci95']:.1f}"


def markdown(summary: dict) -> str:
    header = (
        "| | seeds | listening Acc | conflict Acc | muted Acc | says yes (muted) | control Acc | off-screen heard"
        " Acc | off-screen silent Acc | sync Acc | a-think hears the muted one | format |"
    )
    lines = [header, "|---" * 12 + "|"]
    warm = summary["warm_start"]
    lines.append(f"| {warm['label']} | - | " + " | ".join(_cell(warm[m]) for m in REPORTED) + " |")
    for row in summary["arms"].values():
        lines.append(f"| {row['label']} | {len(row['seeds'])} | " + " | ".join(_cell(row[m]) for m in REPORTED) + " |")
    lines += ["", "| paired difference (seed by seed) | listening Acc | conflict Acc | muted Acc | says yes (muted) |"]
    lines.append("|---|---|---|---|---|")
    for name, row in summary["paired"].items():
        metrics = ("listening_accuracy", "conflict_accuracy", "muted_accuracy", "muted_yes_rate")
        lines.append(f"| {name} | " + " | ".join(_cell(row[m]) for m in metrics) + " |")
    lines += ["", "| signal (mean over steps, then over seeds) | groups with advantage | advantage mass on conflicts |"]
    lines.append("|---|---|---|")
    for row in summary["arms"].values():
        lines.append(
            f"| {row['label']} | {_cell(_times100(row['adv/nonzero_group_frac']))} "
            f"| {_cell(_times100(row['adv/mass_frac/conflict']))} |"
        )
    return "\n".join(lines) + "\n"


def _times100(stat: dict | None) -> dict | None:
    if stat is None:
        return None
    return {**stat, "mean": 100 * stat["mean"], "ci95": None if stat["ci95"] is None else 100 * stat["ci95"]}


def chart(summary: dict, results: list[dict], path: Path) -> str:
    """Bars (mean, 95% CI over seeds) of the cell accuracies after training, and the training curves."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 'chart not written: matplotlib is missing (pip install "verl-avconfuse[plots]")'
    from verl_avconfuse.io import atomic_write_figure

    metrics = ("listening_accuracy", "muted_accuracy", "offscreen_heard_accuracy", "control_accuracy")
    figure, axes = plt.subplots(1, len(metrics) + 1, figsize=(3.8 * (len(metrics) + 1), 3.4))
    rows = [summary["warm_start"], *summary["arms"].values()]
    labels = [row["label"].split(" (")[0] for row in rows]
    colours = ["grey", "C0", "C1", "C2"][: len(rows)]
    for axis, metric in zip(axes, metrics, strict=False):
        means = [row[metric] if isinstance(row[metric], (int, float)) else row[metric]["mean"] for row in rows]
        errors = [0 if isinstance(row[metric], (int, float)) else (row[metric]["ci95"] or 0) for row in rows]
        axis.bar(range(len(means)), means, yerr=errors, capsize=4, color=colours)
        axis.set_xticks(range(len(means)), labels, rotation=25, fontsize=7)
        axis.set_ylim(0, 100)
        axis.set_title(metric.replace("_", " ") + " (%)", fontsize=9)
    curves = axes[-1]
    for colour, arm in zip(colours[1:], summary["arms"], strict=False):
        runs = [r["signal"] for r in results if r["arm"] == arm]
        steps = sorted({int(s) for run in runs for s, m in run.items() if "reward/acc/mean" in m})
        means = [statistics.fmean(run[str(s)]["reward/acc/mean"] for run in runs if str(s) in run) for s in steps]
        curves.plot(steps, means, color=colour, label=ARMS[arm][1].split(" (")[0])
    curves.set_title("training reward/acc/mean (mean over seeds)", fontsize=9)
    curves.set_xlabel("step")
    curves.legend(fontsize=7)
    figure.tight_layout()
    atomic_write_figure(path, figure, dpi=110)
    return f"chart: {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/ablation_replica.py",
        description="CPU-scale replica of RL-CoMM's ablation on a synthetic confusion task (module docstring)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="working folder (resumable) and report")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="RL seeds (data order, sampling)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="RL arms to run")
    parser.add_argument("--result", type=Path, help="also write the result file here (with its provenance header)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every RL run")
    args = parser.parse_intermixed_args(argv)
    arms = [arm for arm in ARMS if arm in args.arms or any(ARMS[a][2] == arm for a in args.arms)]

    from verl_avconfuse.experiments.provenance import result_record, write_result
    from verl_avconfuse.tiny.confusion import build_confusion_task

    record = result_record(["python", "benchmarks/ablation_replica.py", *(sys.argv[1:] if argv is None else argv)])
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = (out / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"ablation: error: {out} is in use by another ablation_replica.py (its .lock is held)", file=sys.stderr)
        return 1
    try:
        task = build_confusion_task(out / "task")
        paths = {
            "reference": reference_phase(out, task.reference_examples),
            "policy": sft_phase(out, task.sft_parquet, task.sft_parquet.parent / "clips"),
            "train": task.rl_train,
            "val": task.val_parquet,
        }
        gate = gate_phase(out, paths)
        if gate["failures"]:
            raise RuntimeError("the warm start fails the gate: " + "; ".join(gate["failures"]))
        results = [rl_phase(out, arm, seed, paths, gate, args.overrides) for seed in args.seeds for arm in arms]
    except (RuntimeError, ValueError) as error:
        print(f"ablation: error: {error}", file=sys.stderr)
        return 1
    summary = summarize(results, gate)
    payload = {
        "summary": summary,
        "gate": gate,
        "sft": json.loads((out / "sft.json").read_text()),
        "reference": {k: v for k, v in json.loads((out / "reference.json").read_text()).items() if k != "losses"},
        "runs": results,
    }
    write_json(out / "ablation_replica.json", payload)
    if args.result:
        write_result(args.result, record, payload)
    from verl_avconfuse.io import atomic_write_text

    table = markdown(summary)
    atomic_write_text(out / "ablation.md", table)
    print()
    print(table)
    print(chart(summary, results, out / "ablation.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
