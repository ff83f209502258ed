"""Ans-CO: answer-confidence optimisation, RL-CoMM stage 3 (arXiv 2511.10059, Sec. "Ans-CO").

Per response ``i`` with ``T_i`` response tokens, answer tokens ``N_i`` (the entropy set) and answer
*content* tokens ``U_i`` (the uncertainty set; see :mod:`.answer_mask`)::

    L_OP,i = -(1/T_i) sum_{t<=T_i} log pi(o_t | o_<t, x)  +  lam_i * (1/|N_i|) sum_{t in N_i} H_t

    H_t   = -sum_v pi(v | o_<t, x) log pi(v | o_<t, x)       (entropy of the full next-token distribution)
    lam_i = lam if |U_i| > 0 and u_i <= u_max else 0          (gate: leave very uncertain answers alone)

``N_i`` is the paper's span (``<answer>`` through the end of the response); ``U_i`` is what the answer
says, without its tags and EOS. Tag tokens are near-certain, so measuring ``u`` on ``N_i`` would dilute
it: 7 tag/EOS tokens at p = 0.99 and one answer token at p = 0.2 give ``u = 0.19`` on ``N_i`` and
``u = 0.80`` on ``U_i`` (docs/ans_co.md). A response with answer tokens but no content tokens (a cut-off
or empty answer) has no measurable uncertainty and is gated.

The paper does not define the answer uncertainty ``u``; two choices are offered (no gradient flows
through ``u``, it only gates):

- ``"answer_prob"`` (default): ``u_i = 1 - exp(mean_{t in U_i} log pi(o_t))``, one minus the geometric-mean
  probability of the sampled answer content tokens.
- ``"entropy"``: ``u_i = mean_{t in U_i} H_t / log(V)``, the content's entropy normalised to [0, 1] (it
  needs the entropy at ``U_i``, which is inside ``N_i``).

Batch aggregation (the paper gives the per-sample loss only)::

    loss = sum_{i in S_nll} NLL_i / D_nll  +  sum_{i in S_ans} lam_i * Hbar_i / D_ans

    S_nll = {i : nll_mask_i and T_i > 0}      (by default: responses whose answer is right)
    S_ans = {i : |N_i| > 0}                   (gated samples stay in S_ans with lam_i = 0)
    S_u   = {i : |U_i| > 0}                   (the samples whose u is measured)
    D_nll = |S_nll|, D_ans = |S_ans|          (local counts unless the caller passes global ones)

A sample without answer tokens adds no entropy term and is left out of ``D_ans`` and of ``gated_fraction``.
Keeping gated samples in ``D_ans`` means gating literally sets ``lam_i = 0`` for that sample: the weight
of the others does not grow as more samples are gated. For gradient accumulation or data parallelism,
compute the global counts once with :func:`ans_co_denominators` and pass them as ``nll_denominator`` /
``entropy_denominator`` to every micro-batch; the micro-batch losses then sum to the full-batch loss.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch

Uncertainty = Literal["answer_prob", "entropy"]
UNCERTAINTIES: tuple[str, ...] = ("answer_prob", "entropy")

DEFAULT_LAM = 0.5
DEFAULT_U_MAX = 0.75


def token_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each chosen token: ``log softmax(logits)[..., ids]``.

    Args:
        logits: ``(..., V)`` float, already divided by the sampling temperature if wanted.
        ids: ``(...)`` int64 token ids, the same leading shape.

    Returns:
        ``(...)`` log-probs, in ``logits.dtype``. ``gather - logsumexp`` avoids keeping a full
        ``log_softmax`` copy of the logits alive.
    """
    picked = torch.gather(logits, -1, ids.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution, ``H = logsumexp(z) - sum softmax(z) * z`` (as verl computes it).

    Args:
        logits: ``(..., V)`` float, already divided by the temperature if wanted.

    Returns:
        ``(...)`` entropies in nats.
    """
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


class _RowsWithSparseGradient(torch.autograd.Function):
    """``logits[tuple(index)]``, differentiated into a sparse COO gradient of ``logits``' shape."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.shape = logits.shape
        return logits[tuple(index)]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(index, grad, ctx.shape, check_invariants=False), None


def logit_rows(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A few next-token distributions of a logits tensor, ``logits[tuple(index)]``, with a sparse gradient.

    Args:
        logits: ``(*lead, V)`` with grad (not a leaf: its gradient is only passed on), e.g. a model's
            ``(bs, L, V)`` or packed ``(1, total_nnz, V)`` output.
        index: ``(len(lead), k)`` int64 on ``logits``' device, distinct positions (one column each).

    Returns:
        ``(k, V)``, the rows' values unchanged. Meant for logits that also get a dense gradient (the
        log-probs' in verl's actor): on its own, the gradient stays sparse.

    Why not plain indexing: its backward is a zero-filled dense ``logits``-sized gradient plus an add into
    the gradient ``logits`` already gets from the log-probs at every position (0.43 GiB each at 768
    tokens x 151,936 in fp32). A sparse gradient of the ``k`` rows is added into that dense one in place
    by autograd (dense + sparse accumulates in place when the dense gradient is not shared), so the
    answer tokens' entropy costs ``k`` rows, not a second pass over the vocabulary at every position.
    """
    if index.dim() != 2 or index.shape[0] != logits.dim() - 1:
        raise ValueError(
            f"index must be ({logits.dim() - 1}, k) for logits of shape {tuple(logits.shape)}, got {tuple(index.shape)}"
        )
    return _RowsWithSparseGradient.apply(logits, index.long())


def answer_uncertainty(
    log_probs: torch.Tensor,
    entropy: torch.Tensor | None,
    answer_mask: torch.Tensor,
    uncertainty: Uncertainty = "answer_prob",
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Per-sample answer uncertainty ``u`` in [0, 1] (the gate of Ans-CO; detached).

    Args:
        log_probs: ``(bs, L)`` log-probs of the sampled tokens (read at answer positions only).
        entropy: ``(bs, L)`` per-position entropies (read at answer positions only); needed for
            ``uncertainty="entropy"``, may be ``None`` otherwise.
        answer_mask: ``(bs, L)`` bool, the answer tokens N (already restricted to real response tokens).
        uncertainty: ``"answer_prob"``: ``1 - exp(mean log-prob over N)``; ``"entropy"``:
            ``mean H over N / log(vocab_size)``.
        vocab_size: V, required for ``"entropy"``.

    Returns:
        ``(bs,)`` detached; 0 for rows with an empty answer (those rows are never gated).
    """
    if uncertainty not in UNCERTAINTIES:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {uncertainty!r}")
    with torch.no_grad():
        ans = answer_mask.bool()
        n_ans = ans.sum(dim=-1)
        denom = n_ans.clamp(min=1).to(log_probs.dtype)
        has_answer = n_ans > 0
        if uncertainty == "answer_prob":
            mean_lp = torch.where(ans, log_probs, torch.zeros_like(log_probs)).sum(dim=-1) / denom
            u = 1.0 - torch.exp(mean_lp)
        else:
            if entropy is None:
                raise ValueError('uncertainty="entropy" needs the per-position entropy, got entropy=None')
            if vocab_size is None or vocab_size < 2:
                raise ValueError(f'uncertainty="entropy" needs vocab_size >= 2, got {vocab_size!r}')
            mean_h = torch.where(ans, entropy, torch.zeros_like(entropy)).sum(dim=-1) / denom
            u = mean_h / math.log(vocab_size)
        return torch.where(has_answer, u, torch.zeros_like(u)).detach()


class AnsCoSampleTerms(NamedTuple):
    """Per-sample pieces of ``L_OP`` (all ``(bs,)``); the batch loss is an aggregation of these."""

    nll: torch.Tensor  # -(1/T_i) sum_t log pi(o_t), 0 where T_i == 0
    answer_entropy: torch.Tensor  # (1/|N_i|) sum_{t in N_i} H_t, 0 where N_i is empty
    u: torch.Tensor  # answer uncertainty, detached, 0 where N_i is empty
    lam: torch.Tensor  # lam_i after the gate, detached
    nll_on: torch.Tensor  # bool, i in S_nll
    has_answer: torch.Tensor  # bool, i in S_ans
    gated: torch.Tensor  # bool, has_answer and (no content tokens or u_i > u_max)
    has_content: torch.Tensor  # bool, i in S_u


def ans_co_sample_terms(
    log_probs: torch.Tensor,
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    nll_mask: torch.Tensor,
    lam: float = DEFAULT_LAM,
    u_max: float = DEFAULT_U_MAX,
    uncertainty: Uncertainty = "answer_prob",
    vocab_size: int | None = None,
    uncertainty_mask: torch.Tensor | None = None,
) -> AnsCoSampleTerms:
    """Per-sample terms of ``L_OP`` from per-token statistics (the formula lives here).

    Args/shapes as in :func:`ans_co_loss_from_stats`. Values of ``log_probs`` outside ``response_mask``
    and of ``entropy`` outside ``answer_mask & response_mask`` are never read (they may be anything,
    even NaN).
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (bs, L), got shape {tuple(log_probs.shape)}")
    bs = log_probs.shape[0]
    _check_shape("entropy", entropy, log_probs.shape)
    _check_shape("response_mask", response_mask, log_probs.shape)
    _check_shape("answer_mask", answer_mask, log_probs.shape)
    _check_shape("nll_mask", nll_mask, (bs,))
    if uncertainty_mask is not None:
        _check_shape("uncertainty_mask", uncertainty_mask, log_probs.shape)
    if u_max < 0:
        raise ValueError(f"u_max must be >= 0, got {u_max}")

    resp = response_mask.bool()
    ans = answer_mask.bool() & resp
    zeros = torch.zeros_like(log_probs)
    n_tok = resp.sum(dim=-1)
    n_ans = ans.sum(dim=-1)

    # torch.where, not multiplication: a NaN/inf in an unread position must not leak into the loss.
    nll = -torch.where(resp, log_probs, zeros).sum(dim=-1) / n_tok.clamp(min=1).to(log_probs.dtype)
    answer_entropy = torch.where(ans, entropy, torch.zeros_like(entropy)).sum(dim=-1) / n_ans.clamp(min=1).to(
        entropy.dtype
    )
    # U is a subset of N: u never reads a position the entropy term does not.
    measured = ans if uncertainty_mask is None else uncertainty_mask.bool() & ans
    u = answer_uncertainty(log_probs, entropy, measured, uncertainty, vocab_size)
    has_answer = n_ans > 0
    has_content = measured.any(dim=-1)
    gated = has_answer & (~has_content | (u > u_max))
    lam_i = torch.where(has_answer & ~gated, torch.full_like(u, lam), torch.zeros_like(u))
    nll_on = nll_mask.bool().to(resp.device) & (n_tok > 0)
    return AnsCoSampleTerms(nll, answer_entropy, u, lam_i, nll_on, has_answer, gated, has_content)


class AnsCoSetSizes(NamedTuple):
    """``(|S_nll|, |S_ans|, |S_u|)`` of a batch (module docstring): the denominators of the terms and means."""

    nll: int
    answer: int
    uncertainty: int


def ans_co_set_sizes(
    response_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    nll_mask: torch.Tensor,
    uncertainty_mask: torch.Tensor | None = None,
) -> AnsCoSetSizes:
    """The sizes of Ans-CO's three sample sets, from the masks alone (known before any forward).

    Args: ``(bs, L)`` masks and the ``(bs,)`` ``nll_mask`` as in :func:`ans_co_loss_from_stats`;
    ``uncertainty_mask`` ``None`` measures ``u`` on ``answer_mask``.
    """
    resp = response_mask.bool()
    ans = answer_mask.bool() & resp
    measured = ans if uncertainty_mask is None else uncertainty_mask.bool() & ans
    n_nll = int((nll_mask.bool().to(resp.device) & (resp.sum(dim=-1) > 0)).sum())
    return AnsCoSetSizes(n_nll, int(ans.any(dim=-1).sum()), int(measured.any(dim=-1).sum()))


def ans_co_denominators(
    response_mask: torch.Tensor, answer_mask: torch.Tensor, nll_mask: torch.Tensor
) -> tuple[int, int]:
    """``(|S_nll|, |S_ans|)`` of a batch: the default denominators of the two terms.

    Call it on the whole (global) batch before splitting into micro-batches and pass the results as
    ``nll_denominator`` / ``entropy_denominator`` so the micro-batch losses sum to the full-batch loss
    (divide by the data-parallel size too when gradients are averaged across ranks).
    """
    sizes = ans_co_set_sizes(response_mask, answer_mask, nll_mask)
    return sizes.nll, sizes.answer


def ans_co_loss_from_stats(
    log_probs: torch.Tensor,
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    nll_mask: torch.Tensor,
    lam: float = DEFAULT_LAM,
    u_max: float = DEFAULT_U_MAX,
    uncertainty: Uncertainty = "answer_prob",
    vocab_size: int | None = None,
    nll_denominator: float | None = None,
    entropy_denominator: float | None = None,
    uncertainty_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Ans-CO loss from per-token statistics the trainer already has (verl computes both).

    Args:
        log_probs: ``(bs, L)`` log pi of the sampled response tokens (temperature applied), with grad.
        entropy: ``(bs, L)`` entropy of the full next-token distribution at each position, with grad.
            Only answer positions are read, so a caller may fill the rest with zeros.
        response_mask: ``(bs, L)`` {0,1}/bool, real response tokens (T_i = row sum).
        answer_mask: ``(bs, L)`` bool, answer tokens N, the entropy set (intersected with ``response_mask``).
        nll_mask: ``(bs,)`` bool, which samples get the NLL term (default policy: answer is right;
            pass all ones for NLL on every response).
        lam: entropy weight lambda (0.5); ``lam=0`` gives pure NLL.
        u_max: gate threshold; a sample with ``u > u_max`` (strict) gets ``lam_i = 0``.
        uncertainty: ``"answer_prob"`` or ``"entropy"``, see :func:`answer_uncertainty`.
        vocab_size: V, needed for ``uncertainty="entropy"``.
        nll_denominator: divides the summed NLL term; default ``|S_nll|`` of this batch.
        entropy_denominator: divides the summed entropy term; default ``|S_ans|`` of this batch.
        uncertainty_mask: ``(bs, L)`` bool, the answer content tokens U on which ``u`` is measured
            (intersected with ``answer_mask``; ``answer_token_mask(span="content")``). ``None`` measures
            ``u`` on ``answer_mask`` itself.

    Returns:
        ``(loss, metrics)``: scalar loss (a graph-connected 0 when no sample contributes, so every rank
        can still call backward) and detached floats: ``ansco/nll`` (mean NLL over S_nll),
        ``ansco/answer_entropy`` (mean answer entropy over S_ans, unweighted), ``ansco/u_mean``
        (over S_u), ``ansco/gated_fraction`` (gated / |S_ans|), ``ansco/loss``, and the raw sums/counts
        ``ansco/nll_sum``, ``ansco/nll_count``, ``ansco/answer_entropy_sum``, ``ansco/weighted_entropy_sum``,
        ``ansco/u_sum``, ``ansco/u_count``, ``ansco/answer_count``, ``ansco/gated_count`` for exact
        re-aggregation over micro-batches. Means over an empty set are reported as 0.0 (the count says so).
    """
    terms = ans_co_sample_terms(
        log_probs,
        entropy,
        response_mask,
        answer_mask,
        nll_mask,
        lam,
        u_max,
        uncertainty,
        vocab_size,
        uncertainty_mask,
    )
    nll_sum = torch.where(terms.nll_on, terms.nll, torch.zeros_like(terms.nll)).sum()
    weighted = terms.lam * terms.answer_entropy
    ent_sum = torch.where(terms.has_answer, weighted, torch.zeros_like(weighted)).sum()
    n_nll = int(terms.nll_on.sum())
    n_ans = int(terms.has_answer.sum())
    d_nll = float(n_nll) if nll_denominator is None else float(nll_denominator)
    d_ans = float(n_ans) if entropy_denominator is None else float(entropy_denominator)
    # A zero denominator only happens when its sum is over an empty set: the term is then 0.
    loss = nll_sum / (d_nll if d_nll > 0 else 1.0) + ent_sum / (d_ans if d_ans > 0 else 1.0)

    with torch.no_grad():
        ans_entropy_sum = float(torch.where(terms.has_answer, terms.answer_entropy, 0.0).sum())
        u_sum = float(torch.where(terms.has_content, terms.u, 0.0).sum())
        n_u = int(terms.has_content.sum())
        n_gated = int(terms.gated.sum())
        nll_sum_f = float(nll_sum)
        metrics = {
            "ansco/loss": float(loss),
            "ansco/nll": nll_sum_f / n_nll if n_nll else 0.0,
            "ansco/answer_entropy": ans_entropy_sum / n_ans if n_ans else 0.0,
            "ansco/u_mean": u_sum / n_u if n_u else 0.0,
            "ansco/gated_fraction": n_gated / n_ans if n_ans else 0.0,
            "ansco/nll_sum": nll_sum_f,
            "ansco/nll_count": float(n_nll),
            "ansco/answer_entropy_sum": ans_entropy_sum,
            "ansco/weighted_entropy_sum": float(ent_sum),
            "ansco/u_sum": u_sum,
            "ansco/u_count": float(n_u),
            "ansco/answer_count": float(n_ans),
            "ansco/gated_count": float(n_gated),
        }
    return loss, metrics


def ans_co_loss(
    logits: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    nll_mask: torch.Tensor,
    lam: float = DEFAULT_LAM,
    u_max: float = DEFAULT_U_MAX,
    uncertainty: Uncertainty = "answer_prob",
    temperature: float = 1.0,
    nll_denominator: float | None = None,
    entropy_denominator: float | None = None,
    uncertainty_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Ans-CO loss from logits; a thin front of :func:`ans_co_loss_from_stats`.

    Args:
        logits: ``(bs, L, V)`` float; ``logits[:, t]`` predicts ``response_ids[:, t]`` (already shifted, as
            verl's log-prob code aligns them). Divided by ``temperature`` before any softmax (verl's
            convention: the loss sees the distribution the rollout sampled from).
        response_ids: ``(bs, L)`` int64 sampled tokens.
        response_mask, answer_mask, nll_mask, lam, u_max, uncertainty, nll_denominator,
        entropy_denominator, uncertainty_mask: see :func:`ans_co_loss_from_stats`.
        temperature: > 0.

    Entropy is computed only at answer positions (an ``(n_answer_tokens, V)`` slice), never for the
    whole ``(bs, L, V)`` tensor.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (bs, L, V), got shape {tuple(logits.shape)}")
    _check_shape("response_ids", response_ids, logits.shape[:2])
    _check_shape("response_mask", response_mask, logits.shape[:2])
    _check_shape("answer_mask", answer_mask, logits.shape[:2])
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = logits if temperature == 1.0 else logits / temperature
    log_probs = token_log_probs(scaled, response_ids)
    ans = answer_mask.bool() & response_mask.bool()
    entropy = torch.zeros(log_probs.shape, dtype=log_probs.dtype, device=log_probs.device)
    entropy = entropy.masked_scatter(ans, token_entropy(scaled[ans]))
    return ans_co_loss_from_stats(
        log_probs,
        entropy,
        response_mask,
        ans,
        nll_mask,
        lam=lam,
        u_max=u_max,
        uncertainty=uncertainty,
        vocab_size=logits.shape[-1],
        nll_denominator=nll_denominator,
        entropy_denominator=entropy_denominator,
        uncertainty_mask=uncertainty_mask,
    )


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...] | torch.Size) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(tensor.shape)}")
