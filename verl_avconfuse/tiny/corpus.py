"""Synthetic text for the tiny offline models: the tokenizer's corpus and the warm-start chats.

Pure Python, deterministic given a seed. Each chat is drawn from a small *scene*: the instruments
(or sounds) the audio contains and the instruments the video shows. Scenes may disagree -- an
instrument that is seen but silent, or a sound with nothing on screen -- which is what RL-CoMM
trains on. Questions follow Music-AVQA's templates and their answers follow from the scene.

Policy responses use RL-CoMM's three-part format (``<a-think> ... </a-think> <v-think> ... </v-think>``
then ``<answer> ... </answer>``). A fixed share of them is deliberately *malformed* (a missing block,
wrong order, an untagged answer): a tiny model warm-started on these samples the format only part of
the time, so format and accuracy rewards vary across a GRPO group from the very first step.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from verl_avconfuse.method.prompts import (
    ARR_INSTRUCTION,
    AVC_INSTRUCTION,
    OUTPUT_FORMAT_INSTRUCTION,
    REFERENCE_PROMPT,
    format_question,
)

#: The 22 instrument classes of Music-AVQA (underscores as in the dataset's ``templ_values``).
INSTRUMENTS: tuple[str, ...] = (
    "accordion",
    "acoustic_guitar",
    "bagpipe",
    "banjo",
    "bassoon",
    "cello",
    "clarinet",
    "congas",
    "drum",
    "electric_bass",
    "erhu",
    "flute",
    "guzheng",
    "piano",
    "pipa",
    "saxophone",
    "suona",
    "trumpet",
    "tuba",
    "ukulele",
    "violin",
    "xylophone",
)
#: Non-musical soundtracks that AV-ConfuseBench's "modified" clips swap in (ESC-50 / UrbanSound8K classes).
SOUND_TYPES: tuple[str, ...] = ("bird", "drill", "rain", "thunderstorm", "wind")
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
YES_NO: tuple[str, ...] = ("yes", "no")

#: Share of policy responses written in a broken format (see module docstring).
MALFORMED_FRACTION = 0.35
#: Share of reference (audio-only) responses without their ``<a-think>`` tags.
REFERENCE_MALFORMED_FRACTION = 0.15
#: Share of warm-start chats (policy and reference alike) drawn from the tiny RL task itself: "Is there a
#: {instrument} sound?" about one of the tiny dataset's instruments, a third of the clips silent (see
#: :mod:`verl_avconfuse.tiny.data`). Policy and reference then share one vocabulary of audio descriptions
#: for the task, so sim(policy a-think, reference a-think) clears ARR's threshold for part of the right
#: answers, as with real models; the rest of the chats (random scenes) keep the outputs varied.
TASK_FRACTION = 0.75
#: The tiny RL task's instruments (the tones of :data:`verl_avconfuse.tiny.data.INSTRUMENT_TONES_HZ`).
TASK_INSTRUMENTS: tuple[str, ...] = ("cello", "flute", "piano", "trumpet", "violin")
#: Share of the tiny task's clips that are muted (every third, as the tiny dataset builds them).
TASK_MUTED_FRACTION = 1 / 3

#: What the warm-start counts as a well-formed policy response (decoded, special tokens removed).
#: This is the tiny models' own yardstick, not the reward parser of :mod:`verl_avconfuse.method`.
WELL_FORMED_RESPONSE = re.compile(
    r"^\s*<a-think>(?P<a>.+?)</a-think>\s*<v-think>(?P<v>.+?)</v-think>\s*<answer>(?P<answer>.+?)</answer>\s*$",
    re.DOTALL,
)
WELL_FORMED_REFERENCE = re.compile(r"^\s*<a-think>(?P<a>.+?)</a-think>\s*$", re.DOTALL)

REFERENCE_INSTRUCTIONS: tuple[str, ...] = (
    REFERENCE_PROMPT,
    "{question} The answer is {answer}. Describe what you hear inside <a-think> </a-think>.",
    "Describe what you hear inside <a-think> </a-think>.",
)


def display_name(label: str) -> str:
    """``acoustic_guitar`` -> ``acoustic guitar`` (how questions and reasoning spell classes)."""
    return label.replace("_", " ")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _a(label: str) -> str:
    name = display_name(label)
    return f"{_article(name)} {name}"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class Scene:
    """What a clip contains. ``heard``: audible sources in order of onset; ``seen``: visible instruments."""

    heard: tuple[str, ...]
    seen: tuple[str, ...]

    @property
    def heard_instruments(self) -> tuple[str, ...]:
        return tuple(h for h in self.heard if h in INSTRUMENTS)


@dataclass(frozen=True)
class ChatExample:
    """One warm-start chat: the user turn (text) and the assistant turn, plus what produced them."""

    question: str
    answer: str
    user: str
    response: str
    well_formed: bool


def sample_scene(rng: random.Random) -> Scene:
    seen = tuple(rng.sample(INSTRUMENTS, rng.choice((1, 1, 2, 2, 3))))
    kind = rng.random()
    if kind < 0.45:  # consistent: everything seen is heard
        heard = seen
    elif kind < 0.65:  # some seen instruments are silent
        heard = seen[: rng.randint(0, len(seen) - 1)]
    elif kind < 0.85:  # the soundtrack was swapped for a non-musical sound
        heard = (rng.choice(SOUND_TYPES),)
    else:  # an off-screen instrument plays too
        heard = seen + (rng.choice([i for i in INSTRUMENTS if i not in seen]),)
    return Scene(heard=heard, seen=seen)


def audio_reasoning(scene: Scene, rng: random.Random) -> str:
    """An ``<a-think>`` paragraph: what the audio contains."""
    if not scene.heard:
        return rng.choice(("The audio is silent.", "I hear no instrument, the audio is silent."))
    instruments = [_a(h) for h in scene.heard_instruments]
    sounds = [display_name(h) for h in scene.heard if h not in INSTRUMENTS]
    parts = []
    if instruments:
        if len(instruments) == 1:
            parts.append(
                rng.choice(
                    (
                        f"I hear {instruments[0]}.",
                        f"I hear {instruments[0]} playing a melody.",
                        f"I hear the sound of {instruments[0]}.",
                    )
                )
            )
        else:
            n = NUMBER_WORDS[len(instruments)]
            parts.append(
                rng.choice((f"I hear {_join(instruments)}.", f"I hear {n} instruments: {_join(instruments)}."))
            )
    if sounds:
        parts.append(rng.choice((f"I hear the sound of {sounds[0]}.", f"I hear {sounds[0]}, not music.")))
    return " ".join(parts)


def visual_reasoning(scene: Scene, rng: random.Random) -> str:
    """A ``<v-think>`` paragraph: what the video shows."""
    seen = [_a(s) for s in scene.seen]
    if len(seen) == 1:
        name = display_name(scene.seen[0])
        return rng.choice(
            (f"I see {seen[0]}.", f"I see a person playing the {name}.", f"I see someone with {seen[0]}.")
        )
    n = NUMBER_WORDS[len(seen)]
    return rng.choice((f"I see {_join(seen)}.", f"I see {n} instruments: {_join(seen)}.", f"I see {n} people playing."))


def _location(scene: Scene, label: str) -> str:
    """Where ``label`` stands on screen: ``seen`` lists instruments from left to right."""
    index, last = scene.seen.index(label), len(scene.seen) - 1
    if last == 0:
        return "middle"
    return "left" if index == 0 else "right" if index == last else "middle"


def sample_task_scene(rng: random.Random) -> tuple[Scene, str, str]:
    """A scene of the tiny RL task with its question and answer: one instrument on screen, heard or muted."""
    instrument = rng.choice(TASK_INSTRUMENTS)
    muted = rng.random() < TASK_MUTED_FRACTION
    scene = Scene(heard=() if muted else (instrument,), seen=(instrument,))
    return scene, f"Is there {_a(instrument)} sound?", "no" if muted else "yes"


def _scene_and_question(rng: random.Random, task_fraction: float) -> tuple[Scene, str, str]:
    if rng.random() < task_fraction:
        return sample_task_scene(rng)
    scene = sample_scene(rng)
    return (scene, *sample_question(scene, rng))


def sample_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A Music-AVQA-style question about ``scene`` and its answer (one word or a short phrase)."""
    heard = scene.heard_instruments
    kind = rng.randrange(11)
    if kind == 0:  # audio-visual existential
        label = rng.choice(scene.heard + scene.seen + (rng.choice(INSTRUMENTS),))
        return f"Is there {_a(label)} sound?", "yes" if label in scene.heard else "no"
    if kind == 1:
        label = rng.choice(scene.seen)
        return f"Is the {display_name(label)} in the video making a sound?", "yes" if label in scene.heard else "no"
    if kind == 2:  # audio-visual counting
        return "How many instruments are sounding in the video?", NUMBER_WORDS[len(heard)]
    if kind == 3:  # visual counting
        return rng.choice(
            (
                "How many instruments are in the video?",
                "How many types of musical instruments appeared in the entire video?",
            )
        ), NUMBER_WORDS[len(scene.seen)]
    if kind == 4:
        silent = all(h not in scene.seen for h in scene.heard)
        return "Is this sound from the instrument in the video?", "no" if silent else "yes"
    if kind == 5:  # audio-visual comparative / audio classification
        answer = display_name(scene.heard[0]) if scene.heard else "none"
        return rng.choice(("Which instrument makes the sound first?", "What sound do you hear?")), answer
    if kind == 6:  # visual location
        label = rng.choice(scene.seen)
        return f"Where is the {display_name(label)}?", _location(scene, label)
    if kind == 7:  # audio counting
        return "How many musical instruments were heard throughout the video?", NUMBER_WORDS[len(heard)]
    if kind == 8 and len(heard) >= 2:  # audio comparative: the first onset is the loudest here
        first, other = rng.sample(heard, 2)
        answer = "yes" if heard.index(first) < heard.index(other) else "no"
        return f"Is the {display_name(first)} louder than the {display_name(other)}?", answer
    if kind == 9 and heard:  # audio-visual temporal
        index = rng.randrange(len(heard))
        answer = display_name(heard[index + 1]) if index + 1 < len(heard) else "none"
        return f"Which instrument sounds after the {display_name(heard[index])}?", answer
    heard_name = display_name(scene.heard[0]) if scene.heard else "silence"
    return "Describe what you see and what you hear.", f"{display_name(scene.seen[0])} and {heard_name}"


def policy_response(
    a_think: str, v_think: str, answer: str, rng: random.Random, malformed_fraction: float
) -> tuple[str, bool]:
    """The assistant turn in RL-CoMM's format, or (with probability ``malformed_fraction``) a broken one."""
    if rng.random() >= malformed_fraction:
        return f"<a-think> {a_think} </a-think> <v-think> {v_think} </v-think>\n<answer> {answer} </answer>", True
    broken = (
        f"<answer> {answer} </answer>",
        f"{answer}",
        f"<a-think> {a_think} </a-think>\n<answer> {answer} </answer>",
        f"<v-think> {v_think} </v-think> <a-think> {a_think} </a-think>\n<answer> {answer} </answer>",
        f"<a-think> {a_think} </a-think> <v-think> {v_think} </v-think>\nThe answer is {answer}.",
        f"{a_think} {v_think} So the answer is {answer}.",
    )
    return rng.choice(broken), False


def policy_chats(
    n: int, seed: int = 0, malformed_fraction: float = MALFORMED_FRACTION, task_fraction: float = TASK_FRACTION
) -> list[ChatExample]:
    """``n`` warm-start chats for the policy: a Music-AVQA question with the format instruction, answered."""
    rng = random.Random(f"policy-{seed}")
    chats = []
    for _ in range(n):
        scene, question, answer = _scene_and_question(rng, task_fraction)
        response, ok = policy_response(
            audio_reasoning(scene, rng), visual_reasoning(scene, rng), answer, rng, malformed_fraction
        )
        chats.append(ChatExample(question, answer, format_question(question), response, ok))
    return chats


def reference_chats(
    n: int,
    seed: int = 0,
    malformed_fraction: float = REFERENCE_MALFORMED_FRACTION,
    task_fraction: float = TASK_FRACTION,
) -> list[ChatExample]:
    """``n`` warm-start chats for the reference audio LM: reason about the audio inside ``<a-think>`` only."""
    rng = random.Random(f"reference-{seed}")
    chats = []
    for _ in range(n):
        scene, question, answer = _scene_and_question(rng, task_fraction)
        user = rng.choice(REFERENCE_INSTRUCTIONS).format(question=question, answer=answer)
        a_think = audio_reasoning(scene, rng)
        ok = rng.random() >= malformed_fraction
        response = f"<a-think> {a_think} </a-think>" if ok else a_think
        chats.append(ChatExample(question, answer, user, response, ok))
    return chats


def corpus_lines(seed: int = 0, n_chats: int = 3000) -> Iterator[str]:
    """The tokenizer's training text: vocabulary lists, fixed instructions and many rendered chats."""

    words = [*INSTRUMENTS, *map(display_name, INSTRUMENTS), *SOUND_TYPES, *NUMBER_WORDS, *YES_NO]
    yield " ".join(words)
    yield " ".join(w.capitalize() for w in words)
    yield " ".join(str(d) for d in range(100))
    yield OUTPUT_FORMAT_INSTRUCTION
    yield "system\nYou are a helpful assistant.\nuser\nassistant\n"
    for instruction in (ARR_INSTRUCTION, AVC_INSTRUCTION):
        yield f"Instruct: {instruction}\nQuery:"
    for chat in policy_chats(n_chats, seed):
        yield chat.user
        yield chat.response
    for chat in reference_chats(n_chats // 4, seed):
        yield chat.user
        yield chat.response
