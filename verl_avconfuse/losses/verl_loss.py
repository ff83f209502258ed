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

from typing import Any

import torch

from verl_avconfuse.losses.ans_co import ans_co_loss_from_stats
from verl_avconfuse.settings import AnsCoSettings

ANSWER_MASK_FIELD = "ans_co_answer_mask"
NLL_MASK_FIELD = "ans_co_nll_mask"
#: Metrics reported (verl prefixes actor metrics with ``actor/``; the trainer strips it again).
METRIC_KEYS = ("ansco/nll", "ansco/answer_entropy", "ansco/u_mean", "ansco/gated_frac", "ansco/loss")


def ans_co_ppo_loss(
    config, model_output: dict[str, Any], data, dp_group=None, *, settings: AnsCoSettings, vocab_size: int
):
    """verl loss-function signature ``(config, model_output, data, dp_group) -> (loss, metrics)``."""
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import no_padding_2_padding

    pg_loss, metrics = ppo_loss(config, model_output, data, dp_group)
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
