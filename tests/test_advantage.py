"""GRPO's epsilon: verl's 1e-6 (our recipes) and the release's 1e-4 (``algorithm.adv_estimator=grpo_release_eps``),
hand-computed on a group whose rewards nearly agree, through verl's own ``compute_advantage``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verl_avconfuse.integration.advantage import GRPO_RELEASE_EPS, RELEASE_GRPO_EPSILON


def _advantages(estimator: str, rewards: list[float], norm_adv_by_std_in_grpo: bool = True) -> list[float]:
    """Advantages of one group of responses (3 tokens each, reward on the last) as verl's trainer computes them."""
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    n = len(rewards)
    token_rewards = torch.zeros(n, 3)
    token_rewards[:, -1] = torch.tensor(rewards)
    data = DataProto.from_dict(
        tensors={"token_level_rewards": token_rewards, "response_mask": torch.ones(n, 3)},
        non_tensors={"uid": np.array(["group"] * n, dtype=object)},
    )
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": norm_adv_by_std_in_grpo})
    out = compute_advantage(
        data, adv_estimator=estimator, norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config
    )
    advantages = out.batch["advantages"]
    assert torch.equal(advantages, advantages[:, :1].expand(-1, 3))  # one value per response, on every token
    return advantages[:, 0].tolist()


def test_release_epsilon_is_1e_4_and_verls_grpo_keeps_1e_6():
    # rewards 0 and 0.002: mean 0.001, sample std sqrt(2 * 0.001^2 / 1) = 1.41421e-3
    std = math.sqrt(2e-6)
    release = _advantages(GRPO_RELEASE_EPS, [0.0, 0.002])
    verl = _advantages("grpo", [0.0, 0.002])
    assert RELEASE_GRPO_EPSILON == 1e-4
    assert release == pytest.approx([-0.001 / (std + 1e-4), 0.001 / (std + 1e-4)], rel=1e-5)  # -+0.66050
    assert verl == pytest.approx([-0.001 / (std + 1e-6), 0.001 / (std + 1e-6)], rel=1e-5)  # -+0.70661
    assert abs(release[1] - verl[1]) > 0.04


def test_release_estimator_equals_verls_where_epsilon_does_not_matter():
    # std 1 on rewards [0, 1, 2] (sample std of 0, 1, 2 is 1): (r - 1) / (1 + eps)
    assert _advantages(GRPO_RELEASE_EPS, [0.0, 1.0, 2.0]) == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001], rel=1e-6)
    # a group in full agreement gets 0 either way; without std normalisation epsilon is unused
    assert _advantages(GRPO_RELEASE_EPS, [1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]
    assert _advantages(GRPO_RELEASE_EPS, [0.0, 0.002], norm_adv_by_std_in_grpo=False) == pytest.approx(
        [-0.001, 0.001], rel=1e-5
    )


def test_the_recipes_use_verls_grpo():
    from omegaconf import OmegaConf

    from conftest import REPO

    assert OmegaConf.load(REPO / "recipes" / "avconfuse.yaml").algorithm.adv_estimator == "grpo"
