"""Sign and alignment of reward -> advantage -> tokens, through verl's own GRPO estimator and actor loss.

One fixed GRPO group of six responses with Step-RR scores from the paper's rules; verl's registered
``grpo`` advantage estimator turns them into token advantages; verl's ``ppo_loss`` (the function its
FSDP engine calls per micro-batch) gives the loss, from inputs laid out as the engine lays them out;
one small SGD step on the tiny policy follows. Then every above-mean response must be more likely and
every below-mean one less likely. A flipped sign, advantages paired with the wrong response, or a mask
that misses the response tokens each break it.

The recipe's ``loss_agg_mode=seq-mean-token-mean`` (the release's reduction) matters here: with verl's
default ``token-mean`` the same update *raised* two of the three short below-mean responses (by 0.006
and 0.001 nats, against +0.4 for the long above-mean ones), their few tokens outweighed by the long
responses' shared tokens.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from verl_avconfuse.method.parsing import parse_response
from verl_avconfuse.method.step_rr import step_rr_scores

from conftest import verl_actor_config

PROMPT = "Is there a violin sound?"
#: (response, sim(a-think, reference a-think), sim(a-think, v-think)) -- the similarities as the embedder
#: would give them; the ground truth is "no" (the violin is seen, but muted).
GROUP = [
    (
        "<a-think> The audio is silent. </a-think> <v-think> I see a violin. </v-think>\n<answer> no </answer>",
        0.93,
        0.38,
    ),
    (
        "<a-think> I hear no instrument. </a-think> <v-think> I see a violin. </v-think>\n<answer> no </answer>",
        0.69,
        0.41,
    ),
    ("<a-think> I hear a violin. </a-think> <v-think> I see a violin. </v-think>\n<answer> yes </answer>", 0.38, 0.95),
    ("maybe yes", None, None),
    ("seven cellos", None, None),
    ("I think there is a violin sound.", None, None),
]
#: The below-mean responses share few tokens with the others: one update's effect on a response is then
#: its own advantage's, not a neighbour's carried over by shared tokens (the format tags, "I hear a").
GROUND_TRUTH = "no"


def _scores() -> list[float]:
    return [
        step_rr_scores(parse_response(text), GROUND_TRUTH, sim_ref if sim_ref is not None else None, sim_v)["score"]
        for text, sim_ref, sim_v in GROUP
    ]


def test_the_group_scores_as_the_paper_says():
    # right + format + ARR: 1 + 1 + (1 + 0.38); right, ARR below 0.8: 1 + 0 + (1 + 0.41); wrong but
    # well-formed: 1 + 0 + 0.95; the last three have no format and no answer: 0.
    assert _scores() == pytest.approx([3.38, 2.41, 1.95, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def actor(tiny_asset):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    actor_config = verl_actor_config("+recipe=avconfuse", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=6")
    # The release's reduction (TRL GRPO: per-response token mean, then the mean over responses).
    assert actor_config.loss_agg_mode == "seq-mean-token-mean"
    path = tiny_asset("models/qwen2")
    torch.manual_seed(0)
    return (
        actor_config,
        AutoTokenizer.from_pretrained(path),
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64),
    )


def _sequence_log_probs(model, tokenizer, temperature):
    """Per response: token log-probs at the response positions, and verl's full-sequence layout."""
    prompt = torch.tensor(tokenizer(PROMPT)["input_ids"])
    per_response, full = [], []
    for text, _, _ in GROUP:
        response = torch.tensor(tokenizer(text)["input_ids"])
        sequence = torch.cat([prompt, response])
        log_softmax = torch.log_softmax(model(sequence[None]).logits[0] / temperature, -1)
        token_lp = log_softmax[:-1].gather(-1, sequence[1:, None]).squeeze(-1)
        per_response.append(token_lp[len(prompt) - 1 :])
        full.append(torch.cat([token_lp, token_lp.new_zeros(1)]))  # position t scores token t+1 (verl's engine)
    return prompt, per_response, full


def test_one_update_raises_every_above_mean_response_and_lowers_every_below_mean_one(actor):
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    actor_config, tokenizer, model = actor
    temperature = 0.9
    scores = torch.tensor(_scores(), dtype=torch.float64)
    prompt, before, full = _sequence_log_probs(model, tokenizer, temperature)
    lengths = [len(lp) for lp in before]
    width = max(lengths)
    response_mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    # The outcome reward sits on each response's last token, as verl's reward loop writes rm_scores.
    token_rewards = torch.zeros(len(GROUP), width, dtype=torch.float64)
    token_rewards[torch.arange(len(GROUP)), torch.tensor(lengths) - 1] = scores
    advantages, _ = get_adv_estimator_fn("grpo")(
        token_level_rewards=token_rewards, response_mask=response_mask, index=np.array(["g"] * len(GROUP))
    )
    above = scores > scores.mean()
    assert above.tolist() == [True, True, True, False, False, False]
    assert (advantages[above][response_mask[above].bool()] > 0).all()
    assert (advantages[~above][response_mask[~above].bool()] < 0).all()

    def nested(values):
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    responses = [torch.tensor(tokenizer(text)["input_ids"]) for text, _, _ in GROUP]
    data = tu.get_tensordict(
        tensor_dict={
            "prompts": nested([prompt] * len(GROUP)),
            "responses": nested(responses),
            "response_mask": nested([torch.ones(n, dtype=torch.long) for n in lengths]),
            "old_log_probs": nested([lp.detach() for lp in before]),  # on-policy: the ratio is 1
            "advantages": nested([advantages[i, :n] for i, n in enumerate(lengths)]),
        },
        non_tensor_dict={"dp_size": 1, "batch_num_tokens": sum(lengths), "global_batch_size": len(GROUP)},
    )
    loss, _ = ppo_loss(copy.deepcopy(actor_config), {"log_probs": nested(full)}, data)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 1e-4 * p.grad
    _, after, _ = _sequence_log_probs(model, tokenizer, temperature)
    change = torch.stack([(a.sum() - b.sum()).detach() for a, b in zip(after, before, strict=True)])
    assert (change[above] > 0).all(), change
    assert (change[~above] < 0).all(), change
