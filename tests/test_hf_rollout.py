"""The HF rollout server: same tokens and log-probs as transformers, batching, weight sync, abort."""

from __future__ import annotations

import asyncio

import pytest
import torch
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.replica import RolloutMode

from verl_avconfuse.integration.rollout.hf_server import HFRolloutServer

PROMPTS = [
    "Is there a violin sound?",
    "How many instruments are sounding in the video? Think first.",
    "Is the piano in the video making a sound?",
    "Describe what you see",
]


@pytest.fixture(scope="module")
def server(tiny_asset):
    from verl_avconfuse.integration.platform import activate_cpu_platform

    activate_cpu_platform()
    path = tiny_asset("models/qwen2")
    model_config = HFModelConfig(path=path, override_config={"attn_implementation": "sdpa"})
    config = RolloutConfig(
        name="hf", tensor_model_parallel_size=1, prompt_length=64, response_length=24, dtype="float32"
    )
    return HFRolloutServer(config, model_config, RolloutMode.HYBRID, [], 0, 0, 1, 1, "")


def _ids(server, text):
    return server.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
    )


def _reference_greedy(server, prompt_ids, max_new_tokens):
    """transformers' own greedy decode of one unpadded prompt, cut after the first EOS."""
    with torch.inference_mode():
        out = server.model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=server.pad_token_id,
            eos_token_id=server.eos_token_ids,
        )
    tokens = out[0, len(prompt_ids) :].tolist()
    for i, token in enumerate(tokens):
        if token in server.eos_token_ids:
            return tokens[: i + 1]
    return tokens


def _generate(server, prompt_ids, **sampling):
    return server.generate(prompt_ids=prompt_ids, sampling_params=dict(sampling), request_id="r")


def test_greedy_tokens_and_log_probs_match_transformers(server):
    prompt_ids = _ids(server, PROMPTS[0])
    output = asyncio.run(_generate(server, prompt_ids, temperature=0.0, max_tokens=12, logprobs=True))
    assert output.token_ids == _reference_greedy(server, prompt_ids, 12)
    assert output.stop_reason == "completed"
    # log-probs of the generated tokens under a plain forward pass of prompt + response
    sequence = torch.tensor([prompt_ids + output.token_ids])
    with torch.inference_mode():
        logits = server.model(sequence).logits[0, len(prompt_ids) - 1 : -1]
    expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(output.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(output.log_probs), expected, atol=1e-4)


def test_concurrent_requests_are_batched_with_correct_left_padding(server):
    prompts = [_ids(server, text) for text in PROMPTS]
    assert len({len(p) for p in prompts}) > 1, "the test needs prompts of different lengths"
    calls = []
    original = server.model.generate

    def counting_generate(**kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return original(**kwargs)

    server.model.generate = counting_generate

    async def main():
        return await asyncio.gather(*[_generate(server, p, temperature=0.0, max_tokens=10) for p in prompts])

    try:
        outputs = asyncio.run(main())
    finally:
        server.model.generate = original
    assert len(calls) == 1 and calls[0][0] == len(prompts)
    for prompt, output in zip(prompts, outputs, strict=True):
        assert output.token_ids == _reference_greedy(server, prompt, 10)


def test_max_tokens_caps_the_response(server):
    prompt_ids = _ids(server, PROMPTS[1])
    output = asyncio.run(_generate(server, prompt_ids, temperature=1.0, max_tokens=3, ignore_eos=True))
    assert len(output.token_ids) == 3


def test_prompt_longer_than_the_context_is_rejected(server):
    with pytest.raises(ValueError, match="no room to generate"):
        asyncio.run(_generate(server, [5] * 200, temperature=0.0))


def test_weight_sync_replaces_every_parameter(server):
    prompt_ids = _ids(server, PROMPTS[2])
    before = asyncio.run(_generate(server, prompt_ids, temperature=0.0, max_tokens=8, ignore_eos=True)).token_ids
    originals = {name: p.detach().clone() for name, p in server.model.named_parameters()}
    generator = torch.Generator().manual_seed(7)
    perturbed = {name: p + 0.5 * torch.randn(p.shape, generator=generator) for name, p in originals.items()}
    try:
        server.begin_weight_update()
        server.load_weights(list(perturbed.items()))
        server.finish_weight_update(global_steps=3)
        after = asyncio.run(_generate(server, prompt_ids, temperature=0.0, max_tokens=8, ignore_eos=True))
        for name, param in server.model.named_parameters():
            assert torch.equal(param, perturbed[name])
        assert after.extra_fields["global_steps"] == 3
        assert after.token_ids != before
    finally:
        server.begin_weight_update()
        server.load_weights(list(originals.items()))
        server.finish_weight_update()


def test_weight_sync_rejects_partial_unknown_or_misshaped_weights(server):
    params = dict(server.model.named_parameters())
    first_name = next(iter(params))
    server.begin_weight_update()
    server.load_weights([(first_name, params[first_name].detach().clone())])
    with pytest.raises(RuntimeError, match="were not sent by the actor"):
        server.finish_weight_update()
    with pytest.raises(KeyError, match="does not have"):
        server.load_weights([("model.no_such_layer.weight", torch.zeros(2))])
    with pytest.raises(ValueError, match="shape"):
        server.load_weights([(first_name, torch.zeros(3, 3, 3))])


def test_abort_returns_partial_output_then_resume_serves_again(server):
    prompt_ids = _ids(server, PROMPTS[3])

    async def main():
        task = asyncio.create_task(_generate(server, prompt_ids, temperature=1.0, max_tokens=4000, ignore_eos=True))
        await asyncio.sleep(0.3)
        await server.abort_all_requests()
        aborted = await task
        await server.resume_generation()
        fresh = await _generate(server, prompt_ids, temperature=0.0, max_tokens=4, ignore_eos=True)
        return aborted, fresh

    server.config.response_length = 4000
    server.config.max_model_len = 5000
    try:
        aborted, fresh = asyncio.run(main())
    finally:
        server.config.response_length = 24
        server.config.max_model_len = None
    assert aborted.stop_reason == "aborted"
    assert 0 < len(aborted.token_ids) < 4000
    assert len(fresh.token_ids) == 4 and fresh.stop_reason == "completed"
