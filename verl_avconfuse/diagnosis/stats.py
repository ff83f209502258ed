"""The maths of the layer-by-layer diagnosis: what one layer's next-token distribution says, and group means.

Pure functions of tensors and lists; nothing here imports a model, transformers or verl. torch is imported
inside the functions that take tensors, scipy (a dependency of sentence-transformers, so always installed)
inside :func:`mean_ci` for Student's t quantile.

- :func:`layer_readout`: from the logits each layer gives at the answer position (``(n_layers, V)``), per
  layer the entropy of the next-token distribution, P(yes) / (P(yes) + P(no)) by the evaluation's token rule,
  the probability mass on the yes/no tokens at all, and the rank of the model's final answer token;
- :func:`mean_ci`: a mean with its 95 % confidence interval (Student's t: ``mean +- t_{0.975, n-1} * s / sqrt(n)``);
- :func:`question_groups` / :func:`summarize_groups`: the groups a muted questions file defines (muted vs control,
  by instrument count) and, per group and per layer, the mean and CI of every readout;
- :func:`paired_differences`: muted minus control within each clip (a set built with ``--controls`` asks both
  about one clip), averaged over clips: the contrast with the clip's picture held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CONTROL",
    "MUTED",
    "READOUTS",
    "entropy_from_logits",
    "layer_readout",
    "mean_ci",
    "paired_differences",
    "question_groups",
    "summarize_groups",
]

#: Group of a question about the removed source (answer "no"), and of one about a source still heard ("yes").
MUTED, CONTROL = "muted", "control"
#: Per-layer readouts of :func:`layer_readout` that are averaged over a group, with their natural bounds
#: (a confidence interval is clipped to them; ``None``: unbounded on that side).
READOUTS: dict[str, tuple[float | None, float | None]] = {
    "entropy": (0.0, None),
    "p_yes": (0.0, 1.0),
    "yes_no_mass": (0.0, 1.0),
    "answer_rank": (1.0, None),
}


def entropy_from_logits(logits: Any) -> Any:
    """Shannon entropy (nats) of ``softmax(logits)`` over the last axis, computed in float64.

    Args:
        logits: ``(..., V)`` tensor.

    Returns:
        ``(...)`` float64 tensor, ``-sum_v p_v log p_v`` (a token of probability 0 adds 0).
    """
    import torch

    log_p = torch.log_softmax(logits.to(torch.float64), dim=-1)
    p = log_p.exp()
    return -(torch.where(p > 0, p * log_p, torch.zeros_like(p))).sum(dim=-1)


def layer_readout(logits: Any, yes_ids: Sequence[int], no_ids: Sequence[int], answer_id: int) -> dict[str, list[float]]:
    """What each layer's next-token distribution says at the answer position.

    Args:
        logits: ``(n_layers, V)``: row ``l`` is layer ``l``'s logits (the logit lens of
            :mod:`verl_avconfuse.diagnosis.lens`; row 0 the embedding output, the last row the model's own).
        yes_ids / no_ids: token ids of the "yes" / "no" variants (the evaluation's rule:
            :func:`verl_avconfuse.evaluation.yes_probability.single_token_variants` of ``YES_STRINGS`` / ``NO_STRINGS``).
        answer_id: the token the model answers with (the top token of the last row).

    Returns:
        lists of length ``n_layers``:

        - ``entropy``: nats of the whole next-token distribution;
        - ``p_yes``: ``P(yes) / (P(yes) + P(no))``, each side summed over its variants (as ``mean_p_yes``);
        - ``yes_no_mass``: ``P(yes) + P(no)``, how much of the distribution is on an answer token at all
          (a layer with ``p_yes`` 0.9 but mass 1e-4 has not yet decided to answer yes or no);
        - ``answer_rank``: 1 + the number of tokens with a higher logit than ``answer_id`` (1: the layer's
          top token is the final answer);
        - ``top_token``: each layer's most likely token id.
    """
    import torch

    if logits.ndim != 2:
        raise ValueError(f"layer_readout: logits must be (n_layers, V), got shape {tuple(logits.shape)}")
    if not yes_ids or not no_ids:
        raise ValueError("layer_readout: yes_ids and no_ids must both be non-empty")
    logits = logits.to(torch.float64)
    log_p = torch.log_softmax(logits, dim=-1)
    log_yes = torch.logsumexp(log_p[:, list(yes_ids)], dim=-1)
    log_no = torch.logsumexp(log_p[:, list(no_ids)], dim=-1)
    log_both = torch.logaddexp(log_yes, log_no)
    answer = logits[:, answer_id : answer_id + 1]
    return {
        "entropy": entropy_from_logits(logits).tolist(),
        "p_yes": (log_yes - log_both).exp().tolist(),
        "yes_no_mass": log_both.exp().tolist(),
        "answer_rank": (1 + (logits > answer).sum(dim=-1)).to(torch.float64).tolist(),
        "top_token": logits.argmax(dim=-1).tolist(),
    }


def mean_ci(
    values: Iterable[float], confidence: float = 0.95, bounds: tuple[float | None, float | None] = (None, None)
) -> dict[str, float | int | None]:
    """``{"mean", "ci_low", "ci_high", "n"}`` of the finite ``values``; Student's t interval.

    ``mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation (``n - 1``
    in the denominator), clipped to ``bounds`` (a probability's CI stays within [0, 1]). With one value
    the interval is ``None`` (no spread to estimate); with none, everything is ``None`` and ``n`` is 0.
    NaN values (e.g. a P(yes) whose yes and no probabilities both underflow) are left out and not counted.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = math.fsum(finite) / n
    if n == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    from scipy.stats import t

    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    half = float(t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds[0] is not None:
        low = max(low, bounds[0])
    if bounds[1] is not None:
        high = min(high, bounds[1])
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": n}


def question_groups(answer: str, instruments_len: str | None, by_count: bool) -> list[str]:
    """The groups one muted-setting question counts in.

    ``answer`` "no" (the question asks about the removed source) is :data:`MUTED`, "yes" (a source still
    heard; a set built with ``--controls``) is :data:`CONTROL`; with ``by_count`` also ``"muted/two"``,
    ``"control/three"``, ... by the file's ``instruments_len``.
    """
    answer = answer.strip().lower()
    if answer not in ("yes", "no"):
        raise ValueError(f"question_groups: answer must be 'yes' or 'no', got {answer!r}")
    kind = MUTED if answer == "no" else CONTROL
    groups = [kind]
    if by_count and instruments_len:
        groups.append(f"{kind}/{instruments_len}")
    return groups


def summarize_groups(
    records: Sequence[Mapping[str, Any]], confidence: float = 0.95, readouts: Mapping[str, tuple] = READOUTS
) -> dict[str, dict[str, Any]]:
    """Per group, per readout, per layer: :func:`mean_ci` over the group's questions.

    Args:
        records: one per question, with ``groups`` (names, :func:`question_groups`) and, for each readout in
            ``readouts``, a list over layers (all records the same length).

    Returns:
        ``{group: {"n": questions, readout: [{"layer": l, "mean", "ci_low", "ci_high", "n"}, ...]}}``, groups
        in first-seen order.
    """
    if not records:
        raise ValueError("summarize_groups: no records")
    n_layers = {len(r[name]) for r in records for name in readouts}
    if len(n_layers) != 1:
        raise ValueError(f"summarize_groups: records have different numbers of layers {sorted(n_layers)}")
    (depth,) = n_layers
    members: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        for group in record["groups"]:
            members.setdefault(group, []).append(record)
    summary: dict[str, dict[str, Any]] = {}
    for group, rows in members.items():
        entry: dict[str, Any] = {"n": len(rows)}
        for name, bounds in readouts.items():
            entry[name] = [
                {"layer": layer, **mean_ci((r[name][layer] for r in rows), confidence, bounds)}
                for layer in range(depth)
            ]
        summary[group] = entry
    return summary


def paired_differences(
    records: Sequence[Mapping[str, Any]],
    confidence: float = 0.95,
    readouts: Sequence[str] = ("entropy", "p_yes"),
) -> dict[str, Any] | None:
    """Per layer, the mean over clips of (muted mean - control mean) within the clip, with its CI.

    A clip's muted question asks about the removed instrument, its controls about the ones still heard, over
    the same picture and the same remaining audio; the within-clip difference takes the clip out of the
    comparison, so its interval is the one to read for "does the model treat a muted source differently".

    Args:
        records: as for :func:`summarize_groups`, with ``video_id`` and the kind (:data:`MUTED` or
            :data:`CONTROL`) as the first of ``groups``.

    Returns:
        ``{"n_clips": k, readout: [{"layer", "mean", "ci_low", "ci_high", "n"}, ...]}`` over the ``k`` clips
        that have both a muted and a control question; ``None`` when no clip has both (e.g. the published
        file, which has no controls).
    """
    clips: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for record in records:
        clips.setdefault(str(record["video_id"]), {MUTED: [], CONTROL: []})[record["groups"][0]].append(record)
    paired = [kinds for kinds in clips.values() if kinds[MUTED] and kinds[CONTROL]]
    if not paired:
        return None
    depth = len(records[0][readouts[0]])

    def clip_mean(rows: Sequence[Mapping[str, Any]], name: str, layer: int) -> float:
        return math.fsum(float(r[name][layer]) for r in rows) / len(rows)

    result: dict[str, Any] = {"n_clips": len(paired)}
    for name in readouts:
        result[name] = [
            {
                "layer": layer,
                **mean_ci(
                    (clip_mean(k[MUTED], name, layer) - clip_mean(k[CONTROL], name, layer) for k in paired),
                    confidence,
                ),
            }
            for layer in range(depth)
        ]
    return result
