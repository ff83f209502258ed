"""The Ans-CO training engine: verl's FSDP engine plus the two things Ans-CO needs from the actor's forward.

Registered in verl's ``EngineRegistry`` (``verl/workers/engine/base.py``) for ``language_model`` on the
``fsdp`` / ``fsdp2`` backends, under the vendor key :data:`~verl_avconfuse.integration.ans_co.ANS_CO_ENGINE_VENDOR`
of every device verl's FSDP engine runs on (and the CPU platform's). ``EngineRegistry.get_engine_cls``
looks a ``(device, vendor)`` key up before the device-only one, and takes the vendor from
``VERL_ENGINE_VENDOR`` when it is set, so the engine is opt-in, per run: the ``avconfuse_ansco`` recipe sets
``VERL_ENGINE_VENDOR`` for every Ray worker. Without it verl's own engines are used, unchanged. (A backend
name of its own is not an option: ``FSDPEngineConfig`` accepts only ``fsdp``, ``fsdp2``, ``fsdp_turbo``;
nor is a ``model_type``: the FSDP engine builds only ``language_model`` and ``value_model``.)

What it adds, both keyed on the Ans-CO fields of the batch, so every other call is verl's:

1. ``forward_backward_batch``: before verl splits a training mini-batch into micro-batches, the sizes
   of Ans-CO's sample sets over the whole mini-batch, all data-parallel ranks together (one
   ``all_reduce``, as verl counts ``batch_num_tokens``). The loss function's metrics divide by them,
   so ``ansco/*`` is the mini-batch's value for any micro-batch split.
2. ``prepare_model_outputs``: the entropy at the answer tokens only, when the installed loss function
   asks for it. verl computes the entropy at every position of every sequence (prompt and media tokens
   included), each a softmax over the vocabulary kept for the backward; L_OP reads it at the answer
   tokens alone. verl's method runs with ``calculate_entropy`` off (which also keeps its in-place
   cross-entropy backward) and the entropy is computed from the same logits at those positions, read
   with a sparse gradient (:func:`~verl_avconfuse.method.logit_rows`) that autograd adds in place into
   the log-probs' dense one: the update then costs what vanilla PG's does plus the answer rows
   (benchmarks/README.md). verl materialises the logits at every position for the log-probs anyway
   (unless fused kernels are on, which this leaves to verl), so rows of them are cheaper than an
   ``lm_head`` recomputed on the answer positions' hidden states, and need no hook into the
   FSDP-sharded ``lm_head`` (FSDP2 reshards it after its forward).
"""

from __future__ import annotations

import torch
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_id
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from verl_avconfuse.integration.ans_co import (
    ANSWER_MASK_FIELD,
    answer_entropy,
    answer_entropy_applies,
    assign_global_set_sizes,
    local_set_sizes,
)
from verl_avconfuse.method.ans_co import AnsCoSetSizes

#: Devices the engine is registered for: verl's FSDP engine's, and the CPU platform's.
DEVICES = ("cuda", "npu", "cpu")


class AnsCoFSDPEngineWithLMHead(FSDPEngineWithLMHead):
    """verl's ``FSDPEngineWithLMHead`` with Ans-CO's mini-batch counts and answer-only entropy."""

    def forward_backward_batch(self, data, loss_function, forward_only=False):
        if not forward_only and ANSWER_MASK_FIELD in data.keys():
            sizes = torch.tensor(local_set_sizes(data), dtype=torch.int64, device=get_device_id())
            torch.distributed.all_reduce(sizes, op=torch.distributed.ReduceOp.SUM, group=self.get_data_parallel_group())
            assign_global_set_sizes(data, AnsCoSetSizes(*sizes.tolist()))
        return super().forward_backward_batch(data, loss_function, forward_only=forward_only)

    def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
        if not answer_entropy_applies(self, output, micro_batch, logits_processor_func):
            return super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        without_entropy = micro_batch.copy()
        tu.assign_non_tensor(without_entropy, calculate_entropy=False)
        model_output = super().prepare_model_outputs(output, output_args, without_entropy, logits_processor_func)
        use_remove_padding = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
        model_output["entropy"] = answer_entropy(output, micro_batch, use_remove_padding=use_remove_padding)
        return model_output


def register(registry) -> None:
    """Register the engine in ``registry`` (verl's ``EngineRegistry``); idempotent."""
    from verl_avconfuse.integration.ans_co import ANS_CO_ENGINE_VENDOR
    from verl_avconfuse.integration.patches import register_engine

    register_engine(
        registry,
        AnsCoFSDPEngineWithLMHead,
        model_type="language_model",
        backends=("fsdp", "fsdp2"),
        devices=DEVICES,
        vendor=ANS_CO_ENGINE_VENDOR,
    )
