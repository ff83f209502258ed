"""Step-RR as a plain verl reward function, for ``reward.custom_reward_function.path``.

    reward.custom_reward_function.path=pkg://verl_avconfuse.reward_fns.step_rr   (or this file's path)
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.embedding_model=Qwen/Qwen3-Embedding-0.6B

The reference a-think comes from ``extra_info["reference_a_think"]`` (write it into the dataset with
``avconfuse reference precompute``); without it ``arr`` is 0. The embedder is loaded once per
process. The ``step_rr`` reward manager (the ``avconfuse`` recipe) is the batched, reference-worker
version of the same function; both score through :class:`verl_avconfuse.method.step_rr.StepRRBatch`.
"""

from __future__ import annotations

from verl_avconfuse.method.parsing import parse_response
from verl_avconfuse.method.rows import data_index
from verl_avconfuse.method.step_rr import DEFAULT_OMEGA, StepRRBatch
from verl_avconfuse.reference.similarity import DEFAULT_EMBEDDING_MODEL, get_similarity_model


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    embedding_model: str = DEFAULT_EMBEDDING_MODEL,
    omega: float = DEFAULT_OMEGA,
    **kwargs,
) -> dict[str, float]:
    extra_info = extra_info or {}
    batch = StepRRBatch((parse_response(solution_str),), (extra_info.get("reference_a_think"),))
    pairs = batch.pairs
    sims = get_similarity_model(embedding_model).score(pairs).tolist() if pairs else []
    options = extra_info.get("options")
    (scores,) = batch.scores(
        [ground_truth], sims, omega=omega, options_list=[list(options) if options is not None else None]
    )
    return {**scores, **data_index(extra_info)}
