"""Recipes compose through verl's own entry point from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_python, verl_trainer_config


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
    config = _job_config(tmp_path, "+recipe=avconfuse", "+machine=cpu_tiny")
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


def test_each_recipe_names_its_base_and_each_machine_its_own():
    """One recipe (what to train) and one machine (where, at what scale) per run; overlays say what they extend."""
    stage3 = verl_trainer_config("+recipe=avconfuse_ansco", "+machine=cpu_learning")
    assert stage3["avconfuse"]["ans_co"]["enable"] is True
    assert stage3["reward"]["reward_manager"]["name"] == "step_rr"  # from avconfuse, its base
    assert stage3["algorithm"]["adv_estimator"] == "grpo"
    assert stage3["trainer"]["device"] == "cpu"  # from cpu_tiny, cpu_learning's base
    assert stage3["trainer"]["total_training_steps"] == 16  # cpu_learning over cpu_tiny's 2
    baseline = verl_trainer_config("+recipe=grpo_baseline")
    assert baseline["reward"]["reward_manager"]["name"] == "naive"
    assert baseline["avconfuse"]["reference"]["enable"] is False
    assert baseline["actor_rollout_ref"]["rollout"]["n"] == 6  # from avconfuse


def test_recipes_compose_the_same_from_the_checkout_and_from_anywhere(tmp_path):
    """From the repository root Python imports the checkout (its links to recipes/); elsewhere the installed
    package. Hydra finds the groups through pkg://verl_avconfuse.hydra_configs in both."""
    overrides = ("+recipe=avconfuse_ansco", "+machine=cpu_tiny")
    anywhere = _job_config(tmp_path, *overrides)
    checkout = _job_config(REPO, *overrides)
    assert anywhere == checkout
    assert anywhere["avconfuse"]["ans_co"]["enable"] is True and anywhere["trainer"]["device"] == "cpu"


def test_a_second_recipe_is_refused_by_hydra_not_merged_silently(tmp_path):
    result = run_python(
        ["-m", "verl.trainer.main_ppo", "+recipe=avconfuse", "+recipe=avconfuse_ansco", "--cfg", "job"],
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode != 0
    assert "Multiple values for recipe" in result.stderr


def test_unknown_recipe_fails_loudly(tmp_path):
    result = run_python(
        ["-m", "verl.trainer.main_ppo", "+recipe=no_such_recipe", "--cfg", "job"], cwd=tmp_path, timeout=180
    )
    assert result.returncode != 0
    assert "no_such_recipe" in result.stderr


@pytest.mark.parametrize(
    ("script", "recipes"),
    [
        ("stage2_step_rr.sh", ["avconfuse"]),
        ("grpo_baseline.sh", ["avconfuse", "grpo_baseline"]),
        ("stage3_ans_co.sh", ["avconfuse", "avconfuse_ansco"]),
    ],
)
def test_gpu_example_scripts_compose_in_verls_config(tmp_path, script, recipes):
    """Each RL stage script, run as written (data preparation stubbed out): verl accepts every override."""
    config = _script_config(tmp_path, script, NGPUS="4", NNODES="2", GRAD_ACCUM="8")
    assert (
        config["data"]["train_batch_size"] == 8 * 4 * 2 == config["actor_rollout_ref"]["actor"]["ppo_mini_batch_size"]
    )
    assert config["actor_rollout_ref"]["rollout"]["name"] == "vllm_omni"
    assert config["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-6
    assert config["data"]["media"]["root"] == "/v" and config["trainer"]["project_name"] == "probe"
    assert config["algorithm"]["use_kl_in_reward"] is False
    assert config["avconfuse"].get("ans_co", {}).get("enable", False) == ("avconfuse_ansco" in recipes)
    reference = config["avconfuse"]["reference"]
    if "grpo_baseline" in recipes:
        assert reference["enable"] is False  # no reference at all
    else:
        assert reference["placement"] == "none"  # references precomputed


@pytest.mark.parametrize(
    ("script", "env", "actor_gpus"),
    [
        ("stage2_step_rr.sh", {}, 8),
        ("stage2_step_rr.sh", {"REFERENCE": "colocated"}, 8),
        ("stage2_step_rr.sh", {"REFERENCE": "separate"}, 7),
        ("grpo_baseline.sh", {}, 8),
        ("stage3_ans_co.sh", {}, 8),
    ],
)
def test_example_defaults_pass_the_preflight_on_the_8_gpu_node_they_document(tmp_path, script, env, actor_gpus):
    from verl_avconfuse.integration.placement import plan_layout, preflight, simulated_nodes

    config = _script_config(tmp_path, script, NGPUS="8", NNODES="1", **env)
    assert config["trainer"]["n_gpus_per_node"] == actor_gpus
    assert config["data"]["train_batch_size"] == 8 * actor_gpus  # GRAD_ACCUM groups per actor GPU
    report = preflight(plan_layout(config), simulated_nodes("1x8"))
    assert report.ok, report.render()
    # ... and one more actor GPU than the node has does not.
    config["trainer"]["n_gpus_per_node"] = actor_gpus + 1
    assert not preflight(plan_layout(config), simulated_nodes("1x8")).ok


def test_example_with_an_unknown_reference_layout_says_which_exist(tmp_path):
    with pytest.raises(AssertionError, match="REFERENCE=elsewhere: expected precomputed, colocated or separate"):
        _script_config(tmp_path, "stage2_step_rr.sh", REFERENCE="elsewhere")


def _script_config(tmp_path, script, **env_overrides):
    examples = Path(__file__).resolve().parents[1] / "examples"
    shims = tmp_path / "bin"
    shims.mkdir()
    # `python -m verl.trainer.main_ppo ...` prints the composed job config; every other command is a no-op
    (shims / "python").write_text(
        f'#!/bin/sh\ncase " $* " in *" verl.trainer.main_ppo "*) exec {sys.executable} "$@" --cfg job;; esac\n'
    )
    (shims / "avconfuse").write_text("#!/bin/sh\n")
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shims}:{os.environ['PATH']}",
        **dict(MODEL_PATH="/m", DATA_DIR="/d", VIDEO_DIR="/v", REFERENCE_MODEL="/r", STAGE2_CKPT="/s"),
        **env_overrides,
    }
    (tmp_path / "m").mkdir()
    result = subprocess.run(
        ["bash", str(examples / script), "trainer.project_name=probe"],
        cwd=tmp_path, env={**env, "MODEL_PATH": str(tmp_path / "m")}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


def test_the_avconfuse_trainer_is_verls_sync_trainer_from_its_first_line():
    """trainer_mode=avconfuse picks the class; every mode-keyed read inside verl's __init__ sees "sync".

    verl's PPOTrainer.__init__ reads trainer.v1.<trainer_mode>.parameter_sync_step before it builds the
    replay buffer; resetting the mode inside _build_replay_buffer (the old way) read trainer.v1.avconfuse and
    silently fell back to 1.
    """
    from verl_avconfuse.integration.trainer import AvconfuseTrainer

    config = verl_trainer_config("+recipe=avconfuse", "+machine=cpu_tiny", "+trainer.v1.sync.parameter_sync_step=2")
    assert config.trainer.v1.trainer_mode == "avconfuse"
    trainer = AvconfuseTrainer(config)
    assert trainer.trainer_mode == "sync"
    assert trainer.parameter_sync_step == 2
    assert type(trainer.replay_buffer).__name__ == "ReplayBuffer"  # the sync buffer, not ReplayBufferAsync
    with pytest.raises(ValueError, match="colocate_async"):
        trainer.trainer_mode = "colocate_async"
