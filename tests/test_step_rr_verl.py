"""Step-RR through the paths verl itself uses: the reward-loop worker and custom_reward_function.

The official release's reward functions raised a TypeError on their first call (a keyword
mismatch with the caller); every entry point here is called the way verl calls it.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from verl_avconfuse.settings import avconfuse_settings

from conftest import REPO

RESPONSE = "<a-think> I hear a violin playing. </a-think> <v-think> I see a violin. </v-think>\n<answer> yes </answer>"
REFERENCE = "I hear a violin and a piano."


@pytest.fixture(scope="module")
def composed_config(tiny_asset, tmp_path_factory):
    """verl's ppo_trainer config with our recipes, composed by Hydra and resolved."""
    import os

    import verl  # noqa: F401  (plugin: search path, resolvers)
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(
            config_name="ppo_trainer",
            overrides=[
                "+recipe=avconfuse",
                "+machine=cpu_tiny",
                f"avconfuse.reference.cache_dir={tmp_path_factory.mktemp('refcache')}",
            ],
        )
    OmegaConf.resolve(config)
    tiny_asset("models/embedder")
    return config


def _sample(tokenizer, response: str, extra_info: dict, ground_truth: str = "yes"):
    from tensordict import TensorDict
    from verl import DataProto

    prompt_ids = torch.tensor(tokenizer("Is there a violin sound?")["input_ids"])
    response_ids = torch.tensor(tokenizer(response)["input_ids"])
    batch = TensorDict(
        {
            "prompts": prompt_ids[None],
            "responses": response_ids[None],
            "attention_mask": torch.ones(1, len(prompt_ids) + len(response_ids), dtype=torch.long),
        },
        batch_size=1,
    )
    non_tensor = {
        "data_source": np.array(["music_avqa"], dtype=object),
        "reward_model": np.array([{"ground_truth": ground_truth}], dtype=object),
        "extra_info": np.array([extra_info], dtype=object),
        "raw_prompt": np.array([[{"role": "user", "content": "Is there a violin sound?"}]], dtype=object),
    }
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


#: RESPONSE's blocks, read by hand.
A_THINK, V_THINK = "I hear a violin playing.", "I see a violin."


def _cosine(config, query: str, document: str) -> float:
    """The similarity as sentence-transformers gives it for the recipe's embedder (cpu_tiny: MiniLM, no
    instruction prefix), without the plugin's similarity code."""
    from sentence_transformers import SentenceTransformer

    assert config.avconfuse.similarity.use_instructions is False
    model = SentenceTransformer(config.avconfuse.similarity.model, device="cpu")
    first, second = model.encode([query, document], normalize_embeddings=True)
    return float(first @ second)


def _expected(config, reference: str | None) -> dict[str, float]:
    """Step-RR of RESPONSE (well-formed, answer "yes" = the ground truth), by the paper's rules."""
    sim_ref = _cosine(config, reference, A_THINK) if reference else None
    s = min(max(_cosine(config, A_THINK, V_THINK), 0.0), 1.0)
    arr = 1.0 if sim_ref is not None and sim_ref > config.avconfuse.step_rr.omega else 0.0
    return {"format": 1.0, "arr": arr, "avc": 1.0 + s, "acc": 1.0, "score": 1.0 + arr + 1.0 + s}


def test_reward_loop_worker_loads_step_rr_and_scores_like_the_formula(composed_config):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(composed_config)
    assert type(worker.reward_manager).__name__ == "StepRRRewardManager"
    data = _sample(worker.input_tokenizer, RESPONSE, {"reference_a_think": REFERENCE})
    result = asyncio.run(worker.compute_score(data))
    expected = _expected(composed_config, REFERENCE)
    assert result["reward_score"] == pytest.approx(expected["score"], abs=1e-5)
    info = result["reward_extra_info"]
    for key in ("format", "arr", "avc", "acc"):
        assert info[key] == pytest.approx(expected[key], abs=1e-5)
    assert info["ref_cached"] == 1.0 and info["ref_error"] == 0.0
    # "I hear a violin and a piano." vs "I hear a violin playing.": MiniLM's cosine clears omega = 0.8.
    assert expected["arr"] == 1.0


def test_without_any_reference_source_arr_is_zero_and_the_sample_is_counted(composed_config):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(composed_config)
    data = _sample(worker.input_tokenizer, RESPONSE, {})  # no precomputed reference, no media, no worker
    result = asyncio.run(worker.compute_score(data))
    info = result["reward_extra_info"]
    assert info["arr"] == 0.0 and info["ref_error"] == 1.0
    assert result["reward_score"] == pytest.approx(_expected(composed_config, None)["score"], abs=1e-5)


def test_malformed_wrong_answer_scores_only_its_consistency(composed_config):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    worker = RewardLoopWorker(composed_config)
    response = "<a-think> I hear rain. </a-think> <answer> no </answer> trailing"
    data = _sample(worker.input_tokenizer, response, {"reference_a_think": REFERENCE})
    result = asyncio.run(worker.compute_score(data))
    # no v-think: sim(a, v) = 0; wrong answer: no arr, avc = s = 0; text after the answer: no format
    assert result["reward_extra_info"]["format"] == 0.0
    assert result["reward_score"] == 0.0


@pytest.mark.parametrize("name", ["step_rr", "format_acc"])
def test_reward_fns_load_through_verls_custom_reward_function(name, tiny_asset):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    # the checkout's file (installed, it is also pkg://verl_avconfuse.reward_fns.NAME)
                    "path": str(REPO / "reward_fns" / f"{name}.py"),
                    "name": "compute_score",
                    "reward_kwargs": {"embedding_model": tiny_asset("models/embedder")} if name == "step_rr" else {},
                }
            }
        }
    )
    compute_score = get_custom_reward_fn(config)
    # exactly the keywords verl's naive reward manager passes
    result = compute_score(
        data_source="music_avqa", solution_str=RESPONSE, ground_truth="yes", extra_info={"reference_a_think": REFERENCE}
    )
    assert result["format"] == 1.0 and result["acc"] == 1.0
    if name == "format_acc":
        assert result["score"] == 2.0
    else:
        # by the paper's rules, with sentence-transformers directly and the instructions written out: ARR's on
        # the reference (the query), AVC's on the a-think; the answer is right, so r = 1 + arr + (1 + s)
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(tiny_asset("models/embedder"), device="cpu")

        def cosine(prompt: str, query: str, document: str) -> float:
            first = encoder.encode([query], prompt=prompt, normalize_embeddings=True)[0]
            second = encoder.encode([document], normalize_embeddings=True)[0]
            return float(first @ second)

        arr_prompt = "Instruct: Given a reference answer, retrieve semantically similar content\nQuery:"
        avc_prompt = "Instruct: Given an audio description, retrieve semantically coherent visual content\nQuery:"
        arr = 1.0 if cosine(arr_prompt, REFERENCE, A_THINK) > 0.8 else 0.0
        s = min(max(cosine(avc_prompt, A_THINK, V_THINK), 0.0), 1.0)
        assert result["arr"] == arr and result["avc"] == pytest.approx(1.0 + s, abs=1e-5)
        assert result["score"] == pytest.approx(1.0 + arr + 1.0 + s, abs=1e-5)


def test_settings_reject_unknown_keys_and_require_a_reference_model():
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=r"avconfuse.reference: unknown key\(s\) \['modle_path'\]"):
        avconfuse_settings(OmegaConf.create({"avconfuse": {"reference": {"modle_path": "x"}}}))
    with pytest.raises(ValueError, match="avconfuse.reference.model_path: required"):
        avconfuse_settings(OmegaConf.create({"avconfuse": {"reference": {"enable": True}}}))
    settings = avconfuse_settings(
        OmegaConf.create({"avconfuse": {"reference": {"enable": False}, "step_rr": {"omega": 0.7}}})
    )
    assert settings.step_rr.omega == 0.7 and not settings.reference.enable
    with pytest.raises(ValueError, match=r"avconfuse.ans_co.entropy_positions: expected one of \('answer', 'all'\)"):
        avconfuse_settings(
            OmegaConf.create({"avconfuse": {"reference": {"enable": False}, "ans_co": {"entropy_positions": "prompt"}}})
        )
    assert settings.ans_co.entropy_positions == "answer"
