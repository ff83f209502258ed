"""Ans-CO loss: hand-computed values, gating, aggregation, and gradients against a plain reference."""

from __future__ import annotations

import math

import pytest
import torch

from verl_avconfuse.method.ans_co import (
    ans_co_denominators,
    ans_co_loss,
    ans_co_loss_from_stats,
    answer_uncertainty,
    logit_rows,
    token_entropy,
    token_log_probs,
)

LN2 = math.log(2.0)
D = torch.float64
# Distribution with nice logs: p = (1/2, 1/4, 1/8, 1/8); H = 1/2 ln2 + 1/4 * 2ln2 + 2 * 1/8 * 3ln2 = 1.75 ln2.
SKEW = [math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]
# Uniform over V=4: every token has p = 1/4 (log-prob -2 ln2); H = ln4 = 2 ln2.
UNIFORM = [0.0, 0.0, 0.0, 0.0]


def hand_batch():
    """Two responses, V=4, L=4 (logits[:, t] already predicts response_ids[:, t]).

    Row A: positions 0..2 real, position 3 padding; answer = positions 1, 2.
      t0 SKEW id 0: lp = -ln2      t1 UNIFORM id 2: lp = -2ln2, H = 2ln2      t2 SKEW id 0: lp = -ln2, H = 1.75ln2
      NLL_A = (1 + 2 + 1) ln2 / 3 = 4/3 ln2;  Hbar_A = (2 + 1.75) ln2 / 2 = 1.875 ln2
      u_A (answer_prob) = 1 - exp((-2ln2 - ln2) / 2) = 1 - 2^-1.5 = 0.646446...  (<= 0.75: lam_A = 0.5)
      u_A (entropy)     = 1.875 ln2 / ln4 = 0.9375
    Row B: all 4 real; answer = positions 2, 3.
      t0 UNIFORM id 1: lp = -2ln2  t1 SKEW id 0: lp = -ln2  t2 SKEW id 3: lp = -3ln2, H = 1.75ln2  t3 SKEW id 2: -3ln2
      NLL_B = (2 + 1 + 3 + 3) ln2 / 4 = 9/4 ln2;  Hbar_B = 1.75 ln2
      u_B (answer_prob) = 1 - exp(-3ln2) = 1 - 1/8 = 0.875 (> 0.75: gated, lam_B = 0)
      u_B (entropy)     = 1.75 ln2 / ln4 = 0.875
    """
    logits = torch.tensor(
        [
            [SKEW, UNIFORM, SKEW, [9.0, -9.0, 3.0, 0.5]],  # last row is padding: arbitrary values
            [UNIFORM, SKEW, SKEW, SKEW],
        ],
        dtype=D,
    )
    ids = torch.tensor([[0, 2, 0, 1], [1, 0, 3, 2]])
    resp = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    ans = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    return logits, ids, resp, ans


U_A = 1.0 - 2.0**-1.5


def test_token_pieces_match_hand_values():
    logits, ids, _, _ = hand_batch()
    lp = token_log_probs(logits, ids)
    assert torch.allclose(lp[0, :3], torch.tensor([-LN2, -2 * LN2, -LN2], dtype=D))
    assert torch.allclose(lp[1], torch.tensor([-2 * LN2, -LN2, -3 * LN2, -3 * LN2], dtype=D))
    h = token_entropy(logits)
    assert torch.allclose(h[1], torch.tensor([2 * LN2, 1.75 * LN2, 1.75 * LN2, 1.75 * LN2], dtype=D))


def test_token_pieces_match_torch_categorical():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=D)
    ids = torch.randint(0, 11, (3, 5), generator=g)
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(token_log_probs(logits, ids), dist.log_prob(ids))
    assert torch.allclose(token_entropy(logits), dist.entropy())


def test_hand_computed_loss_nll_on_right_answers_only():
    logits, ids, resp, ans = hand_batch()
    loss, m = ans_co_loss(logits, ids, resp, ans, torch.tensor([True, False]))
    # S_nll = {A}: 4/3 ln2.  S_ans = {A, B}: (0.5 * 1.875 ln2 + 0 * 1.75 ln2) / 2 = 0.46875 ln2.
    assert loss.item() == pytest.approx((4 / 3 + 0.46875) * LN2, rel=1e-12)
    assert m["ansco/nll"] == pytest.approx(4 / 3 * LN2, rel=1e-12)
    assert m["ansco/answer_entropy"] == pytest.approx((1.875 + 1.75) / 2 * LN2, rel=1e-12)
    assert m["ansco/u_mean"] == pytest.approx((U_A + 0.875) / 2, rel=1e-12)
    assert m["ansco/gated_fraction"] == 0.5
    assert m["ansco/nll_count"] == 1.0 and m["ansco/answer_count"] == 2.0 and m["ansco/gated_count"] == 1.0
    assert m["ansco/weighted_entropy_sum"] == pytest.approx(0.5 * 1.875 * LN2, rel=1e-12)
    assert m["ansco/loss"] == pytest.approx(loss.item(), rel=1e-12)
    assert all(isinstance(v, float) for v in m.values())


def test_hand_computed_loss_nll_on_all_responses():
    logits, ids, resp, ans = hand_batch()
    loss, m = ans_co_loss(logits, ids, resp, ans, torch.ones(2, dtype=torch.bool))
    # NLL term (4/3 + 9/4) ln2 / 2 = 43/24 ln2; entropy term unchanged 0.46875 ln2.
    assert loss.item() == pytest.approx((43 / 24 + 0.46875) * LN2, rel=1e-12)
    assert m["ansco/nll"] == pytest.approx(43 / 24 * LN2, rel=1e-12)


def test_lam_zero_is_pure_nll():
    logits, ids, resp, ans = hand_batch()
    loss, m = ans_co_loss(logits, ids, resp, ans, torch.ones(2, dtype=torch.bool), lam=0.0)
    assert loss.item() == pytest.approx(43 / 24 * LN2, rel=1e-12)
    assert m["ansco/weighted_entropy_sum"] == 0.0


def test_uncertainty_entropy_path():
    logits, ids, resp, ans = hand_batch()
    nll_mask = torch.tensor([True, False])
    # u_A = 0.9375, u_B = 0.875: with u_max = 0.75 both are gated -> only NLL remains.
    loss, m = ans_co_loss(logits, ids, resp, ans, nll_mask, uncertainty="entropy")
    assert loss.item() == pytest.approx(4 / 3 * LN2, rel=1e-12)
    assert m["ansco/u_mean"] == pytest.approx((0.9375 + 0.875) / 2, rel=1e-12)
    assert m["ansco/gated_fraction"] == 1.0
    # u_max = 0.9 gates A only: entropy term (0 + 0.5 * 1.75 ln2) / 2.
    loss, m = ans_co_loss(logits, ids, resp, ans, nll_mask, uncertainty="entropy", u_max=0.9)
    assert loss.item() == pytest.approx((4 / 3 + 0.4375) * LN2, rel=1e-12)
    assert m["ansco/gated_fraction"] == 0.5


def test_gate_is_strict_at_u_max():
    log_probs = torch.tensor([[-0.3, math.log(0.25), -0.7]], dtype=D)
    entropy = torch.tensor([[0.0, 1.2, 0.0]], dtype=D)
    resp = torch.ones(1, 3)
    ans = torch.tensor([[False, True, False]])
    u = answer_uncertainty(log_probs, entropy, ans).item()
    assert u == pytest.approx(0.75, abs=1e-15)
    nll_mask = torch.tensor([False])
    at, m_at = ans_co_loss_from_stats(log_probs, entropy, resp, ans, nll_mask, u_max=u)
    assert at.item() == pytest.approx(0.5 * 1.2, rel=1e-12) and m_at["ansco/gated_fraction"] == 0.0
    below, m_below = ans_co_loss_from_stats(log_probs, entropy, resp, ans, nll_mask, u_max=math.nextafter(u, 0.0))
    assert below.item() == 0.0 and m_below["ansco/gated_fraction"] == 1.0


def test_empty_answer_adds_no_entropy_and_is_not_counted():
    logits, ids, resp, ans = hand_batch()
    nll_mask = torch.tensor([True, False])
    # Row B without answer tokens (its "answer" only on padding would be the same: masks are intersected).
    ans_b_empty = ans.clone()
    ans_b_empty[1] = False
    loss, m = ans_co_loss(logits, ids, resp, ans_b_empty, nll_mask)
    # S_ans = {A}: 0.5 * 1.875 ln2 / 1; B adds neither NLL (nll_mask) nor entropy.
    assert loss.item() == pytest.approx((4 / 3 + 0.9375) * LN2, rel=1e-12)
    assert m["ansco/answer_count"] == 1.0 and m["ansco/gated_fraction"] == 0.0
    alone, _ = ans_co_loss(logits[:1], ids[:1], resp[:1], ans[:1], nll_mask[:1])
    assert loss.item() == pytest.approx(alone.item(), rel=1e-12)
    on_padding = torch.zeros_like(ans)
    on_padding[0, 3] = True  # position 3 of row A is padding
    loss_pad, m_pad = ans_co_loss(logits, ids, resp, on_padding, nll_mask)
    assert m_pad["ansco/answer_count"] == 0.0 and loss_pad.item() == pytest.approx(4 / 3 * LN2, rel=1e-12)


def test_nothing_contributes_gives_zero_loss_that_still_backpropagates():
    logits, ids, resp, _ = hand_batch()
    logits = logits.clone().requires_grad_(True)
    loss, m = ans_co_loss(logits, ids, resp, torch.zeros(2, 4, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and m["ansco/nll"] == 0.0 and m["ansco/u_mean"] == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_unread_positions_may_hold_nan():
    logits, ids, resp, ans = hand_batch()
    lp = token_log_probs(logits, ids)
    ent = token_entropy(logits)
    nll_mask = torch.tensor([True, False])
    ref, _ = ans_co_loss_from_stats(lp, ent, resp, ans, nll_mask)
    lp_nan = lp.clone()
    lp_nan[0, 3] = float("nan")  # padding
    ent_nan = torch.where(ans, ent, torch.full_like(ent, float("nan")))  # entropy only at answer positions
    loss, _ = ans_co_loss_from_stats(lp_nan, ent_nan, resp, ans, nll_mask)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)


def test_temperature_divides_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g, dtype=D)
    ids = torch.randint(0, 6, (2, 4), generator=g)
    resp = torch.ones(2, 4)
    ans = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    nll_mask = torch.tensor([True, True])
    hot, _ = ans_co_loss(logits, ids, resp, ans, nll_mask, temperature=0.7, u_max=1.0)
    plain, _ = ans_co_loss(logits / 0.7, ids, resp, ans, nll_mask, u_max=1.0)
    assert hot.item() == pytest.approx(plain.item(), rel=1e-12)
    assert hot.item() != pytest.approx(ans_co_loss(logits, ids, resp, ans, nll_mask, u_max=1.0)[0].item())


# ---------------------------------------------------------------- gradients against a plain reference


def reference_loss(logits, ids, resp, ans, nll_mask, lam, u_max, uncertainty, temperature):
    """The formula written out sample by sample, token by token."""
    bs, length, vocab = logits.shape
    nll_terms, ent_terms, n_ans = [], [], 0
    for i in range(bs):
        real = [t for t in range(length) if resp[i, t]]
        answer = [t for t in real if ans[i, t]]
        logp = torch.log_softmax(logits[i] / temperature, dim=-1)
        if nll_mask[i] and real:
            nll_terms.append(-sum(logp[t, ids[i, t]] for t in real) / len(real))
        if answer:
            n_ans += 1
            h = [-(logp[t].exp() * logp[t]).sum() for t in answer]
            hbar = sum(h) / len(answer)
            if uncertainty == "answer_prob":
                u = 1 - math.exp(sum(logp[t, ids[i, t]].item() for t in answer) / len(answer))
            else:
                u = hbar.item() / math.log(vocab)
            ent_terms.append((lam if u <= u_max else 0.0) * hbar)
    zero = logits.sum() * 0
    nll = sum(nll_terms) / len(nll_terms) if nll_terms else zero
    ent = sum(ent_terms) / n_ans if n_ans else zero
    return nll + ent


def random_batch(seed: int, bs: int = 5, length: int = 6, vocab: int = 7):
    g = torch.Generator().manual_seed(seed)
    logits = (2.0 * torch.randn(bs, length, vocab, generator=g, dtype=D)).requires_grad_(True)
    ids = torch.randint(0, vocab, (bs, length), generator=g)
    lengths = torch.randint(0, length + 1, (bs,), generator=g)
    resp = (torch.arange(length)[None] < lengths[:, None]).long()
    starts = torch.randint(0, length, (bs,), generator=g)
    ans = torch.arange(length)[None] >= starts[:, None]
    nll_mask = torch.rand(bs, generator=g) < 0.6
    return logits, ids, resp, ans, nll_mask


@pytest.mark.parametrize("uncertainty", ["answer_prob", "entropy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_plain_reference(uncertainty, seed):
    logits, ids, resp, ans, nll_mask = random_batch(seed)
    with torch.no_grad():  # put u_max between the samples' u so both gated and ungated rows occur
        hot = logits / 0.8
        u = answer_uncertainty(token_log_probs(hot, ids), token_entropy(hot), ans & resp.bool(), uncertainty, 7)
        u = u[(ans & resp.bool()).any(-1)].sort().values
    u_max = float(u[len(u) // 2] + u[len(u) // 2 - 1]) / 2 if len(u) > 1 else 0.75
    kwargs = dict(lam=0.5, u_max=u_max, uncertainty=uncertainty)
    loss, m = ans_co_loss(logits, ids, resp, ans, nll_mask, temperature=0.8, **kwargs)
    (grad,) = torch.autograd.grad(loss, logits)
    ref = reference_loss(logits, ids, resp, ans, nll_mask, temperature=0.8, **kwargs)
    (ref_grad,) = torch.autograd.grad(ref, logits)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(grad, ref_grad, atol=1e-12)
    if len(u) > 1:
        assert 0.0 < m["ansco/gated_fraction"] < 1.0


def test_microbatches_with_global_denominators_sum_to_full_batch():
    logits, ids, resp, ans, nll_mask = random_batch(7, bs=8)
    full, m_full = ans_co_loss(logits, ids, resp, ans, nll_mask, u_max=0.8)
    (full_grad,) = torch.autograd.grad(full, logits)
    d_nll, d_ans = ans_co_denominators(resp, ans, nll_mask)
    assert (d_nll, d_ans) == (m_full["ansco/nll_count"], m_full["ansco/answer_count"])
    total, grad, counts = 0.0, torch.zeros_like(logits), 0.0
    for part in (slice(0, 3), slice(3, 8)):
        loss, m = ans_co_loss(
            logits[part],
            ids[part],
            resp[part],
            ans[part],
            nll_mask[part],
            u_max=0.8,
            nll_denominator=d_nll,
            entropy_denominator=d_ans,
        )
        (g,) = torch.autograd.grad(loss, logits)
        total, grad, counts = total + loss.item(), grad + g, counts + m["ansco/nll_count"]
    assert total == pytest.approx(full.item(), rel=1e-12)
    assert torch.allclose(grad, full_grad, atol=1e-14)
    assert counts == d_nll


def test_float64_gradcheck():
    logits, ids, resp, ans, nll_mask = random_batch(3, bs=3, length=4, vocab=5)
    nll_mask[:] = True

    def fn(x):
        # u_max = 1.0 keeps every u away from the (non-differentiable) gate
        return ans_co_loss(x, ids, resp, ans, nll_mask, u_max=1.0, temperature=0.9)[0]

    assert torch.autograd.gradcheck(fn, (logits.detach().clone().requires_grad_(True),))


# ---------------------------------------------------------------- answer rows with a sparse gradient


def test_logit_rows_are_the_indexed_rows_and_their_gradient_is_sparse():
    """Rows (0, 1) and (1, 2) of a (2, 3, 4) tensor: the same values as indexing; d(sum of w * rows) is w at
    those rows and 0 elsewhere, returned as a sparse tensor of the logits' shape."""
    leaf = torch.arange(24, dtype=D).reshape(2, 3, 4).requires_grad_(True)
    logits = leaf * 1.0  # not a leaf: like a model's output
    index = torch.tensor([[0, 1], [1, 2]])
    rows = logit_rows(logits, index)
    assert torch.equal(rows, torch.tensor([[4.0, 5, 6, 7], [20, 21, 22, 23]], dtype=D))
    weights = torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]], dtype=D)
    (grad,) = torch.autograd.grad((weights * rows).sum(), logits, retain_graph=True)
    assert grad.layout == torch.sparse_coo and grad.shape == (2, 3, 4)
    expected = torch.zeros(2, 3, 4, dtype=D)
    expected[0, 1], expected[1, 2] = weights[0], weights[1]
    assert torch.equal(grad.to_dense(), expected)


def test_logit_rows_gradient_adds_to_a_dense_gradient_of_the_same_logits():
    """With a dense consumer (the log-probs at every position) the leaf's gradient is their sum, dense."""
    leaf = torch.arange(24, dtype=D).reshape(2, 3, 4).requires_grad_(True)
    logits = leaf * 1.0
    loss = 0.5 * logits.sum() + 3.0 * logit_rows(logits, torch.tensor([[1], [0]])).sum()
    loss.backward()
    expected = torch.full((2, 3, 4), 0.5, dtype=D)
    expected[1, 0] += 3.0
    assert leaf.grad.layout == torch.strided and torch.equal(leaf.grad, expected)
    with pytest.raises(ValueError, match="index must be"):
        logit_rows(logits, torch.tensor([0, 1]))


# ---------------------------------------------------------------- bad input


def test_bad_arguments_are_rejected():
    logits, ids, resp, ans = hand_batch()
    nll_mask = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        ans_co_loss(logits, ids, resp, ans, nll_mask, uncertainty="variance")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ans_co_loss(logits, ids, resp, ans, nll_mask, temperature=0.0)
    with pytest.raises(ValueError, match="nll_mask must have shape"):
        ans_co_loss(logits, ids, resp, ans, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="answer_mask must have shape"):
        ans_co_loss(logits, ids, resp, ans[:, :3], nll_mask)
    with pytest.raises(ValueError, match="logits must be"):
        ans_co_loss(logits[0], ids, resp, ans, nll_mask)
    lp = token_log_probs(logits, ids)
    with pytest.raises(ValueError, match="needs vocab_size"):
        ans_co_loss_from_stats(lp, token_entropy(logits), resp, ans, nll_mask, uncertainty="entropy")


# --- u on the answer's content tokens, on the tiny policy's own tokenizer ---------------------------------

REALISTIC = "<a-think>I hear a violin.</a-think>\n<v-think>I see a piano.</v-think>\n<answer>two</answer><|im_end|>"


@pytest.fixture(scope="module")
def omni_tokenizer(tiny_asset):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_asset("models/omni_thinker"))


def _realistic_stats(omni_tokenizer, p_answer: float):
    """The tiny thinker's tokens of REALISTIC; every token at p = 0.99 but the answer "two" at ``p_answer``;
    entropy 0.1 nats at each tag/EOS token and 1.5 at "two"."""
    from verl_avconfuse.method.answer_mask import answer_token_mask

    ids = torch.tensor([omni_tokenizer(REALISTIC, add_special_tokens=False)["input_ids"]])
    # precondition: the tags are split as the tiny (and, in spirit, Qwen2's) BPE splits them
    tail = omni_tokenizer.convert_ids_to_tokens(ids[0, -8:].tolist())
    assert tail == ["<answer", ">", "two", "<", "/", "answer", ">", "<|im_end|>"]
    n = ids.shape[1]
    answer = answer_token_mask(ids, omni_tokenizer, span="through_end")
    content = answer_token_mask(ids, omni_tokenizer, span="content")
    assert answer[0].tolist() == [False] * (n - 8) + [True] * 8
    assert content[0].tolist() == [False] * (n - 6) + [True] + [False] * 5
    log_probs = torch.full((1, n), math.log(0.99), dtype=D)
    log_probs[0, n - 6] = math.log(p_answer)
    entropy = torch.full((1, n), 0.1, dtype=D)
    entropy[0, n - 6] = 1.5
    return log_probs, entropy, torch.ones(1, n), answer, content, n


def test_gate_fires_on_an_uncertain_answer_that_its_tags_would_hide(omni_tokenizer):
    log_probs, entropy, resp, answer, content, n = _realistic_stats(omni_tokenizer, p_answer=0.2)
    nll = -((n - 1) * math.log(0.99) + math.log(0.2)) / n
    # on the whole span N the seven tag/EOS tokens dilute u: 1 - (0.99^7 * 0.2)^(1/8) = 0.18939 (not gated)
    loss_n, m_n = ans_co_loss_from_stats(log_probs, entropy, resp, answer, torch.ones(1))
    assert m_n["ansco/u_mean"] == pytest.approx(0.18939, abs=1e-5) and m_n["ansco/gated_fraction"] == 0.0
    assert loss_n.item() == pytest.approx(nll + 0.5 * (7 * 0.1 + 1.5) / 8, rel=1e-12)
    # on the content "two" alone: u = 1 - 0.2 = 0.8 > 0.75, gated: pure NLL
    loss, m = ans_co_loss_from_stats(log_probs, entropy, resp, answer, torch.ones(1), uncertainty_mask=content)
    assert m["ansco/u_mean"] == pytest.approx(0.8, rel=1e-12)
    assert m["ansco/gated_fraction"] == 1.0 and m["ansco/gated_count"] == 1.0 and m["ansco/u_count"] == 1.0
    assert loss.item() == pytest.approx(nll, rel=1e-12)
    # the entropy term still averages over all of N: 0.1 at the tags, 1.5 at "two"
    assert m["ansco/answer_entropy"] == pytest.approx((7 * 0.1 + 1.5) / 8, rel=1e-12)


def test_confident_answer_keeps_the_entropy_term_over_the_whole_span(omni_tokenizer):
    log_probs, entropy, resp, answer, content, n = _realistic_stats(omni_tokenizer, p_answer=0.5)
    loss, m = ans_co_loss_from_stats(log_probs, entropy, resp, answer, torch.ones(1), uncertainty_mask=content)
    assert m["ansco/u_mean"] == pytest.approx(0.5, rel=1e-12) and m["ansco/gated_fraction"] == 0.0
    nll = -((n - 1) * math.log(0.99) + math.log(0.5)) / n
    assert loss.item() == pytest.approx(nll + 0.5 * (7 * 0.1 + 1.5) / 8, rel=1e-12)


def test_answer_without_content_tokens_is_gated():
    # "<answer></answer>" or a cut-off answer: N has tokens, U has none; nothing measures u, so lam = 0
    log_probs = torch.log(torch.tensor([[0.9, 0.9, 0.9]], dtype=D))
    entropy = torch.tensor([[0.2, 0.4, 0.6]], dtype=D)
    answer = torch.tensor([[False, True, True]])
    loss, m = ans_co_loss_from_stats(
        log_probs, entropy, torch.ones(1, 3), answer, torch.ones(1), uncertainty_mask=torch.zeros(1, 3, dtype=bool)
    )
    assert loss.item() == pytest.approx(-math.log(0.9), rel=1e-12)
    assert m["ansco/gated_fraction"] == 1.0 and m["ansco/u_count"] == 0.0 and m["ansco/u_mean"] == 0.0
