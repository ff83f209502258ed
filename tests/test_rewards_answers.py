"""answers_match / normalize_answer: exact answers after normalisation, never substrings."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verl_avconfuse.bench.schemas import published_questions
from verl_avconfuse.method.answers import answers_match, normalize_answer

from conftest import WARMUP_RELEASE as WARMUP

#: the published "muted" questions, as the package ships them
M1 = published_questions("muted")


# --- normalisation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("acoustic_guitar", "acoustic guitar"),
        ("  The Acoustic-Guitar. ", "acoustic guitar"),
        ("An  erhu!", "erhu"),
        ("a", "a"),  # a lone article is the answer itself (e.g. an option letter), not dropped
        ("the the drum", "the drum"),  # only one leading article is dropped
        ("A. piano", "a piano"),  # "A." is a choice letter, not an article
        ("don't know", "dont know"),
        ("two", "2"),
        ("Twenty-one", "21"),
        ("more than ten", "more than 10"),
        ("one hundred", "100"),
        ("2.0", "2"),
        ("02", "2"),
        ("2.50", "2.5"),
        ("2nd", "2nd"),
        ("３", "3"),  # full-width digit, NFKC
        ("", ""),
        ("?!", ""),
    ],
)
def test_normalize_answer(raw, key):
    assert normalize_answer(raw) == key


# --- no substring matching --------------------------------------------------------------------------------


def test_no_substring_matching_no_vs_piano():
    assert not answers_match("piano", "no")
    assert not answers_match("no", "piano")


def test_not_sure_is_not_no():
    assert not answers_match("not sure", "no")
    assert not answers_match("Not sure.", "no")


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [("bass", "electric_bass"), ("electric bass guitar", "electric_bass"), ("guitar", "acoustic_guitar")],
)
def test_no_substring_matching_instruments(prediction, truth):
    assert not answers_match(prediction, truth)


# --- yes / no ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction", ["yes", "Yes", "YES.", " yes! ", "yes?", "Yes, there is a violin.", "yes; clearly", "**Yes**"]
)
def test_yes_polarity_is_accepted(prediction):
    assert answers_match(prediction, "yes")
    assert not answers_match(prediction, "no")


@pytest.mark.parametrize("prediction", ["no", "No.", "No, the cello is silent.", "no\nthe cello is muted"])
def test_no_polarity_is_accepted(prediction):
    assert answers_match(prediction, "no")
    assert not answers_match(prediction, "yes")


@pytest.mark.parametrize(
    "prediction", ["yes there is", "No one is playing", "nope", "yeah", "Yes? Maybe", "maybe yes", "yes or no", "noo"]
)
def test_yes_no_is_strict(prediction):
    assert not answers_match(prediction, "yes")
    assert not answers_match(prediction, "no")


# --- numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [("2", "two"), ("two", "2"), ("0", "zero"), ("Ten.", "10"), ("21", "twenty-one"), ("2.0", "two"), ("11", "eleven")],
)
def test_number_words_equal_digits(prediction, truth):
    assert answers_match(prediction, truth)


@pytest.mark.parametrize(("prediction", "truth"), [("3", "two"), ("2.5", "25"), ("twenty", "2"), ("1", "ten")])
def test_different_numbers_do_not_match(prediction, truth):
    assert not answers_match(prediction, truth)


def test_number_phrase_matches_word_for_word():
    assert answers_match("more than 10", "more than ten")
    assert not answers_match("ten", "more than ten")


# --- Music-AVQA tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction", ["acoustic guitar", "Acoustic Guitar.", "the acoustic guitar", "acoustic_guitar"]
)
def test_music_avqa_underscore_tokens_match_spaced_words(prediction):
    assert answers_match(prediction, "acoustic_guitar")


def test_real_warmup_answers_match_themselves_and_no_other():
    responses = [m["content"] for m in json.loads(WARMUP.read_text()) if m["role"] == "assistant"]
    answers = sorted({re.search(r"<answer>(.*?)</answer>", r, re.S).group(1).strip() for r in responses})
    assert {"yes", "no", "acoustic_guitar", "more than ten", "piano"} <= set(answers)
    for truth in answers:
        assert answers_match(truth, truth)
        assert answers_match(truth.replace("_", " ").upper() + ".", truth)
        wrong = [a for a in answers if a != truth and answers_match(a, truth)]
        assert not wrong, f"{wrong} accepted for {truth!r}"


def test_real_avconfusebench_muted_questions():
    """AV-ConfuseBench "muted" (m1): the published answer is "no" for every clip; the model's typical
    wrong answer is "yes", and answers naming the (muted) instrument must not pass either."""
    items = json.loads(M1.read_text())
    assert len(items) == 73
    for item in items:
        truth = item["answer"]
        assert truth == "no"
        asked = re.search(r"Is there? a (\w+) sound", item["question"].replace("thera", "there")).group(1)
        assert answers_match("No.", truth)
        assert answers_match(f"No, there is no {asked.replace('_', ' ')} sound.", truth)
        assert not answers_match("Yes", truth)
        assert not answers_match(asked, truth)
        assert not answers_match(f"There is no {asked} sound", truth)  # does not start with the polarity
        for instrument in item["instruments"].split(", "):
            assert answers_match(instrument.replace("_", " ").title(), instrument)


# --- multiple choice --------------------------------------------------------------------------------------

OPTIONS = ["piano", "violin", "acoustic_guitar", "no"]


@pytest.mark.parametrize(
    "prediction",
    ["B", "b", "(b)", "b)", "B.", "[B]", "B:", "violin", "The violin.", "B. violin", "(B) Violin", "b) violin"],
)
def test_mc_letter_or_text_of_the_right_option(prediction):
    assert answers_match(prediction, "violin", OPTIONS)
    assert answers_match(prediction, "B", OPTIONS)  # truth given as the letter
    assert answers_match(prediction, "(b)", OPTIONS)


@pytest.mark.parametrize("prediction", ["A", "(a)", "piano", "B. piano", "A. violin", "E", "violin piano", "C"])
def test_mc_wrong_or_contradictory_choice(prediction):
    assert not answers_match(prediction, "violin", OPTIONS)


def test_mc_option_text_normalised_like_any_answer():
    assert answers_match("acoustic guitar", "acoustic_guitar", OPTIONS)
    assert answers_match("C) Acoustic Guitar", "C", OPTIONS)
    assert answers_match("No, none of them", "no", OPTIONS)  # the option "no" keeps the yes/no rule
    assert not answers_match("piano", "D", OPTIONS)  # D is "no": no substring of "piano"


def test_mc_option_text_wins_over_letter_reading():
    # options that are themselves letters: text is read first, for the truth and the prediction alike
    options = ["B", "A"]
    assert not answers_match("B", "A", options)  # truth "A" is option 2's text; prediction "B" option 1's
    assert answers_match("A", "A", options)
    assert answers_match("(b)", "B", options)
    assert answers_match("B", "A", ["B", "cello"])  # "A" is no option's text: the letter A, i.e. "B"


def test_mc_truth_outside_options_falls_back_to_plain_comparison():
    assert answers_match("cello", "cello", OPTIONS)
    assert not answers_match("B", "cello", OPTIONS)


# --- empties and errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction", [None, "", "   ", "...", "_"])
def test_no_prediction_is_never_right(prediction):
    assert not answers_match(prediction, "no")
    assert not answers_match(prediction, "")
    assert not answers_match(prediction, "violin", OPTIONS)


def test_empty_ground_truth_matches_nothing():
    assert not answers_match("yes", "")
    assert not answers_match("?", "?")


def test_bad_ground_truth_and_options_types_are_refused():
    with pytest.raises(TypeError, match="ground_truth must be a str"):
        answers_match("2", 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options must be a sequence"):
        answers_match("a", "a", "abc")
    with pytest.raises(TypeError, match=r"options\[1\] must be a str"):
        answers_match("a", "a", ["x", 1])  # type: ignore[list-item]


# --- properties -------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_every_answer_matches_itself(text):
    assert answers_match(text, text) == bool(normalize_answer(text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.none() | st.lists(st.text(max_size=12), max_size=5))
def test_answers_match_never_raises(prediction, truth, options):
    assert isinstance(answers_match(prediction, truth, options), bool)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(categories=["Ll", "Lu"]), min_size=1, max_size=8))
def test_polar_truth_never_matched_by_other_words(word):
    normalized = normalize_answer(word)
    if normalized not in ("yes", "no"):
        assert not answers_match(word, "yes")
        assert not answers_match(word, "no")
