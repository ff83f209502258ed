"""Step-RR (RL-CoMM stage 2) reward scoring as pure functions: parse, grade the answer, score.

Pure Python (no torch, no numpy, no verl); the embedding pass (:mod:`verl_avconfuse.similarity`) and the
verl-facing ``compute_score`` wrap these.
"""

from verl_avconfuse.rewards.answers import answers_match, normalize_answer
from verl_avconfuse.rewards.parsing import BLOCK_TAGS, ParsedResponse, extract_block, parse_response, reference_a_think
from verl_avconfuse.rewards.step_rr import (
    DEFAULT_OMEGA,
    SCORE_KEYS,
    SimilarityPair,
    similarity_requests,
    step_rr_batch,
    step_rr_scores,
)

__all__ = [
    "BLOCK_TAGS",
    "DEFAULT_OMEGA",
    "SCORE_KEYS",
    "ParsedResponse",
    "SimilarityPair",
    "answers_match",
    "extract_block",
    "normalize_answer",
    "parse_response",
    "reference_a_think",
    "similarity_requests",
    "step_rr_batch",
    "step_rr_scores",
]
