"""Recipes compose through verl's own entry point from any working directory."""

from __future__ import annotations

import yaml

from conftest import run_python


def _job_config(tmp_path, *overrides):
    result = run_python(["-m", "verl.trainer.main_ppo", *overrides, "--cfg", "job"], cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


def test_avconfuse_recipe_is_grpo_without_kl(tmp_path):
    config = _job_config(tmp_path, "+recipe=avconfuse")
    assert config["algorithm"]["adv_estimator"] == "grpo"
    assert config["algorithm"]["use_kl_in_reward"] is False
    assert config["actor_rollout_ref"]["actor"]["use_kl_loss"] is False
    assert config["actor_rollout_ref"]["rollout"]["n"] == 6


def test_cpu_tiny_overlay_stacks_on_the_recipe(tmp_path):
    config = _job_config(tmp_path, "+recipe=avconfuse", "+recipe=cpu_tiny")
    arr = config["actor_rollout_ref"]
    assert config["trainer"]["device"] == "cpu"
    assert arr["rollout"]["name"] == "hf"
    assert arr["actor"]["strategy"] == "fsdp2"
    assert arr["model"]["override_config"]["attn_implementation"] == "sdpa"
    # GRPO without KL survives the overlay.
    assert config["algorithm"]["adv_estimator"] == "grpo"
    assert arr["actor"]["use_kl_loss"] is False
    # The tiny assets are referenced lazily; --cfg job does not build them.
    assert arr["model"]["path"].startswith("${avconfuse_tiny:")


def test_unknown_recipe_fails_loudly(tmp_path):
    result = run_python(
        ["-m", "verl.trainer.main_ppo", "+recipe=no_such_recipe", "--cfg", "job"], cwd=tmp_path, timeout=180
    )
    assert result.returncode != 0
    assert "no_such_recipe" in result.stderr
