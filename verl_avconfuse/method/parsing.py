"""Split an RL-CoMM response into its three blocks: ``<a-think>`` (audio), ``<v-think>`` (visual), ``<answer>``.

The policy is asked (``verl_avconfuse.method.prompts.OUTPUT_FORMAT_INSTRUCTION``) for::

    <a-think> what it hears </a-think> <v-think> what it sees </v-think> <answer> the answer </answer>

Rules (docs/step_rr.md lists every choice and why):

- Tags are the exact six strings above, matched case-insensitively (``<A-Think>`` is a tag). Whitespace
  inside the brackets is *not* tolerated: ``< answer >`` is plain text. The policy is shown the exact tags,
  and Ans-CO's answer mask (:mod:`verl_avconfuse.method.answer_mask`) searches for the exact ``<answer>``,
  so a looser tag here would pay a format reward for a response whose answer tokens Ans-CO cannot find.
- A block is an opening tag and the first closing tag of the same kind after it; when a kind is opened
  twice before it is closed, the later (nearer) opening counts: ``<answer> a <answer> b </answer>`` is ``b``.
- A block holding only whitespace is absent (``None``): an empty answer is no answer (the paper: "no
  answer -> 0"), and an empty reasoning block has nothing to embed.
- ``a_think`` / ``v_think``: the first block of that kind. ``answer``: the answer after the last think
  block, :func:`locate_answer`, the one rule the reward, Ans-CO's answer mask
  (:mod:`verl_avconfuse.method.answer_mask`) and the evaluators share, so the answer the reward grades is
  the answer Ans-CO sharpens and the one a benchmark scores.
- ``well_formed`` (the paper's ``r_format``): exactly six tags, in the order ``<a-think> </a-think>
  <v-think> </v-think> <answer> </answer>``, only whitespace outside the blocks, and no block empty.

Responses are expected decoded with ``skip_special_tokens=True`` (verl's reward managers do); a trailing
``<|im_end|>`` left in the text is "something outside the blocks" and fails the format.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

A_THINK, V_THINK, ANSWER = "a-think", "v-think", "answer"
#: The three blocks of RL-CoMM's format, in the order the format requires.
BLOCK_TAGS: tuple[str, ...] = (A_THINK, V_THINK, ANSWER)

_TAG = re.compile(r"<(/?)(a-think|v-think|answer)>", re.IGNORECASE)

#: Tags that close a reasoning block: RL-CoMM's two, and R1-style ``</think>`` (base models, other recipes).
THINK_END_TAGS: tuple[str, ...] = ("</a-think>", "</v-think>", "</think>")
_THINK_END = re.compile(r"</(?:a-think|v-think|think)>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<(/?)answer>", re.IGNORECASE)
# The same patterns on bytes (Ans-CO locates the answer in the byte string of the tokens). Every tag is
# ASCII, and in UTF-8 an ASCII byte never occurs inside a multi-byte character: same matches, byte offsets.
_THINK_END_BYTES = re.compile(_THINK_END.pattern.encode(), re.IGNORECASE)
_ANSWER_TAG_BYTES = re.compile(_ANSWER_TAG.pattern.encode(), re.IGNORECASE)
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
# (is_closing, kind) of the six tags of a well-formed response, in order.
_WELL_FORMED_SEQUENCE: tuple[tuple[bool, str], ...] = tuple(
    (closing, kind) for kind in BLOCK_TAGS for closing in (False, True)
)


@dataclass(frozen=True)
class ParsedResponse:
    """One response split into RL-CoMM's blocks.

    Attributes:
        a_think: audio reasoning, stripped; ``None`` when there is no (non-empty) ``<a-think>`` block.
        v_think: visual reasoning, stripped; ``None`` likewise.
        answer: the answer, stripped; ``None`` when there is no (non-empty) ``<answer>`` block.
        well_formed: the three-part format holds exactly (the paper's ``r_format = 1``).
    """

    a_think: str | None
    v_think: str | None
    answer: str | None
    well_formed: bool


class _Tag(NamedTuple):
    start: int
    end: int
    closing: bool
    kind: str


class _Block(NamedTuple):
    open_start: int
    content_start: int
    content_end: int
    close_end: int


class AnswerBlock(NamedTuple):
    """Where the answer is in a response: half-open offsets (characters of a ``str``, bytes of ``bytes``).

    ``start``: the ``<`` of the opening ``<answer>``; ``content_start``: just after it. ``content_end``: the
    ``<`` of the closing ``</answer>`` and ``end`` just after it, both ``None`` when the answer is cut off
    (no closing tag).
    """

    start: int
    content_start: int
    content_end: int | None
    end: int | None

    @property
    def complete(self) -> bool:
        return self.end is not None


def locate_answer(text: str | bytes) -> AnswerBlock | None:
    """The answer after the last think block: the one answer rule of this package.

    1. The reasoning ends at the end of the last think-closing tag (:data:`THINK_END_TAGS`:
       ``</a-think>``, ``</v-think>``, ``</think>``), or at 0 when there is none.
    2. The answer is the first block opened by an ``<answer>`` after that point and closed by the first
       ``</answer>`` after it; when ``<answer>`` is opened twice before that closing tag, the later
       (nearer) opening counts, as for every block (``<answer> a <answer> b </answer>`` is ``b``).
    3. An ``<answer>`` after the reasoning with no closing tag is a cut-off answer (``content_end is None``);
       with several, the last one.

    An ``<answer>`` inside or before the reasoning is not the answer: a response that answers and then
    reasons on has no answer (``None``). Tags match case-insensitively, like the parser's.

    Args:
        text: a decoded response, ``str`` (offsets are characters) or UTF-8 ``bytes`` (offsets are bytes).
    """
    think_end_re, answer_re = (
        (_THINK_END_BYTES, _ANSWER_TAG_BYTES) if isinstance(text, bytes) else (_THINK_END, _ANSWER_TAG)
    )
    think_end = max((m.end() for m in think_end_re.finditer(text)), default=0)
    opening = None
    for tag in answer_re.finditer(text, think_end):
        if not tag.group(1):
            opening = tag
        elif opening is not None:
            return AnswerBlock(opening.start(), opening.end(), tag.start(), tag.end())
    if opening is None:
        return None
    return AnswerBlock(opening.start(), opening.end(), None, None)


def _pair_blocks(tags: list[_Tag]) -> dict[str, list[_Block]]:
    """Every complete block per kind, in order of their closing tags (nearest opening wins)."""
    open_at: dict[str, _Tag] = {}
    blocks: dict[str, list[_Block]] = {}
    for tag in tags:
        if not tag.closing:
            open_at[tag.kind] = tag
        elif tag.kind in open_at:
            opening = open_at.pop(tag.kind)
            blocks.setdefault(tag.kind, []).append(_Block(opening.start, opening.end, tag.start, tag.end))
    return blocks


def _content(text: str, block: _Block | None) -> str | None:
    if block is None:
        return None
    content = text[block.content_start : block.content_end].strip()
    return content or None


def _is_well_formed(text: str, tags: list[_Tag]) -> bool:
    if len(tags) != len(_WELL_FORMED_SEQUENCE):
        return False
    if any((t.closing, t.kind) != expected for t, expected in zip(tags, _WELL_FORMED_SEQUENCE, strict=True)):
        return False
    # Outside: before the first tag, between consecutive blocks, after the last tag.
    outside = [text[: tags[0].start], text[tags[-1].end :]]
    outside += [text[tags[i].end : tags[i + 1].start] for i in (1, 3)]
    inside = [text[tags[i].end : tags[i + 1].start] for i in (0, 2, 4)]
    return all(not s.strip() for s in outside) and all(s.strip() for s in inside)


def parse_response(text: str) -> ParsedResponse:
    """Parse one decoded response (module docstring: the rules). Never raises on a ``str``.

    Args:
        text: the response text, special tokens removed.

    Returns:
        :class:`ParsedResponse`; partial responses keep what they have (e.g. an answer without a v-think
        gives ``answer`` set, ``v_think=None``, ``well_formed=False``) so the partial rewards still apply.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_response expects the decoded response as str, got {type(text).__name__}")
    tags = [_Tag(m.start(), m.end(), m.group(1) == "/", m.group(2).lower()) for m in _TAG.finditer(text)]
    blocks = _pair_blocks(tags)

    located = locate_answer(text)
    answer = None
    if located is not None and located.complete:
        answer = text[located.content_start : located.content_end].strip() or None

    return ParsedResponse(
        a_think=_content(text, blocks.get(A_THINK, [None])[0]),
        v_think=_content(text, blocks.get(V_THINK, [None])[0]),
        answer=answer,
        well_formed=_is_well_formed(text, tags),
    )


@functools.lru_cache(maxsize=64)
def _tag_pattern(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<(/?)({re.escape(tag)})>", re.IGNORECASE)


def extract_block(text: str, tag: str) -> str | None:
    """Content of the first complete ``<tag>...</tag>`` block, stripped; ``None`` if absent or blank.

    Same matching as :func:`parse_response` (case-insensitive, nearest opening wins), but always the
    *first* block: for ``tag="answer"`` this can differ from ``parse_response(text).answer``, which
    prefers the answer written after the reasoning.

    Args:
        text: any text.
        tag: the tag name without brackets, e.g. ``"a-think"`` (letters, digits, ``_`` and ``-``).
    """
    if not _TAG_NAME.fullmatch(tag):
        raise ValueError(f"extract_block: tag must be a bare tag name like 'a-think', got {tag!r}")
    name = tag.lower()
    tags = [_Tag(m.start(), m.end(), m.group(1) == "/", name) for m in _tag_pattern(tag).finditer(text)]
    blocks = _pair_blocks(tags).get(name)
    return _content(text, blocks[0] if blocks else None)


def reference_a_think(reference_response: str) -> str | None:
    """The reference LALM's audio reasoning, the target of the paper's ``r_arr``.

    The LALM is asked to reason inside ``<a-think> </a-think>``. Its first complete a-think block is used;
    when it wrote no complete block (forgot the tags, or was cut off), its whole response with any
    a-think tags removed is used: unlike the policy, the reference is not being graded on its format,
    and its text is still audio reasoning. ``None`` when nothing but whitespace is left.
    """
    block = extract_block(reference_response, A_THINK)
    if block is not None:
        return block
    return _tag_pattern(A_THINK).sub(" ", reference_response).strip() or None
