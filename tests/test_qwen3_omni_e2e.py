"""End to end on CPU (slow): verl's main_ppo with the Qwen3-Omni thinker as the policy, and LoRA runs.

Each test is one real ``python -m verl.trainer.main_ppo`` run (Ray, FSDP2 actor, hf rollout, Step-RR reward
loop, reference audio LM and embedder workers) on the tiny offline models and clips.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_python
from e2e_utils import assert_l_op_bounds, assert_media, assert_trained, run_main_ppo

pytestmark = pytest.mark.slow

QWEN3_THINKER = "actor_rollout_ref.model.path=${avconfuse_tiny:models/qwen3_omni_thinker}"


def _assert_trained(result, steps, sync="fp32"):
    assert_trained(result, steps, sync=sync)
    assert_media(steps)


def test_issue_command_trains_the_qwen3_omni_thinker_on_cpu(tmp_path):
    """`python -m verl.trainer.main_ppo +recipe=avconfuse +machine=cpu_tiny actor_rollout_ref.model.path=...`"""
    result, steps = run_main_ppo(
        tmp_path,
        "+recipe=avconfuse",
        "+machine=cpu_tiny",
        QWEN3_THINKER,
        f"avconfuse.reference.cache_dir={tmp_path}/ref",
    )
    _assert_trained(result, steps)
    # 2 s clips: 8 video tokens (16-pixel patches, 2x2 merge) and 26 audio tokens (13 per second) each
    for metrics in steps.values():
        assert metrics["rollout/media/video_tokens/mean"] == 8.0
        assert metrics["rollout/media/audio_tokens/mean"] == 26.0


def _lora_run(tmp_path, *overrides):
    ckpt = tmp_path / "ckpt"
    result, steps = run_main_ppo(
        tmp_path,
        *overrides,
        "actor_rollout_ref.model.lora_rank=8",
        "actor_rollout_ref.model.lora_alpha=16",
        "++actor_rollout_ref.model.lora.merge=true",
        f"avconfuse.reference.cache_dir={tmp_path / 'ref'}",
        f"trainer.default_local_dir={ckpt}",
        "trainer.save_freq=2",
    )
    return result, steps, ckpt / "global_step_2" / "actor"


def _merged_export(tmp_path, actor_dir, base_dir):
    """verl's model merger (base weights + lora_adapter/), then the adapter folded into the thinker."""
    merged = tmp_path / "merger"
    merge = run_python(
        ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor_dir),
         "--target_dir", str(merged)],
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert merge.returncode == 0, merge.stderr[-3000:]
    # the adapter verl saved is the run's: rank 8, alpha 16 (_lora_run)
    adapter_config = json.loads((merged / "lora_adapter" / "adapter_config.json").read_text())
    assert (adapter_config["r"], adapter_config["lora_alpha"]) == (8, 16), adapter_config
    thinker = tmp_path / "thinker"
    export = run_python(
        ["-m", "verl_avconfuse.omni.lora", str(base_dir), str(merged / "lora_adapter"), str(thinker)],
        cwd=tmp_path,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    return merged, thinker


def _assert_adapters_only(merged, thinker, base_dir):
    base = load_file(str(Path(base_dir) / "model.safetensors"))
    saved_base = load_file(str(merged / "model.safetensors"))
    # the base weights verl saved next to the adapter are the initial thinker's (the merger writes bf16):
    # only adapters trained
    assert set(saved_base) == set(base)
    for name, tensor in base.items():
        assert torch.equal(saved_base[name], tensor.to(saved_base[name].dtype)), name
    adapter = load_file(str(merged / "lora_adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in n and tensor.abs().max() > 0 for n, tensor in adapter.items()), "B never moved"
    exported = load_file(str(thinker / "model.safetensors"))
    assert set(exported) == set(base)
    changed = {n for n in base if not torch.equal(exported[n].float(), base[n].float())}
    assert changed and all(".self_attn." in n or ".mlp." in n or "audio_tower" in n or "visual" in n for n in changed)
    return changed


def test_lora_ans_co_on_qwen2_5_omni_trains_adapters_syncs_them_and_exports_a_merged_thinker(tmp_path, tiny_asset):
    """Stage 3 (Ans-CO) with LoRA on the paper's model family: L_OP flows through the adapters only."""
    result, steps, actor = _lora_run(
        tmp_path,
        "+recipe=avconfuse_ansco",
        "+machine=cpu_tiny",
        "actor_rollout_ref.model.target_modules=all-linear",
    )
    _assert_trained(result, steps, sync="bf16")
    for metrics in steps.values():
        assert metrics["ansco/answer_entropy"] > 0
        assert_l_op_bounds(metrics)
    merged, thinker = _merged_export(tmp_path, actor, tiny_asset("models/omni_thinker"))
    changed = _assert_adapters_only(merged, thinker, tiny_asset("models/omni_thinker"))
    assert "model.layers.0.self_attn.q_proj.weight" in changed


def test_lora_on_the_qwen3_omni_recipe_adapts_attention_only(tmp_path, tiny_asset):
    """+policy=qwen3_omni (LoRA on attention, encoders excluded, experts and router untouched)."""
    result, steps, actor = _lora_run(
        tmp_path, "+recipe=avconfuse", "+policy=qwen3_omni", "+machine=cpu_tiny", QWEN3_THINKER
    )
    _assert_trained(result, steps, sync="bf16")
    base_dir = tiny_asset("models/qwen3_omni_thinker")
    merged, thinker = _merged_export(tmp_path, actor, base_dir)
    changed = _assert_adapters_only(merged, thinker, base_dir)
    assert all(".self_attn." in n and n.startswith("model.layers.") for n in changed), sorted(changed)[:5]
