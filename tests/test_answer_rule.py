"""One answer rule ("the answer after the last think block"), shared by the reward's parser, Ans-CO's
answer mask and the evaluators: hand-written cases, then generated responses whose answer position is
known by construction, checked through every consumer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_losses_answer_mask import explicit_bpe

from verl_avconfuse.evaluation.matching import extract_answer
from verl_avconfuse.evaluation.yes_probability import answer_prefix
from verl_avconfuse.method.answer_mask import answer_span, answer_token_mask
from verl_avconfuse.method.parsing import AnswerBlock, locate_answer, parse_response


def test_r1_style_think_block_ends_the_reasoning():
    text = "<think> maybe <answer>yes</answer> </think> <answer>no</answer>"
    assert parse_response(text).answer == "no"
    assert answer_prefix(text) == "<think> maybe <answer>yes</answer> </think> <answer>"
    start, end = answer_span(text, "content")
    assert text[start:end] == "no"


def test_answer_before_the_reasoning_is_no_answer():
    text = "<answer>yes</answer> <a-think>a</a-think> <v-think>v</v-think>"
    assert locate_answer(text) is None
    assert parse_response(text).answer is None
    assert answer_span(text, "through_end") is None
    assert answer_prefix(text) == text + "\n<answer>"


def test_cut_off_answer_is_located_but_not_graded():
    text = "<a-think>a</a-think><v-think>v</v-think><answer> tw"
    assert locate_answer(text) == AnswerBlock(40, 48, None, None)
    assert parse_response(text).answer is None
    assert answer_span(text, "through_end") == (40, len(text))
    assert answer_span(text, "content") is None


def test_reopened_answer_pairs_with_the_nearest_opening_everywhere():
    text = "<v-think>v</v-think><answer> a <answer> b </answer>"
    assert parse_response(text).answer == "b"
    assert text[slice(*answer_span(text, "content"))] == " b "
    assert answer_prefix(text) == "<v-think>v</v-think><answer> a <answer>"


# --- generated responses -----------------------------------------------------------------------------

# Decoded text never holds lone surrogates (they cannot be UTF-8 encoded).
chars = st.characters(blacklist_categories=("Cs",))
plain = st.text(st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=12)
THINK_KINDS = ("a-think", "v-think", "think")
case = st.sampled_from([str.lower, str.upper, str.title])
# Noise inside the reasoning may hold answer tags (they must be ignored) but never a think-closing tag.
noise = st.lists(st.one_of(plain, st.sampled_from(["<answer>", "</answer>", "<ANSWER>", "<a-think>"])), max_size=5).map(
    "".join
)


@st.composite
def responses(draw):
    """``(text, block)``: a response and the expected :class:`AnswerBlock` (``None``: no answer)."""
    text = ""
    if draw(st.booleans()):  # an answer before the reasoning: never the answer when reasoning follows
        text += f"<answer>{draw(plain)}</answer>" + draw(plain)
    n_blocks = draw(st.integers(0, 3))
    for _ in range(n_blocks):
        kind = draw(case)(draw(st.sampled_from(THINK_KINDS)))
        text += f"<{kind}>{draw(noise)}</{kind}>{draw(plain)}"
    if n_blocks == 0:
        text = ""  # without reasoning the first answer anywhere is the answer: start clean
    shape = draw(st.sampled_from(["complete", "cut_off", "none"]))
    if shape == "none":
        return text + draw(plain), None
    opening = draw(case)("<answer>")
    start = len(text)
    text += opening
    content = draw(st.text(chars, max_size=16).filter(lambda s: "<" not in s))
    content_start = len(text)
    text += content
    if shape == "cut_off":
        return text, AnswerBlock(start, content_start, None, None)
    content_end = len(text)
    text += draw(case)("</answer>")
    block = AnswerBlock(start, content_start, content_end, len(text))
    return text + draw(plain), block


def _byte_offset(text: str, index: int | None) -> int | None:
    return None if index is None else len(text[:index].encode())


@pytest.fixture(scope="module")
def byte_tok():
    return explicit_bpe([])  # byte-level BPE without merges: one token per byte


@settings(max_examples=400, deadline=None)
@given(responses())
def test_every_consumer_finds_the_constructed_answer(case_):
    text, block = case_
    assert locate_answer(text) == block
    assert locate_answer(text.encode()) == (
        None if block is None else AnswerBlock(*(_byte_offset(text, i) for i in block))
    )
    graded = parse_response(text).answer
    if block is None or not block.complete:
        assert graded is None
        assert answer_span(text, "content") is None
    else:
        content = text[block.content_start : block.content_end]
        assert graded == (content.strip() or None)
        assert answer_span(text, "content") == (block.content_start, block.content_end)
        if graded is not None:
            assert extract_answer(text, strict_format=True) == graded
    assert answer_span(text, "through_end") == (None if block is None else (block.start, len(text)))
    if block is not None:
        expected_prefix = text[: block.content_start]
    else:
        expected_prefix = (text.rstrip() + "\n" if text.strip() else "") + "<answer>"
    assert answer_prefix(text) == expected_prefix


@settings(max_examples=150, deadline=None)
@given(responses())
def test_the_mask_marks_the_constructed_answer_bytes(byte_tok, case_):
    text, block = case_
    ids = byte_tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode())  # precondition: one token per byte
    if not ids:
        return
    response = torch.tensor([ids])
    through_end = answer_token_mask(response, byte_tok, span="through_end")[0].tolist()
    content = answer_token_mask(response, byte_tok, span="content")[0].tolist()
    n = len(ids)
    if block is None:
        assert not any(through_end) and not any(content)
        return
    start = _byte_offset(text, block.start)
    assert through_end == [i >= start for i in range(n)]
    if block.complete:
        lo, hi = _byte_offset(text, block.content_start), _byte_offset(text, block.content_end)
        assert content == [lo <= i < hi for i in range(n)]
    else:
        assert not any(content)
