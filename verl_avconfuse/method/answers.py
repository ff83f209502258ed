"""Is an extracted answer right? Whole-answer comparison after normalisation; never substring matching.

The official release compared answers by substring in either direction after removing spaces and
underscores, so ``"no"`` matched ``"piano"`` and ``"not sure"`` matched ``"no"``. Here an answer is right
only when its normalised form *equals* the ground truth's, with three widenings that are exact rules,
not fuzzy ones (docs/step_rr.md: every choice):

- **yes/no** ground truth: a prediction that is ``yes``/``no``, or starts with it followed by ``, . ; : !``
  or a line break (``"Yes, there is"``), has that polarity. ``"Yes there is"``, ``"not sure"``, ``"nope"``
  have none.
- **numbers**: number words and digits are one token (``"two" == "2"``, ``"twenty-one" == "21"``,
  ``"more than ten" == "more than 10"``); ``"2.0" == "2"``.
- **multiple choice** (``options`` given): the prediction may be a letter (``B``, ``(b)``, ``b)``, ``B.``),
  the option's text, or both (``"B. piano"``: the letter must be right *and* the text must be that option's).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

YES, NO = "yes", "no"
_ARTICLES = frozenset({"the", "a", "an"})
_UNITS: dict[str, int] = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS: dict[str, int] = {
    w: 10 * i
    for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2)
}
_HUNDRED = "hundred"

_APOSTROPHES = re.compile(r"['\u2018\u2019`]")
# A token is a number (digits, optional decimal part, not glued to letters: "2nd" stays a word) or a run of
# letters/digits. Everything else -- punctuation, underscores, hyphens, whitespace -- separates tokens.
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?![^\W_])|[^\W_]+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# "yes"/"no" then a separator, then anything: "Yes, there is a violin." Not "?": "Yes? Maybe" hedges (a whole
# answer "yes?" is still yes, as punctuation is dropped by normalisation).
_POLARITY = re.compile(r"(yes|no)(?:\s*[,.;:!]|\s*\n)")
_LEADING_NOISE = re.compile(r"^[\W_]+")
# Multiple-choice letters: "B", "(b)", "b)", "[B]", "B.", "B:".
_LETTER_ONLY = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?")
# A letter, then ")" / "." / ":", then the option text: "B. piano", "(B) piano", "b) piano", "B: piano".
_LETTER_WITH_TEXT = re.compile(r"[(\[]?\s*([A-Za-z])\s*(?:[)\]]\s*[.:]?|[.:])\s*(.+)", re.DOTALL)


def _canonical_number(token: str) -> str:
    # String arithmetic, not int(): any Unicode decimal digit becomes ASCII, and a 5000-digit number in a
    # response cannot hit Python's int-parsing digit limit.
    ascii_digits = "".join(str(unicodedata.decimal(c, c)) for c in token)
    whole, _, frac = ascii_digits.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    return whole + (f".{frac}" if frac else "")


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in _TENS and nxt in _UNITS and 0 < _UNITS[nxt] < 10:  # "twenty one" / "twenty-one"
            out.append(str(_TENS[tok] + _UNITS[nxt]))
            i += 2
        elif tok in _UNITS and nxt == _HUNDRED and 0 < _UNITS[tok] < 10:  # "one hundred"
            out.append(str(_UNITS[tok] * 100))
            i += 2
        elif tok in _UNITS or tok in _TENS:
            out.append(str(_UNITS.get(tok, _TENS.get(tok))))
            i += 1
        elif tok == _HUNDRED:
            out.append("100")
            i += 1
        elif _NUMBER.fullmatch(tok):
            out.append(_canonical_number(tok))
            i += 1
        else:
            out.append(tok)
            i += 1
    return out


def normalize_answer(text: str) -> str:
    """The comparison key of an answer (not meant for display).

    NFKC + casefold; apostrophes dropped (``don't`` -> ``dont``); every other non-alphanumeric character,
    underscores included, separates words (``acoustic_guitar`` -> ``acoustic guitar``); one leading
    article dropped when whitespace and a word follow it (``"the piano"`` -> ``piano``; ``"a"`` and
    ``"A. piano"`` keep their ``a``, a multiple-choice letter); number
    words 0-99 and "hundred" become digits, and numbers lose leading zeros and a zero fraction
    (``"02"``, ``"2.0"``, ``"two"`` -> ``2``). Words are joined by single spaces.
    """
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    matches = list(_TOKEN.finditer(text))
    tokens = [m.group() for m in matches]
    # An article only when plain whitespace follows it: "A. violin" / "a) violin" name option A.
    if len(tokens) > 1 and tokens[0] in _ARTICLES and text[matches[0].end() : matches[1].start()].isspace():
        tokens = tokens[1:]
    return " ".join(_numbers_to_digits(tokens))


def _polarity(prediction: str) -> str | None:
    """``"yes"``/``"no"`` if the prediction is (or opens with) a plain yes/no, else ``None``."""
    key = normalize_answer(prediction)
    if key in (YES, NO):
        return key
    head = _LEADING_NOISE.sub("", unicodedata.normalize("NFKC", prediction).casefold())
    match = _POLARITY.match(head)
    return match.group(1) if match else None


def _plain_match(prediction: str, ground_truth: str) -> bool:
    truth = normalize_answer(ground_truth)
    if not truth:
        return False
    if truth in (YES, NO):
        return _polarity(prediction) == truth
    return normalize_answer(prediction) == truth


def _letter_index(letter: str, n_options: int) -> int | None:
    index = ord(letter.lower()) - ord("a")
    return index if 0 <= index < n_options else None


def _option_index(ground_truth: str, options: Sequence[str]) -> int | None:
    """Which option the ground truth names: its text first (an option may itself be "A"), then a letter."""
    truth = normalize_answer(ground_truth)
    keys = [normalize_answer(o) for o in options]
    if truth and truth in keys:
        return keys.index(truth)
    match = _LETTER_ONLY.fullmatch(ground_truth.strip())
    return _letter_index(match.group(1), len(options)) if match else None


def _matches_option(prediction: str, index: int, options: Sequence[str]) -> bool:
    # Same precedence as for the ground truth: an option's text before a letter reading.
    keys = [normalize_answer(o) for o in options]
    key = normalize_answer(prediction)
    if key in keys:
        return keys.index(key) == index
    pred = prediction.strip()
    match = _LETTER_ONLY.fullmatch(pred)
    if match and (letter := _letter_index(match.group(1), len(options))) is not None:
        return letter == index
    match = _LETTER_WITH_TEXT.fullmatch(pred)
    if match and (letter := _letter_index(match.group(1), len(options))) is not None:
        # Letter and text must agree: "B. violin" with B = piano names two different options.
        return letter == index and _plain_match(match.group(2), options[index])
    return _plain_match(pred, options[index])


def _check_options(options: Sequence[str]) -> None:
    if isinstance(options, str) or not isinstance(options, Sequence):
        raise TypeError(f"answers_match: options must be a sequence of option texts, got {type(options).__name__}")
    for i, option in enumerate(options):
        if not isinstance(option, str):
            raise TypeError(f"answers_match: options[{i}] must be a str, got {type(option).__name__}")


def answers_match(prediction: str | None, ground_truth: str, options: Sequence[str] | None = None) -> bool:
    """Whether ``prediction`` is the right answer (module docstring: the rules).

    Args:
        prediction: the extracted answer (``ParsedResponse.answer``); ``None`` or blank is never right.
        ground_truth: the reference answer as text; for multiple choice, the right option's text or letter.
        options: the choices of a multiple-choice question, ``options[0]`` is letter A; ``None`` otherwise.
            A ground truth that names none of them is compared as plain text.

    Returns:
        ``True`` iff the normalised answers are equal (yes/no, number and option rules included).
    """
    if not isinstance(ground_truth, str):
        raise TypeError(f"answers_match: ground_truth must be a str, got {type(ground_truth).__name__}")
    if prediction is None or not normalize_answer(prediction):
        return False
    if options is not None:
        _check_options(options)
        index = _option_index(ground_truth, options)
        if index is not None:
            return _matches_option(prediction, index, options)
    return _plain_match(prediction, ground_truth)


def matches_option_index(prediction: str | None, index: int, options: Sequence[str]) -> bool:
    """Whether ``prediction`` names option ``index`` (a letter, the option's text, or both).

    Unlike :func:`answers_match`, the right option is given by position (a dataset's answer index), so two
    options with the same normalised text cannot move the truth to the first of them. A prediction that is
    one option's text character for character (ignoring case and surrounding spaces) names that option even
    when another option normalises alike; otherwise the rules of :func:`answers_match` apply.
    """
    _check_options(options)
    if not 0 <= index < len(options):
        raise ValueError(f"matches_option_index: index {index} is not an index into {len(options)} options")
    if prediction is None or not normalize_answer(prediction):
        return False
    exact = [i for i, option in enumerate(options) if option.strip().casefold() == prediction.strip().casefold()]
    if len(exact) == 1:
        return exact[0] == index
    return _matches_option(prediction, index, options)
