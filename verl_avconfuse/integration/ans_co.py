"""Ans-CO in verl's actor update: the loss function the ``avconfuse`` trainer installs with ``set_loss_fn``.

verl's registered policy losses (``register_policy_loss``) see only log-probs, advantages and the
response mask; Ans-CO also needs the entropy at the answer tokens, an answer mask and an NLL term.
verl's actor worker takes a whole loss function instead (``ActorRolloutRefWorker.set_loss_fn``):
:func:`ans_co_ppo_loss` is verl's own ``ppo_loss`` (the policy-gradient term, unchanged) plus
``ansco_coef * L_OP`` from :func:`verl_avconfuse.method.ans_co_loss_from_stats`, the one place the
formula lives.

Per-sample inputs arrive with the micro-batch from verl's transfer queue, written by the trainer
before the update (:data:`ANSWER_MASK_FIELD`: response-aligned answer tokens N, the entropy set;
:data:`UNCERTAINTY_MASK_FIELD`: the answer's content tokens U, where ``u`` is measured;
:data:`NLL_MASK_FIELD`: 1 where the NLL term applies). The terms are summed over the micro-batch and
divided, with ``avconfuse.ans_co.normalize_by: batch`` (the default), by the mini-batch's global sample
count per data-parallel rank, as verl's ``agg_loss`` does for its ``seq-mean`` modes (samples outside the
NLL or answer sets count as zeros); with ``sets``, by the sizes of those sets in the mini-batch per rank
(the paper's per-set means: docs/paper_deviations.md). Either way micro-batching, gradient accumulation,
dynamic batch sizes and data parallelism all give the gradient of one mean over the mini-batch, whatever
``loss_agg_mode`` the policy-gradient term uses.

Metrics. verl reduces a loss function's metrics per mini-batch as: the mean over data-parallel ranks of
the *sum* (``AggregationType.SUM``) or *mean* (``MEAN``) over micro-batches (``Metric.aggregate_dp`` in
``verl/utils/metric/utils.py``). Each ``ansco/*`` value is a mean over one of Ans-CO's sample sets, so
every micro-batch reports ``dp_size * (its sum) / (the set's size in the whole mini-batch)`` with
``SUM``: the reduced value is then the full mini-batch's mean for any micro-batch split and any
data-parallel size. The set sizes come from the masks alone; the Ans-CO engine
(:mod:`verl_avconfuse.integration.ans_co_engine`) counts them over the mini-batch, across ranks, before it
splits it (:func:`assign_global_set_sizes`), as verl counts ``batch_num_tokens``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import torch

from verl_avconfuse.method.ans_co import AnsCoSetSizes, ans_co_loss_from_stats, ans_co_set_sizes, logit_rows
from verl_avconfuse.settings import AnsCoSettings

logger = logging.getLogger(__name__)

ANSWER_MASK_FIELD = "ans_co_answer_mask"
UNCERTAINTY_MASK_FIELD = "ans_co_uncertainty_mask"
NLL_MASK_FIELD = "ans_co_nll_mask"
#: Attribute of the installed loss function: the actor's forward computes the entropy at the answer
#: tokens only (see :func:`answer_entropy_applies`).
ANSWER_ENTROPY_ONLY = "avconfuse_answer_entropy_only"
#: The Ans-CO engine's key in verl's EngineRegistry, selected with ``VERL_ENGINE_VENDOR`` (docs/ans_co.md).
ANS_CO_ENGINE_VENDOR = "avconfuse_ans_co"
#: Non-tensor entries of the mini-batch: the sizes of Ans-CO's sample sets over the whole mini-batch,
#: all data-parallel ranks together (:func:`assign_global_set_sizes`).
SET_SIZE_KEYS = AnsCoSetSizes(nll="ans_co_nll_count", answer="ans_co_answer_count", uncertainty="ans_co_u_count")
#: metric -> (the sum ans_co_loss_from_stats reports, the sample set it is a mean over; None: already a
#: mean over the mini-batch). verl prefixes actor metrics with ``actor/``; the trainer strips it again.
METRICS: dict[str, tuple[str, str | None]] = {
    "ansco/loss": ("ansco/loss", None),
    "ansco/nll": ("ansco/nll_sum", "nll"),
    "ansco/answer_entropy": ("ansco/answer_entropy_sum", "answer"),
    "ansco/u_mean": ("ansco/u_sum", "uncertainty"),
    "ansco/gated_fraction": ("ansco/gated_count", "answer"),
}
METRIC_KEYS = tuple(METRICS)


def make_ans_co_loss_fn(actor_config, settings: AnsCoSettings, vocab_size: int):
    """The loss function the trainer installs with ``set_loss_fn`` (picklable; carries its entropy scope).

    With ``settings.entropy_positions == "answer"`` and no entropy bonus in verl's PPO term
    (``actor_config.entropy_coeff == 0``), the actor's forward computes the entropy at the answer tokens
    only; otherwise it keeps verl's full-sequence entropy.

    Called where the trainer runs (a Ray actor with the job's environment), it checks that the actor
    workers will build the Ans-CO engine, which the loss needs for its mini-batch counts: a missing
    ``VERL_ENGINE_VENDOR`` fails here, before the first rollout, not at the first update.
    """
    if os.environ.get("VERL_ENGINE_VENDOR") != ANS_CO_ENGINE_VENDOR:
        raise ValueError(
            f"Ans-CO runs the actor on the Ans-CO engine: set VERL_ENGINE_VENDOR={ANS_CO_ENGINE_VENDOR} for every Ray "
            "worker (the avconfuse_ansco recipe does, in ray_kwargs.ray_init.runtime_env.env_vars); got "
            f"{os.environ.get('VERL_ENGINE_VENDOR')!r}"
        )
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
    missing = [f for f in (ANSWER_MASK_FIELD, UNCERTAINTY_MASK_FIELD, NLL_MASK_FIELD) if f not in data.keys()]
    if missing:
        raise KeyError(
            f"Ans-CO needs {missing} in the actor batch; they are written by the avconfuse trainer "
            f"(trainer.v1.trainer_mode=avconfuse); the batch has {sorted(data.keys())}"
        )
    global_batch_size = data["global_batch_size"]
    if global_batch_size is None:
        raise ValueError("Ans-CO needs the mini-batch's global_batch_size to scale micro-batches (verl provides it)")
    set_sizes = global_set_sizes(data)
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
    fields = data.select("response_mask", ANSWER_MASK_FIELD, UNCERTAINTY_MASK_FIELD).to_padded_tensor()
    response_mask = fields["response_mask"].to(log_prob.device)
    answer_mask = fields[ANSWER_MASK_FIELD].to(device=log_prob.device, dtype=torch.bool)
    uncertainty_mask = fields[UNCERTAINTY_MASK_FIELD].to(device=log_prob.device, dtype=torch.bool)
    nll_mask = data[NLL_MASK_FIELD].to(device=log_prob.device).reshape(-1).bool()
    dp_size = int(data["dp_size"])
    # Per rank: the ranks' gradients are averaged, so a denominator D / dp_size makes the mean over D.
    if settings.normalize_by == "sets":
        nll_denominator, entropy_denominator = set_sizes.nll / dp_size, set_sizes.answer / dp_size
    else:
        nll_denominator = entropy_denominator = float(global_batch_size) / dp_size
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
        nll_denominator=nll_denominator,
        entropy_denominator=entropy_denominator,
        uncertainty_mask=uncertainty_mask,
    )
    for key, (total, over) in METRICS.items():
        size = None if over is None else getattr(set_sizes, over)
        value = ans_metrics[total] if size is None else (dp_size * ans_metrics[total] / size if size else 0.0)
        metrics[key] = Metric(value=value, aggregation=AggregationType.SUM)
    return settings.pg_coef * pg_loss + settings.ansco_coef * ans_loss, metrics


# ------------------------------------------------------------------- the sample sets of the mini-batch


def local_set_sizes(data) -> AnsCoSetSizes:
    """Sizes of Ans-CO's sample sets in ``data`` (a mini-batch or micro-batch on one rank), from its masks."""
    fields = data.select("response_mask", ANSWER_MASK_FIELD, UNCERTAINTY_MASK_FIELD).to_padded_tensor()
    return ans_co_set_sizes(
        fields["response_mask"],
        fields[ANSWER_MASK_FIELD],
        data[NLL_MASK_FIELD].reshape(-1),
        fields[UNCERTAINTY_MASK_FIELD],
    )


def assign_global_set_sizes(data, sizes: AnsCoSetSizes) -> None:
    """Record the mini-batch's set sizes (all ranks together) in ``data``; its micro-batches inherit them."""
    from verl.utils import tensordict_utils as tu

    tu.assign_non_tensor(data, **{key: int(size) for key, size in zip(SET_SIZE_KEYS, sizes, strict=True)})


def global_set_sizes(data) -> AnsCoSetSizes:
    """The set sizes :func:`assign_global_set_sizes` recorded; an error naming the engine when absent."""
    from verl.utils import tensordict_utils as tu

    values = [tu.get_non_tensor_data(data=data, key=key, default=None) for key in SET_SIZE_KEYS]
    if any(v is None for v in values):
        raise KeyError(
            "Ans-CO's metrics are means over the whole mini-batch and need its sample counts, which the Ans-CO "
            f"engine records; run the actor on it (VERL_ENGINE_VENDOR={ANS_CO_ENGINE_VENDOR}, set by the "
            "avconfuse_ansco recipe for every Ray worker; see docs/ans_co.md)"
        )
    return AnsCoSetSizes(*(int(v) for v in values))


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

    The answer rows are read with :func:`~verl_avconfuse.method.logit_rows` (a sparse gradient, added in
    place into the log-probs' dense one; why rows of these logits and not a second ``lm_head``: the module
    docstring of :mod:`verl_avconfuse.integration.ans_co_engine`).
    """
    from torch.distributed.tensor import DTensor
    from verl.utils.torch_functional import entropy_from_logits

    logits = output.logits
    sharded = isinstance(logits, DTensor)
    if sharded:  # tensor parallel: sharded on the vocabulary; the gather's backward expects a dense gradient
        logits = logits.full_tensor()
    cu_seqlens = micro_batch["input_ids"].offsets().to(logits.device)
    sample, position = (t.to(logits.device) for t in answer_entropy_positions(micro_batch))
    rows = cu_seqlens[sample] + position  # in the packed (total_nnz,) layout verl's outputs use
    index = torch.stack([torch.zeros_like(rows), rows]) if use_remove_padding else torch.stack([sample, position])
    selected = logits[tuple(index)] if sharded else logit_rows(logits, index)
    temperature = micro_batch["temperature"]
    if isinstance(temperature, torch.Tensor) or float(temperature) != 1.0:
        # as verl's prepare_model_inputs: one float32 temperature per sample
        scale = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device).expand(len(cu_seqlens) - 1)
        selected = selected / scale[sample].clamp(min=1e-8).to(selected.dtype)[:, None]
    values = entropy_from_logits(selected)
    entropy = values.new_zeros(int(cu_seqlens[-1])).index_put((rows,), values)
    return torch.nested.nested_tensor_from_jagged(entropy, cu_seqlens)


def answer_entropy_applies(engine, output, micro_batch, logits_processor_func) -> bool:
    """Whether the Ans-CO engine computes this forward's entropy at the answer tokens only.

    Only when the installed loss function asks for it (:data:`ANSWER_ENTROPY_ONLY`), the micro-batch
    carries the answer mask and verl would compute the entropy from plain logits; every other call
    (forward-only log-probs, the critic, fused kernels, sequence parallelism, distillation) is verl's.
    """
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    def flag(key, default):
        return tu.get_non_tensor_data(data=micro_batch, key=key, default=default)

    return bool(
        getattr(logits_processor_func, ANSWER_ENTROPY_ONLY, False)
        and flag("calculate_entropy", False)
        and ANSWER_MASK_FIELD in micro_batch.keys()
        and not flag("use_fused_kernels", False)
        and not flag("distillation_use_topk", False)
        and flag("pad_mode", DatasetPadMode.NO_PADDING) == DatasetPadMode.NO_PADDING
        and not getattr(engine, "use_ulysses_sp", False)
        and getattr(output, "logits", None) is not None
    )


def install_ans_co_loss(actor_rollout_wg, actor, settings: AnsCoSettings, tokenizer) -> None:
    """Install Ans-CO's loss on the actor workers (``set_loss_fn``), from verl's ``actor_rollout_ref.actor``."""
    from verl.utils.config import omega_conf_to_dataclass

    if settings.lam > 0 and not actor.get("calculate_entropy", False):
        raise ValueError(
            "avconfuse.ans_co.lam > 0 needs the policy entropy in the actor update: set "
            "actor_rollout_ref.actor.calculate_entropy=true (the avconfuse_ansco recipe does)"
        )
    actor_config = omega_conf_to_dataclass(actor)
    loss_fn = make_ans_co_loss_fn(actor_config, settings, len(tokenizer))
    if settings.entropy_positions == "answer" and not getattr(loss_fn, ANSWER_ENTROPY_ONLY):
        logger.warning(
            "Ans-CO: actor.entropy_coeff=%s needs the entropy at every position; computing it there "
            "(avconfuse.ans_co.entropy_positions=answer applies only with entropy_coeff=0)",
            actor_config.entropy_coeff,
        )
    actor_rollout_wg.set_loss_fn(loss_fn)


def ans_co_fields(view, tokenizer, settings: AnsCoSettings):
    """The step's answer-token masks and NLL flags for the actor update (read by :func:`ans_co_ppo_loss`),
    from the trainer's one read of the step (``view``: its ``responses``, ``response_mask``, reward infos)."""
    from tensordict import TensorDict
    from verl.workers.utils.padding import response_to_nested

    from verl_avconfuse.method.answer_mask import answer_token_mask

    response_mask_nested = view.data["response_mask"]
    responses = view.data["responses"].to_padded_tensor(padding=tokenizer.pad_token_id or 0)
    response_mask = response_mask_nested.to_padded_tensor(padding=0)
    answer_mask = answer_token_mask(responses, tokenizer, response_mask, span=settings.answer_span)
    # u is measured on what the answer says, not on its near-certain tags and EOS (docs/ans_co.md)
    content_mask = answer_token_mask(responses, tokenizer, response_mask, span="content")
    if settings.nll_on == "all":
        nll = torch.ones(len(view.keys))
    else:
        if any("acc" not in info for info in view.reward_infos):
            raise KeyError(
                "avconfuse.ans_co.nll_on=right needs each sample's 'acc' in the reward extra info (Step-RR and "
                "format_acc provide it); use nll_on=all with other rewards"
            )
        nll = torch.tensor([float(info["acc"]) for info in view.reward_infos])
    return TensorDict(
        {
            ANSWER_MASK_FIELD: response_to_nested(answer_mask.to(torch.int64), response_mask_nested),
            UNCERTAINTY_MASK_FIELD: response_to_nested(content_mask.to(torch.int64), response_mask_nested),
            NLL_MASK_FIELD: nll,
        },
        batch_size=len(view.keys),
    )
