"""Ans-CO in verl's actor update: the loss function the ``avconfuse`` trainer installs with ``set_loss_fn``.

verl's registered policy losses (``register_policy_loss``) see only log-probs, advantages and the
response mask; Ans-CO also needs the entropy at the answer tokens, an answer mask and an NLL term.
verl's actor worker takes a whole loss function instead (``ActorRolloutRefWorker.set_loss_fn``):
:func:`ans_co_ppo_loss` is verl's own ``ppo_loss`` (the policy-gradient term, unchanged) plus
``ansco_coef * L_OP`` from :func:`verl_avconfuse.losses.ans_co_loss_from_stats`, the one place the
formula lives.

Per-sample inputs arrive with the micro-batch from verl's transfer queue, written by the trainer
before the update (:data:`ANSWER_MASK_FIELD`: response-aligned answer tokens; :data:`NLL_MASK_FIELD`:
1 where the NLL term applies). The terms are summed over the micro-batch and divided by the
mini-batch's global sample count per data-parallel rank, as verl's ``agg_loss`` does for its
``seq-mean`` modes, so micro-batching, gradient accumulation, dynamic batch sizes and data
parallelism all give the gradient of one mean over the mini-batch (samples outside the NLL or
answer sets count as zeros), whatever ``loss_agg_mode`` the policy-gradient term uses.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from verl_avconfuse.losses.ans_co import ans_co_loss_from_stats
from verl_avconfuse.settings import AnsCoSettings

ANSWER_MASK_FIELD = "ans_co_answer_mask"
NLL_MASK_FIELD = "ans_co_nll_mask"
#: Attribute of the installed loss function: the actor's forward computes the entropy at the answer
#: tokens only (see :func:`prepare_outputs_with_answer_entropy`).
ANSWER_ENTROPY_ONLY = "avconfuse_answer_entropy_only"
#: Metrics reported (verl prefixes actor metrics with ``actor/``; the trainer strips it again).
METRIC_KEYS = ("ansco/nll", "ansco/answer_entropy", "ansco/u_mean", "ansco/gated_frac", "ansco/loss")


def make_ans_co_loss_fn(actor_config, settings: AnsCoSettings, vocab_size: int):
    """The loss function the trainer installs with ``set_loss_fn`` (picklable; carries its entropy scope).

    With ``settings.entropy_positions == "answer"`` and no entropy bonus in verl's PPO term
    (``actor_config.entropy_coeff == 0``), the actor's forward computes the entropy at the answer tokens
    only; otherwise it keeps verl's full-sequence entropy.
    """
    answer_only = settings.entropy_positions == "answer" and float(actor_config.entropy_coeff) == 0.0
    loss_fn = functools.partial(
        ans_co_ppo_loss, config=actor_config, settings=settings, vocab_size=vocab_size, answer_entropy_only=answer_only
    )
    setattr(loss_fn, ANSWER_ENTROPY_ONLY, answer_only)
    return loss_fn


def ans_co_ppo_loss(
    config,
    model_output: dict[str, Any],
    data,
    dp_group=None,
    *,
    settings: AnsCoSettings,
    vocab_size: int,
    answer_entropy_only: bool = False,
):
    """verl loss-function signature ``(config, model_output, data, dp_group) -> (loss, metrics)``.

    ``answer_entropy_only``: ``model_output["entropy"]`` may hold the answer tokens' entropy only, so
    verl's PPO term does not see it (its entropy bonus is off: ``entropy_coeff == 0``).
    """
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import no_padding_2_padding

    pg_output = {k: v for k, v in model_output.items() if k != "entropy"} if answer_entropy_only else model_output
    pg_loss, metrics = ppo_loss(config, pg_output, data, dp_group)
    if ANSWER_MASK_FIELD not in data.keys() or NLL_MASK_FIELD not in data.keys():
        raise KeyError(
            f"Ans-CO needs '{ANSWER_MASK_FIELD}' and '{NLL_MASK_FIELD}' in the actor batch; they are written by "
            f"the avconfuse trainer (trainer.v1.trainer_mode=avconfuse); the batch has {sorted(data.keys())}"
        )
    global_batch_size = data["global_batch_size"]
    if global_batch_size is None:
        raise ValueError("Ans-CO needs the mini-batch's global_batch_size to scale micro-batches (verl provides it)")
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy")
    lam = settings.lam
    if entropy is None:
        if lam > 0:
            raise ValueError(
                "Ans-CO with lam > 0 needs the policy entropy: set actor_rollout_ref.actor.calculate_entropy=true "
                "(the avconfuse_ansco recipe does)"
            )
        entropy = torch.zeros_like(log_prob)
    else:
        entropy = no_padding_2_padding(entropy, data)
    fields = data.select("response_mask", ANSWER_MASK_FIELD).to_padded_tensor()
    response_mask = fields["response_mask"].to(log_prob.device)
    answer_mask = fields[ANSWER_MASK_FIELD].to(device=log_prob.device, dtype=torch.bool)
    nll_mask = data[NLL_MASK_FIELD].to(device=log_prob.device).reshape(-1).bool()
    per_rank = float(global_batch_size) / float(data["dp_size"])
    ans_loss, ans_metrics = ans_co_loss_from_stats(
        log_prob,
        entropy,
        response_mask,
        answer_mask,
        nll_mask,
        lam=lam,
        u_max=settings.u_max,
        uncertainty=settings.uncertainty,
        vocab_size=vocab_size,
        nll_denominator=per_rank,
        entropy_denominator=per_rank,
    )
    for key in METRIC_KEYS:
        metrics[key] = Metric(value=ans_metrics[key], aggregation=AggregationType.MEAN)
    return settings.pg_coef * pg_loss + settings.ansco_coef * ans_loss, metrics


# ------------------------------------------------------------------- entropy at the answer tokens only


def answer_entropy_positions(data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sample, position)`` of every answer token's prediction in the full-sequence model output.

    verl's full-sequence outputs score token ``t + 1`` at position ``t`` (``no_padding_2_padding``
    slices ``[prompt_len - 1, prompt_len - 1 + response_len)`` of each sequence), so response token
    ``t`` is scored at ``prompt_len - 1 + t``. ``data`` holds ``prompts`` and ``responses`` (nested, or
    padded with an ``attention_mask``) and the answer mask.
    """
    prompts, responses = data["prompts"], data["responses"]
    if prompts.is_nested:
        prompt_lens = prompts.offsets().diff()
        response_lens = responses.offsets().diff()
    else:
        attention_mask = data["attention_mask"]
        prompt_lens = attention_mask[:, : prompts.shape[1]].sum(dim=1)
        response_lens = attention_mask[:, prompts.shape[1] :].sum(dim=1)
    answer = data.select(ANSWER_MASK_FIELD).to_padded_tensor()[ANSWER_MASK_FIELD].bool()
    steps = torch.arange(answer.shape[1], device=answer.device)
    answer = answer & (steps[None, :] < response_lens.to(answer.device)[:, None])
    sample, step = answer.nonzero(as_tuple=True)
    return sample, prompt_lens.to(answer.device)[sample] - 1 + step


def answer_entropy(output, micro_batch, *, use_remove_padding: bool) -> torch.Tensor:
    """Nested full-sequence entropy like verl's, computed at the answer tokens' positions only (0 elsewhere).

    ``output.logits``: ``(1, total_nnz [+ pad], V)`` packed (``use_remove_padding``) or
    ``(bsz, max_seqlen, V)`` with each sequence starting at column 0. The logits are divided by the
    micro-batch's ``temperature`` (a float or one per sample) as verl's forward does.
    """
    from torch.distributed.tensor import DTensor
    from verl.utils.torch_functional import entropy_from_logits

    logits = output.logits
    if isinstance(logits, DTensor):  # tensor parallel: sharded on the vocabulary
        logits = logits.full_tensor()
    cu_seqlens = micro_batch["input_ids"].offsets().to(logits.device)
    sample, position = (t.to(logits.device) for t in answer_entropy_positions(micro_batch))
    rows = cu_seqlens[sample] + position  # in the packed (total_nnz,) layout verl's outputs use
    selected = logits.squeeze(0).index_select(0, rows) if use_remove_padding else logits[sample, position]
    temperature = micro_batch["temperature"]
    if isinstance(temperature, torch.Tensor) or float(temperature) != 1.0:
        # as verl's prepare_model_inputs: one float32 temperature per sample
        scale = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device).expand(len(cu_seqlens) - 1)
        selected = selected / scale[sample].clamp(min=1e-8).to(selected.dtype)[:, None]
    values = entropy_from_logits(selected)
    entropy = values.new_zeros(int(cu_seqlens[-1])).index_put((rows,), values)
    return torch.nested.nested_tensor_from_jagged(entropy, cu_seqlens)


def prepare_outputs_with_answer_entropy(prepare, engine, output, output_args, micro_batch, logits_processor_func):
    """verl's ``prepare_model_outputs`` with the entropy computed at the answer tokens only.

    ``prepare`` is verl's own method. It runs unchanged, without the full-sequence entropy, whenever the
    installed loss function asks for answer-only entropy (:data:`ANSWER_ENTROPY_ONLY`) and the
    micro-batch carries the answer mask; every other call (forward-only log-probs, the critic, fused
    kernels, sequence parallelism, distillation) is passed through untouched. Saves a ``(tokens, V)``
    softmax with its activations per micro-batch and keeps verl's in-place cross-entropy backward.
    """
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    def flag(key, default):
        return tu.get_non_tensor_data(data=micro_batch, key=key, default=default)

    applies = (
        getattr(logits_processor_func, ANSWER_ENTROPY_ONLY, False)
        and flag("calculate_entropy", False)
        and ANSWER_MASK_FIELD in micro_batch.keys()
        and not flag("use_fused_kernels", False)
        and not flag("distillation_use_topk", False)
        and flag("pad_mode", DatasetPadMode.NO_PADDING) == DatasetPadMode.NO_PADDING
        and not getattr(engine, "use_ulysses_sp", False)
        and getattr(output, "logits", None) is not None
    )
    if not applies:
        return prepare(engine, output, output_args, micro_batch, logits_processor_func)
    without_entropy = micro_batch.copy()
    tu.assign_non_tensor(without_entropy, calculate_entropy=False)
    model_output = prepare(engine, output, output_args, without_entropy, logits_processor_func)
    model_output["entropy"] = answer_entropy(output, micro_batch, use_remove_padding=flag("use_remove_padding", True))
    return model_output
