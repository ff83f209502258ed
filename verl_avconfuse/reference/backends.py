"""The reference audio LM: ``generate(requests) -> list[str]`` (raw generations), batched.

- :class:`HFAudioLM`: HF transformers, any audio LM with a processor and a chat template
  (Qwen2-Audio-7B-Instruct in the paper; the tiny offline one in tests), CPU or GPU;
- :class:`VLLMAudioLM`: vLLM's offline ``LLM`` (GPU, or its CPU build), same prompts, ``(waveform, sr)`` audio;
  at temperature 0 it writes what :class:`HFAudioLM` writes (tests/test_vllm_backends.py).

Both sample as the release does: temperature 0.5, top-p 0.95, once per prompt (the cache makes
that one sample the reference for every rollout of the prompt, in every epoch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from verl_avconfuse.method.prompts import REFERENCE_PROMPT
from verl_avconfuse.reference.cache import ReferenceRequest
from verl_avconfuse.settings import ReferenceSettings


@dataclass(frozen=True)
class SamplingOptions:
    """How the reference audio LM samples; the defaults are ``avconfuse.reference``'s (settings.py)."""

    temperature: float = ReferenceSettings.temperature
    top_p: float = ReferenceSettings.top_p
    max_new_tokens: int = ReferenceSettings.max_new_tokens
    seed: int = ReferenceSettings.seed


class AudioLM(Protocol):
    model_id: str
    #: Everything besides the model and prompt that decides the generation (the cache keys on it).
    generation_settings: dict

    def generate(self, requests: list[ReferenceRequest]) -> list[str]: ...


def reference_messages(request: ReferenceRequest) -> list[dict]:
    text = REFERENCE_PROMPT.format(question=request.question.strip(), answer=request.answer.strip())
    return [
        {
            "role": "user",
            "content": [{"type": "audio", "audio_url": request.audio_path}, {"type": "text", "text": text}],
        }
    ]


class HFAudioLM:
    """An HF audio LM (the class the checkpoint was saved with), batched left-padded generation."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        sampling: SamplingOptions = SamplingOptions(),
        gpu_memory_fraction: float | None = None,
    ):
        import torch
        import transformers
        from transformers import AutoConfig, AutoProcessor

        self.model_id = str(model_path)
        self.sampling = sampling
        self.generation_settings = {"backend": "hf", **dataclasses.asdict(sampling)}
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.processor.tokenizer.padding_side = "left"
        config = AutoConfig.from_pretrained(model_path)
        model_cls = next(
            (getattr(transformers, arch) for arch in config.architectures or [] if hasattr(transformers, arch)),
            transformers.AutoModelForCausalLM,
        )
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if gpu_memory_fraction is not None and self.device.type == "cuda":
            # Sharing an actor GPU: the caching allocator refuses to grow past this share.
            torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction, self.device)
        self.model = model_cls.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)

    def generate(self, requests: list[ReferenceRequest]) -> list[str]:
        import torch

        from verl_avconfuse.media import load_audio

        if not requests:
            return []
        audios = [load_audio(r.audio_path, sr=self.sample_rate) for r in requests]
        texts = [
            self.processor.apply_chat_template(reference_messages(r), add_generation_prompt=True, tokenize=False)
            for r in requests
        ]
        inputs = self.processor(
            text=texts, audio=audios, sampling_rate=self.sample_rate, return_tensors="pt", padding=True
        )
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        torch.manual_seed(self.sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                do_sample=self.sampling.temperature > 0,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_new_tokens=self.sampling.max_new_tokens,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMAudioLM:
    """vLLM's offline engine: ``LLM.generate`` with ``{"prompt", "multi_modal_data": {"audio": (wav, sr)}}``.

    On vLLM's CPU build the engine runs eager (no inductor compile) with the KV cache and thread binding
    of :func:`verl_avconfuse.omni.vllm_cpu.prepare_offline_vllm`, unless the caller set them.
    """

    def __init__(
        self,
        model_path: str,
        *,
        sampling: SamplingOptions = SamplingOptions(),
        gpu_memory_fraction: float | None = None,
        **engine_kwargs,
    ):
        from transformers import AutoProcessor
        from vllm import LLM

        from verl_avconfuse.omni.vllm_cpu import prepare_offline_vllm

        self.model_id = str(model_path)
        self.sampling = sampling
        self.generation_settings = {"backend": "vllm", **dataclasses.asdict(sampling)}
        if not prepare_offline_vllm(engine_kwargs) and gpu_memory_fraction is not None:
            engine_kwargs.setdefault("gpu_memory_utilization", gpu_memory_fraction)
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        engine_kwargs.setdefault("limit_mm_per_prompt", {"audio": 1})
        self.llm = LLM(model=self.model_id, seed=sampling.seed, **engine_kwargs)

    def generate(self, requests: list[ReferenceRequest]) -> list[str]:
        from vllm import SamplingParams

        from verl_avconfuse.media import load_audio

        prompts = [
            {
                "prompt": self.processor.apply_chat_template(
                    reference_messages(r), add_generation_prompt=True, tokenize=False
                ),
                "multi_modal_data": {"audio": (load_audio(r.audio_path, sr=self.sample_rate), self.sample_rate)},
            }
            for r in requests
        ]
        params = SamplingParams(
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            seed=self.sampling.seed,
        )
        return [output.outputs[0].text for output in self.llm.generate(prompts, params)]


BACKENDS = {"hf": HFAudioLM, "vllm": VLLMAudioLM}


def load_audio_lm(backend: str, model_path: str, **kwargs) -> AudioLM:
    if backend not in BACKENDS:
        raise ValueError(f"reference backend {backend!r}: expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend](model_path, **kwargs)
