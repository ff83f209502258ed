"""End to end: verl's own main_ppo trains the tiny Omni thinker on CPU (slow; runs in CI).

Each test is one real ``python -m verl.trainer.main_ppo`` run (Ray, FSDP2 actor, hf rollout,
reward loop, reference audio LM and embedder workers) on the tiny offline models and clips.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from conftest import run_python
from e2e_utils import assert_l_op_bounds, assert_media, assert_trained, run_example, run_main_ppo

pytestmark = pytest.mark.slow

#: cpu_tiny: data.train_batch_size 2 prompts x actor_rollout_ref.rollout.n 4 rollouts.
RESPONSES_PER_STEP = 2 * 4


def _is_count_over(value: float, n: int) -> bool:
    """Whether ``value`` is a mean of ``n`` values that are each 0 or 1 (k / n for an integer k in 0..n)."""
    return 0 <= round(value * n) <= n and abs(value * n - round(value * n)) < 1e-6


def assert_step_rr_means(metrics: dict[str, float], n: int) -> None:
    """One step's Step-RR means over its ``n`` responses, against what the formula allows (docs/step_rr.md).

    r_format, r_arr and the grade are 0 or 1 per response: their means are k / n. r_arr needs a right
    answer (arr <= acc). r_avc is 1 + s on a right answer, s in [0, 1] on a wrong one, 0 without one:
    acc <= avc <= 1 + acc. The score is their sum, r_format + r_arr + r_avc, so its mean is the sum of means.
    """
    fmt, arr, avc, acc = (metrics[f"reward/{key}/mean"] for key in ("format", "arr", "avc", "acc"))
    for key, value in (("format", fmt), ("arr", arr), ("acc", acc)):
        assert _is_count_over(value, n), (key, value)
    assert arr <= acc + 1e-9 and acc - 1e-9 <= avc <= 1 + acc + 1e-9, (arr, acc, avc)
    assert metrics["critic/score/mean"] == pytest.approx(fmt + arr + avc, abs=1e-5)


def test_readme_main_command_runs_rl_comm_stage_2_on_cpu(tmp_path):
    """bash examples/run_cpu_tiny.sh == +recipe=avconfuse +machine=cpu_tiny: Step-RR with the reference worker.

    Like every run here, it runs in a Ray instance of its own and must leave none of its processes
    behind (e2e_utils.isolated_ray); other Ray instances on the machine are neither joined nor counted.
    """
    start = time.monotonic()
    result, steps = run_example(tmp_path, "run_cpu_tiny.sh", f"avconfuse.reference.cache_dir={tmp_path / 'ref'}")
    elapsed = time.monotonic() - start
    assert_trained(result, steps)
    assert_media(steps)
    for metrics in steps.values():
        assert_step_rr_means(metrics, RESPONSES_PER_STEP)
        assert metrics["reference/errors"] == 0.0
    # one reference generation per prompt: 2 prompts a step, cached for the group's other rollouts
    assert steps[2]["reference/generated"] == 4.0
    # wall time depends on what else the machine runs: reported, not asserted (~2 min on 2 idle cores)
    print(f"run_cpu_tiny.sh: two steps in {elapsed:.0f} s", file=sys.stderr)


def test_audio_in_video_mode_trains_with_interleaved_soundtracks(tmp_path):
    result, steps = run_main_ppo(
        tmp_path,
        "+recipe=avconfuse",
        "+machine=cpu_tiny",
        "data.train_files=${avconfuse_tiny:data/omni_in_video/train.parquet}",
        "data.val_files=${avconfuse_tiny:data/omni_in_video/val.parquet}",
        "data.mm_processor_kwargs.use_audio_in_video=true",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
    )
    assert_trained(result, steps)
    assert_media(steps)


def test_grpo_baseline_recipe_trains_with_format_and_accuracy_only(tmp_path):
    result, steps = run_main_ppo(tmp_path, "+recipe=grpo_baseline", "+machine=cpu_tiny")
    assert_trained(result, steps)
    for metrics in steps.values():
        # the reward is r_format + accuracy, each 0 or 1 per response; no ARR/AVC, no reference LM
        fmt, acc = metrics["reward/format/mean"], metrics["reward/acc/mean"]
        assert _is_count_over(fmt, RESPONSES_PER_STEP) and _is_count_over(acc, RESPONSES_PER_STEP), (fmt, acc)
        assert metrics["critic/score/mean"] == pytest.approx(fmt + acc, abs=1e-5)
        assert "reward/arr/mean" not in metrics and "reference/generated" not in metrics
        # where the advantage landed: a share of the step's 2 prompts (groups), logged for every step
        assert metrics["adv/nonzero_group_frac"] in (0.0, 0.5, 1.0), metrics["adv/nonzero_group_frac"]
        if fmt + acc in (0.0, 2.0):  # every response scored alike: no group has any advantage
            assert metrics["adv/nonzero_group_frac"] == 0.0


def test_ans_co_stage_trains_resumes_and_exports_a_model_that_speaks(tmp_path, tiny_asset):
    """RL-CoMM stage 3 as a user runs it: +recipe=avconfuse_ansco trains with L_OP in the actor update, an
    interrupted run resumes from its checkpoint, and the checkpoint becomes an HF thinker (verl's model
    merger) that evaluates, and a full Omni model (avconfuse export-omni) whose thinker is the trained one."""
    import torch
    from safetensors.torch import load_file
    from transformers import Qwen2_5OmniForConditionalGeneration

    from verl_avconfuse.evaluation.backends import EvalRequest, HFOmniBackend

    ckpt = tmp_path / "ckpt"
    common = (
        "+recipe=avconfuse_ansco",
        "+machine=cpu_tiny",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
        f"trainer.default_local_dir={ckpt}",
        "trainer.resume_mode=auto",
        "trainer.save_freq=1",
    )
    first, first_steps = run_main_ppo(tmp_path, *common, "trainer.total_training_steps=1")
    assert_trained(first, first_steps, n_steps=1)
    # the "interrupted" run is picked up again: only step 2 runs, from step 1's weights and optimizer
    second, second_steps = run_main_ppo(tmp_path, *common, "trainer.total_training_steps=2")
    assert second.returncode == 0, (second.stdout + second.stderr)[-8000:]
    assert sorted(second_steps) == [2], sorted(second_steps)
    assert "Loaded optimizer from" in second.stdout + second.stderr
    for step, metrics in {**first_steps, **second_steps}.items():
        # NLL on right answers only (nll_on: right): present exactly when the step had a right answer
        assert (metrics["ansco/nll"] > 0) == (metrics["reward/acc/mean"] > 0), step
        assert metrics["ansco/answer_entropy"] > 0, step
        assert_l_op_bounds(metrics)
        assert metrics["actor/grad_norm"] > 0, step
        # entropy_positions: answer: the actor's forward computed the entropy at the answer tokens only, so
        # verl's PPO term had none to report (it does for entropy_positions: all)
        assert "actor/entropy_loss" not in metrics, step

    thinker = tmp_path / "thinker"
    merge = run_python(
        ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(ckpt / "global_step_2" / "actor"),
         "--target_dir", str(thinker)],
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert merge.returncode == 0, merge.stderr[-3000:]
    clip = next(Path(tiny_asset("data/omni/train.parquet")).parent.parent.joinpath("omni_media").glob("*.mp4"))
    (reply,) = HFOmniBackend(str(thinker), device="cpu", max_frames=4).generate(
        [EvalRequest("x", "Is there a violin sound?", str(clip), str(clip), 8)]
    )
    assert isinstance(reply, str) and reply.strip(), repr(reply)  # it generates text

    full = tmp_path / "omni_full"
    export = run_python(
        ["-m", "verl_avconfuse.cli", "export-omni", tiny_asset("models/omni_full"), str(thinker), str(full)],
        cwd=tmp_path,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    trained = load_file(str(thinker / "model.safetensors"))
    exported = Qwen2_5OmniForConditionalGeneration.from_pretrained(full).thinker.state_dict()
    initial = load_file(str(Path(tiny_asset("models/omni_thinker")) / "model.safetensors"))
    assert any(not torch.equal(trained[name].float(), initial[name].float()) for name in trained), "no update"
    for name, tensor in trained.items():
        assert torch.equal(exported[name], tensor.to(exported[name].dtype)), name
