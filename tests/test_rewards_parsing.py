"""parse_response / extract_block / reference_a_think: RL-CoMM's three-part format, as a specification."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verl_avconfuse.method.answer_mask import answer_span
from verl_avconfuse.method.parsing import ParsedResponse, extract_block, parse_response, reference_a_think

from conftest import WARMUP_RELEASE as WARMUP

GOOD = "<a-think> I hear a violin. </a-think> <v-think> I see a violin and a piano. </v-think>\n<answer> one </answer>"


def test_well_formed_response_gives_all_three_blocks():
    assert parse_response(GOOD) == ParsedResponse(
        a_think="I hear a violin.", v_think="I see a violin and a piano.", answer="one", well_formed=True
    )


def test_blocks_may_touch_and_surrounding_whitespace_is_allowed():
    parsed = parse_response("\n <a-think>a</a-think><v-think>v</v-think><answer>yes</answer>\n\t ")
    assert parsed == ParsedResponse("a", "v", "yes", True)


def test_tags_are_case_insensitive():
    parsed = parse_response("<A-THINK>a</a-think> <V-Think>v</V-THINK> <Answer>no</ANSWER>")
    assert parsed == ParsedResponse("a", "v", "no", True)


def test_whitespace_inside_tag_brackets_is_not_a_tag():
    parsed = parse_response("<a-think>a</a-think> <v-think>v</v-think> < answer >no</ answer >")
    assert parsed.answer is None
    assert not parsed.well_formed


def test_missing_v_think_keeps_answer_but_fails_format():
    parsed = parse_response("<a-think> I hear drums </a-think> <answer> drum </answer>")
    assert parsed == ParsedResponse(a_think="I hear drums", v_think=None, answer="drum", well_formed=False)


def test_wrong_block_order_fails_format_but_extracts_blocks():
    parsed = parse_response("<v-think>v</v-think> <a-think>a</a-think> <answer>two</answer>")
    assert parsed == ParsedResponse("a", "v", "two", False)


def test_text_outside_the_blocks_fails_format():
    assert not parse_response(GOOD + " Hope this helps!").well_formed
    assert not parse_response("Sure. " + GOOD).well_formed
    assert not parse_response(GOOD.replace("</a-think> <v-think>", "</a-think> and <v-think>")).well_formed
    # special tokens are expected stripped by the decoder; left in, they are text outside the blocks
    assert not parse_response(GOOD + "<|im_end|>").well_formed


def test_duplicate_block_fails_format_and_first_block_is_used():
    parsed = parse_response("<a-think>first</a-think><a-think>second</a-think><v-think>v</v-think><answer>x</answer>")
    assert parsed == ParsedResponse("first", "v", "x", False)


def test_empty_answer_is_no_answer():
    parsed = parse_response("<a-think>a</a-think> <v-think>v</v-think> <answer>  \n </answer>")
    assert parsed.answer is None
    assert not parsed.well_formed


def test_empty_think_block_is_absent_and_fails_format():
    parsed = parse_response("<a-think></a-think> <v-think>v</v-think> <answer>yes</answer>")
    assert parsed == ParsedResponse(None, "v", "yes", False)


def test_unclosed_answer_is_no_answer():
    # a response cut off by the generation length limit
    parsed = parse_response("<a-think>a</a-think> <v-think>v</v-think> <answer>pia")
    assert parsed == ParsedResponse("a", "v", None, False)


def test_no_tags_at_all_gives_nothing():
    # the official release graded the whole text as the answer here; the paper: no answer
    assert parse_response("yes") == ParsedResponse(None, None, None, False)


def test_answer_after_the_reasoning_wins_over_one_inside_it():
    text = "<a-think> maybe <answer>yes</answer>? </a-think> <v-think>v</v-think> <answer>no</answer>"
    parsed = parse_response(text)
    assert parsed.answer == "no"
    assert parsed.a_think == "maybe <answer>yes</answer>?"
    assert not parsed.well_formed


def test_answer_before_the_reasoning_is_no_answer():
    # the answer is the one after the last think block (tests/test_answer_rule.py: every consumer agrees)
    parsed = parse_response("<answer>yes</answer> <a-think>a</a-think> <v-think>v</v-think>")
    assert parsed == ParsedResponse("a", "v", None, False)


def test_reopened_block_pairs_with_the_nearest_opening():
    assert parse_response("<answer> a <answer> b </answer>").answer == "b"
    assert extract_block("<answer> a <answer> b </answer>", "answer") == "b"


def test_answer_agrees_with_ans_co_answer_span():
    # the answer graded here is the one whose tokens Ans-CO's mask covers (same "after the reasoning" rule)
    text = "<a-think> <answer>yes</answer> </a-think> <v-think>v</v-think> <answer>no</answer>"
    start, end = answer_span(text, span="content")
    assert text[start:end].strip() == parse_response(text).answer == "no"


def test_extract_block_any_tag_first_block_case_insensitive():
    assert extract_block("x <Think> one </think> <think>two</think>", "think") == "one"
    assert extract_block("<answer></answer>", "answer") is None
    assert extract_block("<answer>open", "answer") is None
    # extract_block takes the first answer block; parse_response prefers the one after the reasoning
    text = "<answer>early</answer><a-think>a</a-think><answer>late</answer>"
    assert extract_block(text, "answer") == "early"
    assert parse_response(text).answer == "late"


@pytest.mark.parametrize("bad", ["", "<answer>", "a b", "a.*"])
def test_extract_block_rejects_a_non_tag_name(bad):
    with pytest.raises(ValueError, match="bare tag name"):
        extract_block("<answer>x</answer>", bad)


def test_parse_response_rejects_non_str_with_clear_error():
    with pytest.raises(TypeError, match="str"):
        parse_response(None)  # type: ignore[arg-type]


def test_reference_a_think_uses_block_else_whole_text():
    assert reference_a_think("Sure. <a-think> I hear a cello. </a-think> Done.") == "I hear a cello."
    assert reference_a_think("  I hear a cello and a flute.  ") == "I hear a cello and a flute."
    assert reference_a_think("<a-think> I hear a cello, then") == "I hear a cello, then"  # cut off
    assert reference_a_think(" <a-think> </a-think> ") is None
    assert reference_a_think("") is None


def test_real_warmup_responses_are_well_formed():
    responses = [m["content"] for m in json.loads(WARMUP.read_text()) if m["role"] == "assistant"]
    assert len(responses) > 50
    for response in responses:
        parsed = parse_response(response)
        assert parsed.well_formed, response
        assert parsed.answer == re.search(r"<answer>(.*?)</answer>", response, re.S).group(1).strip()
        assert parsed.a_think and parsed.v_think


def test_parsing_512_responses_takes_milliseconds():
    responses = [GOOD.replace("violin", f"violin {i} " * 30) for i in range(512)]
    parse_response(responses[0])
    timings = []
    for _ in range(5):  # the best of five: a busy machine slows some passes, not the parser
        start = time.perf_counter()
        parsed = [parse_response(r) for r in responses]
        timings.append(time.perf_counter() - start)
    elapsed = min(timings)
    assert all(p.well_formed for p in parsed)
    assert elapsed < 0.25, f"parsing 512 responses took {elapsed * 1e3:.1f} ms"


# --- properties -----------------------------------------------------------------------------------------

TAGS = [f"<{slash}{kind}>" for kind in ("a-think", "v-think", "answer") for slash in ("", "/")]
tag = st.sampled_from(TAGS).flatmap(lambda t: st.sampled_from([t, t.upper(), t.title(), t.replace("<", "< "), t[:-1]]))
soup = st.lists(st.one_of(tag, st.text(max_size=12)), max_size=24).map("".join)
# Inner text that cannot contain a tag (no "<"), with arbitrary unicode and whitespace.
inner = st.text(st.characters(blacklist_characters="<"), max_size=40).filter(lambda s: s.strip())
space = st.text(" \t\n\r\u00a0\u3000", max_size=3)


def _check_invariants(parsed: ParsedResponse) -> None:
    for value in (parsed.a_think, parsed.v_think, parsed.answer):
        assert value is None or (value == value.strip() and value)
    if parsed.well_formed:
        assert None not in (parsed.a_think, parsed.v_think, parsed.answer)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises_on_arbitrary_text(text):
    _check_invariants(parse_response(text))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(soup)
def test_parse_never_raises_on_tag_soup(text):
    _check_invariants(parse_response(text))


@settings(max_examples=300, deadline=None)
@given(inner, inner, inner, st.lists(space, min_size=4, max_size=4), st.booleans())
def test_well_formed_responses_round_trip(a, v, y, gaps, upper):
    tags = [t.upper() if upper else t for t in TAGS]
    text = f"{gaps[0]}{tags[0]}{a}{tags[1]}{gaps[1]}{tags[2]}{v}{tags[3]}{gaps[2]}{tags[4]}{y}{tags[5]}{gaps[3]}"
    assert parse_response(text) == ParsedResponse(a.strip(), v.strip(), y.strip(), True)


@settings(max_examples=200, deadline=None)
@given(inner, inner, inner, st.integers(0, 3), st.text(st.characters(blacklist_characters="<"), min_size=1))
def test_non_whitespace_outside_the_blocks_breaks_format(a, v, y, where, junk):
    if not junk.strip():
        junk = "x"
    parts = ["", f"<a-think>{a}</a-think>", f"<v-think>{v}</v-think>", f"<answer>{y}</answer>"]
    parts.insert(where + 1 if where else 0, junk)
    parsed = parse_response("".join(parts))
    assert not parsed.well_formed
    assert (parsed.a_think, parsed.v_think, parsed.answer) == (a.strip(), v.strip(), y.strip())
