"""The docs and the code say the same: every metric name the docs mention is one a run logs, and the rules the
docs state by example give what the docs say.

The logged names are read from the committed learning runs (``benchmarks/results/learning_stage{2,3}.json``:
every step's console metrics of real ``main_ppo`` runs of the Step-RR and Ans-CO recipes), not from a list
kept by hand, so a renamed metric fails here until the docs follow.
"""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: A backticked token with one of these roots is a metric name (``data/json/...`` paths are not).
METRIC = re.compile(
    r"`((?:reward|reference|similarity|ansco|critic|actor|training|rollout/media)/[A-Za-z0-9_/{},*.-]+|data/skipped_samples)`"
)
#: Names the docs mention that the learning runs do not log, each with the reason and how it is checked.
NOT_IN_THE_RUNS = {
    # docs/ans_co.md says the Ans-CO update does *not* report it (asserted absent below)
    "actor/entropy_loss": "named as absent from the Ans-CO update",
}


def _logged() -> dict[str, set[str]]:
    """Every metric name each committed learning run logged, per stage, and the prefetch runs'."""
    out = {}
    for stage in (2, 3):
        summary = json.loads((REPO / "benchmarks" / "results" / f"learning_stage{stage}.json").read_text())
        names: set[str] = set()
        for steps in [summary["run"], summary["control"], *(arm["steps"] for arm in summary.get("arms", {}).values())]:
            for metrics in steps.values():
                names |= set(metrics)
        out[f"stage {stage}"] = names
    # the reference prefetch's metrics are logged by the runs of benchmarks/bench_rl_comm_runs.py
    runs = json.loads((REPO / "benchmarks" / "results" / "rl_comm_runs.json").read_text())["runs"]
    out["rl_comm_runs"] = {name for run in runs.values() for metrics in run["steps"].values() for name in metrics}
    return out


def _expand(name: str) -> list[str]:
    """``reward/{format,arr}/mean`` -> ``reward/format/mean``, ``reward/arr/mean`` (one brace group at a time)."""
    match = re.search(r"\{([^{}]*)\}", name)
    if not match:
        return [name]
    return [
        n for part in match.group(1).split(",") for n in _expand(name[: match.start()] + part + name[match.end() :])
    ]


def _returned_by_the_pure_ans_co_function() -> set[str]:
    """The keys ``ans_co_loss_from_stats`` returns (its sums and counts are not logged; docs/ans_co.md lists them)."""
    import torch

    from verl_avconfuse.method.ans_co import ans_co_loss_from_stats

    mask = torch.ones(1, 3, dtype=torch.bool)
    _, metrics = ans_co_loss_from_stats(
        torch.zeros(1, 3), torch.zeros(1, 3), mask, mask, torch.ones(1, dtype=torch.bool), vocab_size=8
    )
    return set(metrics)


def _mentioned() -> dict[str, set[str]]:
    mentioned: dict[str, set[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        for token in METRIC.findall(text):
            for name in _expand(token):
                mentioned.setdefault(name, set()).add(doc.relative_to(REPO).as_posix())
    return mentioned


def test_the_docs_mention_metrics():
    # the pattern finds what it is for: the README names the Step-RR components and Ans-CO's gate
    mentioned = _mentioned()
    assert {"reward/format/mean", "reward/avc/mean", "ansco/gated_fraction", "reference/batched_calls"} <= set(
        mentioned
    )
    assert not any(name.startswith("data/json") for name in mentioned)


def test_every_metric_the_docs_mention_is_logged():
    logged = set().union(*_logged().values())
    pure = _returned_by_the_pure_ans_co_function()
    unknown = {}
    for name, docs in sorted(_mentioned().items()):
        if name in NOT_IN_THE_RUNS or (name in pure and docs == {"docs/ans_co.md"}):
            continue
        if not (fnmatch.filter(logged, name) if "*" in name else name in logged):
            unknown[name] = sorted(docs)
    assert not unknown, f"mentioned in the docs, never logged by the committed runs: {unknown}"


def test_names_mentioned_as_absent_are_absent():
    stage3 = json.loads((REPO / "benchmarks" / "results" / "learning_stage3.json").read_text())
    for name in NOT_IN_THE_RUNS:
        assert all(name not in metrics for metrics in stage3["run"].values()), name


def test_the_pure_functions_sums_and_counts_the_docs_list_are_what_it_returns():
    """docs/ans_co.md names the sums and counts ans_co_loss_from_stats returns beside its means."""
    doc = (REPO / "docs" / "ans_co.md").read_text()
    listed = {name for token in METRIC.findall(doc) for name in _expand(token) if name.endswith(("_sum", "_count"))}
    assert len(listed) == 8 and listed <= _returned_by_the_pure_ans_co_function()


# ------------------------------------------------------------------------------------ rules by example


def test_an_answer_before_the_reasoning_is_no_answer():
    """docs/step_rr.md: ``<answer>no</answer><a-think>...`` has no answer, and scores as unanswered."""
    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.method.step_rr import step_rr_scores

    doc = (REPO / "docs" / "step_rr.md").read_text()
    assert "(`<answer>no</answer><a-think>…</a-think>` has none" in doc
    parsed = parse_response("<answer>no</answer><a-think>I hear a drill.</a-think>")
    assert parsed.answer is None
    scores = step_rr_scores(parsed, "no", 0.9, 0.5)
    assert scores["acc"] == 0.0 and scores["avc"] == 0.0 and scores["arr"] == 0.0


@pytest.mark.parametrize("doc", ["README.md", "docs/paper_deviations.md", "docs/ans_co.md"])
def test_the_stage_3_default_and_its_paper_switch_are_what_the_docs_say(doc):
    """pg_coef 1.0 by default (the recipe and the settings), pg_coef=0 the paper's L_OP alone."""
    from omegaconf import OmegaConf

    from verl_avconfuse.settings import AnsCoSettings

    recipe = OmegaConf.load(REPO / "recipes" / "avconfuse_ansco.yaml").avconfuse.ans_co
    assert recipe.pg_coef == AnsCoSettings().pg_coef == 1.0
    assert recipe.normalize_by == AnsCoSettings().normalize_by == "batch"
    assert "pg_coef=0" in (REPO / doc).read_text()
