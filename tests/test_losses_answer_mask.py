"""answer_token_mask: the answer set N of Ans-CO, on real byte-level BPE tokenizers built locally."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from verl_avconfuse.method.answer_mask import answer_span, answer_token_mask, token_bytes_table

# Qwen2's pre-tokenizer split, so the trained tokenizer cuts tags the way the real policy's does.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
EOS, PAD = "<|im_end|>", "<|endoftext|>"


def _gpt2_byte_chars() -> list[str]:
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


BYTE_CHARS = _gpt2_byte_chars()


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)


def explicit_bpe(merged: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE whose only merges build each string of ``merged`` left to right, in list order.

    No regex pre-split, so merges may cross tag boundaries (``">\\n<answer>"`` becomes one token).
    With ``merged=[]`` every byte is its own token.
    """
    vocab = {c: i for i, c in enumerate(BYTE_CHARS)}
    merges = []
    for word in merged:
        enc = "".join(BYTE_CHARS[b] for b in word.encode())
        for k in range(1, len(enc)):
            if enc[: k + 1] not in vocab:
                merges.append((enc[:k], enc[k]))
                vocab[enc[: k + 1]] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS, PAD])
    return _wrap(tok)


def trained_bpe() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "<a-think>I hear a violin and a piano.</a-think>\n<v-think>I see two people playing.</v-think>\n"
        "<answer>two</answer>",
        "<a-think>The sound is loud.</a-think> <v-think>No drum is visible.</v-think> <answer>no</answer>",
        "<answer>yes</answer>",
        "<answer>three</answer>",
    ] * 50
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[PAD, EOS],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return _wrap(tok)


@pytest.fixture(scope="module")
def char_tok() -> PreTrainedTokenizerFast:
    return explicit_bpe([])


@pytest.fixture(scope="module")
def trained_tok() -> PreTrainedTokenizerFast:
    return trained_bpe()


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def pieces(tok, ids: list[int]) -> list[str]:
    return [tok.decode([i]) for i in ids]


def mask_of(tok, text: str, span: str = "through_end") -> tuple[list[int], list[bool]]:
    ids = encode(tok, text)
    mask = answer_token_mask(torch.tensor([ids]), tok, torch.ones(1, len(ids), dtype=torch.long), span=span)
    return ids, mask[0].tolist()


# ---------------------------------------------------------------- answer_span (text level)


def test_answer_span_through_end_runs_to_end_of_text():
    text = "<a-think>a</a-think> <v-think>b</v-think> <answer>two</answer><|im_end|>"
    assert answer_span(text) == (text.index("<answer>"), len(text))


def test_answer_span_content_is_strictly_inside_tags():
    text = "<v-think>b</v-think><answer>two</answer>junk"
    start, end = answer_span(text, "content")
    assert text[start:end] == "two"


def test_answer_span_works_on_bytes_with_byte_offsets():
    text = "<v-think>é</v-think><answer>café</answer>".encode()
    start, end = answer_span(text, "content")
    assert text[start:end] == "café".encode() and end - start == 5


def test_answer_span_ignores_answer_written_inside_reasoning():
    text = "<a-think>maybe <answer>no</answer></a-think><v-think>v</v-think><answer>yes</answer>"
    start, end = answer_span(text, "content")
    assert text[start:end] == "yes"


def test_answer_span_only_inside_reasoning_is_malformed():
    assert answer_span("<a-think><answer>no</answer></a-think><v-think>v</v-think>") is None


def test_answer_span_without_think_blocks_still_finds_answer():
    assert answer_span("<answer>two</answer>", "content") == (8, 11)


def test_answer_span_content_needs_closing_tag_but_through_end_does_not():
    text = "<v-think>v</v-think><answer>tw"
    assert answer_span(text, "content") is None
    assert answer_span(text, "through_end") == (text.index("<answer>"), len(text))


def test_answer_span_rejects_unknown_mode():
    with pytest.raises(ValueError, match="span must be one of"):
        answer_span("<answer>x</answer>", "everything")


# ---------------------------------------------------------------- tags split byte by byte


def test_char_level_tags_through_end(char_tok):
    text = "<a-think>hi</a-think> <v-think>yo</v-think> <answer>two</answer>"
    ids, mask = mask_of(char_tok, text)
    assert len(ids) == len(text)  # precondition: one token per byte
    start = text.index("<answer>")
    assert mask == [k >= start for k in range(len(text))]


def test_char_level_tags_content(char_tok):
    text = "<a-think>hi</a-think> <v-think>yo</v-think> <answer>two</answer>"
    _, mask = mask_of(char_tok, text, "content")
    start = text.index("<answer>") + len("<answer>")
    assert mask == [start <= k < start + 3 for k in range(len(text))]


def test_multibyte_answer_split_inside_utf8_characters(char_tok):
    # "é" is 2 bytes and "🎻" 4 bytes: 10 byte tokens, several of which are partial UTF-8 sequences.
    text = "<v-think>ok</v-think><answer>café 🎻</answer>"
    ids, mask = mask_of(char_tok, text, "content")
    chosen = [i for i, m in zip(ids, mask, strict=True) if m]
    assert len(chosen) == len("café 🎻".encode()) == 10
    assert char_tok.decode(chosen) == "café 🎻"


# ---------------------------------------------------------------- merged / straddling tokens


def test_newline_answer_token_straddles_think_end():
    tok = explicit_bpe([">\n<answer>", "</v-think", "</answer>"])
    text = "<v-think>x</v-think>\n<answer>two</answer>"
    ids, mask = mask_of(tok, text)
    # precondition: the '>' closing </v-think> sits in the same token as "<answer>"
    assert pieces(tok, ids) == ["<", "v", "-", "t", "h", "i", "n", "k", ">", "x", "</v-think", ">\n<answer>", "t", "w", "o", "</answer>"]  # fmt: skip
    assert mask == [False] * 11 + [True] * 5
    _, content = mask_of(tok, text, "content")
    assert content == [False] * 12 + [True] * 3 + [False]


def test_answer_tag_merged_with_content_is_one_token():
    tok = explicit_bpe(["<answer>two", "</answer>", "</v-think>"])
    text = "<v-think>x</v-think> <answer>two</answer>"
    ids, mask = mask_of(tok, text)
    assert pieces(tok, ids)[-4:] == ["</v-think>", " ", "<answer>two", "</answer>"]
    assert mask == [False] * (len(ids) - 2) + [True, True]
    # "<answer>two" straddles the content start: it holds content bytes, so it is in the content span.
    _, content = mask_of(tok, text, "content")
    assert content == [False] * (len(ids) - 2) + [True, False]


def test_content_end_straddling_token_is_included():
    tok = explicit_bpe(["wo</answer>", "<answer>"])
    text = "<v-think>x</v-think><answer>two</answer>"
    ids, content = mask_of(tok, text, "content")
    assert pieces(tok, ids)[-3:] == ["<answer>", "t", "wo</answer>"]
    assert content == [False] * (len(ids) - 2) + [True, True]


def test_eos_is_in_through_end_span_only():
    tok = explicit_bpe(["<answer>", "</answer>", "</v-think>"])
    text = "<v-think>x</v-think><answer>two</answer>" + EOS
    ids, mask = mask_of(tok, text)
    assert pieces(tok, ids)[-6:] == ["<answer>", "t", "w", "o", "</answer>", EOS]
    assert mask[-6:] == [True] * 6 and not any(mask[:-6])
    _, content = mask_of(tok, text, "content")
    assert content[-6:] == [False, True, True, True, False, False] and not any(content[:-6])


def test_trained_tokenizer_realistic_response(trained_tok):
    text = "<a-think>I hear a violin.</a-think>\n<v-think>I see two people.</v-think>\n<answer>two</answer>" + EOS
    ids, mask = mask_of(trained_tok, text)
    # precondition: Qwen2-style splitting yields "<answer", ">two", "</", "answer", ">" here
    assert pieces(trained_tok, ids)[-6:] == ["<answer", ">two", "</", "answer", ">", EOS]
    assert mask == [False] * (len(ids) - 6) + [True] * 6
    _, content = mask_of(trained_tok, text, "content")
    assert content == [False] * (len(ids) - 5) + [True] + [False] * 4


# ---------------------------------------------------------------- batch, padding, malformed rows


def test_batch_with_padding_and_malformed_rows(char_tok):
    good = "<v-think>v</v-think><answer>ab</answer>"
    no_answer = "<v-think>v</v-think> the answer is ab"
    truncated = "<v-think>v</v-think><answer>a"
    rows = [encode(char_tok, t) for t in (good, no_answer, truncated)]
    width = max(map(len, rows)) + 3
    pad_id = char_tok.pad_token_id
    # Padding holds the ids of "<answer>x" so a mask that read padding would light up.
    bait = encode(char_tok, "<answer>xyzw" * 8)
    ids = torch.tensor([r + bait[: width - len(r)] for r in rows])
    resp = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    ids[1, len(rows[1]) :] = pad_id
    mask = answer_token_mask(ids, char_tok, resp)
    assert mask.dtype == torch.bool and mask.shape == ids.shape
    assert not (mask & ~resp.bool()).any()
    start = good.index("<answer>")
    assert mask[0].tolist() == [start <= k < len(good) for k in range(width)]
    assert not mask[1].any()
    t_start = truncated.index("<answer>")
    assert mask[2].tolist() == [t_start <= k < len(truncated) for k in range(width)]
    content = answer_token_mask(ids, char_tok, resp, span="content")
    assert content[0].nonzero().flatten().tolist() == [start + 8, start + 9]
    assert not content[1].any() and not content[2].any()


def test_empty_answer_content_marks_nothing():
    tok = explicit_bpe(["<answer></answer>"])
    ids, content = mask_of(tok, "<v-think>v</v-think><answer></answer>", "content")
    assert "<answer></answer>" in pieces(tok, ids) and not any(content)


def test_unknown_token_ids_decode_to_nothing(char_tok):
    # Models pad the embedding past the tokenizer (Qwen2.5: 151936 rows, ~151665 tokens).
    text = "<v-think>v</v-think><answer>ab</answer>"
    ids = encode(char_tok, text)
    ids.insert(3, 10_000)
    mask = answer_token_mask(torch.tensor([ids]), char_tok)
    start = text.index("<answer>") + 1  # shifted by the inserted id
    assert mask[0].tolist() == [k >= start for k in range(len(ids))]


def test_no_response_mask_means_all_positions_real(char_tok):
    text = "<v-think>v</v-think><answer>ab</answer>"
    ids = torch.tensor([encode(char_tok, text)])
    assert torch.equal(answer_token_mask(ids, char_tok), answer_token_mask(ids, char_tok, torch.ones_like(ids)))


def test_token_bytes_table_is_cached_per_tokenizer(char_tok):
    assert token_bytes_table(char_tok) is token_bytes_table(char_tok)


def test_bad_shapes_are_rejected(char_tok):
    with pytest.raises(ValueError, match="response_ids must be"):
        answer_token_mask(torch.zeros(4, dtype=torch.long), char_tok)
    with pytest.raises(ValueError, match="response_mask must have the shape"):
        answer_token_mask(torch.zeros(2, 4, dtype=torch.long), char_tok, torch.ones(2, 5))


# ---------------------------------------------------------------- properties

WORDS = st.text(alphabet="abcdefgh xyz.,\n!?", max_size=12)


@st.composite
def responses(draw):
    """(text, answer_content or None): responses with and without well-formed answer blocks."""
    a_think = draw(WORDS)
    if draw(st.booleans()):  # a decoy answer inside the reasoning must never be picked
        a_think += "<answer>" + draw(WORDS) + "</answer>"
    parts = []
    if draw(st.booleans()):
        parts.append(f"<a-think>{a_think}</a-think>")
    parts.append(draw(st.sampled_from(["", " ", "\n", "\n\n"])))
    if draw(st.booleans()):
        parts.append(f"<v-think>{draw(WORDS)}</v-think>")
    parts.append(draw(st.sampled_from(["", " ", "\n"])))
    content = None
    kind = draw(st.sampled_from(["answer", "none", "truncated", "junk"]))
    if kind == "answer":
        content = draw(WORDS)
        parts.append(f"<answer>{content}</answer>")
    elif kind == "truncated":
        parts.append("<answer>" + draw(WORDS))
    elif kind == "junk":
        parts.append(draw(st.text(alphabet="<>/answer-thinkv ", max_size=20)))
    if draw(st.booleans()):
        parts.append(EOS)
    return "".join(parts), content


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sample=responses(), pad=st.integers(0, 4), span=st.sampled_from(["through_end", "content"]))
def test_property_mask_is_a_minimal_cover_of_the_answer(trained_tok, sample, pad, span):
    text, content = sample
    ids = encode(trained_tok, text)
    resp = torch.tensor([[1] * len(ids) + [0] * pad])
    row = torch.tensor([ids + [trained_tok.pad_token_id] * pad])
    mask = answer_token_mask(row, trained_tok, resp, span=span)[0]
    assert not (mask & ~resp[0].bool()).any()
    located = answer_span(text, span)
    if located is None:
        assert not mask.any()
        return
    chosen = mask.nonzero().flatten().tolist()
    lo, hi = located
    if lo == hi:
        assert not chosen
        return
    # contiguous run of tokens ...
    assert chosen == list(range(chosen[0], chosen[-1] + 1))
    first, last = chosen[0], chosen[-1]
    # ... whose first token is the one holding character lo and whose last holds character hi-1
    # (ASCII-only text: decode(prefix) length == byte offset); computed with tokenizer.decode only.
    assert len(trained_tok.decode(ids[:first])) <= lo < len(trained_tok.decode(ids[: first + 1]))
    assert len(trained_tok.decode(ids[:last])) < hi <= len(trained_tok.decode(ids[: last + 1]))
    if content is not None:
        assert content in trained_tok.decode(ids[first : last + 1])
        if span == "through_end":
            assert last == len(ids) - 1
            assert trained_tok.decode(ids[first:]).find(f"<answer>{content}</answer>") >= 0


def test_answer_tags_are_case_insensitive_like_the_reward_parser():
    from verl_avconfuse.method.answer_mask import answer_span
    from verl_avconfuse.method.parsing import parse_response

    text = "<A-THINK> hear </A-THINK> <V-Think> see </V-Think> <ANSWER> yes </Answer>"
    assert parse_response(text).answer == "yes"
    start, end = answer_span(text, "content")
    assert text[start:end].strip() == "yes"
    assert answer_span(text.encode(), "through_end") == (text.index("<ANSWER>"), len(text))
