"""End to end: verl's own main_ppo trains the tiny Omni thinker on CPU (slow; runs in CI).

Each test is one real ``python -m verl.trainer.main_ppo`` run (Ray, FSDP2 actor, hf rollout,
reward loop, reference audio LM and embedder workers) on the tiny offline models and clips.
"""

from __future__ import annotations

import time

import pytest

from e2e_utils import ray_processes, run_example, run_main_ppo

pytestmark = pytest.mark.slow

#: fp32 rollout and fp32 actor: their probabilities of the sampled tokens agree to ~1e-6.
PROB_DIFF_MAX = 1e-4


def _assert_trained(result, steps, n_steps=2):
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert sorted(steps) == list(range(1, n_steps + 1)), sorted(steps)
    for step, metrics in steps.items():
        # GRPO needs rewards that differ inside a group, and the update must move the weights.
        assert metrics["critic/score/max"] > metrics["critic/score/min"], f"step {step}: constant reward"
        assert metrics["actor/grad_norm"] > 0, f"step {step}: zero gradient"
        assert metrics["training/rollout_probs_diff_max"] < PROB_DIFF_MAX, f"step {step}: rollout != actor"


def _assert_media(steps, audio=True, video=True):
    for step, metrics in steps.items():
        if audio:
            assert metrics["rollout/media/with_audio_frac"] == 1.0 and metrics["rollout/media/audio_tokens/mean"] > 0, (
                step
            )
        if video:
            assert metrics["rollout/media/with_video_frac"] == 1.0 and metrics["rollout/media/video_tokens/mean"] > 0, (
                step
            )


def test_readme_main_command_runs_rl_comm_stage_2_on_cpu(tmp_path):
    """bash examples/run_cpu_tiny.sh == +recipe=avconfuse +recipe=cpu_tiny: Step-RR with the reference worker."""
    before = ray_processes()
    start = time.monotonic()
    result, steps = run_example(tmp_path, "run_cpu_tiny.sh", f"avconfuse.reference.cache_dir={tmp_path / 'ref'}")
    elapsed = time.monotonic() - start
    _assert_trained(result, steps)
    _assert_media(steps)
    for step, metrics in steps.items():
        for key in ("reward/format/mean", "reward/arr/mean", "reward/avc/mean", "reward/acc/mean"):
            assert 0.0 <= metrics[key] <= 2.0, (step, key)
        assert metrics["reference/errors"] == 0.0
        assert 0.0 <= metrics["reference/cache_hit_rate"] <= 1.0
    # one reference generation per prompt: 2 prompts a step, cached for the group's other rollouts
    assert steps[2]["reference/generated"] == 4.0
    assert elapsed < 300, f"two tiny steps took {elapsed:.0f} s"
    time.sleep(2)
    assert ray_processes() - before == set(), "Ray processes were left behind"


def test_audio_in_video_mode_trains_with_interleaved_soundtracks(tmp_path):
    result, steps = run_main_ppo(
        tmp_path,
        "+recipe=avconfuse",
        "+recipe=cpu_tiny",
        "data.train_files=${avconfuse_tiny:data/omni_in_video/train.parquet}",
        "data.val_files=${avconfuse_tiny:data/omni_in_video/val.parquet}",
        "data.mm_processor_kwargs.use_audio_in_video=true",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
    )
    _assert_trained(result, steps)
    _assert_media(steps)


def test_grpo_baseline_recipe_trains_with_format_and_accuracy_only(tmp_path):
    result, steps = run_main_ppo(tmp_path, "+recipe=avconfuse", "+recipe=grpo_baseline", "+recipe=cpu_tiny")
    _assert_trained(result, steps)
    for metrics in steps.values():
        assert "reward/format/mean" in metrics and "reward/acc/mean" in metrics
        assert "reward/arr/mean" not in metrics and "reference/generated" not in metrics


def test_ans_co_recipe_trains_two_steps_with_its_metrics(tmp_path):
    """RL-CoMM stage 3: +recipe=avconfuse_ansco adds L_OP to the actor update."""
    result, steps = run_main_ppo(
        tmp_path,
        "+recipe=avconfuse",
        "+recipe=avconfuse_ansco",
        "+recipe=cpu_tiny",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
    )
    _assert_trained(result, steps)
    for step, metrics in steps.items():
        assert metrics["ansco/nll"] > 0 and metrics["ansco/answer_entropy"] > 0, step
        assert 0.0 <= metrics["ansco/u_mean"] <= 1.0 and 0.0 <= metrics["ansco/gated_frac"] <= 1.0, step
        assert "ansco/loss" in metrics
