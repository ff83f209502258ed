"""Step-RR: RL-CoMM's step-wise reasoning reward (arXiv 2511.10059, Sec. "Step-RR", stage 2), as pure functions.

For one response with audio reasoning ``a`` (``<a-think>``), visual reasoning ``v`` (``<v-think>``), answer
``y``, the reference LALM's audio reasoning ``a_ref`` and the ground truth ``y*``::

    r        = r_format + r_arr + r_avc                                in [0, 4]
    r_format = 1 if the three-part format holds else 0
    r_arr    = 1 if sim(a, a_ref) > omega and y == y*, else 0          (audio reasoning reward, omega = 0.8)
    r_avc    = 1 + s if y == y*;  s if y is given but wrong;  0 if no answer
    s        = clip(sim(a, v), 0, 1)                                    (audio-visual consistency)

``sim`` is the cosine similarity of text embeddings (Qwen3-Embedding in the paper). The embeddings are
computed elsewhere (:mod:`verl_avconfuse.reference.similarity`), in one batched pass per step;
:func:`similarity_requests` says which text pairs that pass needs and :func:`step_rr_scores` turns the
resulting similarities into the reward. Choices the paper leaves open (missing blocks, clipping, the strict
``>``) are listed in docs/step_rr.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from verl_avconfuse.method.answers import answers_match
from verl_avconfuse.method.parsing import ParsedResponse

#: The paper's ARR threshold omega: the policy's audio reasoning must be *more* similar than this.
DEFAULT_OMEGA = 0.8
#: Names of the values :func:`step_rr_scores` returns, in a fixed order (for logging ``reward/<key>``).
SCORE_KEYS: tuple[str, ...] = ("format", "arr", "avc", "acc", "score")

# A cosine similarity lies in [-1, 1]; low-precision embeddings overshoot by a little. Anything further out
# is not a cosine similarity (e.g. a dot product of unnormalised embeddings) and is refused, not clipped.
_SIM_SLACK = 0.05


class SimilarityPair(NamedTuple):
    """Two texts to embed and compare.

    ``kind`` (``"arr"`` or ``"avc"``) picks the embedding instruction, which goes on the ``query`` side only
    (Qwen3-Embedding's ``Instruct: {task}\\nQuery:``); ``document`` is embedded bare. Field names match what
    :meth:`verl_avconfuse.reference.similarity.SimilarityModel.score` reads.
    """

    kind: str
    query: str
    document: str


def similarity_requests(
    parsed: ParsedResponse, reference_a_think: str | None
) -> tuple[SimilarityPair | None, SimilarityPair | None]:
    """The text pairs whose similarities one response's Step-RR needs.

    Args:
        parsed: the policy response.
        reference_a_think: the reference LALM's audio reasoning for this prompt (the same for the whole GRPO
            group), e.g. from :func:`verl_avconfuse.method.reference_a_think`; ``None`` if there is none.

    Returns:
        ``(arr_pair, avc_pair)``: ``arr_pair = ("arr", reference a-think, policy a-think)`` gives
        ``sim_a_ref`` (the reference is the query, as in the release: "given a reference answer, retrieve
        similar content"); ``avc_pair = ("avc", policy a-think, policy v-think)`` gives ``sim_a_v`` (this
        response's *own* v-think). A pair is ``None`` when one of its texts is missing; pass the matching
        similarity as ``None`` (its reward term then uses 0).
    """
    if reference_a_think is not None and not isinstance(reference_a_think, str):
        raise TypeError(
            f"similarity_requests: reference_a_think must be a str or None, got {type(reference_a_think).__name__}"
        )
    a_think, v_think = parsed.a_think, parsed.v_think
    reference = reference_a_think.strip() if reference_a_think else None
    arr = SimilarityPair("arr", reference, a_think) if reference and a_think else None
    avc = SimilarityPair("avc", a_think, v_think) if a_think and v_think else None
    return arr, avc


def _checked_sim(name: str, sim: float | None) -> float | None:
    if sim is None:
        return None
    sim = float(sim)
    if not math.isfinite(sim) or abs(sim) > 1.0 + _SIM_SLACK:
        raise ValueError(f"step_rr_scores: {name} must be a cosine similarity in [-1, 1] or None, got {sim!r}")
    return sim


def step_rr_scores(
    parsed: ParsedResponse,
    ground_truth: str,
    sim_a_ref: float | None,
    sim_a_v: float | None,
    omega: float = DEFAULT_OMEGA,
    options: Sequence[str] | None = None,
) -> dict[str, float]:
    """Step-RR reward of one response (module docstring: the equations).

    Args:
        parsed: the response, from :func:`verl_avconfuse.method.parsing.parse_response`.
        ground_truth: the right answer (text; for multiple choice the option text or letter).
        sim_a_ref: cosine similarity of the policy a-think and the reference a-think, in [-1, 1];
            ``None`` when there is no reference (then ``r_arr = 0``).
        sim_a_v: cosine similarity of the policy a-think and v-think, in [-1, 1]; ``None`` when not computed.
        omega: ARR threshold; ``r_arr`` needs ``sim_a_ref > omega`` (strict).
        options: multiple-choice options (``options[0]`` = A), or ``None``.

    Returns:
        ``{"format", "arr", "avc", "acc", "score"}``, all Python floats: ``format``, ``arr``, ``acc`` in
        {0, 1}, ``avc`` in [0, 2], ``score = format + arr + avc`` in [0, 4]. A missing a-think zeroes both
        similarities and a missing v-think zeroes ``sim_a_v``, whatever was passed.

    Raises:
        ValueError: a similarity that is NaN/inf or outside [-1, 1] (beyond a 0.05 float slack).
    """
    sim_a_ref = _checked_sim("sim_a_ref", sim_a_ref)
    sim_a_v = _checked_sim("sim_a_v", sim_a_v)
    if parsed.a_think is None:
        sim_a_ref = sim_a_v = 0.0
    if parsed.v_think is None:
        sim_a_v = 0.0

    right = answers_match(parsed.answer, ground_truth, options)
    r_format = 1.0 if parsed.well_formed else 0.0
    r_arr = 1.0 if right and sim_a_ref is not None and sim_a_ref > omega else 0.0
    s = min(max(sim_a_v or 0.0, 0.0), 1.0)
    if right:
        r_avc = 1.0 + s
    elif parsed.answer is not None:
        r_avc = s
    else:
        r_avc = 0.0
    return {
        "format": r_format,
        "arr": r_arr,
        "avc": r_avc,
        "acc": 1.0 if right else 0.0,
        "score": r_format + r_arr + r_avc,
    }


def step_rr_batch(
    parsed_list: Sequence[ParsedResponse],
    ground_truths: Sequence[str],
    sims_a_ref: Sequence[float | None],
    sims_a_v: Sequence[float | None],
    omega: float = DEFAULT_OMEGA,
    options_list: Sequence[Sequence[str] | None] | None = None,
) -> list[dict[str, float]]:
    """:func:`step_rr_scores` over a batch: one dict per completion (TRL / verl batch-reward style).

    All sequences have length ``bs`` (one entry per completion; a prompt's ground truth is repeated for each
    of its G rollouts). ``options_list=None`` means no multiple-choice question in the batch.
    """
    n = len(parsed_list)
    columns = {"ground_truths": ground_truths, "sims_a_ref": sims_a_ref, "sims_a_v": sims_a_v}
    if options_list is not None:
        columns["options_list"] = options_list
    for name, column in columns.items():
        if len(column) != n:
            raise ValueError(f"step_rr_batch: {name} has {len(column)} entries, parsed_list has {n}")
    options_seq = options_list if options_list is not None else [None] * n
    return [
        step_rr_scores(p, gt, s_ref, s_av, omega=omega, options=opts)
        for p, gt, s_ref, s_av, opts in zip(parsed_list, ground_truths, sims_a_ref, sims_a_v, options_seq, strict=True)
    ]


@dataclass(frozen=True)
class StepRRBatch:
    """Step-RR over a batch of responses, in two steps around the one embedding pass a step makes.

    ``pairs`` are the text pairs to embed, every response's ``(arr, avc)`` pairs that exist, in order;
    :meth:`scores` takes their similarities, in that order, and gives one :func:`step_rr_scores` dict per
    response. The ``step_rr`` reward manager (one response per call, its embedding batched across calls) and
    ``reward_fns/step_rr.py`` (verl's ``custom_reward_function``) both score this way.

    Args:
        parsed: the responses (``bs``), from :func:`verl_avconfuse.method.parsing.parse_response`.
        references: each response's reference a-think (the same for a prompt's G rollouts); ``None``: none.
    """

    parsed: tuple[ParsedResponse, ...]
    references: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if len(self.parsed) != len(self.references):
            raise ValueError(f"StepRRBatch: {len(self.references)} references for {len(self.parsed)} responses")

    @property
    def requests(self) -> list[tuple[SimilarityPair | None, SimilarityPair | None]]:
        """Each response's ``(arr_pair, avc_pair)`` (:func:`similarity_requests`)."""
        return [similarity_requests(p, r) for p, r in zip(self.parsed, self.references, strict=True)]

    @property
    def pairs(self) -> list[SimilarityPair]:
        """The pairs to embed, flat: every response's arr then avc pair, those that exist."""
        return [pair for request in self.requests for pair in request if pair is not None]

    def scores(
        self,
        ground_truths: Sequence[str],
        similarities: Sequence[float] | None,
        omega: float = DEFAULT_OMEGA,
        options_list: Sequence[Sequence[str] | None] | None = None,
    ) -> list[dict[str, float]]:
        """One :func:`step_rr_scores` dict per response.

        ``similarities``: one per :attr:`pairs` entry, in order; ``None`` when the embedding pass failed (every
        similarity is then ``None``: ``r_arr = 0`` and ``s = 0``).
        """
        requests = self.requests
        if similarities is not None and len(similarities) != sum(p is not None for r in requests for p in r):
            raise ValueError(f"StepRRBatch.scores: {len(similarities)} similarities for {len(self.pairs)} pairs")
        sims = iter(similarities if similarities is not None else [])
        sims_a_ref, sims_a_v = [], []
        for arr_pair, avc_pair in requests:
            sims_a_ref.append(next(sims) if arr_pair is not None and similarities is not None else None)
            sims_a_v.append(next(sims) if avc_pair is not None and similarities is not None else None)
        return step_rr_batch(self.parsed, ground_truths, sims_a_ref, sims_a_v, omega=omega, options_list=options_list)
