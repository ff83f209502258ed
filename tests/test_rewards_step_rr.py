"""step_rr_scores / step_rr_batch / similarity_requests: every branch of Step-RR, hand-computed.

r = r_format + r_arr + r_avc; r_arr = 1[sim(a, a_ref) > omega and right]; r_avc = 1 + s (right), s (wrong),
0 (no answer); s = clip(sim(a, v), 0, 1).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_avconfuse.bench.schemas import published_questions
from verl_avconfuse.method.parsing import ParsedResponse, parse_response
from verl_avconfuse.method.step_rr import (
    DEFAULT_OMEGA,
    SCORE_KEYS,
    SimilarityPair,
    StepRRBatch,
    similarity_requests,
    step_rr_batch,
    step_rr_scores,
)

#: the published "muted" questions, as the package ships them
M1 = published_questions("muted")

FULL = ParsedResponse(a_think="I hear a violin.", v_think="I see a violin.", answer="one", well_formed=True)


def scores(parsed=FULL, truth="one", sim_a_ref=0.9, sim_a_v=0.6, **kw):
    return step_rr_scores(parsed, truth, sim_a_ref, sim_a_v, **kw)


def test_default_omega_is_the_papers_and_arr_needs_more_than_it():
    # the paper's omega = 0.8, strict: a similarity of exactly 0.8 earns no ARR, one just above it does
    assert scores(sim_a_ref=0.8)["arr"] == 0.0
    assert scores(sim_a_ref=0.8 + 1e-9)["arr"] == 1.0
    assert scores(sim_a_ref=0.79)["arr"] == 0.0 and scores(sim_a_ref=0.85, omega=0.9)["arr"] == 0.0
    assert DEFAULT_OMEGA == 0.8


def test_full_marks_hand_computed():
    assert scores() == pytest.approx({"format": 1.0, "arr": 1.0, "avc": 1.6, "acc": 1.0, "score": 3.6})


def test_values_are_python_floats_with_fixed_keys():
    out = scores()
    assert tuple(out) == SCORE_KEYS
    assert all(type(v) is float for v in out.values())


def test_format_reward_follows_well_formed():
    sloppy = dataclasses.replace(FULL, well_formed=False)
    assert scores(sloppy) == pytest.approx({"format": 0.0, "arr": 1.0, "avc": 1.6, "acc": 1.0, "score": 2.6})


def test_arr_requires_right_answer():
    out = scores(truth="two", sim_a_ref=0.99, sim_a_v=0.6)
    assert out == pytest.approx({"format": 1.0, "arr": 0.0, "avc": 0.6, "acc": 0.0, "score": 1.6})


def test_arr_threshold_is_strict():
    assert scores(sim_a_ref=0.8)["arr"] == 0.0
    assert scores(sim_a_ref=math.nextafter(0.8, 1.0))["arr"] == 1.0
    assert scores(sim_a_ref=0.79)["arr"] == 0.0


def test_arr_threshold_is_configurable():
    assert scores(sim_a_ref=0.6, omega=0.5)["arr"] == 1.0
    assert scores(sim_a_ref=0.6, omega=0.6)["arr"] == 0.0


def test_arr_without_reference_is_zero():
    out = scores(sim_a_ref=None)
    assert out == pytest.approx({"format": 1.0, "arr": 0.0, "avc": 1.6, "acc": 1.0, "score": 2.6})


def test_avc_right_answer_is_one_plus_similarity():
    assert scores(sim_a_v=0.25)["avc"] == pytest.approx(1.25)


def test_avc_wrong_answer_is_similarity():
    out = scores(truth="zero", sim_a_v=0.25)
    assert out == pytest.approx({"format": 1.0, "arr": 0.0, "avc": 0.25, "acc": 0.0, "score": 1.25})


def test_avc_no_answer_scores_zero():
    no_answer = parse_response("<a-think> I hear a violin </a-think> <v-think> I see a violin </v-think>")
    assert no_answer.answer is None
    out = step_rr_scores(no_answer, "one", 0.95, 0.7)
    assert out == {"format": 0.0, "arr": 0.0, "avc": 0.0, "acc": 0.0, "score": 0.0}


def test_avc_similarity_clipped_to_unit_interval():
    assert scores(sim_a_v=-0.4)["avc"] == 1.0
    assert scores(truth="two", sim_a_v=-0.4)["avc"] == 0.0
    assert scores(sim_a_v=1.03)["avc"] == 2.0  # float overshoot of a cosine, clipped to s = 1
    assert scores(sim_a_v=None)["avc"] == 1.0


def test_missing_v_think_zeroes_avc_similarity():
    no_v = dataclasses.replace(FULL, v_think=None, well_formed=False)
    assert scores(no_v, sim_a_ref=0.9, sim_a_v=0.9) == pytest.approx(
        {"format": 0.0, "arr": 1.0, "avc": 1.0, "acc": 1.0, "score": 2.0}
    )


def test_missing_a_think_zeroes_both_similarities():
    no_a = dataclasses.replace(FULL, a_think=None, well_formed=False)
    assert scores(no_a, sim_a_ref=0.95, sim_a_v=0.9) == pytest.approx(
        {"format": 0.0, "arr": 0.0, "avc": 1.0, "acc": 1.0, "score": 1.0}
    )
    assert scores(dataclasses.replace(no_a, answer="two"), sim_a_v=0.9)["avc"] == 0.0


def test_max_score_is_four():
    # r_format (1) + r_arr (1) + r_avc (1 + s, s <= 1)
    assert scores(sim_a_ref=1.0, sim_a_v=1.0)["score"] == 4.0


def test_answer_graded_with_options():
    mc = dataclasses.replace(FULL, answer="(B)")
    assert scores(mc, truth="violin", options=["piano", "violin"])["acc"] == 1.0
    assert scores(mc, truth="piano", options=["piano", "violin"])["acc"] == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1.5, -1.2, 37.0])
def test_non_cosine_similarity_is_refused(bad):
    with pytest.raises(ValueError, match="sim_a_ref must be a cosine similarity"):
        scores(sim_a_ref=bad)
    with pytest.raises(ValueError, match="sim_a_v must be a cosine similarity"):
        scores(sim_a_v=bad)


def test_similarity_inputs_may_be_numpy_like_scalars():
    class Scalar:  # what float() accepts: numpy / torch 0-d values
        def __float__(self):
            return 0.85

    assert scores(sim_a_ref=Scalar(), sim_a_v=Scalar())["score"] == pytest.approx(1 + 1 + 1.85)


# --- batch ----------------------------------------------------------------------------------------------


def test_step_rr_batch_one_dict_per_completion():
    wrong = dataclasses.replace(FULL, answer="two")
    empty = ParsedResponse(None, None, None, False)
    out = step_rr_batch([FULL, wrong, empty], ["one"] * 3, [0.9, 0.9, None], [0.5, 0.5, None])
    assert [o["score"] for o in out] == pytest.approx([3.5, 1.5, 0.0])
    assert [o["acc"] for o in out] == [1.0, 0.0, 0.0]


def test_step_rr_batch_passes_omega_and_options():
    mc = dataclasses.replace(FULL, answer="A")
    out = step_rr_batch([mc, mc], ["one", "piano"], [0.7, 0.7], [0.0, 0.0], omega=0.6, options_list=[None, ["piano"]])
    assert [(o["acc"], o["arr"]) for o in out] == [(0.0, 0.0), (1.0, 1.0)]


@pytest.mark.parametrize("column", ["ground_truths", "sims_a_ref", "sims_a_v", "options_list"])
def test_step_rr_batch_length_mismatch_names_the_column(column):
    args = {"ground_truths": ["one"] * 2, "sims_a_ref": [0.9] * 2, "sims_a_v": [0.5] * 2, "options_list": [None] * 2}
    args[column] = args[column][:1]
    with pytest.raises(ValueError, match=f"{column} has 1 entries, parsed_list has 2"):
        step_rr_batch([FULL, FULL], **args)


def test_step_rr_batch_embeds_only_the_pairs_that_exist_and_gives_each_response_its_own():
    # FULL with a reference: arr + avc pairs; FULL without: avc only; no a-think: no pair at all
    no_audio = dataclasses.replace(FULL, a_think=None)
    batch = StepRRBatch((FULL, FULL, no_audio), ("The reference.", None, "The reference."))
    assert [p.kind for p in batch.pairs] == ["arr", "avc", "avc"]
    out = batch.scores(["one"] * 3, [0.9, 0.6, 0.5])
    # 1 + 1 + (1 + 0.6); 1 + 0 + (1 + 0.5); 1 + 0 + (1 + 0): the second response's s is its own 0.5
    assert [o["score"] for o in out] == pytest.approx([3.6, 2.5, 2.0])
    failed = batch.scores(["one"] * 3, None)  # the embedding pass failed: every similarity is None
    assert [o["score"] for o in failed] == pytest.approx([2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="2 similarities for 3 pairs"):
        batch.scores(["one"] * 3, [0.9, 0.6])


# --- similarity requests ----------------------------------------------------------------------------------


def test_similarity_requests_both_pairs():
    arr, avc = similarity_requests(FULL, "  The audio has a violin.  ")
    assert arr == SimilarityPair("arr", "The audio has a violin.", "I hear a violin.")
    assert avc == SimilarityPair("avc", "I hear a violin.", "I see a violin.")
    assert (arr.query, arr.document) == ("The audio has a violin.", "I hear a violin.")


def test_similarity_requests_missing_sides_are_none():
    assert similarity_requests(FULL, None)[0] is None
    assert similarity_requests(FULL, "  ")[0] is None
    assert similarity_requests(dataclasses.replace(FULL, v_think=None), "ref") == (
        SimilarityPair("arr", "ref", "I hear a violin."),
        None,
    )
    assert similarity_requests(dataclasses.replace(FULL, a_think=None), "ref") == (None, None)


def test_similarity_requests_refuses_a_non_text_reference():
    with pytest.raises(TypeError, match="reference_a_think must be a str or None, got float"):
        similarity_requests(FULL, math.nan)  # type: ignore[arg-type]


def test_similarity_pair_has_what_the_embedding_scorer_reads():
    from verl_avconfuse.reference import similarity
    from verl_avconfuse.reference.similarity import TextPair

    assert set(TextPair.__annotations__) == {"kind", "query", "document"}  # what score() reads
    assert set(TextPair.__annotations__) <= set(SimilarityPair._fields)
    assert set(similarity.INSTRUCTIONS) == {"arr", "avc"}  # the kinds similarity_requests emits


# --- real data --------------------------------------------------------------------------------------------


def test_real_avconfusebench_muted_items_end_to_end():
    """Published AV-ConfuseBench "muted" items (truth "no"): the right answer earns the accuracy terms,
    the visually driven "yes" earns only format and consistency."""
    items = json.loads(M1.read_text())
    for item in items:
        seen = item["instruments"].replace("_", " ")
        right = parse_response(
            f"<a-think> I hear no such sound. </a-think> <v-think> I see {seen}. </v-think> <answer> No </answer>"
        )
        fooled = parse_response(
            f"<a-think> I hear {seen}. </a-think> <v-think> I see {seen}. </v-think> <answer> Yes </answer>"
        )
        assert right.well_formed and fooled.well_formed
        assert step_rr_scores(right, item["answer"], 0.85, 0.3) == pytest.approx(
            {"format": 1.0, "arr": 1.0, "avc": 1.3, "acc": 1.0, "score": 3.3}
        )
        assert step_rr_scores(fooled, item["answer"], 0.5, 0.9) == pytest.approx(
            {"format": 1.0, "arr": 0.0, "avc": 0.9, "acc": 0.0, "score": 1.9}
        )


# --- properties -------------------------------------------------------------------------------------------

sim = st.none() | st.floats(-1.0, 1.0)
TAG_SOUP = st.lists(
    st.sampled_from(["<a-think>", "</a-think>", "<v-think>", "</v-think>", "<answer>", "</answer>", " ", "no", "two"])
    | st.text(max_size=8),
    max_size=16,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(TAG_SOUP, st.sampled_from(["no", "yes", "two", "acoustic_guitar", ""]), sim, sim, st.floats(-1.0, 1.0))
def test_step_rr_never_raises_and_stays_in_range(text, truth, sim_a_ref, sim_a_v, omega):
    parsed = parse_response(text)
    out = step_rr_scores(parsed, truth, sim_a_ref, sim_a_v, omega=omega)
    assert tuple(out) == SCORE_KEYS
    assert 0.0 <= out["score"] <= 4.0
    assert out["score"] == pytest.approx(out["format"] + out["arr"] + out["avc"])
    assert out["format"] in (0.0, 1.0) and out["arr"] in (0.0, 1.0) and out["acc"] in (0.0, 1.0)
    assert out["arr"] <= out["acc"]  # ARR needs the right answer
    assert out["acc"] <= out["avc"] <= 1.0 + out["acc"]  # right: [1, 2]; wrong or none: [0, 1]
    if parsed.answer is None:
        assert out["avc"] == 0.0


@settings(max_examples=200, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0))
def test_right_answer_always_scores_more(sim_a_ref, sim_a_v):
    right = step_rr_scores(FULL, "one", sim_a_ref, sim_a_v)
    wrong = step_rr_scores(FULL, "two", sim_a_ref, sim_a_v)
    assert right["score"] >= wrong["score"] + 1.0


def test_a_groups_reference_is_one_query_whatever_its_surrounding_whitespace():
    """The cache, a precomputed column and the live worker may pad it differently: still one text to embed."""
    queries = {similarity_requests(FULL, ref)[0].query for ref in ("I hear a violin.", " I hear a violin.\n")}
    assert queries == {"I hear a violin."}
