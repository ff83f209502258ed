"""Where a step's policy-gradient signal lands: which GRPO groups carry any advantage, and on which questions.

GRPO's advantage is zero for every response of a group whose rewards all agree, so a step learns only from
groups whose rollouts differ. Two figures a step, from the advantages verl just computed:

- ``adv/nonzero_group_frac``: the share of groups (prompts) with a non-zero advantage on some response;
- ``adv/mass_frac/{cell}``: the share of the step's advantage mass, sum of ``|A|`` over responses, that lands
  on questions of each cell (the row's ``extra_info.cell``, when the data labels one).

Pure Python: the trainer passes one advantage per response (GRPO's is constant over the response's tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

#: An advantage at or below this magnitude counts as zero (verl's std epsilon leaves ~1e-6 residues).
ZERO_ADVANTAGE = 1e-6


def advantage_signal(
    uids: Sequence[object], advantages: Sequence[float], cells: Sequence[str | None] | None = None
) -> dict[str, float]:
    """The step's signal figures (module docstring) for responses with group ids ``uids``, one advantage each."""
    if len(uids) != len(advantages) or (cells is not None and len(cells) != len(uids)):
        raise ValueError(
            f"advantage_signal: expected one uid, advantage (and cell) per response, got {len(uids)} uids, "
            f"{len(advantages)} advantages{'' if cells is None else f', {len(cells)} cells'}"
        )
    moving: dict[object, bool] = {}
    for uid, advantage in zip(uids, advantages, strict=True):
        moving[uid] = moving.get(uid, False) or abs(advantage) > ZERO_ADVANTAGE
    metrics = {"adv/nonzero_group_frac": sum(moving.values()) / len(moving) if moving else 0.0}
    if cells is not None and any(cell is not None for cell in cells):
        total = sum(abs(a) for a in advantages)
        mass: dict[str, float] = {}
        for cell, advantage in zip(cells, advantages, strict=True):
            key = str(cell) if cell is not None else "unlabelled"
            mass[key] = mass.get(key, 0.0) + abs(advantage)
        for key, value in sorted(mass.items()):
            metrics[f"adv/mass_frac/{key}"] = value / total if total > 0 else 0.0
    return metrics
