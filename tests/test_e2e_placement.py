"""End to end: the deployment's placement on CPU, with logical Ray GPUs (slow; runs in CI).

Each test is a real ``python -m verl.trainer.main_ppo`` run that places verl's actor pool and RL-CoMM's
reference pool as on a GPU node: an unschedulable layout stops before any model loads, a fitting one
trains with several FSDP ranks (gloo), and a two-node cluster (two raylets on this machine) serves live
references to reward workers on both nodes.
"""

from __future__ import annotations

import re
import time

import pytest

from e2e_utils import assert_trained, run_main_ppo

pytestmark = pytest.mark.slow

TINY = ("+recipe=avconfuse", "+machine=cpu_tiny")


def _ray_started_at(output: str) -> float | None:
    match = re.search(
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\s+INFO worker.py:\d+ -- Started a local Ray instance", output
    )
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) if match else None


def test_a_reference_pool_that_does_not_fit_stops_the_run_before_any_model_loads(tmp_path):
    """2 logical GPUs, 2 for the actor and 1 for the reference: one message naming the reference's need."""
    result, steps = run_main_ppo(
        tmp_path,
        *TINY,
        "trainer.total_training_steps=1",
        "trainer.n_gpus_per_node=2",
        "avconfuse.reference.placement=separate",
        "avconfuse.reference.num_gpus=1",
        "ray_kwargs.ray_init.num_gpus=2",
        timeout=300,
    )
    exited = time.time()
    output = result.stdout + result.stderr
    assert result.returncode != 0 and not steps
    assert "PreflightError" in output and "NOT SCHEDULABLE" in output
    assert "reference audio LM (avconfuse_reference_pool): a placement group of 1 GPU" in output
    assert "GPUs: 3 needed, 2 available" in output
    assert "actor and ref model engine initialized" not in output  # stopped before verl loaded a model
    ray_started = _ray_started_at(output)
    assert ray_started is not None, output[-3000:]
    # ~20 s on 2 idle cores; a wait for a placement Ray cannot give would last until the 300 s timeout
    assert exited - ray_started < 120, f"exited {exited - ray_started:.0f} s after Ray started"


def test_two_fsdp_ranks_and_the_reference_on_its_own_logical_gpu(tmp_path):
    """3 logical GPUs: verl's pool takes 2 (two FSDP ranks over gloo), the reference pool the third."""
    result, steps = run_main_ppo(
        tmp_path,
        *TINY,
        "trainer.n_gpus_per_node=2",
        "avconfuse.reference.placement=separate",
        "avconfuse.reference.num_gpus=1",
        "ray_kwargs.ray_init.num_gpus=3",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
    )
    output = result.stdout + result.stderr
    assert_trained(result, steps, sync=None)
    assert "node 0" in output and "<- global_pool, avconfuse_reference_pool" in output
    for metrics in steps.values():
        assert metrics["reference/errors"] == 0.0 and metrics["reference/failed_prompts"] == 0.0
        # The step's two prompts were asked for when the trainer drew the batch (prefetch=batch, the default) ...
        assert metrics["reference/prefetched"] == 2.0 and metrics["reference/prefetch_errors"] == 0.0
        # ... and each step's reference costs are logged in verl's timing names.
        assert metrics["timing_s/reference_generate"] > 0 and metrics["timing_s/similarity"] > 0
        assert 0 <= metrics["timing_s/reference_wait"] < metrics["timing_s/step"]
    assert steps[1]["reference/generated"] > 0
    # Two prompts a step, one generation each: the prefetch and all the group's rollouts share it (a request
    # the prefetch built differently from the rewards' would be generated twice).
    assert steps[2]["reference/generated"] == 4.0
    assert "reference over the run: generated" in output


def test_two_nodes_reward_workers_on_both_get_live_references_from_the_worker(tmp_path):
    """Two raylets on loopback: actor ranks on both nodes, reward workers on both, one reference worker."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 16, "num_gpus": 2})
    try:
        cluster.add_node(num_cpus=16, num_gpus=1)
        cluster.wait_for_nodes()
        result, steps = run_main_ppo(
            tmp_path,
            *TINY,
            f"+ray_kwargs.ray_init.address={cluster.address}",
            "ray_kwargs.ray_init.num_gpus=null",
            "ray_kwargs.ray_init.num_cpus=null",
            "trainer.nnodes=2",
            "trainer.n_gpus_per_node=1",
            "reward.num_workers=2",
            f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
        )
    finally:
        cluster.shutdown()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert sorted(steps) == [1, 2]
    assert re.search(r"node 0 [^\n]*\n[^\n]*node 1 ", output), "the preflight saw two nodes"
    samples = 2 * 4  # prompts x rollouts per step
    for step, metrics in steps.items():
        assert metrics["reference/errors"] == 0.0, step
        # Every sample of every reward worker asked the worker (none read a cache file on its node).
        assert metrics["reference/requests"] == samples * step, step
    assert steps[2]["reference/generated"] == 4.0


def test_a_reference_service_that_fails_every_prompt_stops_the_run_loudly(tmp_path):
    """A timeout no generation can meet: every prompt loses its reference, past the 0.2 budget -> stop."""
    result, steps = run_main_ppo(
        tmp_path,
        *TINY,
        "trainer.total_training_steps=1",
        "avconfuse.reference.timeout_s=0.001",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and not steps, output[-3000:]
    assert (
        "Step-RR at step 1: 2 of 2 prompts got no reference a-think (more than avconfuse.reference.max_error_rate=0.2)"
        in output
    )
    assert "step_rr: no reference a-think for this sample (arr = 0)" in output  # each failure, in the reward log
