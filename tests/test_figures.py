"""Every figure the README, docs/ and benchmarks/README.md quote equals its result file in benchmarks/results/.

A figure is found in its document by a pattern around it (the table row, the sentence), each number it
captures is compared with the value computed from the result file, to the digits the document shows
(``0.537`` matches 0.5374; ``0.54`` would not match 0.5474). A figure whose text changed so the pattern no
longer finds it fails too: edit the number and its entry here together. Result files are written by the
command that measured them (``--result``), with the command, commit, machine, dates and load average.

"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from conftest import REPO

RESULTS = REPO / "benchmarks" / "results"
#: Result files that may be absent for now, and why (the figure is skipped, not passed, while it is).
PENDING: dict[str, str] = {}
#: Result files written before the provenance module, with a header of their own: command, commit, machine (a
#: line of text) and date.
OWN_HEADER = {"rl_comm_runs.json", "rl_comm_runs_2s_poll.json", "layer_entropy_replica.json"}
NUMBER = r"(-?\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Figure:
    name: str
    doc: str
    #: a regex whose groups are the quoted numbers, in the order ``values`` returns them; it is matched
    #: against the document with every run of whitespace made one space
    pattern: str
    result: str
    values: Callable[[dict], list[float]]
    #: where in the document to start looking (a README has a stage-2 and a stage-3 table of the same rows)
    after: str = ""


def _series(steps: dict, metric: str) -> list[float]:
    return [steps[key][metric] for key in sorted(steps, key=int)]


def _ends(steps: dict, metric: str, k: int) -> list[float]:
    values = _series(steps, metric)
    return [statistics.fmean(values[:k]), statistics.fmean(values[-k:])]


def _row(metric: str, columns: int) -> str:
    """A markdown table row ``| `metric` | n | n | ... |``."""
    return r"\| `" + re.escape(metric) + r"` \| " + r" \| ".join([NUMBER] * columns) + r" \|"


def _learning_row(metric: str, k: int) -> Callable[[dict], list[float]]:
    return lambda d: [*_ends(d["run"], metric, k), *_ends(d["control"], metric, k)]


def _loads(d: dict) -> list[float]:
    loads = [v for timing in d["timings"].values() for v in (timing["load_1min_at_start"], timing["load_1min_at_end"])]
    return [min(loads), max(loads)]


STAGE2 = "learning_stage2.json"
STAGE3 = "learning_stage3.json"
STAGE2_METRICS = (
    "critic/score/mean",
    "reward/format/mean",
    "reward/acc/mean",
    "reward/arr/mean",
    "reward/arr_of_right/mean",
)
STAGE3_METRICS = (
    "ansco/answer_entropy",
    "ansco/gated_fraction",
    "ansco/u_mean",
    "ansco/nll",
    "critic/score/mean",
    "reward/acc/mean",
)


def _stage3_arms(metric: str) -> Callable[[dict], list[float]]:
    def values(d):
        arm = d["arms"]["lop_only"]["steps"]
        return [*_ends(d["run"], metric, 4), *_ends(d["control"], metric, 4), *_ends(arm, metric, 4)]

    return values


ABLATION_COLUMNS = (
    "listening_accuracy",
    "conflict_accuracy",
    "muted_accuracy",
    "muted_yes_rate",
    "control_accuracy",
    "offscreen_heard_accuracy",
    "offscreen_silent_accuracy",
    "sync_accuracy",
    "a_think_hears_muted",
    "format_rate",
)
ABLATION_ARMS = ("grpo", "step_rr", "step_rr_ansco")
PAIRED_COLUMNS = ("listening_accuracy", "conflict_accuracy", "muted_accuracy", "muted_yes_rate")
MEAN_CI = NUMBER + " ± " + NUMBER


def _mean_ci(stat: dict, scale: float = 1.0) -> list[float]:
    return [scale * stat["mean"], scale * stat["ci95"]]


def _ablation_row(label: str, arm: str) -> Figure:
    """A row of docs/ablation.md's table, as the driver's ``markdown`` writes it."""
    if arm == "warm_start":
        pattern = r"\| " + re.escape(label) + r" \| - \| " + r" \| ".join([NUMBER] * len(ABLATION_COLUMNS)) + r" \|"
        return Figure(
            f"ablation table: {arm}",
            "docs/ablation.md",
            pattern,
            "ablation_replica.json",
            lambda d: [d["summary"]["warm_start"][m] for m in ABLATION_COLUMNS],
        )
    cells = r" \| ".join([MEAN_CI] * len(ABLATION_COLUMNS))
    return Figure(
        f"ablation table: {arm}",
        "docs/ablation.md",
        r"\| " + re.escape(label) + r" \| " + NUMBER + r" \| " + cells + r" \|",
        "ablation_replica.json",
        lambda d: [
            len(d["summary"]["arms"][arm]["seeds"]),
            *(v for m in ABLATION_COLUMNS for v in _mean_ci(d["summary"]["arms"][arm][m])),
        ],
    )


def _paired_row(name: str) -> Figure:
    return Figure(
        f"ablation paired difference: {name}",
        "docs/ablation.md",
        r"\| " + re.escape(name) + r" \| " + r" \| ".join([MEAN_CI] * len(PAIRED_COLUMNS)) + r" \|",
        "ablation_replica.json",
        lambda d: [v for m in PAIRED_COLUMNS for v in _mean_ci(d["summary"]["paired"][name][m])],
    )


def _signal_row(label: str, arm: str) -> Figure:
    return Figure(
        f"ablation signal: {arm}",
        "docs/ablation.md",
        r"\| " + re.escape(label) + r" \| " + MEAN_CI + r" \| " + MEAN_CI + r" \|",
        "ablation_replica.json",
        lambda d: [
            *_mean_ci(d["summary"]["arms"][arm]["adv/nonzero_group_frac"], 100),
            *_mean_ci(d["summary"]["arms"][arm]["adv/mass_frac/conflict"], 100),
        ],
        after="| signal (mean over steps, then over seeds)",
    )


def _arm_stats(metric: str, arms=("grpo", "step_rr_ansco", "step_rr")) -> Callable[[dict], list[float]]:
    return lambda d: [v for arm in arms for v in _mean_ci(d["summary"]["arms"][arm][metric])]


ABLATION_README_FIGURE = Figure(
    "ablation: README, the gate and the muted yes-rate, like with like",
    "README.md",
    r"here \*\*" + NUMBER + r"%\*\* of held-out synchronized questions right, \"yes\" to \*\*" + NUMBER
    + r"%\*\* of muted ones.*?muted \"yes\" rate: warm start " + NUMBER + r"% \(the paper's SFT: 94.52%\), GRPO "
    + MEAN_CI + r"% \(84.93%\), Step-RR -> Ans-CO " + MEAN_CI + r"% \(RL-CoMM: 72.60%\), Step-RR alone " + MEAN_CI
    + r"%. Listening accuracy \(mean of the four cells; 50 = only looking\): GRPO " + MEAN_CI + ", Step-RR "
    + MEAN_CI + r", Step-RR -> Ans-CO " + MEAN_CI + r"; Step-RR - GRPO, paired by seed, " + MEAN_CI + " points",
    "ablation_replica.json",
    lambda d: [
        d["summary"]["warm_start"]["sync_accuracy"],
        d["summary"]["warm_start"]["muted_yes_rate"],
        d["summary"]["warm_start"]["muted_yes_rate"],
        *_arm_stats("muted_yes_rate")(d),
        *_arm_stats("listening_accuracy", ("grpo", "step_rr", "step_rr_ansco"))(d),
        *_mean_ci(d["summary"]["paired"]["step_rr-grpo"]["listening_accuracy"]),
    ],
)  # fmt: skip
ABLATION_BENCH_FIGURE = Figure(
    "ablation: benchmarks/README.md",
    "benchmarks/README.md",
    r"\| ablation replica \(tiny thinker, four-cell confusion task, 24 RL steps, 5 seeds\)[^|]*\| " + NUMBER + " / "
    + MEAN_CI + " / " + MEAN_CI + " / " + MEAN_CI + "; " + NUMBER + " / " + MEAN_CI + " / " + MEAN_CI + " / "
    + MEAN_CI + r" % \|",
    "ablation_replica.json",
    lambda d: [
        d["summary"]["warm_start"]["listening_accuracy"],
        *_arm_stats("listening_accuracy", ("grpo", "step_rr", "step_rr_ansco"))(d),
        d["summary"]["warm_start"]["muted_yes_rate"],
        *_arm_stats("muted_yes_rate", ("grpo", "step_rr", "step_rr_ansco"))(d),
    ],
)  # fmt: skip


FIGURES = [
    # ---------------------------------------------------------------- README: the main job
    Figure(
        "main job wall time",
        "README.md",
        r"\*\*" + NUMBER + r" s\*\* with the tiny models and data cached, at a load average of " + NUMBER,
        "main_job_time.json",
        lambda d: [d["wall_s"] if d["tiny_assets_cached"] else float("nan"), d["load_1min_at_start"]],
    ),
    # ---------------------------------------------------------------- README: stage 2
    *(Figure(f"stage 2 table: {m}", "README.md", _row(m, 4), STAGE2, _learning_row(m, 4)) for m in STAGE2_METRICS),
    Figure(
        "stage 2 verdict",
        "README.md",
        r"`LEARNING gain=" + NUMBER + " control_gain=" + NUMBER + " noise=" + NUMBER + "`",
        STAGE2,
        lambda d: [d["gain"], d["control_gain"], d["noise"]],
    ),
    Figure(
        "stage 2 wall times and load",
        "README.md",
        r"run "
        + NUMBER
        + r" s \+ control "
        + NUMBER
        + r" s \(Dec 2026, 2-core machine, load average "
        + NUMBER
        + " at the start, "
        + NUMBER
        + " at the end",
        STAGE2,
        lambda d: [
            d["timings"]["run"]["wall_s"],
            d["timings"]["control"]["wall_s"],
            d["load_1min_at_start"],
            d["load_1min_at_end"],
        ],
    ),  # fmt: skip
    Figure(
        "stage 2, second seed",
        "README.md",
        r"run "
        + NUMBER
        + r" s \+ control "
        + NUMBER
        + r" s\) met the gate: `LEARNING gain="
        + NUMBER
        + " control_gain="
        + NUMBER
        + " noise="
        + NUMBER
        + "`, with ARR's share of the right answers rising from "
        + NUMBER
        + " to "
        + NUMBER
        + " in the run and falling from "
        + NUMBER
        + " to "
        + NUMBER
        + " in the control",
        "learning_stage2_seed1.json",
        lambda d: [
            d["timings"]["run"]["wall_s"],
            d["timings"]["control"]["wall_s"],
            d["gain"],
            d["control_gain"],
            d["noise"],
            *_ends(d["run"], "reward/arr_of_right/mean", 4),
            *_ends(d["control"], "reward/arr_of_right/mean", 4),
        ],
    ),  # fmt: skip
    Figure(
        "stage 2, both seeds' reward rise",
        "README.md",
        r"The reward rose by " + NUMBER + " in both seeds",
        "learning_stage2_seed1.json",
        lambda d: [d["gain"]],
    ),
    # ---------------------------------------------------------------- README: stage 3
    *(
        Figure(f"stage 3 table: {m}", "README.md", _row(m, 4), STAGE3, _learning_row(m, 4), after="**Stage 3**")
        for m in STAGE3_METRICS
    ),
    Figure(
        "stage 3 verdict",
        "README.md",
        r"`ANSCO entropy_drop=" + NUMBER + " control_drop=" + NUMBER + " noise=" + NUMBER + "`",
        STAGE3,
        lambda d: [d["gain"], d["control_gain"], d["noise"]],
    ),
    Figure(
        "stage 3 answer entropy per step",
        "README.md",
        r"the run's answer entropy is " + " ".join([NUMBER] * 8) + " and the control's " + " ".join([NUMBER] * 8),
        STAGE3,
        lambda d: [*_series(d["run"], "ansco/answer_entropy"), *_series(d["control"], "ansco/answer_entropy")],
    ),
    Figure(
        "stage 3 wall times and load",
        "README.md",
        r"run "
        + NUMBER
        + r" s, control "
        + NUMBER
        + r" s, `L_OP` alone "
        + NUMBER
        + r" s \(load average "
        + NUMBER
        + "-"
        + NUMBER
        + r"\)",
        STAGE3,
        lambda d: [*(d["timings"][n]["wall_s"] for n in ("run", "control", "lop_only")), *_loads(d)],
    ),  # fmt: skip
    # ---------------------------------------------------------------- docs/paper_deviations.md
    *(
        Figure(f"pg_coef comparison: {m}", "docs/paper_deviations.md", _row(m, 6), STAGE3, _stage3_arms(m))
        for m in (
            "ansco/answer_entropy",
            "critic/score/mean",
            "reward/acc/mean",
            "reward/format/mean",
            "ansco/nll",
        )
    ),
    Figure(
        "pg_coef comparison: entropy drops",
        "docs/paper_deviations.md",
        r"drops " + NUMBER + " for ours, " + NUMBER + r" for `L_OP` alone, " + NUMBER + " for PG only",
        STAGE3,
        lambda d: [d["gain"], d["arms"]["lop_only"]["gain"], d["control_gain"]],
    ),
    # ---------------------------------------------------------------- the ablation replica
    ABLATION_README_FIGURE,
    ABLATION_BENCH_FIGURE,
    # ---------------------------------------------------------------- Step-RR scoring
    Figure(
        "Step-RR scoring: instructions off, and when",
        "benchmarks/README.md",
        r"instructions off \(cpu_tiny\) \| \*\*" + NUMBER + r"\*\* \(16 prompts x 6, median of 3 per-round ratios\)"
        r"[^|]*\|[^|]*\|[^|]*\| 2-core Xeon, no GPU, 2026-12-07 (\d\d):(\d\d)-(\d\d):(\d\d), load "
        + NUMBER
        + "-"
        + NUMBER
        + ": one round took "
        + NUMBER
        + "-"
        + NUMBER
        + " s",
        "bench_step_rr.json",
        lambda d: [
            d["modes"]["off"]["ratio"],
            *(float(x) for x in d["started"][11:16].split(":")),
            *(float(x) for x in d["finished"][11:16].split(":")),
            d["load_1min_at_start"],
            d["load_1min_at_end"],
            min(t for m in d["modes"].values() for r in m["rounds_s"] for t in r.values()),
            max(t for m in d["modes"].values() for r in m["rounds_s"] for t in r.values()),
        ],
    ),  # fmt: skip
    Figure(
        "Step-RR scoring: the previous pipeline's texts",
        "benchmarks/README.md",
        r"\(a-think for ARR and again for AVC\) \| " + NUMBER + r" \|",
        "bench_step_rr.json",
        lambda d: [d["modes"]["off"]["ratio_before"]],
    ),
    Figure(
        "Step-RR scoring: texts per response",
        "benchmarks/README.md",
        r"embedded per response: instructions off / on \| " + NUMBER + " / " + NUMBER + r" \|",
        "bench_step_rr.json",
        lambda d: [d["modes"][m]["texts_embedded"] / d["modes"][m]["responses"] for m in ("off", "on")],
    ),
    Figure(
        "Step-RR scoring: instructions on",
        "benchmarks/README.md",
        r"instructions on \(the paper's setting\) \| \*\*" + NUMBER + r"\*\*",
        "bench_step_rr.json",
        lambda d: [d["modes"]["on"]["ratio"]],
    ),
    Figure(
        "Step-RR scoring: one call per response",
        "benchmarks/README.md",
        r"/ encoding \| " + NUMBER + r" \(off\); " + NUMBER + r" \(on\)",
        "bench_step_rr.json",
        lambda d: [d["modes"][m]["per_response_call_ratio"] for m in ("off", "on")],
    ),
    # ---------------------------------------------------------------- the Ans-CO actor update
    Figure(
        "Ans-CO update: answer-only vs vanilla",
        "benchmarks/README.md",
        r"allocations \*\*" + NUMBER + " / " + NUMBER + r" GiB\*\* \(\+" + NUMBER + r" %\); CPU time, median of 5 "
        r"per-round ratios, \*\*" + NUMBER + r"\*\*; wall time " + NUMBER,
        "bench_ans_co.json",
        lambda d: [
            d["variants"]["ansco_answer"]["allocated_gib"],
            d["variants"]["vanilla"]["allocated_gib"],
            100 * (d["variants"]["ansco_answer"]["allocated_gib"] / d["variants"]["vanilla"]["allocated_gib"] - 1),
            d["variants"]["ansco_answer"]["cpu_ratio"],
            d["variants"]["ansco_answer"]["ratio"],
        ],
    ),  # fmt: skip
    *(
        Figure(
            f"Ans-CO update: {variant}",
            "benchmarks/README.md",
            prefix + r"[^|]*\| allocations " + NUMBER + r" GiB \(\+" + NUMBER + r"[^)]*\); CPU time " + NUMBER,
            "bench_ans_co.json",
            lambda d, v=variant: [
                d["variants"][v]["allocated_gib"],
                d["variants"][v]["allocated_gib"] - d["variants"]["vanilla"]["allocated_gib"],
                d["variants"][v]["cpu_ratio"],
            ],
        )
        for variant, prefix in (
            ("ansco_answer_dense", r"\| the same, plain-indexed answer rows"),
            ("ansco_answer_hidden", r"\| the same, answer logits recomputed"),
        )
    ),
    Figure(
        "Ans-CO update: all-position entropy",
        "benchmarks/README.md",
        r"all-position entropy\) / vanilla PG \| allocations " + NUMBER + " GiB; CPU time " + NUMBER,
        "bench_ans_co.json",
        lambda d: [d["variants"]["ansco_all"]["allocated_gib"], d["variants"]["ansco_all"]["cpu_ratio"]],
    ),
    Figure(
        "Ans-CO update: when, load, round times",
        "benchmarks/README.md",
        r"2026-12-07 (\d\d):(\d\d)-(\d\d):(\d\d), load "
        + NUMBER
        + " → "
        + NUMBER
        + r": update rounds took "
        + NUMBER
        + "-"
        + NUMBER
        + " s",
        "bench_ans_co.json",
        lambda d: [
            *(float(x) for x in d["started"][11:16].split(":")),
            *(float(x) for x in d["finished"][11:16].split(":")),
            d["load_1min_at_start"],
            d["load_1min_at_end"],
            min(t for v in d["variants"].values() for t in v["rounds_s"]),
            max(t for v in d["variants"].values() for t in v["rounds_s"]),
        ],
    ),  # fmt: skip
    Figure(
        "Ans-CO dense gradient (docs/ans_co.md)",
        "docs/ans_co.md",
        r"\(0.43 GiB at 768 tokens in fp32: " + NUMBER + " against " + NUMBER + " GiB allocated",
        "bench_ans_co.json",
        lambda d: [
            d["variants"]["ansco_answer_dense"]["allocated_gib"],
            d["variants"]["ansco_answer"]["allocated_gib"],
        ],
    ),
    # ---------------------------------------------------------------- RL-CoMM / GRPO step time (issue 28)
    Figure(
        "RL-CoMM / GRPO step time, prefetch off / on / next",
        "benchmarks/README.md",
        r"RL-CoMM step time / GRPO-baseline step time: prefetch off / on / next \| epoch 1 \*\*"
        + " / ".join([NUMBER] * 3)
        + r"\*\*",
        "rl_comm_runs.json",
        lambda d: [d["prefetch"][k]["step_ratio"]["epoch1"] for k in ("off", "on", "next")],
    ),
    Figure(
        "reference wait fraction, prefetch off / on / next",
        "benchmarks/README.md",
        r"`reference_wait_fraction`: mean wait[^|]*\| \*\*" + " / ".join([NUMBER] * 3) + r"\*\*",
        "rl_comm_runs.json",
        lambda d: [d["prefetch"][k]["reference_wait_fraction"] for k in ("off", "on", "next")],
    ),
    # ---------------------------------------------------------------- layer entropy (issue 29)
    Figure(
        "layer entropy on the replica's muted set, last layer",
        "benchmarks/README.md",
        r"\| entropy "
        + NUMBER
        + " / "
        + NUMBER
        + ", "
        + NUMBER
        + " / "
        + NUMBER
        + "; "
        + NUMBER
        + " / "
        + NUMBER
        + ", "
        + NUMBER
        + " / "
        + NUMBER
        + " nats",
        "layer_entropy_replica.json",
        lambda d: [
            d["runs"][reading][model]["groups"][group]["entropy"][-1]["mean"]
            for reading in ("skip", "generate")
            for model in ("tiny_thinker", "warm_start")
            for group in ("muted", "control")
        ],
    ),  # fmt: skip
    # ---------------------------------------------------------------- the vLLM rollout (issue 24)
    Figure(
        "vLLM / HF rollout, steps 2-5",
        "docs/vllm_omni.md",
        r"generation vLLM / HF \*\*"
        + NUMBER
        + r"\*\*, weight sync \*\*"
        + NUMBER
        + r"\*\* \("
        + NUMBER
        + " s against "
        + NUMBER
        + r" s: the layerwise reload\), step \*\*"
        + NUMBER
        + r"\*\*",
        "vllm_rollout.json",
        lambda d: [
            d["rollout"]["steps_2_to_n"]["timing_s/gen"]["vllm_over_hf"],
            d["rollout"]["steps_2_to_n"]["timing_s/update_weights"]["vllm_over_hf"],
            d["rollout"]["steps_2_to_n"]["timing_s/update_weights"]["vllm_median_s"],
            d["rollout"]["steps_2_to_n"]["timing_s/update_weights"]["hf_median_s"],
            d["rollout"]["steps_2_to_n"]["timing_s/step"]["vllm_over_hf"],
        ],
    ),  # fmt: skip
    Figure(
        "vLLM processor cache, off / on time",
        "docs/vllm_omni.md",
        r"4 clips x 4 identical requests \*\*" + NUMBER + r"\*\* times faster",
        "vllm_rollout.json",
        lambda d: [d["processor_cache"]["cache_off_over_on_time"]],
    ),
    _ablation_row("warm start (SFT, gated)", "warm_start"),
    _ablation_row("GRPO (format + accuracy)", "grpo"),
    _ablation_row("Step-RR", "step_rr"),
    _ablation_row("Step-RR -> Ans-CO", "step_rr_ansco"),
    _paired_row("step_rr-grpo"),
    _paired_row("step_rr_ansco-grpo"),
    _signal_row("GRPO (format + accuracy)", "grpo"),
    _signal_row("Step-RR", "step_rr"),
    _signal_row("Step-RR -> Ans-CO", "step_rr_ansco"),
]


def _quoted(figure: Figure) -> list[str]:
    text = re.sub(r"\s+", " ", (REPO / figure.doc).read_text())  # line breaks in prose are spaces
    start = text.find(figure.after)
    assert start >= 0, f"{figure.doc}: no '{figure.after}' to look for '{figure.name}' after"
    match = re.search(figure.pattern, text[start:])
    assert match, f"{figure.doc} no longer quotes '{figure.name}' as tests/test_figures.py expects: update both"
    return list(match.groups())


def _equal_to_the_digits_shown(quoted: str, value: float) -> bool:
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    return abs(float(quoted) - value) <= 0.5 * 10**-decimals + 1e-9


@pytest.mark.parametrize("figure", FIGURES, ids=[f.name for f in FIGURES])
def test_every_quoted_figure_equals_its_result_file(figure):
    path = RESULTS / figure.result
    if not path.exists() and figure.result in PENDING:
        pytest.skip(PENDING[figure.result])
    quoted = _quoted(figure)
    values = figure.values(json.loads(path.read_text()))
    assert len(quoted) == len(values), (quoted, values)
    wrong = [(q, v) for q, v in zip(quoted, values, strict=True) if not _equal_to_the_digits_shown(q, v)]
    assert not wrong, f"{figure.doc}, {figure.name}: quoted vs {figure.result}: {wrong}"


def test_a_stale_figure_fails():
    """The comparison the test above makes, on a figure changed in its last shown digit."""
    assert _equal_to_the_digits_shown("0.537", 0.5374) and _equal_to_the_digits_shown("138", 138.4)
    assert not _equal_to_the_digits_shown("0.538", 0.5374) and not _equal_to_the_digits_shown("0.54", 0.5474)


def test_every_result_file_says_where_and_when_it_was_measured():
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert data.get("command"), path.name
        if path.name in OWN_HEADER:
            assert len(data["commit"]) == 40 and "UTC" in data["date"] and data["machine"], path.name
            continue
        assert len(data["commit"]) == 40 and data["machine"]["cpu_count"] >= 1, path.name
        assert {"started", "finished", "load_1min_at_start", "load_1min_at_end"} <= set(data), path.name


def test_every_result_file_is_quoted_somewhere():
    """A result file nothing quotes is a figure nobody can find: each is named by a figure here or a test."""
    used = {figure.result for figure in FIGURES} | {"tiny_format_rates.json"}  # tests/test_tiny_models.py
    used |= {"bench_ans_co.json", "bench_step_rr.json", *PENDING}
    # the first prefetch comparison, at verl's 2 s poll: benchmarks/README.md's prose row says what it showed
    used |= {"rl_comm_runs_2s_poll.json"}
    assert {path.name for path in RESULTS.glob("*.json")} <= used
