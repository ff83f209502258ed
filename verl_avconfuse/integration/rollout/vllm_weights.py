"""The actor's weights as vLLM's Omni thinker loads them: renamed (:func:`~verl_avconfuse.omni.vllm_contract.
vllm_thinker_weight_name`) and, for Qwen3-Omni's MoE, one tensor per expert by verl's own splitter.

Apart from :mod:`.vllm_omni` because it needs verl's FSDP utilities but not vLLM: the weight stream is checked
on any install.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from verl_avconfuse.omni.vllm_contract import vllm_thinker_weight_name


def _per_expert(name: str, tensor: Any) -> Iterator[tuple[str, Any]]:
    """A fused MoE expert tensor -> one tensor per expert under the checkpoint's names; others unchanged.

    verl 0.9.1 unfuses experts on the full-weight sync path only (``FSDPEngine.get_per_tensor_param`` ->
    ``unfuse_moe_params``); its merged-LoRA path (``_merged_lora_per_tensor_param``, used with
    ``lora.merge=true`` as recipes/policy/qwen3_omni.yaml sets) streams transformers' fused
    ``mlp.experts.gate_up_proj`` / ``down_proj``, which vLLM's ``Qwen3MoeModel.load_weights`` skips without an
    error: a rollout started with ``load_format=dummy`` would keep random experts. verl's own function splits
    them (it passes per-expert names through, so applying it twice is harmless).
    """
    if ".mlp.experts." not in name:
        yield name, tensor
        return
    from verl.workers.engine.fsdp.utils import unfuse_moe_params

    yield from unfuse_moe_params([(name, tensor)])


def vllm_thinker_weights(named_tensors: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(name, tensor)`` pairs renamed by :func:`vllm_thinker_weight_name`, lazily, fused MoE experts split
    into one tensor per expert (:func:`_per_expert`); other tensors untouched.

    Wrap the generator a ``ServerAdapter.update_weights`` gets (verl: vllm_rollout.py), before
    ``BucketedWeightSender`` ships it to the workers that call ``model.load_weights``.
    """
    items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
    for name, tensor in items:
        for expert_name, expert_tensor in _per_expert(name, tensor):
            yield vllm_thinker_weight_name(expert_name), expert_tensor


async def vllm_thinker_weights_async(named_tensors: AsyncIterable[tuple[str, Any]]) -> AsyncIterator[tuple[str, Any]]:
    """:func:`vllm_thinker_weights` for async iterators (verl's sender accepts both)."""
    async for name, tensor in named_tensors:
        for expert_name, expert_tensor in _per_expert(name, tensor):
            yield vllm_thinker_weight_name(expert_name), expert_tensor
