"""The end-to-end runs' process accounting: a run's own processes are found, nobody else's are."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from e2e_utils import RUN_MARKER, isolated_ray, run_processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_runs_detached_grandchild_is_a_leftover_and_another_process_is_not():
    # An unrelated process (say, another engineer's Ray) and one of the run's that outlives it, detached
    # from its parent the way Ray's raylet and GCS are: only the latter is the run's leftover.
    bystander = subprocess.Popen(SLEEPER, env={**os.environ, RUN_MARKER: "someone-else"})
    try:
        with isolated_ray(grace_s=0.5) as (env, leftovers):
            assert env["RAY_ADDRESS"] == "local" and os.path.isdir(env["RAY_TMPDIR"])
            ray_tmp = env["RAY_TMPDIR"]
            spawn = "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)"
            subprocess.run([sys.executable, "-c", spawn, *SLEEPER], env={**os.environ, **env}, check=True)
            run_id = env[RUN_MARKER]
            assert _wait_for(lambda: len(run_processes(run_id)) == 1)
            (orphan,) = run_processes(run_id)
        assert leftovers == {orphan}
        assert _wait_for(lambda: not os.path.exists(f"/proc/{orphan}") or _is_zombie(orphan)), "not killed"
        assert not os.path.exists(ray_tmp)
        assert bystander.poll() is None, "a process of another run was touched"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_clean_run_has_no_leftovers():
    with isolated_ray(grace_s=5.0) as (env, leftovers):
        subprocess.run(SLEEPER[:2] + ["pass"], env={**os.environ, **env}, check=True)
    assert leftovers == set()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_l_op_bounds_hold_for_batch_normalisation_and_catch_per_set_means():
    """8 responses, 2 right (NLL 0.4, 0.6), 6 with an answer (entropies 0.3 x 3 ungated, 0.9 x 3 gated), lam 0.5.

    Batch normalisation: L_OP = (0.4 + 0.6) / 8 + 0.5 * (3 * 0.3) / 8 = 0.125 + 0.05625 = 0.18125; the logged
    means are nll 0.5 (over 2), answer_entropy 0.6 (over 6), acc 2 / 8. Per-set means would log
    1.0 / 2 + 0.5 * 0.9 / 6 = 0.575, above acc * nll + lam * answer_entropy = 0.125 + 0.3 = 0.425."""
    import pytest

    from e2e_utils import assert_l_op_bounds

    logged = {"reward/acc/mean": 0.25, "ansco/nll": 0.5, "ansco/answer_entropy": 0.6}
    assert_l_op_bounds({**logged, "ansco/loss": 0.18125})
    with pytest.raises(AssertionError):
        assert_l_op_bounds({**logged, "ansco/loss": 0.575})
    with pytest.raises(AssertionError):  # below the right answers' NLL: a term went missing
        assert_l_op_bounds({**logged, "ansco/loss": 0.1})
