"""LoRA on the Omni thinkers, as verl builds it (PEFT from ``lora_rank``/``lora_alpha``/``target_modules``).

What ``all-linear`` adapts on each family (and what the Qwen3-Omni recipe excludes), and the merged export
(:func:`verl_avconfuse.omni.lora.merge_lora_thinker`) checked against ``W + (alpha / r) * B @ A`` by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

FAMILIES = [
    pytest.param("models/omni_thinker", id="qwen2.5-omni"),
    pytest.param("models/qwen3_omni_thinker", id="qwen3-omni"),
]
REPO = Path(__file__).resolve().parents[1]


def _verl_lora(model, *, rank: int, alpha: int, target_modules="all-linear", exclude_modules=None):
    """The LoraConfig verl's FSDP engine builds (workers/engine/fsdp/transformer_impl.py, _build_lora_module)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=rank,
        lora_alpha=alpha,
        target_modules=target_modules,
        exclude_modules=exclude_modules,
        bias="none",
    )
    return get_peft_model(model, config)


def _thinker(tiny_asset, name):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_asset(name), dtype=torch.float32)


def _adapted(peft_model) -> set[str]:
    prefix = "base_model.model."
    return {n.removeprefix(prefix) for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}


def test_all_linear_trains_adapters_only_on_qwen2_5_omni(tiny_asset):
    model = _verl_lora(_thinker(tiny_asset, "models/omni_thinker"), rank=4, alpha=8)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    adapted = _adapted(model)
    assert "model.layers.0.self_attn.q_proj" in adapted and "model.layers.1.self_attn.o_proj" in adapted
    assert "lm_head" not in adapted  # PEFT's all-linear leaves the output layer alone


def test_verls_default_all_linear_cannot_adapt_qwen3_omni(tiny_asset):
    """PEFT expands all-linear to the last name of every Linear; Qwen3-Omni's vision mergers hold theirs in
    ModuleLists ("mlp.0", "mlp.2"), so "0" is a target and matches whole decoder/encoder layers too."""
    with pytest.raises(ValueError, match=r"Target module Qwen3OmniMoe\w+Layer\(") as error:
        _verl_lora(_thinker(tiny_asset, "models/qwen3_omni_thinker"), rank=4, alpha=8)
    assert "is not supported" in str(error.value)


def test_qwen3_omni_recipe_adapts_the_lm_attention_only(tiny_asset):
    """recipes/policy/qwen3_omni.yaml: q/k/v/o by name, encoders excluded; experts and router are never adapted."""
    recipe = yaml.safe_load((REPO / "recipes" / "policy" / "qwen3_omni.yaml").read_text())["actor_rollout_ref"]["model"]
    model = _verl_lora(
        _thinker(tiny_asset, "models/qwen3_omni_thinker"),
        rank=4,
        alpha=8,
        target_modules=recipe["target_modules"],
        exclude_modules=recipe["exclude_modules"],
    )
    adapted = _adapted(model)
    assert adapted and not any(n.startswith(("audio_tower", "visual")) for n in adapted)
    assert sorted(adapted) == sorted(
        f"model.layers.{layer}.self_attn.{proj}"
        for layer in range(2)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj")
    )


@pytest.mark.parametrize("name", FAMILIES)
def test_merged_export_is_w_plus_alpha_over_r_b_a(tiny_asset, tmp_path, name):
    from transformers import AutoModelForImageTextToText

    from verl_avconfuse.omni.lora import merge_lora_thinker

    base_dir = tiny_asset(name)
    rank, alpha = 4, 8
    model = _verl_lora(_thinker(tiny_asset, name), rank=rank, alpha=alpha, target_modules=["q_proj"])
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_B"):
                module.lora_B["default"].weight.normal_()  # PEFT starts B at zero: make the update non-zero
    q = model.base_model.model.model.layers[1].self_attn.q_proj
    a, b = q.lora_A["default"].weight.clone(), q.lora_B["default"].weight.clone()
    base_q = q.base_layer.weight.clone()
    adapter = tmp_path / "lora_adapter"
    model.save_pretrained(str(adapter))

    out = merge_lora_thinker(base_dir, adapter, tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(str(out), dtype=torch.float32)
    expected = base_q + (alpha / rank) * b @ a
    assert torch.allclose(merged.model.layers[1].self_attn.q_proj.weight, expected, atol=1e-6)
    assert not torch.allclose(expected, base_q)
    # everything LoRA did not adapt is the base thinker's
    base = _thinker(tiny_asset, name)
    for (n, p), (_, p0) in zip(merged.named_parameters(), base.named_parameters(), strict=True):
        if n != "model.layers.1.self_attn.q_proj.weight" and "layers.0.self_attn.q_proj" not in n:
            assert torch.equal(p, p0), n
    # a plain thinker directory: same model_type, processor files, no adapter
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == json.loads((Path(base_dir) / "config.json").read_text())["model_type"]
    assert (out / "tokenizer_config.json").is_file() and not (out / "adapter_config.json").exists()


def test_qwen3_omni_merged_export_keeps_the_released_per_expert_layout(tiny_asset, tmp_path):
    from verl_avconfuse.omni.lora import merge_lora_thinker

    model = _verl_lora(
        _thinker(tiny_asset, "models/qwen3_omni_thinker"), rank=2, alpha=4, target_modules=["q_proj", "o_proj"]
    )
    model.save_pretrained(str(tmp_path / "adapter"))
    out = merge_lora_thinker(tiny_asset("models/qwen3_omni_thinker"), tmp_path / "adapter", tmp_path / "merged")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert "model.layers.0.mlp.experts.3.down_proj.weight" in names
    assert not any("gate_up_proj" in n or "lora_" in n for n in names)


def test_merge_refuses_a_folder_without_an_adapter(tiny_asset, tmp_path):
    from verl_avconfuse.omni.lora import merge_lora_thinker

    with pytest.raises(FileNotFoundError, match="adapter_config.json: not a LoRA adapter folder"):
        merge_lora_thinker(tiny_asset("models/omni_thinker"), tmp_path, tmp_path / "out")


def test_merge_reads_the_adapted_modules_from_the_tensors_not_from_verls_adapter_config(tiny_asset, tmp_path):
    """verl's model merger writes target_modules as each LoRA key's module leaf name
    (``lora_key.split(".")[-3]``): for Qwen2.5-Omni's vision merger that is "0" and "2", which PEFT would match
    against whole layers ("audio_tower.layers.0") and refuse. The export follows the tensors instead."""
    from safetensors.torch import load_file

    from verl_avconfuse.omni.lora import merge_lora_thinker

    rank, alpha = 2, 4
    model = _verl_lora(_thinker(tiny_asset, "models/omni_thinker"), rank=rank, alpha=alpha)
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "lora_B"):
                module.lora_B["default"].weight.normal_()  # PEFT starts B at zero: make the update non-zero
    expected = {}  # W + (alpha / r) * B @ A of the modules whose verl leaf name is "0" or "2"
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and name.endswith(("visual.merger.mlp.0", "visual.merger.mlp.2")):
            delta = module.lora_B["default"].weight @ module.lora_A["default"].weight
            expected[name.removeprefix("base_model.model.") + ".weight"] = (
                module.base_layer.weight + alpha / rank * delta
            )
    assert len(expected) == 2
    model.save_pretrained(str(tmp_path / "adapter"))
    keys = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    leaves = sorted({key.split(".")[-3] for key in keys})
    assert "0" in leaves  # visual.merger.mlp.0
    config_file = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["target_modules"] = leaves
    config_file.write_text(json.dumps(config))
    out = merge_lora_thinker(tiny_asset("models/omni_thinker"), tmp_path / "adapter", tmp_path / "merged")
    merged = load_file(str(out / "model.safetensors"))
    for name, weight in expected.items():
        assert torch.allclose(merged[name].float(), weight, atol=1e-6), name
