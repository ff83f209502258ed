"""Where RL-CoMM's own workers run, inside verl's resource model, and a preflight that checks it fits.

verl places its workers in *resource pools*: per node, one STRICT_PACK placement group of
``{"GPU": 1, "CPU": max_colocate_count}`` bundles (``RayResourcePool.get_placement_groups``, verl 0.9.1),
every worker group taking ``1 / max_colocate_count`` of a bundle's GPU. A Ray actor that asks for GPU
*outside* those placement groups waits forever once verl's pools hold every GPU. So the reference audio
LM and the Step-RR embedder are placed the same way:

- ``reference.placement=separate``: a pool of its own, ``avconfuse_reference_pool``, added to verl's
  ``ResourcePoolManager`` spec (``[num_gpus / nnodes] * nnodes``), one reference replica per bundle;
- ``reference.placement=colocated``: one replica in a free slot of the first actor GPU's bundle
  (verl's own colocation: a ``1 / max_colocate_count`` share of the bundle), its memory capped by
  ``gpu_memory_fraction``;
- ``reference.placement=none``: no worker; every prompt carries a precomputed reference;
- the embedder: a slot beside the reference in its pool, or a slot of the first actor GPU, or a CPU actor.

CPU runs take exactly these paths: the CPU platform's Ray resource is ``GPU`` too, declared as logical
GPUs (``ray_kwargs.ray_init.num_gpus``). :func:`plan_layout` turns a composed config into the demands,
:func:`preflight` holds them against the cluster's nodes before any model loads, and
:func:`start_step_rr_workers` starts the workers in their bundles with a timeout on every wait.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: verl's pool for actor, rollout, critic and (KL) reference policy (trainer_base._init_resource_pool_mgr).
ACTOR_POOL = "global_pool"
REFERENCE_POOL = "avconfuse_reference_pool"
#: The key of the reference pool in verl's ``ResourcePoolManager.mapping`` (verl's keys are ``Role``s).
REFERENCE_POOL_ROLE = "avconfuse_reference"
#: ``ResourcePoolManager.max_colocate_count`` in verl 0.9.1: worker slots per GPU bundle.
VERL_SLOTS_PER_GPU = 3

REFERENCE_ACTOR_PREFIX = "avconfuse_reference"
SIMILARITY_ACTOR = "avconfuse_similarity"


def reference_actor_name(replica: int) -> str:
    return f"{REFERENCE_ACTOR_PREFIX}_{replica}"


def reference_replica_for(request, replicas: int) -> int:
    """The replica that serves a request: stable across processes and nodes (the same prompt always meets
    the same replica, whose cache then holds it)."""
    digest = hashlib.sha256("\0".join((request.audio_path, request.question, request.answer)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % replicas


# ------------------------------------------------------------------------------------------------ layout


@dataclass(frozen=True)
class PoolDemand:
    """One resource pool: a placement group of ``gpus`` one-GPU bundles on each of ``len(gpus_per_node)`` nodes."""

    pool: str
    roles: tuple[str, ...]
    gpus_per_node: tuple[int, ...]
    slots_per_gpu: int = VERL_SLOTS_PER_GPU

    @property
    def gpus(self) -> int:
        return sum(self.gpus_per_node)


@dataclass(frozen=True)
class SlotDemand:
    """A worker colocated in bundle ``bundle`` of placement group ``group`` (one group per node) of ``pool``."""

    role: str
    pool: str
    bundle: int = 0
    group: int = 0


@dataclass
class Layout:
    pools: list[PoolDemand] = field(default_factory=list)
    #: worker slots verl itself fills in each bundle, per pool
    verl_slots: dict[str, list[str]] = field(default_factory=dict)
    slots: list[SlotDemand] = field(default_factory=list)
    cpu_workers: list[str] = field(default_factory=list)

    def pool(self, name: str) -> PoolDemand | None:
        return next((pool for pool in self.pools if pool.pool == name), None)


REFERENCE_ROLE_NAME = "reference audio LM"
SIMILARITY_ROLE_NAME = "Step-RR similarity embedder"


def plan_layout(config, settings=None, *, step_rr: bool | None = None) -> Layout:
    """The pools and slots a composed verl config asks for (verl's pools, then RL-CoMM's workers).

    ``step_rr``: whether the run scores with Step-RR (default: ``reward.reward_manager.name == step_rr``);
    only then are the reference and similarity workers started.
    """
    from verl_avconfuse.settings import avconfuse_settings

    settings = settings or avconfuse_settings(config)
    trainer = config["trainer"]
    layout = Layout()

    actor_roles = ["actor/rollout"]
    verl_slots = ["actor/rollout"]
    critic = config.get("critic") or {}
    uses_critic = critic.get("enable")
    if uses_critic is None:  # verl's need_critic: a critic exactly when the advantage is GAE
        uses_critic = ((config.get("algorithm") or {}).get("adv_estimator") or "grpo") == "gae"
    if uses_critic:
        actor_roles.append("critic")
        verl_slots.append("critic")
    reward_model = (config.get("reward") or {}).get("reward_model") or {}
    if reward_model.get("enable") and not reward_model.get("enable_resource_pool"):
        actor_roles.append("reward model")
        verl_slots.append("reward model")
    layout.pools.append(
        PoolDemand(ACTOR_POOL, tuple(actor_roles), (int(trainer["n_gpus_per_node"]),) * int(trainer["nnodes"]))
    )
    layout.verl_slots[ACTOR_POOL] = verl_slots
    # verl's optional pools of their own (trainer_base._init_resource_pool_mgr): [n_gpus_per_node] * nnodes.
    distillation = config.get("distillation") or {}
    for pool, role, section, wanted in (
        (
            "reward_pool",
            "reward model",
            reward_model,
            reward_model.get("enable") and reward_model.get("enable_resource_pool"),
        ),
        ("teacher_pool", "distillation teacher", distillation, distillation.get("enabled")),
    ):
        if wanted:
            gpus = (int(section["n_gpus_per_node"]),) * int(section["nnodes"])
            layout.pools.append(PoolDemand(pool, (role,), gpus))
            layout.verl_slots[pool] = [role]

    if step_rr is None:
        step_rr = ((config.get("reward") or {}).get("reward_manager") or {}).get("name") == "step_rr"
    if not step_rr:
        return layout

    reference = settings.reference
    if reference.has_worker and reference.placement == "separate":
        per_node = reference.num_gpus // reference.nnodes
        layout.pools.append(PoolDemand(REFERENCE_POOL, (REFERENCE_ROLE_NAME,), (per_node,) * reference.nnodes))
        layout.verl_slots[REFERENCE_POOL] = []
        for replica in range(reference.replicas):
            layout.slots.append(
                SlotDemand(
                    f"{REFERENCE_ROLE_NAME}, replica {replica}", REFERENCE_POOL, replica % per_node, replica // per_node
                )
            )
    elif reference.has_worker:
        layout.slots.append(SlotDemand(f"{REFERENCE_ROLE_NAME}, replica 0", ACTOR_POOL, 0))

    placement = similarity_placement(settings)
    if placement == "cpu":
        layout.cpu_workers.append(SIMILARITY_ROLE_NAME)
    else:
        layout.slots.append(
            SlotDemand(SIMILARITY_ROLE_NAME, REFERENCE_POOL if placement == "reference" else ACTOR_POOL)
        )
    return layout


def similarity_placement(settings) -> str:
    """``reference``, ``colocated`` or ``cpu``: where the embedder goes (``auto`` resolved)."""
    placement = settings.similarity.placement
    separate = settings.reference.has_worker and settings.reference.placement == "separate"
    if placement == "auto":
        return "reference" if separate else "colocated"
    if placement == "reference" and not separate:
        raise ValueError(
            "avconfuse.similarity.placement=reference needs a reference pool of its own "
            "(avconfuse.reference.placement=separate); use auto, colocated or cpu"
        )
    return placement


# --------------------------------------------------------------------------------------------- preflight


@dataclass(frozen=True)
class NodeResources:
    node_id: str
    address: str
    gpus: float
    cpus: float


def cluster_nodes() -> list[NodeResources]:
    """The alive Ray nodes with what is still *available* on each (what new placement groups can take)."""
    import ray

    available = ray._private.state.available_resources_per_node()
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        free = available.get(node["NodeID"], {})
        nodes.append(
            NodeResources(
                node["NodeID"], node.get("NodeManagerAddress", "?"), free.get("GPU", 0.0), free.get("CPU", 0.0)
            )
        )
    return nodes


def simulated_nodes(spec: str, cpus_per_gpu: int = 16) -> list[NodeResources]:
    """``"2x8"`` -> two nodes of 8 GPUs (and ``cpus_per_gpu`` CPUs per GPU): a cluster on paper."""
    try:
        count, gpus = (int(part) for part in spec.lower().split("x"))
    except ValueError:
        raise ValueError(f"cluster {spec!r}: expected NODESxGPUS, e.g. 1x8 or 2x8") from None
    return [NodeResources(f"node{i}", f"simulated-{i}", float(gpus), float(gpus * cpus_per_gpu)) for i in range(count)]


@dataclass
class PreflightReport:
    layout: Layout
    nodes: list[NodeResources]
    problems: list[str]
    #: pool -> node index of each of its placement groups (when it fits)
    assignment: dict[str, list[int]]
    source: str = "available now"

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = ["avconfuse preflight: where each role runs, against the Ray cluster", ""]
        lines.append(f"  {'role':<34} {'pool':<26} needs")
        for pool in self.layout.pools:
            spread = " + ".join(str(n) for n in pool.gpus_per_node)
            nodes = len(pool.gpus_per_node)
            lines.append(
                f"  {', '.join(pool.roles):<34} {pool.pool:<26} {pool.gpus} GPU ({spread} on {nodes} node"
                f"{'s' if nodes > 1 else ''}), {pool.gpus * pool.slots_per_gpu} CPU"
            )
        for slot in self.layout.slots:
            lines.append(
                f"  {slot.role:<34} {slot.pool:<26} 1/{VERL_SLOTS_PER_GPU} GPU slot of GPU {slot.bundle} on the "
                f"pool's node {slot.group} (shares that GPU)"
            )
        for role in self.layout.cpu_workers:
            lines.append(f"  {role:<34} {'(no pool)':<26} CPU only")
        lines.append("")
        lines.append(f"  cluster ({self.source}):")
        for i, node in enumerate(self.nodes):
            placed = [pool for pool, nodes in self.assignment.items() for n in nodes if n == i]
            where = f" <- {', '.join(placed)}" if placed else ""
            lines.append(f"    node {i} {node.address}: {node.gpus:g} GPU, {node.cpus:g} CPU{where}")
        total_need = sum(pool.gpus for pool in self.layout.pools)
        total_have = sum(node.gpus for node in self.nodes)
        lines.append(f"  GPUs: {total_need} needed, {total_have:g} available")
        lines.append("")
        if self.ok:
            lines.append("  OK: every role can be placed")
        else:
            lines.append("  NOT SCHEDULABLE:")
            lines.extend(f"    - {problem}" for problem in self.problems)
        return "\n".join(lines)


def preflight(layout: Layout, nodes: Sequence[NodeResources], *, source: str = "available now") -> PreflightReport:
    """Whether every pool's placement groups fit on the nodes (first fit, largest first, as verl asks for
    them one STRICT_PACK group per pool and node) and every colocated worker finds a free slot."""
    problems: list[str] = []
    free_gpus = [node.gpus for node in nodes]
    free_cpus = [node.cpus for node in nodes]
    groups = sorted(
        ((gpus, pool) for pool in layout.pools for gpus in pool.gpus_per_node),
        key=lambda item: -item[0],
    )
    assignment: dict[str, list[int]] = {pool.pool: [] for pool in layout.pools}
    for gpus, pool in groups:
        cpus = gpus * pool.slots_per_gpu
        node = next((i for i in range(len(nodes)) if free_gpus[i] >= gpus - 1e-9 and free_cpus[i] >= cpus - 1e-9), None)
        if node is None:
            largest = max(free_gpus, default=0.0)
            problems.append(
                f"{', '.join(pool.roles)} ({pool.pool}): a placement group of {gpus} GPU and {cpus} CPU on one "
                f"node, but the most any node has left is {largest:g} GPU"
                + (f" (cluster: {sum(n.gpus for n in nodes):g} GPU in all)" if nodes else " (no Ray nodes)")
            )
            continue
        free_gpus[node] -= gpus
        free_cpus[node] -= cpus
        assignment[pool.pool].append(node)

    for pool_name in {slot.pool for slot in layout.slots}:
        pool = layout.pool(pool_name)
        users = [slot for slot in layout.slots if slot.pool == pool_name]
        if pool is None or not pool.gpus_per_node or pool.gpus_per_node[0] == 0:
            problems.append(f"{', '.join(s.role for s in users)}: needs a GPU slot in {pool_name}, which has no GPU")
            continue
        for group, bundle in sorted({(slot.group, slot.bundle) for slot in users}):
            here = [slot.role for slot in users if (slot.group, slot.bundle) == (group, bundle)]
            taken = layout.verl_slots.get(pool_name, [])
            if len(taken) + len(here) > pool.slots_per_gpu:
                problems.append(
                    f"{', '.join(here)}: GPU {bundle} of {pool_name} has {pool.slots_per_gpu} worker slots and "
                    f"verl already fills {len(taken)} ({', '.join(taken)}); place the embedder on CPU "
                    "(avconfuse.similarity.placement=cpu) or the reference in a pool of its own"
                )
    return PreflightReport(layout, list(nodes), problems, assignment, source)


def preflight_fixes(layout: Layout) -> str:
    names = {pool.pool for pool in layout.pools}
    hints = [
        "declare more GPUs (a CPU run: ray_kwargs.ray_init.num_gpus, logical GPUs)",
        "or give verl fewer (trainer.n_gpus_per_node / trainer.nnodes)",
    ]
    if REFERENCE_POOL in names:
        hints.append(
            "or share the first actor GPU (avconfuse.reference.placement=colocated), or precompute the references "
            "(avconfuse reference precompute, then avconfuse.reference.placement=none)"
        )
    return "; ".join(hints)


class PreflightError(RuntimeError):
    """The cluster cannot place the run's workers (raised before any model loads)."""


def check_cluster(config, settings=None, *, step_rr: bool | None = None) -> PreflightReport:
    """Preflight against the live Ray cluster; raise :class:`PreflightError` with the whole report."""
    layout = plan_layout(config, settings, step_rr=step_rr)
    report = preflight(layout, cluster_nodes())
    if not report.ok:
        raise PreflightError(f"{report.render()}\n  fix: {preflight_fixes(layout)}")
    return report


# ------------------------------------------------------------------------------------------- placement


def ready_placement_groups(pool, *, timeout_s: float) -> list:
    """The pool's placement groups, waiting at most ``timeout_s`` for Ray to place them.

    Same bundles, strategy and node order as ``RayResourcePool.get_placement_groups`` (verl 0.9.1), which
    waits without a timeout; a group that cannot be placed is removed and the error names the pool.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from verl.plugin.platform import get_platform
    from verl.single_controller.ray.base import sort_placement_group_by_node_ip

    if pool.pgs is not None:
        return pool.pgs
    bundle = {"CPU": pool.max_colocate_count, get_platform().ray_resource_name(): 1}
    pgs = [
        placement_group(
            bundles=[dict(bundle) for _ in range(count)],
            strategy="STRICT_PACK",
            name=f"{pool.name_prefix}verl_group_{'_'.join(map(str, pool.store))}:{index}",
        )
        for index, count in enumerate(pool.store)
    ]
    ready, _ = ray.wait([pg.ready() for pg in pgs], num_returns=len(pgs), timeout=timeout_s)
    if len(ready) < len(pgs):
        for pg in pgs:
            remove_placement_group(pg)
        raise PreflightError(
            f"{pool.name_prefix}: Ray could not place its placement groups ({list(pool.store)} GPU bundles) within "
            f"{timeout_s:g} s; another job may hold the GPUs the preflight saw free"
        )
    pool.pgs = sort_placement_group_by_node_ip(pgs)
    return pool.pgs


def _slot_options(pg, bundle: int) -> dict[str, Any]:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    from verl.plugin.platform import get_platform

    return {
        "scheduling_strategy": PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=bundle
        ),
        **get_platform().ray_resource_options(1 / VERL_SLOTS_PER_GPU),
    }


def _worker_env() -> dict[str, str]:
    return {
        key: value
        for key in ("VERL_PLATFORM", "AVCONFUSE_TINY_DIR", "AVCONFUSE_CACHE_DIR")
        if (value := os.environ.get(key))
    }


def wait_for_workers(handles: dict[str, Any], expected_roles: dict[str, str], *, timeout_s: float) -> None:
    """Every worker answers ``get_role`` with its role within ``timeout_s``; else an error naming it."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    pending = {name: handle.get_role.remote() for name, handle in handles.items()}
    for name, ref in pending.items():
        try:
            role = ray.get(ref, timeout=timeout_s)
        except GetTimeoutError:
            raise RuntimeError(
                f"Step-RR worker {name!r} did not start within {timeout_s:g} s "
                "(avconfuse.reference.start_timeout_s): still loading, or waiting for resources Ray cannot give it"
            ) from None
        except RayActorError as error:
            raise RuntimeError(f"Step-RR worker {name!r} failed to start: {error}") from error
        if role != expected_roles[name]:
            raise RuntimeError(f"Step-RR worker {name!r} reports role {role!r}, expected {expected_roles[name]!r}")


def start_step_rr_workers(settings, resource_pool_manager, *, policy_model_path: str | None) -> dict[str, Any]:
    """Start the reference replicas and the similarity worker in their bundles; return name -> handle.

    ``resource_pool_manager``: verl's, after ``create_resource_pool`` and after verl placed its own workers
    (so the actor pool's placement groups exist and a separate reference pool is placed last).
    """
    import ray

    from verl_avconfuse.integration.reference_worker import (
        REFERENCE_ROLE,
        SIMILARITY_ROLE,
        ReferenceWorker,
        SimilarityWorker,
    )

    reference = settings.reference
    timeout_s = reference.start_timeout_s
    env = {"env_vars": _worker_env()}
    pools = resource_pool_manager.resource_pool_dict
    actor_pgs = pools[ACTOR_POOL].get_placement_groups()
    reference_pgs = None
    if reference.has_worker and reference.placement == "separate":
        reference_pgs = ready_placement_groups(
            resource_pool_manager.get_resource_pool(REFERENCE_POOL_ROLE), timeout_s=timeout_s
        )

    handles: dict[str, Any] = {}
    roles: dict[str, str] = {}
    if reference.has_worker:
        if reference_pgs is not None:
            per_node = reference.num_gpus // reference.nnodes
            slots = [(reference_pgs[i // per_node], i % per_node) for i in range(reference.replicas)]
            memory_fraction = None
        else:
            slots = [(actor_pgs[0], 0)]
            memory_fraction = reference.gpu_memory_fraction
        for replica, (pg, bundle) in enumerate(slots):
            name = reference_actor_name(replica)
            handles[name] = (
                ray.remote(ReferenceWorker)
                .options(name=name, max_concurrency=1000, runtime_env=env, **_slot_options(pg, bundle))
                .remote(reference, policy_model_path, gpu_memory_fraction=memory_fraction)
            )
            roles[name] = REFERENCE_ROLE

    placement = similarity_placement(settings)
    options: dict[str, Any] = {"name": SIMILARITY_ACTOR, "max_concurrency": 1000, "runtime_env": env}
    if placement == "reference":
        options.update(_slot_options(reference_pgs[0], 0))
    elif placement == "colocated":
        options.update(_slot_options(actor_pgs[0], 0))
    else:
        options["num_gpus"] = 0
    handles[SIMILARITY_ACTOR] = ray.remote(SimilarityWorker).options(**options).remote(settings.similarity)
    roles[SIMILARITY_ACTOR] = SIMILARITY_ROLE

    wait_for_workers(handles, roles, timeout_s=timeout_s)
    logger.info("Step-RR workers started: %s", ", ".join(handles))
    return handles
