"""Sign of the Ans-CO update through the loss function the actor installs, and the gate's zero gradient.

The loss is :func:`verl_avconfuse.integration.ans_co.make_ans_co_loss_fn` with the settings of
``recipes/avconfuse_ansco.yaml`` and verl's actor config of that recipe, fed the way verl's FSDP engine
feeds it (nested full-sequence ``log_probs`` / ``entropy`` where position t scores token t + 1,
computed with verl's own ``logprobs_from_logits`` / ``entropy_from_logits``); the step is verl's
``build_optimizer`` on the actor's ``optim`` config (AdamW).

Two policies:

- a tabular one: one free logit vector per sample and position, so each sample's parameters are its
  own and a sample's change is its own gradient's. Every position of a sample has the same
  distribution, so the answer uncertainty ``u`` is the same whatever subset of the response counts as
  the answer (the whole ``<answer>`` span or its content tokens): samples 0 and 1 put 2/3 of the mass on
  the sampled token (``u`` = 1/3, under ``u_max`` = 0.75), samples 2 and 3 put almost none on it
  (``u`` > 0.999, gated) but are peaked elsewhere, so their entropy has a non-zero gradient that the
  gate must remove;
- the tiny Qwen2 model (shared parameters), gated or not by ``u_max`` alone (``u`` is in (0, 1) under
  any definition: ``u_max`` = 0 gates every answer, 1 none).
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from omegaconf import OmegaConf

from verl_avconfuse.integration.ans_co import (
    ANS_CO_ENGINE_VENDOR,
    ANSWER_MASK_FIELD,
    NLL_MASK_FIELD,
    UNCERTAINTY_MASK_FIELD,
    assign_global_set_sizes,
    local_set_sizes,
    make_ans_co_loss_fn,
)
from verl_avconfuse.method.answer_mask import answer_token_mask
from verl_avconfuse.settings import AnsCoSettings

from conftest import REPO, verl_actor_config

RESPONSES = [
    "<a-think> I hear a violin. </a-think> <v-think> I see a violin. </v-think>\n<answer> yes </answer>",
    "<a-think> I hear rain. </a-think> <v-think> I see a piano. </v-think>\n<answer> no </answer>",
    "<a-think> I hear a cello. </a-think> <v-think> I see two players. </v-think>\n<answer> two </answer>",
    "<a-think> The audio is silent. </a-think> <v-think> I see a drum. </v-think>\n<answer> no </answer>",
]
UNGATED, GATED = [0, 1], [2, 3]
#: The GRPO advantages of the four responses (any non-zero values: the PG term must not hide the gate).
ADVANTAGES = [1.0, -0.5, 0.5, -1.0]
#: NLL on the right answers (``nll_on: right``): one ungated and one gated sample.
NLL = [1.0, 0.0, 1.0, 0.0]


def _recipe_settings(**changes) -> AnsCoSettings:
    """Ans-CO exactly as recipes/avconfuse_ansco.yaml sets it, with ``changes``."""
    recipe = OmegaConf.to_container(OmegaConf.load(REPO / "recipes" / "avconfuse_ansco.yaml").avconfuse.ans_co)
    return dataclasses.replace(AnsCoSettings(**recipe), **changes)


@pytest.fixture(scope="module")
def setup(tiny_asset):
    from transformers import AutoTokenizer

    actor_config = verl_actor_config(
        "+recipe=avconfuse_ansco", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4"
    )
    path = tiny_asset("models/qwen2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [torch.tensor(tokenizer(f"question {i}?")["input_ids"]) for i in range(len(RESPONSES))]
    responses = [torch.tensor(tokenizer(text)["input_ids"]) for text in RESPONSES]
    answers = [answer_token_mask(r[None], tokenizer)[0] for r in responses]
    assert all(a.any() and not a.all() for a in answers)
    return actor_config, tokenizer, path, prompts, responses, answers


@pytest.fixture(autouse=True)
def _ans_co_engine(monkeypatch):
    """The loss is installed for the Ans-CO engine (verl's EngineRegistry, selected by VERL_ENGINE_VENDOR)."""
    monkeypatch.setenv("VERL_ENGINE_VENDOR", ANS_CO_ENGINE_VENDOR)


def _nested(values):
    return torch.nested.as_nested_tensor(values, layout=torch.jagged)


def _actor_batch(prompts, responses, answers, rows):
    """The micro-batch fields verl's ``ppo_loss`` and the Ans-CO loss read (on-policy: old = current)."""
    from verl.utils import tensordict_utils as tu

    n = [len(responses[i]) for i in rows]
    tensors = {
        "prompts": _nested([prompts[i] for i in rows]),
        "responses": _nested([responses[i] for i in rows]),
        "response_mask": _nested([torch.ones(k, dtype=torch.long) for k in n]),
        "advantages": _nested(
            [torch.full((k,), ADVANTAGES[i], dtype=torch.float64) for i, k in zip(rows, n, strict=True)]
        ),
        ANSWER_MASK_FIELD: _nested([answers[i].long() for i in rows]),
        # u over the whole answer span, not only its content: in the tabular policy every position of a sample
        # has the same distribution, so u is the same either way; on the real model u_max (0 or 1) decides.
        UNCERTAINTY_MASK_FIELD: _nested([answers[i].long() for i in rows]),
        NLL_MASK_FIELD: torch.tensor([NLL[i] for i in rows]),
    }
    non_tensors = {"dp_size": 1, "batch_num_tokens": sum(n), "global_batch_size": len(rows)}
    return tu.get_tensordict(tensor_dict=tensors, non_tensor_dict=non_tensors)


def _model_output(logits_per_sample, sequences, data, entropy_leaves=None):
    """verl's engine outputs from full-sequence logits: log-prob of token t + 1 and entropy at position t.

    Also writes the on-policy ``old_log_probs`` (the response part, detached) into ``data``. With a list
    ``entropy_leaves``, the entropies are detached leaves appended to it, so their ``.grad`` is
    d loss / d H_t (and no gradient reaches the logits through the entropy).
    """
    from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

    log_probs, entropies, old = [], [], []
    prompt_lens = data["prompts"].offsets().diff().tolist()
    for logits, sequence, prompt_len in zip(logits_per_sample, sequences, prompt_lens, strict=True):
        rolled = torch.roll(sequence, shifts=-1)  # as verl's forward: position t is scored on token t + 1
        log_probs.append(logprobs_from_logits(logits, rolled))
        old.append(log_probs[-1][prompt_len - 1 : -1].detach())
        entropy = entropy_from_logits(logits)
        if entropy_leaves is not None:
            entropy = entropy.detach().requires_grad_()
            entropy_leaves.append(entropy)
        entropies.append(entropy)
    data["old_log_probs"] = _nested(old)
    return {"log_probs": _nested(log_probs), "entropy": _nested(entropies)}


def _answer_entropy(logits, prompt_len, answer):
    """Mean entropy at the answer tokens' predictions (response token t is predicted at prompt_len - 1 + t)."""
    from verl.utils.torch_functional import entropy_from_logits

    positions = prompt_len - 1 + answer.nonzero().squeeze(-1)
    return entropy_from_logits(logits[positions].detach()).mean().item()


def _loss(actor_config, settings, vocab_size, model_output, data):
    loss_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), settings, vocab_size)
    # what the Ans-CO engine does before verl splits a mini-batch: count its sample sets (one micro-batch here)
    assign_global_set_sizes(data, local_set_sizes(data))
    return loss_fn(model_output=model_output, data=data)


# ------------------------------------------------------------------------------------ a tabular policy

#: Sampled-token logit of an ungated sample: with V - 1 others at 0 and one distractor at 1, the sampled
#: token holds 2V / (3V - 2 + e) ~ 2/3 of the mass, so u ~ 1/3.
DISTRACTOR_LOGIT = 1.0


def _tabular_logits(tokenizer, prompts, responses):
    """One (L, V) leaf per sample: the same distribution at every position, shifted onto the next token."""
    vocab = len(tokenizer)
    leaves = []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        sequence = torch.cat([prompt, response])
        target = torch.roll(sequence, shifts=-1)
        logits = torch.zeros(len(sequence), vocab, dtype=torch.float64)
        rows = torch.arange(len(sequence))
        if i in UNGATED:
            logits[rows, (target + 1) % vocab] = DISTRACTOR_LOGIT
            logits[rows, target] = math.log(2 * vocab)
        else:  # peaked on another token: the sampled one is nearly impossible, the entropy far from its max
            logits[rows, (target + 1) % vocab] = math.log(vocab) + 2.0
            logits[rows, target] = -2.0
        leaves.append(logits.requires_grad_())
    return leaves


def test_the_tabular_samples_sit_on_the_two_sides_of_the_recipes_gate(setup):
    actor_config, tokenizer, _, prompts, responses, answers = setup
    settings = _recipe_settings()
    assert (settings.lam, settings.u_max, settings.uncertainty) == (0.5, 0.75, "answer_prob")
    leaves = _tabular_logits(tokenizer, prompts, responses)
    sequences = [torch.cat(pair) for pair in zip(prompts, responses, strict=True)]
    data = _actor_batch(prompts, responses, answers, range(4))
    _, metrics = _loss(actor_config, settings, len(tokenizer), _model_output(leaves, sequences, data), data)
    assert metrics["ansco/gated_fraction"].aggregate() == pytest.approx(0.5)
    vocab = len(tokenizer)
    u_ungated = 1 - 2 * vocab / (3 * vocab - 2 + math.e)  # the same at every token of the response
    u_gated = 1 - math.exp(-2.0) / (math.exp(-2.0) + vocab - 2 + vocab * math.exp(2.0))
    assert u_ungated < settings.u_max < u_gated
    assert metrics["ansco/u_mean"].aggregate() == pytest.approx((u_ungated + u_gated) / 2, rel=1e-9)


def test_gated_samples_get_no_entropy_gradient_and_ungated_ones_do(setup):
    """Gradient at the logits of each sample: Ans-CO with the recipe's lam vs the same loss with lam = 0.

    Policy gradient and NLL terms are on (non-zero advantages, NLL on samples 0 and 2), so the gated
    samples do get a gradient, exactly the one they get without the entropy term.
    """
    actor_config, tokenizer, _, prompts, responses, answers = setup
    sequences = [torch.cat(pair) for pair in zip(prompts, responses, strict=True)]
    data = _actor_batch(prompts, responses, answers, range(4))
    grads, entropy_grads = {}, {}
    for lam in (0.5, 0.0):
        leaves = _tabular_logits(tokenizer, prompts, responses)
        loss, _ = _loss(
            actor_config, _recipe_settings(lam=lam), len(tokenizer), _model_output(leaves, sequences, data), data
        )
        loss.backward()
        grads[lam] = [leaf.grad for leaf in leaves]
        entropy = []
        loss, _ = _loss(
            actor_config,
            _recipe_settings(lam=lam),
            len(tokenizer),
            _model_output(_tabular_logits(tokenizer, prompts, responses), sequences, data, entropy),
            data,
        )
        loss.backward()
        entropy_grads[lam] = [leaf.grad for leaf in entropy]
    for i in GATED:
        assert grads[0.5][i].abs().sum() > 0  # PG (and for sample 2, NLL) still reach it
        assert torch.equal(grads[0.5][i], grads[0.0][i]), i
        assert torch.count_nonzero(entropy_grads[0.5][i]) == 0, i
    for i in UNGATED:
        answer_positions = len(prompts[i]) - 1 + answers[i].nonzero().squeeze(-1)
        # d loss / d H_t = lam / (|N_i| * batch) at each answer token, 0 elsewhere
        expected = torch.zeros(len(sequences[i]), dtype=torch.float64)
        expected[answer_positions] = 0.5 / (int(answers[i].sum()) * 4)
        assert torch.allclose(entropy_grads[0.5][i], expected, rtol=1e-12, atol=0), i
        assert not torch.equal(grads[0.5][i][answer_positions], grads[0.0][i][answer_positions]), i


def test_one_optimizer_step_lowers_the_ungated_answer_entropy_and_leaves_gated_parameters_as_without_it(setup):
    """One AdamW step (the actor's optim config) from the same start, with the entropy term and without.

    AdamW is elementwise, so a gated sample's parameters, whose gradient is the same either way, end
    bit-identical; an ungated sample's answer entropy ends lower with the term than without it.
    """
    from verl.workers.config.optimizer import build_optimizer

    actor_config, tokenizer, _, prompts, responses, answers = setup
    sequences = [torch.cat(pair) for pair in zip(prompts, responses, strict=True)]
    data = _actor_batch(prompts, responses, answers, range(4))
    after, entropy_after = {}, {}
    for lam in (0.5, 0.0):
        leaves = _tabular_logits(tokenizer, prompts, responses)
        start = [_answer_entropy(leaf, len(p), a) for leaf, p, a in zip(leaves, prompts, answers, strict=True)]
        optimizer = build_optimizer(leaves, dataclasses.replace(actor_config.optim, lr=1e-2))
        loss, _ = _loss(
            actor_config, _recipe_settings(lam=lam), len(tokenizer), _model_output(leaves, sequences, data), data
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after[lam] = [leaf.detach().clone() for leaf in leaves]
        entropy_after[lam] = [
            _answer_entropy(leaf, len(p), a) for leaf, p, a in zip(leaves, prompts, answers, strict=True)
        ]
    for i in UNGATED:
        assert entropy_after[0.5][i] < start[i], (i, start[i], entropy_after[0.5][i])
        assert entropy_after[0.5][i] < entropy_after[0.0][i], i
    for i in GATED:
        assert torch.equal(after[0.5][i], after[0.0][i]), i


# ---------------------------------------------------------------------- the tiny Qwen2 model, gate by u_max


def _model_logits(model, prompts, responses, rows):
    sequences = [torch.cat([prompts[i], responses[i]]) for i in rows]
    return [model(s[None]).logits[0] for s in sequences], sequences


def test_on_a_real_model_a_step_lowers_the_answer_entropy_and_a_gated_batch_gets_no_gradient(setup):
    """Pure L_OP's entropy term (no PG, no NLL): u_max = 1 gates no answer, u_max = 0 gates every one."""
    from transformers import AutoModelForCausalLM
    from verl.workers.config.optimizer import build_optimizer

    actor_config, tokenizer, path, prompts, responses, answers = setup
    rows = list(range(4))
    data = _actor_batch(prompts, responses, answers, rows)
    data[NLL_MASK_FIELD] = torch.zeros(len(rows))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)

    def mean_answer_entropy():
        with torch.no_grad():
            logits, _ = _model_logits(model, prompts, responses, rows)
        return sum(_answer_entropy(x, len(prompts[i]), answers[i]) for i, x in zip(rows, logits, strict=True)) / len(
            rows
        )

    # every answer gated: the loss is a graph-connected 0 and no parameter gets a gradient
    logits, sequences = _model_logits(model, prompts, responses, rows)
    settings = _recipe_settings(pg_coef=0.0, u_max=0.0)
    loss, metrics = _loss(actor_config, settings, len(tokenizer), _model_output(logits, sequences, data), data)
    assert metrics["ansco/gated_fraction"].aggregate() == 1.0
    model.zero_grad()
    loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())

    # no answer gated: one AdamW step lowers the mean answer entropy
    before = mean_answer_entropy()
    optimizer = build_optimizer(model.parameters(), dataclasses.replace(actor_config.optim, lr=1e-3))
    logits, sequences = _model_logits(model, prompts, responses, rows)
    settings = _recipe_settings(pg_coef=0.0, u_max=1.0)
    loss, metrics = _loss(actor_config, settings, len(tokenizer), _model_output(logits, sequences, data), data)
    assert metrics["ansco/gated_fraction"].aggregate() == 0.0
    optimizer.zero_grad()
    loss.backward()
    assert any(torch.count_nonzero(p.grad) > 0 for p in model.parameters())
    optimizer.step()
    after = mean_answer_entropy()
    assert after < before, (before, after)
