"""Ans-CO's verl loss function: the gradient of a plain reference implementation, micro-batch invariant.

The micro-batches are built the way verl's FSDP engine hands them to a loss function: nested
full-sequence ``log_probs`` / ``entropy`` (position t scores token t+1), nested ``prompts`` /
``responses`` / ``response_mask`` / ``old_log_probs`` / ``advantages``, the non-tensor
``dp_size`` / ``batch_num_tokens`` / ``global_batch_size`` verl assigns, and the mini-batch's Ans-CO
set sizes the Ans-CO engine assigns.
"""

from __future__ import annotations

import copy

import pytest
import torch

from verl_avconfuse.integration.ans_co import (
    ANS_CO_ENGINE_VENDOR,
    ANSWER_ENTROPY_ONLY,
    ANSWER_MASK_FIELD,
    NLL_MASK_FIELD,
    UNCERTAINTY_MASK_FIELD,
    ans_co_ppo_loss,
    assign_global_set_sizes,
    local_set_sizes,
    make_ans_co_loss_fn,
)
from verl_avconfuse.method.answer_mask import answer_token_mask
from verl_avconfuse.settings import AnsCoSettings

from conftest import verl_actor_config

RESPONSES = [
    "<a-think> I hear a violin. </a-think> <v-think> I see a violin. </v-think>\n<answer> yes </answer>",
    "<a-think> I hear rain. </a-think> <v-think> I see a piano. </v-think>\n<answer> no </answer>",
    "<a-think> I hear a cello and a flute. </a-think> <v-think> I see two players. </v-think>\n<answer> two </answer>",
    "I hear something but I do not know",  # no answer block: no entropy term
    # an answer block with no content tokens: its 6 tag tokens are N, U is empty, so it is gated by rule
    "<a-think> I hear a drum. </a-think> <v-think> I see a drum. </v-think>\n<answer></answer>",
]
NLL = [1.0, 0.0, 1.0, 1.0, 1.0]


@pytest.fixture(autouse=True)
def ans_co_engine_selected(monkeypatch):
    # what the avconfuse_ansco recipe sets for every Ray worker
    monkeypatch.setenv("VERL_ENGINE_VENDOR", ANS_CO_ENGINE_VENDOR)


@pytest.fixture(scope="module")
def setup(tiny_asset):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    actor_config = verl_actor_config(
        "+recipe=avconfuse_ansco", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4"
    )
    path = tiny_asset("models/qwen2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    return actor_config, tokenizer, model


def _micro_batch(tokenizer, model, rows, global_batch_size, temperature=0.9, mini_batch=None):
    """(model_output, data) for samples ``rows`` as verl's FSDP engine hands them to a loss function.

    ``mini_batch``: the rows of the whole mini-batch (default ``rows``), whose set sizes the engine records.
    """
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    prompts, responses, lp_full, ent_full, answer_masks = [], [], [], [], []
    for i in rows:
        prompt = torch.tensor(tokenizer(f"question {i}?")["input_ids"])
        response = torch.tensor(tokenizer(RESPONSES[i])["input_ids"])
        sequence = torch.cat([prompt, response])
        logits = model(sequence[None]).logits[0] / temperature
        log_softmax = torch.log_softmax(logits, -1)
        token_lp = log_softmax[:-1].gather(-1, sequence[1:, None]).squeeze(-1)
        lp_full.append(torch.cat([token_lp, token_lp.new_zeros(1)]))  # position t scores token t+1
        ent_full.append(-(log_softmax.exp() * log_softmax).sum(-1))
        prompts.append(prompt)
        responses.append(response)
        answer_masks.append(answer_token_mask(response[None], tokenizer)[0].long())

    def nested(values):
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    model_output = {"log_probs": nested(lp_full), "entropy": nested(ent_full)}
    tensors, non_tensors = _loss_fields(rows, tokenizer, prompts, responses, answer_masks, global_batch_size)
    data = tu.get_tensordict(tensor_dict=tensors, non_tensor_dict=non_tensors)
    assert isinstance(data, TensorDict)
    assign_global_set_sizes(data, _set_sizes(tokenizer, mini_batch or rows))
    return model_output, data, responses, answer_masks


def _set_sizes(tokenizer, rows):
    responses = [torch.tensor(tokenizer(RESPONSES[i])["input_ids"]) for i in rows]
    masks = [answer_token_mask(r[None], tokenizer)[0].long() for r in responses]
    tensors, _ = _loss_fields(rows, tokenizer, [r[:1] for r in responses], responses, masks, len(rows))
    from verl.utils import tensordict_utils as tu

    return local_set_sizes(tu.get_tensordict(tensor_dict=tensors, non_tensor_dict={}))


def _loss_fields(rows, tokenizer, prompts, responses, answer_masks, global_batch_size):
    """The micro-batch fields verl's ``ppo_loss`` and the Ans-CO loss read (zero advantages)."""

    def nested(values):
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    tensors = {
        "prompts": nested(prompts),
        "responses": nested(responses),
        "response_mask": nested([torch.ones(len(r), dtype=torch.long) for r in responses]),
        "old_log_probs": nested([torch.zeros(len(r), dtype=torch.float64) for r in responses]),
        "advantages": nested([torch.zeros(len(r), dtype=torch.float64) for r in responses]),
        ANSWER_MASK_FIELD: nested(answer_masks),
        UNCERTAINTY_MASK_FIELD: nested(
            [answer_token_mask(r[None], tokenizer, span="content")[0].long() for r in responses]
        ),
        NLL_MASK_FIELD: torch.tensor([NLL[i] for i in rows]),
    }
    non_tensors = {
        "dp_size": 1,
        "batch_num_tokens": sum(len(r) for r in responses),
        "global_batch_size": global_batch_size,
    }
    return tensors, non_tensors


def _reference_loss(tokenizer, model, rows, settings, temperature=0.9):
    """L_OP written plainly: per-sample token means, lam gated on u (content tokens); the NLL and entropy sums
    divided by the number of samples (``normalize_by: batch``) or by the sizes of their own sets (``sets``:
    the samples with NLL on, the samples with answer tokens)."""
    nll_total, entropy_total, n_nll, n_answer = 0.0, 0.0, 0, 0
    for i in rows:
        prompt = torch.tensor(tokenizer(f"question {i}?")["input_ids"])
        response = torch.tensor(tokenizer(RESPONSES[i])["input_ids"])
        sequence = torch.cat([prompt, response])
        logits = model(sequence[None]).logits[0, len(prompt) - 1 : -1] / temperature
        log_softmax = torch.log_softmax(logits, -1)
        token_lp = log_softmax.gather(-1, response[:, None]).squeeze(-1)
        nll = -token_lp.mean()
        answer = answer_token_mask(response[None], tokenizer)[0]
        content = answer_token_mask(response[None], tokenizer, span="content")[0]
        nll_total = nll_total + NLL[i] * nll
        n_nll += int(NLL[i])
        if answer.any():
            n_answer += 1
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)[answer].mean()
            u = 1 - torch.exp(token_lp[content].mean().detach())
            lam = settings.lam if content.any() and u <= settings.u_max else 0.0
            entropy_total = entropy_total + lam * entropy
    if settings.normalize_by == "sets":
        return nll_total / n_nll + entropy_total / n_answer
    return (nll_total + entropy_total) / len(rows)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def test_gradient_equals_autograd_of_a_plain_reference(setup):
    actor_config, tokenizer, model = setup
    settings = AnsCoSettings(enable=True, pg_coef=0.0)
    rows = [0, 1, 2, 3]
    model_output, data, _, answer_masks = _micro_batch(tokenizer, model, rows, global_batch_size=len(rows))
    assert answer_masks[3].sum() == 0 and all(m.sum() > 0 for m in answer_masks[:3])
    loss, metrics = ans_co_ppo_loss(
        copy.deepcopy(actor_config), model_output, data, settings=settings, vocab_size=len(tokenizer)
    )
    ours = _grads(model, loss)
    reference = _reference_loss(tokenizer, model, rows, settings)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    theirs = _grads(model, reference)
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ours, theirs, strict=True))
    expected, _ = _reference_metrics(tokenizer, model, rows, settings)
    for key, value in expected.items():
        assert metrics[key].aggregate() == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_micro_batches_add_up_to_the_mini_batch(setup):
    actor_config, tokenizer, model = setup
    settings = AnsCoSettings(enable=True, pg_coef=0.0)
    full_output, full_data, _, _ = _micro_batch(tokenizer, model, [0, 1, 2, 3], global_batch_size=4)
    full_loss, _ = ans_co_ppo_loss(
        copy.deepcopy(actor_config), full_output, full_data, settings=settings, vocab_size=len(tokenizer)
    )
    full = _grads(model, full_loss)
    accumulated = None
    for rows in ([0, 1], [2, 3]):  # gradient accumulation over two micro-batches of one mini-batch
        output, data, _, _ = _micro_batch(tokenizer, model, rows, global_batch_size=4)
        loss, _ = ans_co_ppo_loss(
            copy.deepcopy(actor_config), output, data, settings=settings, vocab_size=len(tokenizer)
        )
        grads = _grads(model, loss)
        accumulated = grads if accumulated is None else [a + g for a, g in zip(accumulated, grads, strict=True)]
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(full, accumulated, strict=True))


def test_sets_normalisation_divides_each_sum_by_its_own_set_size(setup):
    # rows 0, 1, 2: NLL on 0 and 2 (|S_nll| = 2), answers in all three (|S_ans| = 3), 3 samples
    actor_config, tokenizer, model = setup
    rows = [0, 1, 2]
    sets = AnsCoSettings(enable=True, pg_coef=0.0, normalize_by="sets")
    batch = AnsCoSettings(enable=True, pg_coef=0.0)
    output, data, _, _ = _micro_batch(tokenizer, model, rows, global_batch_size=3)
    loss, _ = ans_co_ppo_loss(copy.deepcopy(actor_config), output, data, settings=sets, vocab_size=len(tokenizer))
    reference = _reference_loss(tokenizer, model, rows, sets)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    theirs = _grads(model, reference)
    ours = _grads(model, loss)
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(ours, theirs, strict=True))
    # the two settings differ here: NLL over 2 instead of 3 (the entropy's 3 is the batch's 3)
    assert abs(loss.item() - _reference_loss(tokenizer, model, rows, batch).item()) > 1e-3
    # micro-batches [0, 1] + [2] of the mini-batch [0, 1, 2] add up to it: the set sizes are the mini-batch's
    accumulated = None
    for part in ([0, 1], [2]):
        output, data, _, _ = _micro_batch(tokenizer, model, part, global_batch_size=3, mini_batch=rows)
        part_loss, _ = ans_co_ppo_loss(
            copy.deepcopy(actor_config), output, data, settings=sets, vocab_size=len(tokenizer)
        )
        grads = _grads(model, part_loss)
        accumulated = grads if accumulated is None else [a + g for a, g in zip(accumulated, grads, strict=True)]
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(theirs, accumulated, strict=True))


def test_policy_gradient_term_is_verls_own_plus_ans_co(setup):
    from verl.workers.utils.losses import ppo_loss

    actor_config, tokenizer, model = setup
    output, data, _, _ = _micro_batch(tokenizer, model, [0, 1, 2], global_batch_size=3)
    pg_only, _ = ppo_loss(copy.deepcopy(actor_config), output, data)
    pure, _ = ans_co_ppo_loss(
        copy.deepcopy(actor_config),
        output,
        data,
        settings=AnsCoSettings(enable=True, pg_coef=0.0),
        vocab_size=len(tokenizer),
    )
    both, _ = ans_co_ppo_loss(
        copy.deepcopy(actor_config),
        output,
        data,
        settings=AnsCoSettings(enable=True, pg_coef=1.0, ansco_coef=2.0),
        vocab_size=len(tokenizer),
    )
    assert both.item() == pytest.approx(pg_only.item() + 2.0 * pure.item(), rel=1e-10)


def test_lam_zero_is_pure_nll_and_needs_no_entropy(setup):
    actor_config, tokenizer, model = setup
    output, data, _, _ = _micro_batch(tokenizer, model, [0, 2], global_batch_size=2)
    without_entropy = {"log_probs": output["log_probs"]}
    settings = AnsCoSettings(enable=True, pg_coef=0.0, lam=0.0)
    loss, metrics = ans_co_ppo_loss(
        copy.deepcopy(actor_config), without_entropy, data, settings=settings, vocab_size=len(tokenizer)
    )
    assert loss.item() == pytest.approx(_reference_loss(tokenizer, model, [0, 2], settings).item(), rel=1e-10)
    with pytest.raises(ValueError, match="calculate_entropy"):
        ans_co_ppo_loss(
            copy.deepcopy(actor_config), without_entropy, data, settings=AnsCoSettings(enable=True), vocab_size=10
        )


# ---------------------------------------------- the actor forward with the entropy at the answer tokens only


def _engine_micro_batch(tokenizer, model, rows, *, use_remove_padding, temperature):
    """(engine, raw model output, output_args, micro_batch) as verl's FSDP forward_step has them."""
    from types import SimpleNamespace

    from verl.utils import tensordict_utils as tu
    from verl.utils import torch_functional as verl_F
    from verl.workers.engine.fsdp import transformer_impl

    from verl_avconfuse.integration.ans_co_engine import AnsCoFSDPEngineWithLMHead

    # the real class without its FSDP setup: prepare_model_outputs reads only these attributes
    engine = AnsCoFSDPEngineWithLMHead.__new__(AnsCoFSDPEngineWithLMHead)
    assert isinstance(engine, transformer_impl.FSDPEngineWithLMHead)
    engine.engine_config = SimpleNamespace(entropy_checkpointing=False, entropy_from_logits_with_chunking=False)
    engine.compute_entropy_from_logits = verl_F.entropy_from_logits
    engine.use_ulysses_sp = False

    prompts = [torch.tensor(tokenizer(f"question {i}?")["input_ids"]) for i in rows]
    responses = [torch.tensor(tokenizer(RESPONSES[i])["input_ids"]) for i in rows]
    sequences = [torch.cat([p, r]) for p, r in zip(prompts, responses, strict=True)]
    logits = [model(s[None]).logits[0] for s in sequences]  # one sequence at a time: no cross-attention

    def nested(values):
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    input_ids = nested(sequences)
    rolled = torch.roll(input_ids.values(), shifts=-1)
    per_sample = torch.full((len(rows),), float(temperature), dtype=torch.float32)  # verl's dtype
    if use_remove_padding:
        output = SimpleNamespace(logits=torch.cat(logits)[None])  # (1, total_nnz, V)
        lengths = torch.tensor([len(s) for s in sequences])
        output_args = {
            "temperature_is_one": False,
            "input_ids_rmpad_rolled": rolled,
            "temperature_rmpad": torch.repeat_interleave(per_sample, lengths),
            "pad_size": 0,
        }
        temperature_field = float(temperature)
    else:
        width = max(len(s) for s in sequences)
        output = SimpleNamespace(
            logits=torch.stack([torch.nn.functional.pad(x, (0, 0, 0, width - len(x))) for x in logits])
        )
        output_args = {"temperature_is_one": False, "input_ids_rmpad_rolled": rolled, "temperature": per_sample}
        temperature_field = per_sample  # one temperature per sample, as verl also allows
    answer_masks = [answer_token_mask(r[None], tokenizer)[0].long() for r in responses]
    tensors, non_tensors = _loss_fields(rows, tokenizer, prompts, responses, answer_masks, len(rows))
    micro_batch = tu.get_tensordict(
        tensor_dict={"input_ids": input_ids, **tensors},
        non_tensor_dict={**non_tensors, "use_remove_padding": use_remove_padding, "calculate_entropy": True},
    )
    if isinstance(temperature_field, float):
        tu.assign_non_tensor(micro_batch, temperature=temperature_field)
    else:
        micro_batch["temperature"] = temperature_field
    assign_global_set_sizes(micro_batch, local_set_sizes(micro_batch))
    return engine, output, output_args, micro_batch


@pytest.mark.parametrize("use_remove_padding", [True, False], ids=["packed", "padded"])
def test_answer_only_entropy_through_verls_forward_matches_the_plain_reference(setup, use_remove_padding):
    """The Ans-CO engine's prepare_model_outputs (verl's, minus the entropy), then the installed loss: the
    plain reference's gradient."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import no_padding_2_padding

    actor_config, tokenizer, model = setup
    settings = AnsCoSettings(enable=True, pg_coef=0.0)
    rows = [0, 1, 2, 3]
    engine, output, output_args, micro_batch = _engine_micro_batch(
        tokenizer,
        model,
        rows,
        use_remove_padding=use_remove_padding,
        temperature=0.75,  # exact in float32
    )
    loss_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), settings, len(tokenizer))
    full_fn = make_ans_co_loss_fn(
        copy.deepcopy(actor_config), AnsCoSettings(enable=True, pg_coef=0.0, entropy_positions="all"), len(tokenizer)
    )
    assert getattr(loss_fn, ANSWER_ENTROPY_ONLY) and not getattr(full_fn, ANSWER_ENTROPY_ONLY)

    answer_only = engine.prepare_model_outputs(output, output_args, micro_batch, loss_fn)
    full = engine.prepare_model_outputs(output, output_args, micro_batch, full_fn)
    assert tu.get_non_tensor_data(micro_batch, "calculate_entropy", None) is True  # the caller's batch is untouched

    # log-probs are verl's; the entropy is verl's at the answer tokens and 0 everywhere else
    assert torch.equal(answer_only["log_probs"].values(), full["log_probs"].values())
    answer = micro_batch.select(ANSWER_MASK_FIELD).to_padded_tensor()[ANSWER_MASK_FIELD].bool()
    ours = no_padding_2_padding(answer_only["entropy"], micro_batch)
    verls = no_padding_2_padding(full["entropy"], micro_batch)
    assert answer.sum() > 0 and torch.allclose(ours[answer], verls[answer], rtol=1e-12, atol=1e-12)
    inside = micro_batch.select("response_mask").to_padded_tensor()["response_mask"].bool()
    assert ours[~answer].abs().max() == 0 and verls[inside & ~answer].min() > 0
    assert (answer_only["entropy"].values() != 0).sum() == answer.sum()

    loss, _ = loss_fn(model_output=answer_only, data=micro_batch)
    reference = _reference_loss(tokenizer, model, rows, settings, temperature=0.75)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    expected = torch.autograd.grad(reference, list(model.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(grads, expected, strict=True))


def test_answer_only_entropy_leaves_every_other_forward_to_verl(setup):
    """Forward-only log-probs (no loss function), no answer mask, or a full-entropy loss: verl's output."""
    actor_config, tokenizer, model = setup
    engine, output, output_args, micro_batch = _engine_micro_batch(
        tokenizer, model, [0, 2], use_remove_padding=True, temperature=1.0
    )
    loss_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), AnsCoSettings(enable=True), len(tokenizer))
    without_mask = micro_batch.exclude(ANSWER_MASK_FIELD)
    for batch, fn in ((micro_batch, None), (without_mask, loss_fn)):
        out = engine.prepare_model_outputs(output, output_args, batch, fn)
        assert (out["entropy"].values() > 0).all()  # every position, as verl computes it
    # an entropy bonus in verl's PPO term needs every position: the loss keeps verl's entropy then
    bonus = copy.deepcopy(actor_config)
    object.__setattr__(bonus, "entropy_coeff", 0.01)
    assert not getattr(make_ans_co_loss_fn(bonus, AnsCoSettings(enable=True), len(tokenizer)), ANSWER_ENTROPY_ONLY)


@pytest.mark.parametrize("use_remove_padding", [True, False], ids=["packed", "padded"])
def test_answer_only_entropy_in_float32_equals_verls_full_entropy_path_with_gated_and_unanswered(
    setup, tiny_asset, use_remove_padding
):
    """float32, a batch of: two answers Ans-CO sharpens (u <= u_max = 1 always), one response without an
    answer block and one answer with no content tokens (gated by rule). The answer-only engine's loss and
    gradient are those of verl's full-sequence entropy path to 1e-6; by hand, only the two ungated answers
    add lam x their mean answer entropy, and 1 of the 3 answered samples is gated. The answer rows' entropy
    reaches the logits as a sparse gradient (no second dense (tokens, V) gradient)."""
    from transformers import AutoModelForCausalLM

    actor_config, tokenizer, _ = setup
    model = AutoModelForCausalLM.from_pretrained(tiny_asset("models/qwen2"), dtype=torch.float32)
    rows = [0, 2, 3, 4]  # 0, 2: answers with content; 3: no answer block; 4: "<answer></answer>"
    settings = AnsCoSettings(enable=True, pg_coef=0.0, u_max=1.0)
    engine, output, output_args, micro_batch = _engine_micro_batch(
        tokenizer, model, rows, use_remove_padding=use_remove_padding, temperature=0.75
    )
    answer_masks = micro_batch.select(ANSWER_MASK_FIELD).to_padded_tensor()[ANSWER_MASK_FIELD]
    content_masks = micro_batch.select(UNCERTAINTY_MASK_FIELD).to_padded_tensor()[UNCERTAINTY_MASK_FIELD]
    assert answer_masks.sum(-1).tolist()[2:] == [0, 6] and content_masks[3].sum() == 0  # the masks by hand
    answer_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), settings, len(tokenizer))
    full_settings = AnsCoSettings(enable=True, pg_coef=0.0, u_max=1.0, entropy_positions="all")
    full_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), full_settings, len(tokenizer))
    answer_output = engine.prepare_model_outputs(output, output_args, micro_batch, answer_fn)
    full_output = engine.prepare_model_outputs(output, output_args, micro_batch, full_fn)

    (entropy_grad,) = torch.autograd.grad(answer_output["entropy"].values().sum(), output.logits, retain_graph=True)
    assert entropy_grad.layout == torch.sparse_coo and entropy_grad._nnz() == answer_masks.sum()

    params = list(model.parameters())
    answer_loss, metrics = answer_fn(model_output=answer_output, data=micro_batch)
    full_loss, _ = full_fn(model_output=full_output, data=micro_batch)
    assert answer_loss.item() == pytest.approx(full_loss.item(), rel=1e-6)
    answer_grads = torch.autograd.grad(answer_loss, params, retain_graph=True)
    full_grads = torch.autograd.grad(full_loss, params, retain_graph=True)
    for ours, verls in zip(answer_grads, full_grads, strict=True):
        torch.testing.assert_close(ours, verls, rtol=1e-6, atol=1e-6)

    # by hand: L = (sum_i NLL_i + lam * (Hbar_0 + Hbar_2)) / 4, the gated and the unanswered add no entropy
    nll_sum, answer_entropies = 0.0, []
    for i in rows:
        prompt = torch.tensor(tokenizer(f"question {i}?")["input_ids"])
        response = torch.tensor(tokenizer(RESPONSES[i])["input_ids"])
        with torch.no_grad():
            logits = model(torch.cat([prompt, response])[None]).logits[0, len(prompt) - 1 : -1].double() / 0.75
        log_softmax = torch.log_softmax(logits, -1)
        nll_sum += NLL[i] * -log_softmax.gather(-1, response[:, None]).mean().item()
        answer = answer_token_mask(response[None], tokenizer)[0]
        answer_entropies.append(-(log_softmax.exp() * log_softmax).sum(-1)[answer].mean().item() if answer.any() else 0)
    expected = (nll_sum + settings.lam * (answer_entropies[0] + answer_entropies[1])) / len(rows)
    assert answer_entropies[3] > 0  # the gated answer has an entropy; the gate is what leaves it out
    assert answer_loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["ansco/gated_fraction"].aggregate() == pytest.approx(1 / 3)


# ---------------------------------------------- metrics: the mini-batch's values for any split, through verl's reduction


def _reference_metrics(tokenizer, model, rows, settings, temperature=0.9):
    """The ansco/* values of one mini-batch, written plainly from the definitions (docs/ans_co.md)."""
    nll, entropy, us, gated, answered = [], [], [], 0, 0
    loss = 0.0
    for i in rows:
        prompt = torch.tensor(tokenizer(f"question {i}?")["input_ids"])
        response = torch.tensor(tokenizer(RESPONSES[i])["input_ids"])
        logits = model(torch.cat([prompt, response])[None]).logits[0, len(prompt) - 1 : -1] / temperature
        log_softmax = torch.log_softmax(logits, -1)
        token_lp = log_softmax.gather(-1, response[:, None]).squeeze(-1)
        answer = answer_token_mask(response[None], tokenizer)[0]
        content = answer_token_mask(response[None], tokenizer, span="content")[0]
        if NLL[i]:
            nll.append(-token_lp.mean().item())
            loss += nll[-1]
        if answer.any():
            answered += 1
            h = -(log_softmax.exp() * log_softmax).sum(-1)[answer].mean().item()
            entropy.append(h)
            u = 1 - torch.exp(token_lp[content].mean()).item()
            us.append(u)
            if u > settings.u_max:
                gated += 1
            else:
                loss += settings.lam * h
    return {
        "ansco/loss": loss / len(rows),
        "ansco/nll": sum(nll) / len(nll),
        "ansco/answer_entropy": sum(entropy) / len(entropy),
        "ansco/u_mean": sum(us) / len(us),
        "ansco/gated_fraction": gated / answered,
    }, us


def _reduced_as_verl_does(per_rank_micro_metrics):
    """verl's reduction of a loss function's metrics for one mini-batch: ``append_to_dict`` over the
    micro-batches (engine/utils.postprocess_batch_func), then ``Metric.aggregate_dp`` over the ranks
    (engine_workers.update_actor)."""
    from verl.utils.metric import Metric
    from verl.utils.py_functional import append_to_dict

    per_rank = []
    for micro_metrics in per_rank_micro_metrics:
        aggregated: dict = {}
        for metrics in micro_metrics:
            append_to_dict(aggregated, metrics)
        per_rank.append(aggregated)
    return {key: float(Metric.aggregate_dp([rank[key] for rank in per_rank])) for key in per_rank[0]}


@pytest.mark.parametrize("n_micro", [1, 2, 4])
def test_metrics_are_the_mini_batch_values_for_any_micro_batch_split(setup, n_micro):
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import prepare_micro_batches

    actor_config, tokenizer, model = setup
    rows = [0, 1, 2, 3]
    _, us = _reference_metrics(tokenizer, model, rows, AnsCoSettings(enable=True))
    # a threshold between the answered samples' u, so the gate fires for some and not others
    settings = AnsCoSettings(enable=True, pg_coef=0.0, u_max=sorted(us)[1])
    expected, _ = _reference_metrics(tokenizer, model, rows, settings)
    assert 0.0 < expected["ansco/gated_fraction"] < 1.0  # precondition: a mix of gated and not

    _, mini_batch, _, _ = _micro_batch(tokenizer, model, rows, global_batch_size=len(rows))
    tu.assign_non_tensor(mini_batch, use_dynamic_bsz=False, micro_batch_size_per_gpu=len(rows) // n_micro)
    micro_batches, _ = prepare_micro_batches(mini_batch)  # verl's own split
    assert len(micro_batches) == n_micro
    loss_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), settings, len(tokenizer))
    micro_metrics = []
    for k, data in enumerate(micro_batches):
        chunk = rows[k * len(rows) // n_micro : (k + 1) * len(rows) // n_micro]
        output, _, _, _ = _micro_batch(tokenizer, model, chunk, global_batch_size=len(rows))
        _, metrics = loss_fn(model_output=output, data=data)
        micro_metrics.append({k: v for k, v in metrics.items() if k.startswith("ansco/")})
    reduced = _reduced_as_verl_does([micro_metrics])
    assert reduced.keys() == expected.keys()
    for key, value in expected.items():
        assert reduced[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_metrics_are_the_mini_batch_values_across_data_parallel_ranks(setup):
    """Two ranks, two micro-batches each: verl averages over ranks; each rank's sums cover half the batch."""
    from verl.utils import tensordict_utils as tu

    actor_config, tokenizer, model = setup
    rows = [0, 1, 2, 3]
    _, us = _reference_metrics(tokenizer, model, rows, AnsCoSettings(enable=True))
    settings = AnsCoSettings(enable=True, pg_coef=0.0, u_max=sorted(us)[1])
    expected, _ = _reference_metrics(tokenizer, model, rows, settings)
    loss_fn = make_ans_co_loss_fn(copy.deepcopy(actor_config), settings, len(tokenizer))
    per_rank = []
    for rank_rows in ([0, 1], [2, 3]):
        micro_metrics = []
        for row in rank_rows:
            output, data, _, _ = _micro_batch(tokenizer, model, [row], global_batch_size=len(rows), mini_batch=rows)
            tu.assign_non_tensor(data, dp_size=2)
            _, metrics = loss_fn(model_output=output, data=data)
            micro_metrics.append({k: v for k, v in metrics.items() if k.startswith("ansco/")})
        per_rank.append(micro_metrics)
    reduced = _reduced_as_verl_does(per_rank)
    for key, value in expected.items():
        assert reduced[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_without_the_ans_co_engine_the_loss_says_what_to_set(setup, monkeypatch):
    actor_config, tokenizer, model = setup
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    with pytest.raises(ValueError, match=f"VERL_ENGINE_VENDOR={ANS_CO_ENGINE_VENDOR}"):
        make_ans_co_loss_fn(copy.deepcopy(actor_config), AnsCoSettings(enable=True), len(tokenizer))
    # a batch that did not come through the engine has no mini-batch counts
    output, data, _, _ = _micro_batch(tokenizer, model, [0], global_batch_size=1)
    del data["ans_co_nll_count"]
    with pytest.raises(KeyError, match="Ans-CO engine"):
        ans_co_ppo_loss(copy.deepcopy(actor_config), output, data, settings=AnsCoSettings(enable=True), vocab_size=10)


# ---------------------------------------------- the engine in verl's registry


def test_the_ans_co_engine_is_chosen_by_verls_registry_only_when_asked(monkeypatch):
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl

    from verl_avconfuse.integration.ans_co_engine import AnsCoFSDPEngineWithLMHead

    for device in ("cuda", "npu", "cpu"):
        monkeypatch.setenv("VERL_ENGINE_DEVICE", device)
        for backend in ("fsdp", "fsdp2"):
            assert EngineRegistry.get_engine_cls("language_model", backend) is AnsCoFSDPEngineWithLMHead
    # a critic on the same workers keeps verl's engine
    monkeypatch.setenv("VERL_ENGINE_DEVICE", "cuda")
    assert EngineRegistry.get_engine_cls("value_model", "fsdp2") is transformer_impl.FSDPEngineWithValueHead
    monkeypatch.delenv("VERL_ENGINE_VENDOR")
    for device in ("cuda", "cpu"):
        monkeypatch.setenv("VERL_ENGINE_DEVICE", device)
        for backend in ("fsdp", "fsdp2"):
            assert EngineRegistry.get_engine_cls("language_model", backend) is transformer_impl.FSDPEngineWithLMHead
    # verl's class is verl's own: nothing replaced on it
    method = transformer_impl.FSDPEngineWithLMHead.prepare_model_outputs
    assert method.__module__ == transformer_impl.__name__ and not hasattr(method, "__wrapped__")
