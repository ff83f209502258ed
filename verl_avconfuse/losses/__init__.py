"""Ans-CO (RL-CoMM stage 3) as pure torch functions; verl-facing glue wraps these, it never re-derives them."""

from verl_avconfuse.losses.ans_co import (
    DEFAULT_LAM,
    DEFAULT_U_MAX,
    UNCERTAINTIES,
    AnsCoSampleTerms,
    AnsCoSetSizes,
    ans_co_denominators,
    ans_co_loss,
    ans_co_loss_from_stats,
    ans_co_sample_terms,
    ans_co_set_sizes,
    answer_uncertainty,
    logit_rows,
    token_entropy,
    token_log_probs,
)
from verl_avconfuse.losses.answer_mask import (
    ANSWER_SPANS,
    TokenBytes,
    answer_span,
    answer_token_mask,
    token_bytes_table,
)
from verl_avconfuse.rewards.parsing import THINK_END_TAGS, AnswerBlock, locate_answer

__all__ = [
    "ANSWER_SPANS",
    "DEFAULT_LAM",
    "DEFAULT_U_MAX",
    "THINK_END_TAGS",
    "UNCERTAINTIES",
    "AnsCoSampleTerms",
    "AnsCoSetSizes",
    "AnswerBlock",
    "TokenBytes",
    "ans_co_denominators",
    "ans_co_loss",
    "ans_co_loss_from_stats",
    "ans_co_sample_terms",
    "ans_co_set_sizes",
    "answer_span",
    "answer_token_mask",
    "answer_uncertainty",
    "locate_answer",
    "logit_rows",
    "token_bytes_table",
    "token_entropy",
    "token_log_probs",
]
