"""Helpers for the end-to-end tests: run verl's entry point in its own Ray instance, read its console metrics.

Every run gets a Ray of its own and leaves none behind, whatever else runs on the machine:
``RAY_ADDRESS=local`` makes ``ray.init()`` start a new instance instead of joining the latest one started
on the machine (Ray's default when ``ray start`` ran there), ``RAY_TMPDIR`` gives it its own session
folder, and a marker in the environment, which every process of the run inherits (driver, GCS, raylet,
workers), lets :func:`run_processes` find exactly this run's processes and no one else's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

from verl_avconfuse.experiments.console_metrics import parse_console_metrics

from conftest import REPO

#: Environment variable naming the test run a process belongs to (inherited by all its children).
RUN_MARKER = "AVCONFUSE_TEST_RUN"


def run_processes(run_id: str) -> set[int]:
    """Pids of live processes whose environment carries ``RUN_MARKER=run_id`` (Linux /proc)."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    found = set()
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: nothing to inspect, the check cannot see leftovers there
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return found


@contextmanager
def isolated_ray(*, grace_s: float = 30.0):
    """Environment for one run with its own Ray; afterwards, the pids of its processes still alive.

    Yields ``(env, leftovers)``; ``leftovers`` is filled when the block ends: the run's processes still
    alive ``grace_s`` after it (Ray's own shutdown takes a few seconds). They are then killed, so a
    failing test does not leave them to the next one.
    """
    run_id = uuid.uuid4().hex
    # Short and outside pytest's tmp_path: Ray's socket paths under it must stay below 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="avc-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    env = {RUN_MARKER: run_id, "RAY_ADDRESS": "local", "RAY_TMPDIR": ray_tmp}
    leftovers: set[int] = set()
    try:
        yield env, leftovers
    finally:
        deadline = time.monotonic() + grace_s
        while (alive := run_processes(run_id)) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers |= alive
        for pid in alive:
            with suppress(OSError):  # exited meanwhile
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _run(cmd: list[str], tmp_path: Path, timeout: float, check_leftovers: bool, grace_s: float = 30.0):
    with isolated_ray(grace_s=grace_s) as (ray_env, leftovers):
        env = {
            **os.environ,
            **ray_env,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    # a failed run fails its test on its own output; leftovers are only the news when it succeeded
    if check_leftovers and result.returncode == 0:
        assert not leftovers, f"the run left {len(leftovers)} of its processes behind (killed now): {sorted(leftovers)}"
    return result, parse_console_metrics(result.stdout + result.stderr)


def run_main_ppo(
    tmp_path: Path, *overrides: str, timeout: float = 900, check_leftovers: bool = True, grace_s: float = 30.0
):
    """``python -m verl.trainer.main_ppo OVERRIDES`` in ``tmp_path``; (result, {step: metrics}).

    ``grace_s``: how long the run's processes may take to exit after it (a vLLM engine's processes, on a loaded
    machine, take longer than Ray's workers)."""
    return _run(
        [sys.executable, "-m", "verl.trainer.main_ppo", *overrides], tmp_path, timeout, check_leftovers, grace_s
    )


def run_example(tmp_path: Path, script: str, *overrides: str, timeout: float = 900, check_leftovers: bool = True):
    """``bash examples/SCRIPT OVERRIDES`` in ``tmp_path`` (the venv's python first on PATH)."""
    return _run(["bash", str(REPO / "examples" / script), *overrides], tmp_path, timeout, check_leftovers)


#: fp32 rollout and fp32 actor: their probabilities of the sampled tokens agree to ~1e-6.
PROB_DIFF_MAX = 1e-4
#: With lora.merge=True verl streams the merged weights to the rollout cast to bf16
#: (FSDPEngine._merged_lora_per_tensor_param), so an fp32 rollout samples from bf16-rounded weights. The max
#: over a step's tokens is heavy-tailed (step 2: 0.025, 0.067 and 0.21 in three runs, Dec 2026), so the bound is
#: on the mean: 1.6e-4 (step 1) and 1.5e-3 (step 2) measured.
BF16_SYNC_PROB_DIFF_MEAN_MAX = 1e-2


def assert_trained(result, steps, *, n_steps: int = 2, sync: str | None = "fp32"):
    """A run of ``n_steps`` that exited 0, updated the policy and (``sync``: ``"fp32"``, ``"bf16"``) kept the
    rollout's weights those of the actor.

    The first step samples the initial tiny thinker, whose replies carry the format about two times in three:
    the rewards inside its groups differ, so GRPO's update must move the weights. A later step may give every
    reply of a group the same reward -- cpu_tiny's lr 1e-3 can break the format within a few steps (issue 13
    measured 0.69 -> 0.00 in four) or collapse a group onto one reply -- and then its advantages are zero: no
    error of the plumbing, so only the first step's gradient is asserted.
    """
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert sorted(steps) == list(range(1, n_steps + 1)), sorted(steps)
    assert steps[1]["critic/score/max"] > steps[1]["critic/score/min"], "step 1: constant reward"
    assert steps[1]["actor/grad_norm"] > 0, "step 1: zero gradient"
    for step, metrics in steps.items():
        if sync == "bf16":
            diff = metrics["training/rollout_probs_diff_mean"]
            assert diff < BF16_SYNC_PROB_DIFF_MEAN_MAX, f"step {step}: rollout != actor (mean diff {diff})"
        elif sync == "fp32":
            diff = metrics["training/rollout_probs_diff_max"]
            assert diff < PROB_DIFF_MAX, f"step {step}: rollout != actor (max diff {diff})"


def assert_media(steps):
    """Every rollout of every step carried its audio and its video into the model (tokens of each)."""
    for step, metrics in steps.items():
        assert metrics["rollout/media/with_audio_frac"] == 1.0 and metrics["rollout/media/audio_tokens/mean"] > 0, step
        assert metrics["rollout/media/with_video_frac"] == 1.0 and metrics["rollout/media/video_tokens/mean"] > 0, step


def assert_l_op_bounds(metrics: dict[str, float], *, lam: float = 0.5) -> None:
    """One step's ``ansco/loss`` against what L_OP can be, its step being one mini-batch of n responses.

    With ``normalize_by: batch`` L_OP is (the right answers' NLL sum + lam * the ungated answers' entropy sum)
    / n. The right answers are ``reward/acc/mean * n`` (``nll_on: right``) and at most n responses have an
    answer, gated ones adding 0, so  acc * nll <= ansco/loss <= acc * nll + lam * answer_entropy, with nll and
    answer_entropy the logged means over their sets. Dividing by the set sizes instead breaks the bounds
    whenever an answer is wrong.
    """
    acc, nll, entropy = metrics["reward/acc/mean"], metrics["ansco/nll"], metrics["ansco/answer_entropy"]
    assert acc * nll - 1e-5 <= metrics["ansco/loss"] <= acc * nll + lam * entropy + 1e-5, (acc, nll, entropy, metrics)
