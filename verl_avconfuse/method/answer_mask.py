"""Which response tokens belong to the answer: the set N of Ans-CO (RL-CoMM stage 3).

The paper sums the entropy term over ``t > T_prompt+think``: every token after the reasoning blocks of
``<a-think>...</a-think> <v-think>...</v-think> <answer>...</answer>``. Tags are plain text to the
tokenizer, so BPE may split ``<answer>`` into pieces or merge it with its neighbours (``">\\n<answer>"``
or ``"<answer>two"`` as one token). We therefore locate the answer in the *byte string* of the response
and map it back to tokens:

1. every token id is turned into the exact bytes it contributes (byte-level BPE: the token string mapped
   through the GPT-2 byte decoder, so a token holding half of a UTF-8 character is still exact; added and
   special tokens: their content). The table is cached per tokenizer.
2. the bytes of the response's valid tokens (``response_mask`` 1) are concatenated, giving each token a
   half-open byte range ``[start, end)``.
3. :func:`answer_span` finds the answer's range in that byte string (by the parser's rule,
   :func:`verl_avconfuse.method.parsing.locate_answer`), and every token whose range overlaps it is marked. A token that straddles a boundary (``">\\n<answer>"`` holds the end of ``</v-think>``
   and the start of the answer) is in N as soon as one of its bytes is inside the span.

All tags are ASCII, and in UTF-8 an ASCII byte never occurs inside a multi-byte character, so searching
bytes is the same as searching text.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from verl_avconfuse.method.parsing import locate_answer

AnswerSpan = Literal["through_end", "content"]
ANSWER_SPANS: tuple[str, ...] = ("through_end", "content")


def answer_span(text: str | bytes, span: AnswerSpan = "through_end") -> tuple[int, int] | None:
    """Locate the answer tokens' text in one decoded response.

    Where the answer is comes from :func:`verl_avconfuse.method.parsing.locate_answer`, the rule the
    reward grades by (the answer after the last think block); this adds how much of it N covers.

    Args:
        text: the response, as ``str`` (offsets are characters) or UTF-8 ``bytes`` (offsets are bytes).
        span: ``"through_end"`` (default, the paper's ``t > T_prompt+think``): from the first character of
            the answer's ``<answer>`` to the end of the text, closing tag, EOS and anything after it
            included; a cut-off answer without ``</answer>`` still counts. ``"content"``: strictly between
            ``<answer>`` and its ``</answer>``; a cut-off answer has none.

    Returns:
        ``(start, end)`` half-open offsets into ``text``, or ``None`` when the response has no answer.
        ``start == end`` is possible for ``"content"`` (``<answer></answer>``).
    """
    if span not in ANSWER_SPANS:
        raise ValueError(f"span must be one of {ANSWER_SPANS}, got {span!r}")
    block = locate_answer(text)
    if block is None:
        return None
    if span == "through_end":
        return block.start, len(text)
    if not block.complete:
        return None
    return block.content_start, block.content_end


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table, used by every byte-level BPE (Qwen2 included)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = printable[:]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, map(chr, chars), strict=True))


_BYTE_DECODER: dict[str, int] = {c: b for b, c in _bytes_to_unicode().items()}


class TokenBytes:
    """Cached ``token id -> bytes`` table for one tokenizer.

    Byte-level BPE tokens are mapped through the GPT-2 byte decoder, which is exact even for tokens that
    hold part of a multi-byte character (``tokenizer.decode([id])`` would give U+FFFD there). Added and
    special tokens are stored as their literal content. A token that is not byte-level (e.g. a
    SentencePiece piece like ``"▁the"``) falls back to ``tokenizer.decode([id])``: tags are still found,
    but leading-space handling may differ. Ids the tokenizer does not know (models often pad the
    embedding past the tokenizer's vocabulary) contribute no bytes.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        self._table: dict[int, bytes] = {int(i): str(t).encode() for i, t in added.items()}

    def lookup(self, ids: Sequence[int]) -> list[bytes]:
        """Bytes of each id in ``ids`` (unknown ids are decoded once, in one tokenizer call)."""
        table = self._table
        missing = sorted({i for i in ids if i not in table})
        if missing:
            pieces = self._tokenizer.convert_ids_to_tokens(missing)
            for token_id, piece in zip(missing, pieces, strict=True):
                table[token_id] = self._piece_bytes(token_id, piece)
        return [table[i] for i in ids]

    def _piece_bytes(self, token_id: int, piece: str | None) -> bytes:
        if piece is None:
            return b""
        try:
            return bytes(_BYTE_DECODER[c] for c in piece)
        except KeyError:
            return self._tokenizer.decode([token_id]).encode()


_CACHE: weakref.WeakKeyDictionary[Any, TokenBytes] = weakref.WeakKeyDictionary()


def token_bytes_table(tokenizer: Any) -> TokenBytes:
    """The process-wide :class:`TokenBytes` of ``tokenizer`` (built once, dropped with the tokenizer)."""
    try:
        table = _CACHE.get(tokenizer)
        if table is None:
            table = _CACHE[tokenizer] = TokenBytes(tokenizer)
        return table
    except TypeError:  # tokenizer not weak-referenceable or not hashable: no cross-call cache
        return TokenBytes(tokenizer)


def answer_token_mask(
    response_ids: torch.Tensor,
    tokenizer: Any,
    response_mask: torch.Tensor | None = None,
    span: AnswerSpan = "through_end",
) -> torch.Tensor:
    """Mark the answer tokens N of each response (the entropy set of Ans-CO).

    Args:
        response_ids: ``(bs, L)`` int token ids of the responses (prompt excluded).
        tokenizer: the policy's Hugging Face tokenizer (byte-level BPE such as Qwen2's is exact; see
            :class:`TokenBytes` for others).
        response_mask: ``(bs, L)`` {0,1}/bool, 1 on real response tokens. Only these tokens make up the
            decoded text and only they can be marked; ``None`` means every position is real.
        span: ``"through_end"`` (default) or ``"content"``, see :func:`answer_span`.

    Returns:
        ``(bs, L)`` bool on ``response_ids.device``: True on every real token that overlaps the answer span
        (a token straddling a span boundary is included). A row without an answer block is all False.
    """
    if response_ids.dim() != 2:
        raise ValueError(f"response_ids must be (bs, L), got shape {tuple(response_ids.shape)}")
    if response_mask is not None and response_mask.shape != response_ids.shape:
        raise ValueError(
            f"response_mask must have the shape of response_ids {tuple(response_ids.shape)}, "
            f"got {tuple(response_mask.shape)}"
        )
    if span not in ANSWER_SPANS:
        raise ValueError(f"span must be one of {ANSWER_SPANS}, got {span!r}")

    ids = response_ids.detach().cpu().numpy()
    if response_mask is None:
        valid = np.ones(ids.shape, dtype=bool)
    else:
        valid = response_mask.detach().cpu().numpy().astype(bool)
    out = np.zeros(ids.shape, dtype=bool)
    table = token_bytes_table(tokenizer)
    for row in range(ids.shape[0]):
        positions = np.flatnonzero(valid[row])
        if positions.size == 0:
            continue
        pieces = table.lookup(ids[row, positions].tolist())
        located = answer_span(b"".join(pieces), span)
        if located is None:
            continue
        lo, hi = located
        if lo == hi:  # "<answer></answer>": an empty content span overlaps no token
            continue
        ends = np.cumsum([len(p) for p in pieces])
        starts = ends - np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
        # Overlap of [start, end) with [lo, hi). For "through_end" hi is the text length, so the test is
        # end > lo and tokens that decode to nothing (unknown ids) after the answer start are kept too.
        hit = (ends > lo) & ((starts < hi) | (span == "through_end"))
        out[row, positions[hit]] = True
    return torch.from_numpy(out).to(response_ids.device)
