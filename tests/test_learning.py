"""The learning verdict of examples/run_cpu_learning.sh, on hand-computed step metrics."""

from __future__ import annotations

import pytest

from verl_avconfuse.learning import SCORE, first_last, table, verdict


def _steps(scores, **other):
    return {i + 1: {SCORE: s, **{k: v[i] for k, v in other.items()}} for i, s in enumerate(scores)}


def test_gain_is_last_k_minus_first_k_and_noise_the_controls_spread():
    run = _steps([0.8, 0.9, 1.0, 1.2, 1.4, 1.6])
    control = _steps([0.8, 1.0, 0.9, 0.8, 1.0, 0.9])
    result = verdict(run, control, k=2)
    assert result.gain == pytest.approx((1.4 + 1.6) / 2 - (0.8 + 0.9) / 2)  # 0.65
    assert result.control_gain == pytest.approx((1.0 + 0.9) / 2 - (0.8 + 1.0) / 2)  # 0.05
    # sample std of [0.8, 1.0, 0.9, 0.8, 1.0, 0.9]: mean 0.9, squares 0.01 x 4 + 0 x 2 over 5 -> 0.0894...
    assert result.noise == pytest.approx((0.04 / 5) ** 0.5)
    assert result.learned and result.line() == "LEARNING gain=0.6500 control_gain=0.0500 noise=0.0894"


def test_a_gain_within_twice_the_noise_is_not_learning():
    run = _steps([0.8, 0.9, 1.0, 1.0, 1.0, 1.1])  # gain 0.2
    control = _steps([0.6, 1.0, 0.8, 1.1, 0.7, 0.9])  # gain 0.0, noise ~0.19
    result = verdict(run, control, k=2)
    assert result.gain == pytest.approx(0.2) and result.control_gain == pytest.approx(0.0)
    assert not result.learned


def test_too_few_steps_or_a_missing_metric_is_an_error_naming_it():
    with pytest.raises(ValueError, match="need at least 2k = 6"):
        first_last([1.0, 2.0, 3.0], 3)
    run = _steps([1.0, 2.0, 3.0, 4.0])
    del run[3][SCORE]
    with pytest.raises(ValueError, match=r"critic/score/mean: missing at steps \[3\]"):
        verdict(run, _steps([1.0, 1.0, 1.0, 1.0]), k=2)


def test_table_lists_the_metrics_present():
    run = _steps([1.0, 1.0, 2.0, 2.0], **{"reward/arr/mean": [0.0, 0.0, 0.5, 0.5]})
    control = _steps([1.0, 1.0, 1.0, 1.0], **{"reward/arr/mean": [0.0, 0.0, 0.0, 0.0]})
    lines = table(run, control, k=2).splitlines()
    assert lines[1].split() == ["critic/score/mean", "1.000", "2.000", "1.000", "1.000"]
    assert lines[2].split() == ["reward/arr/mean", "0.000", "0.500", "0.000", "0.000"]
    assert len(lines) == 3  # format/acc absent: not tabled
