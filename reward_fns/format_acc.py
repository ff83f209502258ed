"""The paper's "+GRPO" baseline reward: format + accuracy (no audio reasoning terms).

    reward.custom_reward_function.path=pkg://verl_avconfuse.reward_fns.format_acc

Same parsing and answer matching as Step-RR, so the two recipes differ only in ARR and AVC.
"""

from __future__ import annotations

from verl_avconfuse.method.answers import answers_match
from verl_avconfuse.method.parsing import parse_response
from verl_avconfuse.method.rows import data_index


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, **kwargs
) -> dict[str, float]:
    parsed = parse_response(solution_str)
    options = (extra_info or {}).get("options")
    fmt = 1.0 if parsed.well_formed else 0.0
    acc = 1.0 if answers_match(parsed.answer, ground_truth, list(options) if options is not None else None) else 0.0
    return {"score": fmt + acc, "format": fmt, "acc": acc, **data_index(extra_info)}
