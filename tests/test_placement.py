"""Placement of the reference and similarity workers inside verl's resource model, and the preflight.

The layouts are planned from composed configs (plain dicts here, as ``--cfg job`` prints them) and held
against node lists; the Ray tests start a real local cluster with logical GPUs and place real placement
groups, the way verl's ``RayResourcePool`` does.
"""

from __future__ import annotations

import pytest

from verl_avconfuse.integration.placement import (
    ACTOR_POOL,
    REFERENCE_POOL,
    NodeResources,
    plan_layout,
    preflight,
    reference_replica_for,
    simulated_nodes,
)
from verl_avconfuse.integration.trainer import service_health
from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.settings import avconfuse_settings


def _config(n_gpus=8, trainer_nodes=1, **reference):
    return {
        "trainer": {"n_gpus_per_node": n_gpus, "nnodes": trainer_nodes},
        "algorithm": {"adv_estimator": "grpo"},
        "critic": {"enable": None},
        "reward": {"reward_manager": {"name": "step_rr"}, "reward_model": {"enable": False}},
        "avconfuse": {"reference": {"model_path": "/qwen2-audio", **reference}},
    }


def _nodes(*gpus):
    return [NodeResources(f"n{i}", f"10.0.0.{i}", float(g), float(16 * g)) for i, g in enumerate(gpus)]


def test_separate_reference_gets_a_pool_of_its_own_and_the_embedder_shares_its_gpu():
    layout = plan_layout(_config(n_gpus=7, placement="separate", num_gpus=1))
    pools = {pool.pool: pool.gpus_per_node for pool in layout.pools}
    assert pools == {ACTOR_POOL: (7,), REFERENCE_POOL: (1,)}
    assert [(s.role, s.pool, s.bundle) for s in layout.slots] == [
        ("reference audio LM, replica 0", REFERENCE_POOL, 0),
        ("Step-RR similarity embedder", REFERENCE_POOL, 0),
    ]
    assert preflight(layout, _nodes(8)).ok


def test_all_gpus_to_the_actor_plus_a_separate_reference_is_refused_naming_the_reference():
    """The hang of a free 1-GPU actor behind verl's placement groups, caught on paper instead."""
    report = preflight(plan_layout(_config(n_gpus=8, placement="separate", num_gpus=1)), _nodes(8))
    assert not report.ok
    (problem,) = report.problems
    assert problem.startswith("reference audio LM (avconfuse_reference_pool): a placement group of 1 GPU")
    assert "most any node has left is 0 GPU" in problem
    text = report.render()
    assert "GPUs: 9 needed, 8 available" in text and "NOT SCHEDULABLE" in text


def test_colocated_reference_and_embedder_take_the_free_slots_of_the_first_actor_gpu():
    layout = plan_layout(_config(n_gpus=8, placement="colocated"))
    assert [pool.pool for pool in layout.pools] == [ACTOR_POOL]
    assert [(s.pool, s.bundle) for s in layout.slots] == [(ACTOR_POOL, 0), (ACTOR_POOL, 0)]
    assert preflight(layout, _nodes(8)).ok


def test_a_critic_leaves_no_slot_for_both_colocated_workers():
    config = _config(n_gpus=8, placement="colocated")
    config["algorithm"]["adv_estimator"] = "gae"
    report = preflight(plan_layout(config), _nodes(8))
    assert len(report.problems) == 1
    assert report.problems[0].startswith(
        "reference audio LM, replica 0, Step-RR similarity embedder: GPU 0 of global_pool"
    )
    assert "has 3 worker slots and verl already fills 2 (actor/rollout, critic)" in report.problems[0]
    config["avconfuse"]["similarity"] = {"placement": "cpu"}
    assert preflight(plan_layout(config), _nodes(8)).ok


def test_precomputed_references_place_no_reference_worker():
    layout = plan_layout(_config(n_gpus=8, placement="none"))
    assert [pool.pool for pool in layout.pools] == [ACTOR_POOL]
    assert [s.role for s in layout.slots] == ["Step-RR similarity embedder"]
    assert preflight(layout, _nodes(8)).ok


def test_two_nodes_place_one_actor_group_per_node_and_the_reference_where_gpus_are_left():
    layout = plan_layout(_config(n_gpus=7, trainer_nodes=2, placement="separate", num_gpus=1))
    report = preflight(layout, _nodes(8, 8))
    assert report.ok and report.assignment == {ACTOR_POOL: [0, 1], REFERENCE_POOL: [0]}
    # Two reference replicas, one on each node's spare GPU: nnodes=2 spreads the pool.
    layout = plan_layout(_config(n_gpus=7, trainer_nodes=2, placement="separate", num_gpus=2, nnodes=2))
    report = preflight(layout, _nodes(8, 8))
    assert report.ok and report.assignment == {ACTOR_POOL: [0, 1], REFERENCE_POOL: [0, 1]}
    assert [(s.group, s.bundle) for s in layout.slots] == [(0, 0), (1, 0), (0, 0)]  # replicas, then the embedder
    # A node's spare GPU cannot host a 2-GPU group: STRICT_PACK needs both on one node.
    layout = plan_layout(_config(n_gpus=7, trainer_nodes=2, placement="separate", num_gpus=2))
    assert preflight(layout, _nodes(8, 8)).ok is False


def test_cpus_count_as_verl_reserves_them_three_per_gpu_bundle():
    layout = plan_layout(_config(n_gpus=2, placement="separate", num_gpus=1))
    assert preflight(layout, [NodeResources("n", "a", 3.0, 9.0)]).ok
    report = preflight(layout, [NodeResources("n", "a", 3.0, 8.0)])
    assert not report.ok and "1 GPU and 3 CPU" in report.problems[0]


def test_grpo_baseline_starts_no_step_rr_worker():
    config = _config(n_gpus=8)
    config["reward"]["reward_manager"]["name"] = "naive"
    layout = plan_layout(config)
    assert layout.slots == [] and layout.cpu_workers == [] and len(layout.pools) == 1


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"placement": "elsewhere"}, "avconfuse.reference.placement: expected one of"),
        ({"num_gpus": 3, "nnodes": 2}, "avconfuse.reference.num_gpus / nnodes"),
        ({"num_gpus": 0}, "avconfuse.reference.num_gpus / nnodes"),
        ({"gpu_memory_fraction": 1.5}, "avconfuse.reference.gpu_memory_fraction"),
    ],
)
def test_bad_placement_settings_name_the_key(reference, message):
    config = _config(**reference)
    with pytest.raises(ValueError, match=message):
        avconfuse_settings(config)


def test_old_similarity_num_gpus_key_is_refused_with_the_keys_that_exist():
    config = _config()
    config["avconfuse"]["similarity"] = {"num_gpus": 0.1}
    with pytest.raises(ValueError, match=r"avconfuse.similarity: unknown key\(s\) \['num_gpus'\].*'placement'"):
        avconfuse_settings(config)


def test_similarity_beside_the_reference_needs_a_reference_pool():
    config = _config(placement="colocated")
    config["avconfuse"]["similarity"] = {"placement": "reference"}
    with pytest.raises(ValueError, match="needs a reference pool of its own"):
        plan_layout(config)


def test_simulated_cluster_spec():
    assert [n.gpus for n in simulated_nodes("2x8")] == [8.0, 8.0]
    with pytest.raises(ValueError, match="expected NODESxGPUS"):
        simulated_nodes("eight")


def test_requests_of_one_prompt_always_meet_the_same_replica():
    request = ReferenceRequest("/clips/00000238.mp4", "Is there a violin sound?", "yes")
    assert {reference_replica_for(request, 4) for _ in range(5)} == {reference_replica_for(request, 4)}
    spread = {
        reference_replica_for(ReferenceRequest(f"/clips/{i:08d}.mp4", "Is there a violin sound?", "yes"), 4)
        for i in range(64)
    }
    assert spread == {0, 1, 2, 3}
    assert reference_replica_for(request, 1) == 0


def test_service_health_counts_failed_prompts_once_and_similarity_per_sample():
    # Two prompts of three rollouts; prompt "b" lost its reference on two rollouts, one similarity failed.
    infos = [
        {"ref_error": 0.0, "sim_error": 0.0},
        {"ref_error": 0.0, "sim_error": 1.0},
        {"ref_error": 0.0, "sim_error": 0.0},
        {"ref_error": 1.0, "sim_error": 0.0},
        {"ref_error": 1.0, "sim_error": 0.0},
        {"ref_error": 0.0, "sim_error": 0.0},
    ]
    health = service_health(infos, ["a", "a", "a", "b", "b", "b"])
    assert health["reference/failed_prompts"] == 1.0 and health["reference/failed_prompt_frac"] == 0.5
    assert health["similarity/errors"] == 1.0 and health["similarity/error_frac"] == pytest.approx(1 / 6)


# ------------------------------------------------------------------------------------ on a real Ray cluster


@pytest.fixture(scope="module")
def ray_two_logical_gpus():
    import ray

    # address="local": a Ray of its own, never one another test (or xdist worker) started on the machine
    ray.init(address="local", num_cpus=8, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_our_placement_groups_are_verls_bundles_and_a_wait_that_cannot_succeed_times_out(ray_two_logical_gpus):
    """Same bundles as verl's RayResourcePool.get_placement_groups; a pool Ray cannot place fails in seconds."""
    import time

    from ray.util.placement_group import placement_group_table, remove_placement_group
    from verl.single_controller.ray.base import RayResourcePool

    from verl_avconfuse.integration.placement import PreflightError, ready_placement_groups

    verls = RayResourcePool([1], use_gpu=True, max_colocate_count=3, name_prefix="verl_own")
    ours = RayResourcePool([1], use_gpu=True, max_colocate_count=3, name_prefix=REFERENCE_POOL)
    (verl_pg,) = verls.get_placement_groups()
    (our_pg,) = ready_placement_groups(ours, timeout_s=30)
    assert (
        placement_group_table(our_pg)["bundles"]
        == placement_group_table(verl_pg)["bundles"]
        == {0: {"CPU": 3.0, "GPU": 1.0}}
    )
    assert ready_placement_groups(ours, timeout_s=30) == [our_pg]  # placed once, then reused
    # Both logical GPUs are now held: a third pool can never be placed.
    start = time.monotonic()
    with pytest.raises(PreflightError, match=r"avconfuse_reference_pool_2: Ray could not place .* within 2 s"):
        ready_placement_groups(RayResourcePool([1], name_prefix=REFERENCE_POOL + "_2"), timeout_s=2)
    assert time.monotonic() - start < 10
    for pg in (verl_pg, our_pg):
        remove_placement_group(pg)
    _wait_until_gpus_free(ray_two_logical_gpus, 2.0)


def _wait_until_gpus_free(ray, gpus: float, timeout_s: float = 30.0) -> None:
    """Removing a placement group returns its resources asynchronously."""
    import time

    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("GPU", 0.0) < gpus:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.1)


def test_preflight_reads_the_live_cluster(ray_two_logical_gpus):
    from verl_avconfuse.integration.placement import PreflightError, check_cluster

    assert check_cluster(_config(n_gpus=1, placement="separate", num_gpus=1)).ok
    with pytest.raises(PreflightError) as error:
        check_cluster(_config(n_gpus=2, placement="separate", num_gpus=1))
    message = str(error.value)
    assert "reference audio LM (avconfuse_reference_pool): a placement group of 1 GPU" in message
    assert "GPUs: 3 needed, 2 available" in message and "ray_kwargs.ray_init.num_gpus" in message


def test_verls_own_reward_and_teacher_pools_count_too():
    config = _config(n_gpus=6, placement="separate", num_gpus=1)
    config["reward"]["reward_model"] = {"enable": True, "enable_resource_pool": True, "n_gpus_per_node": 1, "nnodes": 1}
    config["distillation"] = {"enabled": True, "n_gpus_per_node": 1, "nnodes": 1}
    layout = plan_layout(config)
    assert [(p.pool, p.gpus_per_node) for p in layout.pools] == [
        (ACTOR_POOL, (6,)),
        ("reward_pool", (1,)),
        ("teacher_pool", (1,)),
        (REFERENCE_POOL, (1,)),
    ]
    assert preflight(layout, _nodes(9)).ok and not preflight(layout, _nodes(8)).ok
