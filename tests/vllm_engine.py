"""The real vLLM engine (CPU build) in-process, for the vLLM lane's contract tests.

The oracle of every check here is vLLM itself: its input processor expands our request (prompt ids, processor
features, the ``mm_features`` records its model runner reads), its model computes positions and log-probs,
its ``load_weights`` takes the synced weights. ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine core and
the worker in this process, so the model object is reachable (``LLM.apply_model``). The other side of each
comparison is transformers: the processor verl's agent loop calls for the actor and the thinker the actor
trains.

Only the vLLM lane imports this module (``bash .ci/vllm_cpu_env.sh DIR``; tests marked ``vllm``).
"""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager

import numpy as np
import torch

#: vLLM's CPU build, sized for the tiny models (see verl_avconfuse/integration/platform/cpu.py for what each means).
ENGINE_ENV = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}
SAMPLE_RATE = 16_000


def make_llm(model_dir: str, **kwargs):
    """An in-process ``vllm.LLM`` on a thinker-only directory, fp32 and eager, as the rollout runs it."""
    os.environ.update(ENGINE_ENV)
    from vllm import LLM

    from verl_avconfuse.omni.vllm_contract import wrap_thinker_config

    options = dict(
        model=model_dir,
        hf_overrides=wrap_thinker_config,
        enforce_eager=True,
        dtype="float32",
        max_model_len=1024,
        max_num_seqs=8,
        max_num_batched_tokens=2048,
        limit_mm_per_prompt={"audio": 2, "video": 2, "image": 1},
        mm_processor_cache_gb=0,
        seed=0,
    )
    options.update(kwargs)
    return LLM(**options)


def engine_request(llm, request: dict, request_id: str = "r0"):
    """vLLM's own processing of our request: the ``EngineCoreRequest`` its engine core schedules."""
    from vllm import SamplingParams

    return llm.llm_engine.input_processor.process_inputs(
        request_id, request, SamplingParams(max_tokens=1), supported_tasks=("generate",)
    )


def vllm_model(llm):
    """The model object vLLM runs (in-process engine only)."""
    return llm.apply_model(lambda model: model)[0]


def feature(core_request, modality: str, key: str, index: int = 0) -> torch.Tensor:
    """The ``index``-th ``modality`` item's processed field ``key``, as vLLM's model runner receives it."""
    items = [f for f in core_request.mm_features if f.modality == modality]
    value = items[index].data[key].data
    return torch.as_tensor(value)


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Like qwen_vl_utils' output: (T, C, H, W) float frames in [0, 255]."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0, 255, size=(n, 3, 48, 64)).astype(np.float32))


def video_item(n: int, fps: float, seed: int = 0):
    return frames(n, seed), {"fps": fps, "total_num_frames": n, "frames_indices": list(range(n))}


def actor_inputs(processor, text: str, *, videos=None, audios=None, images=None, kwargs=None):
    """The processor call verl's agent loop makes for the actor (``build_multimodal_processor_inputs``)."""
    from verl.utils import tokenizer as tokenizer_mod

    return tokenizer_mod.build_multimodal_processor_inputs(
        processor, text=[text], videos=videos, audio=audios, images=images, mm_processor_kwargs=dict(kwargs or {})
    )


def media_case(processor, prompt: str, n_frames: int, fps: float, seconds: float, in_video: bool, seed=0, freq=440.0):
    """One clip (``n_frames`` random frames at ``fps``, a ``seconds`` tone): the actor's processor inputs and
    the request the ``vllm_omni`` rollout builds from them (``build_omni_prompt``), for either Omni family
    (read from the processor's thinker config)."""
    from verl_avconfuse.omni.vllm_contract import build_omni_prompt, omni_family, omni_token_ids

    video, audio = video_item(n_frames, fps, seed), tone(seconds, freq)
    kwargs = {"use_audio_in_video": True, "fps": fps} if in_video else {"fps": fps}
    actor = actor_inputs(processor, prompt, videos=[video], audios=[audio], kwargs=kwargs)
    request = build_omni_prompt(
        actor["input_ids"][0].tolist(),
        token_ids=omni_token_ids(processor),
        audio_data=[audio],
        video_data=[video],
        use_audio_in_video=in_video,
        extra_mm_processor_kwargs=kwargs,
        family=omni_family(processor.config.model_type),
    )
    return actor, request


def hf_rope_positions(processor, actor) -> torch.Tensor:
    """The actor's TMRoPE positions ``(3, L)``: transformers' ``get_rope_index`` as verl calls it."""
    kwargs = processor.get_rope_index_kwargs(dict(actor))
    positions, _ = processor.get_rope_index(
        actor["input_ids"],
        image_grid_thw=actor.get("image_grid_thw"),
        video_grid_thw=actor.get("video_grid_thw"),
        attention_mask=actor["attention_mask"],
        **kwargs,
    )
    return positions[:, 0, :]


@torch.no_grad()
def hf_prompt_log_probs(thinker, actor) -> np.ndarray:
    """log p(token_i | tokens_<i) for i >= 1 under the transformers thinker (the actor's forward)."""
    inputs = {k: v for k, v in actor.items() if isinstance(v, torch.Tensor)}
    logits = thinker(**inputs).logits[0].float()
    ids = actor["input_ids"][0]
    return torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0].numpy()


def vllm_prompt_log_probs(output) -> np.ndarray:
    """The same quantity from vLLM's ``prompt_logprobs=0`` (the first prompt token has none)."""
    ids = output.prompt_token_ids
    return np.array([step[ids[i]].logprob for i, step in enumerate(output.prompt_logprobs) if i > 0])


@contextmanager
def unpatched_embedding_merge(module_name: str, class_name: str):
    """vLLM 0.24.0's own embedding merge (and interleaving test) for the block: the bug the patch fixes."""
    module = importlib.import_module(f"vllm.model_executor.models.{module_name}")
    cls = getattr(module, class_name)
    patched_embed, patched_check = cls.embed_input_ids, module.check_interleaved_audio_video
    cls.embed_input_ids, module.check_interleaved_audio_video = patched_embed.__wrapped__, patched_check.__wrapped__
    try:
        yield
    finally:
        cls.embed_input_ids, module.check_interleaved_audio_video = patched_embed, patched_check


def batch_log_prob_gaps(llm, hf_thinker, cases) -> list[np.ndarray]:
    """|vLLM - actor| prompt log-probs per token, for (actor inputs, request) ``cases`` generated in one call."""
    from vllm import SamplingParams

    outputs = llm.generate([request for _, request in cases], SamplingParams(max_tokens=1, prompt_logprobs=0))
    return [
        np.abs(vllm_prompt_log_probs(output) - hf_prompt_log_probs(hf_thinker, actor))
        for (actor, _), output in zip(cases, outputs, strict=True)
    ]
