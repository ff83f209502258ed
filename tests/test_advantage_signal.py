"""Where a step's advantage lands (method/signal.py), and the row index rewards report for dumps (method/rows.py)."""

from __future__ import annotations

import pytest

from verl_avconfuse.method.rows import data_index
from verl_avconfuse.method.signal import advantage_signal


def test_groups_whose_rewards_agree_carry_no_advantage_and_mass_is_split_by_cell():
    # three groups of two: g1 differs (+1, -1), g2 agrees (0, 0), g3 differs (+0.5, -0.5); a residue of
    # verl's std epsilon (1e-7) counts as zero
    uids = ["g1", "g1", "g2", "g2", "g3", "g3"]
    advantages = [1.0, -1.0, 1e-7, -1e-7, 0.5, -0.5]
    cells = ["muted", "muted", "control", "control", "offscreen_heard", "offscreen_heard"]
    metrics = advantage_signal(uids, advantages, cells)
    assert metrics["adv/nonzero_group_frac"] == pytest.approx(2 / 3)
    # |A| mass: muted 2, control 2e-7, offscreen_heard 1 of 3.0000002
    total = 3.0 + 2e-7
    assert metrics["adv/mass_frac/muted"] == pytest.approx(2 / total)
    assert metrics["adv/mass_frac/offscreen_heard"] == pytest.approx(1 / total)
    assert metrics["adv/mass_frac/control"] == pytest.approx(2e-7 / total)


def test_without_cells_only_the_group_share_is_reported_and_a_silent_step_is_zero():
    assert advantage_signal(["a", "a", "b", "b"], [0.0, 0.0, 0.0, 0.0]) == {"adv/nonzero_group_frac": 0.0}
    metrics = advantage_signal(["a", "a"], [0.0, 0.0], ["muted", "muted"])
    assert metrics == {"adv/nonzero_group_frac": 0.0, "adv/mass_frac/muted": 0.0}
    unlabelled = advantage_signal(["a", "a"], [1.0, -1.0], ["muted", None])
    assert unlabelled["adv/mass_frac/unlabelled"] == 0.5


def test_mismatched_lengths_are_refused_by_name():
    with pytest.raises(ValueError, match="got 2 uids, 1 advantages"):
        advantage_signal(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="got 1 uids, 1 advantages, 2 cells"):
        advantage_signal(["a"], [1.0], ["muted", "control"])


def test_rewards_report_the_rows_index_so_a_dump_joins_back_to_its_row():
    from verl_avconfuse.reward_fns import format_acc

    assert data_index({"index": 7}) == {"data_index": 7}
    assert data_index({"index": "12"}) == {"data_index": 12}
    assert data_index({}) == data_index(None) == data_index({"index": "x"}) == {}
    reply = "<a-think> I hear a piano. </a-think> <v-think> I see a piano. </v-think>\n<answer> yes </answer>"
    scored = format_acc.compute_score("avconfuse_confusion", reply, "yes", {"index": 3})
    assert scored == {"score": 2.0, "format": 1.0, "acc": 1.0, "data_index": 3}
    assert "data_index" not in format_acc.compute_score("avconfuse_confusion", reply, "yes", {})
