"""GRPO with the official release's epsilon, registered in verl's advantage-estimator registry.

verl's ``grpo`` estimator normalises each group's rewards as ``(r - mean) / (std + 1e-6)``: its
``compute_grpo_outcome_advantage`` takes ``epsilon`` as an argument, but verl's GRPO branch
(``compute_advantage`` in ``verl/trainer/ppo/ray_trainer.py``) never passes one. The paper's official
release uses ``(r - mean) / (std + 1e-4)``. The two differ only for groups whose rewards nearly agree:
a group with std 1e-3 gets advantages scaled by about 1e3 with verl's epsilon and 9e2 with the release's
(for a std of 0 both give 0). ``algorithm.adv_estimator=grpo_release_eps`` selects the release's value;
our recipes keep verl's ``grpo`` (docs/paper_deviations.md).
"""

from __future__ import annotations

from types import ModuleType

#: The release's ``epsilon`` in ``(r - mean) / (std + epsilon)``.
RELEASE_GRPO_EPSILON = 1e-4
#: The estimator's name in verl's registry (``algorithm.adv_estimator``).
GRPO_RELEASE_EPS = "grpo_release_eps"


def grpo_release_eps_advantage(token_level_rewards, response_mask, index, config=None, **_unused):
    """verl's GRPO outcome advantage with ``epsilon = 1e-4``; shapes as verl's (``(bs, response_length)``).

    ``config`` is verl's algorithm config; its ``norm_adv_by_std_in_grpo`` (default true) is honoured as
    verl's ``grpo`` honours it.
    """
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    norm = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    return compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        epsilon=RELEASE_GRPO_EPSILON,
        norm_adv_by_std_in_grpo=norm,
    )


def register(core_algos: ModuleType) -> None:
    """Add :func:`grpo_release_eps_advantage` to ``core_algos``' registry (idempotent)."""
    if core_algos.ADV_ESTIMATOR_REGISTRY.get(GRPO_RELEASE_EPS) is not grpo_release_eps_advantage:
        core_algos.register_adv_est(GRPO_RELEASE_EPS)(grpo_release_eps_advantage)
