"""A yes/no question's P(yes): the model's probability of answering yes (:func:`yes_probability`, a backend
with next-token log-probabilities), read where the graded answer starts (:func:`answer_prefix`).

The AV-ConfuseBench muted task declares it as its per-reply extra (``Task.yes_prob``); the runner calls what
the task declares and knows nothing of it. The layer-entropy diagnosis reads the same answer position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from verl_avconfuse.evaluation.matching import extract_answer as extracted_answer

__all__ = [
    "NO_STRINGS",
    "YES_STRINGS",
    "answer_polarity",
    "answer_prefix",
    "extracted_answer",
    "single_token_variants",
    "yes_probability",
]

#: Candidate continuations for P(yes) / P(no): case and leading-space variants, because a BPE tokenizer
#: gives "yes", " yes" and " Yes" different first tokens and a model may put its mass on any of them.
YES_STRINGS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_STRINGS = ("no", "No", "NO", " no", " No", " NO")


def answer_polarity(answer: str | None) -> str | None:
    """``"yes"`` / ``"no"`` when the answer says so by the strict rule, else ``None``."""
    from verl_avconfuse.evaluation.matching import polarity

    return polarity(answer, "strict")


def answer_prefix(reply: str) -> str:
    """The reply up to and including the answer's opening tag: where P(yes) is read.

    The answer is the one :func:`~verl_avconfuse.method.parsing.parse_response` grades (the answer after the last
    think block, :func:`~verl_avconfuse.method.parsing.locate_answer`). A reply without one gets
    ``<answer>`` appended, i.e. the probability of the answer the model would give if made to answer now.
    """
    from verl_avconfuse.method.parsing import locate_answer

    located = locate_answer(reply)
    if located is not None:
        return reply[: located.content_start]
    return (reply.rstrip() + "\n" if reply.strip() else "") + "<answer>"


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def single_token_variants(backend: Any, variants: Sequence[str]) -> list[str]:
    """The variants the backend's tokenizer encodes as one token (all of them when none is, or when the
    backend exposes no tokenizer). One-token candidates share a single forward pass; each longer one costs
    another full pass over the video and audio, and its probability is the product over its tokens anyway
    dominated by the first (Qwen's vocabulary has all of yes/Yes/ yes/ Yes/no/No/ no/ No as single tokens)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return list(variants)
    single = [v for v in variants if len(tokenizer.encode(v, add_special_tokens=False)) == 1]
    return single or list(variants)


def yes_probability(backend: Any, request: Any, reply: str) -> float:
    """``P(yes) / (P(yes) + P(no))`` after :func:`answer_prefix` of ``reply``, each side summed over its
    :data:`YES_STRINGS` / :data:`NO_STRINGS` variants that are single tokens (:func:`single_token_variants`).

    Needs a backend with ``next_token_logprobs`` (the HF backend). The reply is re-tokenised from text, so
    the prefix tokens can differ slightly from the generated ones (special tokens were removed).
    """
    yes_strings, no_strings = single_token_variants(backend, YES_STRINGS), single_token_variants(backend, NO_STRINGS)
    log_probs = backend.next_token_logprobs(request, answer_prefix(reply), [*yes_strings, *no_strings])
    yes = _logsumexp([log_probs[s] for s in yes_strings])
    no = _logsumexp([log_probs[s] for s in no_strings])
    top = max(yes, no)
    if top == -math.inf:
        return math.nan
    return math.exp(yes - top) / (math.exp(yes - top) + math.exp(no - top))
