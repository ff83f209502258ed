"""What vLLM 0.24.0's Qwen2.5-Omni thinker needs from verl 0.9.1: the request, the weight names, the config.

verl's agent loop hands the rollout server ``prompt_ids`` built by the HF processor, so every media item's
placeholder is already *expanded* (``n`` copies of ``<|AUDIO|>``, ``m`` of ``<|VIDEO|>``; with
``use_audio_in_video=True`` the audio and video tokens interleaved in 2-second chunks). vLLM 0.24.0 does the
expansion itself. Everything below was read from the vLLM 0.24.0 wheel (paths relative to the ``vllm``
package) and from transformers 5.10.4; ``docs/vllm_omni.md`` walks through it with the evidence.

Request (:func:`build_omni_prompt`):

- For token prompts ``Qwen2_5OmniThinkerMultiModalProcessor._apply_hf_processor_main``
  (model_executor/models/qwen2_5_omni_thinker.py) always returns ``is_update_applied=False``: vLLM then
  applies its own prompt updates (``_maybe_apply_prompt_updates`` -> ``BaseMultiModalProcessor.
  _apply_prompt_updates``, multimodal/processing/processor.py). ``_get_prompt_updates`` declares one
  ``PromptReplacement`` per modality whose target is the single token ``<|AUDIO|>`` / ``<|IMAGE|>`` /
  ``<|VIDEO|>``; ``_apply_matches`` replaces, for the k-th item, the first target occurrence after the
  previous item's. So each item must be ONE placeholder token. An expanded run is not an error in vLLM: the
  first token is expanded again and the other ``n - 1`` stay in the prompt as text, silently.
- ``use_audio_in_video=True``: the audio updates are dropped (``_maybe_apply_prompt_updates``) and the
  ``<|VIDEO|>`` replacement (``omni_get_updates_use_audio_in_video``) writes
  ``<|audio_bos|> (video chunk, audio chunk)* <|audio_eos|>`` itself; the audio placeholders are derived from
  the video's (``_derive_audio_from_video_placeholders``, one audio item per video). So the prompt must read
  ``<|vision_bos|><|VIDEO|><|vision_eos|>`` per video with no ``<|AUDIO|>``/``<|audio_bos|>`` of its own.
- Media: ``Qwen2_5OmniThinkerMultiModalDataParser`` (a ``MultiModalDataParser``, multimodal/parse.py)
  takes audio as ``(samples, sample_rate)`` tuples (resampled to the feature extractor's rate when the rate
  differs, ``AudioResampler.resample``; downmixed to mono, ``normalize_audio``) and videos as frame arrays
  (``video_needs_metadata`` is False, so ``(frames, metadata)`` loses its metadata there).
- ``mm_processor_kwargs`` is read per request (renderers/base.py passes it as ``hf_processor_mm_kwargs``):
  ``use_audio_in_video`` (``_get_prompt_updates``, ``_call_hf_processor``, ``_apply_hf_processor_mm_only``),
  ``sampling_rate`` (to the HF processor's Whisper feature extractor, which raises on a different rate) and
  ``second_per_grid_ts`` (``_get_prompt_updates``: the chunk layout of an audio-in-video replacement; 1.0 per
  video when absent, whatever ``fps`` the HF processor was given).

Weights (:func:`vllm_thinker_weight_name`): ``Qwen2_5OmniThinkerForConditionalGeneration.hf_to_vllm_mapper``
maps ``thinker.lm_head.`` / ``thinker.model.`` / ``thinker.`` and nothing else, and its children are
``audio_tower``, ``visual`` and ``language_model``; the actor's bare ``model.*`` and ``lm_head.*`` names make
``AutoWeightsLoader._load_module`` raise. Prefixing ``thinker.`` (the full checkpoint's names) fixes all four.

Engine (:func:`vllm_engine_overrides`): model_executor/models/registry.py registers the thinker class under
``Qwen2_5OmniModel`` and ``Qwen2_5OmniForConditionalGeneration`` only, and the class reads
``hf_config.thinker_config``: a thinker-only directory needs its config wrapped (:func:`wrap_thinker_config`).

Qwen3-Omni (MoE) thinker (``qwen3_omni_moe_thinker.py`` in the same wheel; :data:`QWEN3_OMNI`): the same
request shape and ``thinker.`` prefix rule with Qwen3's media tokens, plus what differs (each read there and
tested in tests/test_qwen3_omni_vllm_contract.py): the audio-in-video body is interleaved token by token in time
order (``get_updates_use_audio_in_video``) and laid out at 2 s per video grid unless ``second_per_grid_ts`` is
sent; ``get_mrope_input_positions`` truncates video times to ints where transformers keeps floats (so
``2 / fps * position_id_per_seconds`` must be an integer); experts arrive one tensor per expert (verl's
``unfuse_moe_params``) and are packed by ``Qwen3MoeModel.load_weights`` into ``experts.routed_experts.w13_weight``
/ ``w2_weight``; the vision tower reads ``vision_config.image_size`` / ``apply_vit_abs_pos_embed``, which configs
written by transformers 5.10.4 lack (:func:`wrap_thinker_config` fills them). docs/vllm_omni.md also records
where vLLM 0.24.0's Qwen3-Omni M-RoPE positions differ from the HF thinker's.

Importing this module is cheap (numpy only); transformers is imported inside :func:`wrap_thinker_config`, verl's
``unfuse_moe_params`` only when a fused MoE expert tensor is renamed.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = [
    "OmniFamily",
    "OmniTokenIds",
    "QWEN2_5_OMNI",
    "QWEN2_5_OMNI_TOKEN_IDS",
    "QWEN3_OMNI",
    "QWEN3_OMNI_TOKEN_IDS",
    "build_omni_prompt",
    "collapse_placeholders",
    "omni_family",
    "omni_token_ids",
    "qwen3_omni_mrope_positions",
    "qwen3_vision_overrides",
    "vllm_engine_overrides",
    "vllm_internal_weight_name",
    "vllm_thinker_weight_name",
    "wrap_thinker_config",
]

VLLM_VERSION = "0.24.0"

# ----------------------------------------------------------------------------------------------- config
FULL_MODEL_TYPE = "qwen2_5_omni"
THINKER_MODEL_TYPE = "qwen2_5_omni_thinker"
#: Architectures vLLM 0.24.0 maps to ``Qwen2_5OmniThinkerForConditionalGeneration``
#: (model_executor/models/registry.py, ``_MULTIMODAL_MODELS``). The thinker's own HF class name is not one.
VLLM_OMNI_ARCHITECTURES = ("Qwen2_5OmniModel", "Qwen2_5OmniForConditionalGeneration")
#: What we set when a config names none of them (the name the official checkpoints carry).
VLLM_OMNI_ARCHITECTURE = "Qwen2_5OmniModel"
#: transformers 5.10.4 defaults: ``Qwen2_5OmniThinkerConfig.tie_word_embeddings`` (what the HF thinker's
#: ``get_expanded_tied_weights_keys`` reads) and ``Qwen2_5OmniTextConfig.tie_word_embeddings`` (what vLLM's
#: ``Qwen2ForCausalLM`` reads, built from ``thinker_config.text_config``). Pinned by the tests.
HF_THINKER_TIE_DEFAULT = False
HF_TEXT_TIE_DEFAULT = True

# ----------------------------------------------------------------------------------------------- media
#: Whisper features of the thinker's audio encoder: 16 kHz mono.
DEFAULT_AUDIO_SAMPLE_RATE = 16_000
#: ``Qwen2_5OmniProcessor`` assumes frames sampled at 2 fps unless ``fps=`` is passed; then
#: ``video_second_per_grid = temporal_patch_size / fps`` (processing_qwen2_5_omni.py, ``__call__``).
DEFAULT_VIDEO_FPS = 2.0
VIDEO_TEMPORAL_PATCH_SIZE = 2
#: TMRoPE time resolution and audio-in-video chunk length: ``vision_config.tokens_per_second`` (vLLM's
#: default 25) / ``position_id_per_seconds`` (HF's 25), and ``seconds_per_chunk`` (2 in both).
TOKENS_PER_SECOND = 25
SECONDS_PER_CHUNK = 2.0

# ----------------------------------------------------------------------------------------------- weights
THINKER_WEIGHT_PREFIX = "thinker."
#: Top-level submodules of transformers' ``Qwen2_5OmniThinkerForConditionalGeneration`` (5.10.4).
HF_THINKER_SUBMODULES = ("model", "lm_head", "audio_tower", "visual")
#: ``Qwen2_5OmniThinkerForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix`` in vLLM 0.24.0, in order.
VLLM_THINKER_PREFIX_MAP = (
    ("thinker.lm_head.", "language_model.lm_head."),
    ("thinker.model.", "language_model.model."),
    ("thinker.", ""),
)
#: Direct children of vLLM's thinker module (``__init__``): where ``AutoWeightsLoader`` looks first.
VLLM_THINKER_CHILDREN = ("audio_tower", "visual", "language_model")
#: Prefixes vLLM's thinker skips on load (``load_weights``: ``skip_prefixes``).
VLLM_THINKER_SKIPPED_PREFIXES = ("talker.", "token2wav.")

OMNI_TOKEN_STRINGS = {
    "audio": "<|AUDIO|>",
    "image": "<|IMAGE|>",
    "video": "<|VIDEO|>",
    "audio_bos": "<|audio_bos|>",
    "audio_eos": "<|audio_eos|>",
    "vision_bos": "<|vision_bos|>",
    "vision_eos": "<|vision_eos|>",
}


@dataclass(frozen=True)
class OmniTokenIds:
    """Token ids of Qwen2.5-Omni's media placeholders and their delimiters."""

    audio: int
    image: int
    video: int
    audio_bos: int
    audio_eos: int
    vision_bos: int
    vision_eos: int

    def __post_init__(self) -> None:
        ids = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in ids.items():
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(f"OmniTokenIds.{name}: expected a non-negative int token id, got {value!r}")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"OmniTokenIds: token ids must be distinct, got {ids}")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> OmniTokenIds:
        """Read the ids from a tokenizer (or a processor carrying one) by their token strings."""
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        unk = getattr(tokenizer, "unk_token_id", None)
        ids = {}
        for name, token in OMNI_TOKEN_STRINGS.items():
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is None or (unk is not None and token_id == unk):
                raise ValueError(f"tokenizer {type(tokenizer).__name__}: no token {token} (needed for {name})")
            ids[name] = int(token_id)
        return cls(**ids)

    @property
    def placeholders(self) -> frozenset[int]:
        return frozenset((self.audio, self.image, self.video))


#: The real Qwen2.5-Omni vocabulary (``Qwen2_5OmniThinkerConfig`` defaults in transformers 5.10.4:
#: ``audio_token_index``, ``image_token_index``, ``video_token_index``, ``audio_start_token_id``,
#: ``audio_end_token_id``; vision bos/eos from the 3B config's ``vision_start/end_token_id``).
QWEN2_5_OMNI_TOKEN_IDS = OmniTokenIds(
    audio=151646, image=151655, video=151656, audio_bos=151647, audio_eos=151648, vision_bos=151652, vision_eos=151653
)

#: The real Qwen3-Omni vocabulary (Qwen3-Omni-30B-A3B-Instruct's ``thinker_config``: ``audio_token_id``,
#: ``image_token_id``, ``video_token_id``, ``audio_start/end_token_id``, ``vision_start/end_token_id``;
#: tests/fixtures/qwen3_omni/qwen3_omni_30b_a3b_thinker.json). Only the audio placeholder and its delimiters differ.
QWEN3_OMNI_TOKEN_IDS = OmniTokenIds(
    audio=151675, image=151655, video=151656, audio_bos=151669, audio_eos=151670, vision_bos=151652, vision_eos=151653
)


@dataclass(frozen=True)
class OmniFamily:
    """What differs between vLLM 0.24.0's Qwen2.5-Omni and Qwen3-Omni thinkers on our side of the contract."""

    name: str
    full_model_type: str
    thinker_model_type: str
    #: Architectures model_executor/models/registry.py maps to the family's thinker class (the first is set
    #: when a config names none of them).
    vllm_architectures: tuple[str, ...]
    #: The non-thinker parts of a full checkpoint, skipped by the thinker's ``load_weights``.
    skipped_prefixes: tuple[str, ...]
    #: The fps the HF processor assumes when not given one (``video_second_per_grid = 2 / fps``).
    processor_default_fps: float
    #: Qwen2.5-Omni lays audio in video out in 2-second chunks; Qwen3-Omni token by token in time order.
    chunked_audio_in_video: bool
    #: Position ids per second of video (TMRoPE time base) of the released checkpoints.
    position_id_per_seconds: float
    #: Qwen3-Omni: transformers' ``get_rope_index`` keeps video times as floats, vLLM's
    #: ``get_mrope_input_positions`` truncates them (``(t * t_factor).astype(np.int64)``).
    float_video_times: bool
    #: Qwen3-Omni: vLLM pads each audio to whole mel frames (``pad_to_hop_length``, the Whisper extractor's
    #: ``hop_length``) before its HF processor call; the actor's processor drops the partial frame instead.
    audio_frame_samples: int | None = None


QWEN2_5_OMNI = OmniFamily(
    name="Qwen2.5-Omni",
    full_model_type=FULL_MODEL_TYPE,
    thinker_model_type=THINKER_MODEL_TYPE,
    vllm_architectures=VLLM_OMNI_ARCHITECTURES,
    skipped_prefixes=VLLM_THINKER_SKIPPED_PREFIXES,
    processor_default_fps=DEFAULT_VIDEO_FPS,
    chunked_audio_in_video=True,
    position_id_per_seconds=TOKENS_PER_SECOND,
    float_video_times=False,
)
#: ``qwen3_omni_moe_thinker.py``: ``Qwen3OmniMoeThinkerForConditionalGeneration`` is registered under
#: ``Qwen3OmniMoeForConditionalGeneration`` only; ``load_weights`` skips ``talker.`` and ``code2wav.``;
#: ``Qwen3OmniMoeProcessor.__call__`` defaults to ``fps=1.0``; the released ``position_id_per_seconds`` is 13.
QWEN3_OMNI = OmniFamily(
    name="Qwen3-Omni",
    full_model_type="qwen3_omni_moe",
    thinker_model_type="qwen3_omni_moe_thinker",
    vllm_architectures=("Qwen3OmniMoeForConditionalGeneration",),
    skipped_prefixes=("talker.", "code2wav."),
    processor_default_fps=1.0,
    chunked_audio_in_video=False,
    position_id_per_seconds=13,
    float_video_times=True,
    audio_frame_samples=160,
)
OMNI_FAMILIES = (QWEN2_5_OMNI, QWEN3_OMNI)


def omni_family(model_type: str) -> OmniFamily:
    """The family of a full or thinker-only ``model_type`` (``config.json``)."""
    for family in OMNI_FAMILIES:
        if model_type in (family.full_model_type, family.thinker_model_type):
            return family
    known = [t for f in OMNI_FAMILIES for t in (f.full_model_type, f.thinker_model_type)]
    raise ValueError(f"config.json: model_type={model_type!r} is not an Omni thinker; expected one of {known}")


# ----------------------------------------------------------------------------------------------- prompt ids
def _int_ids(prompt_ids: Sequence[int] | Any) -> list[int]:
    if hasattr(prompt_ids, "tolist"):
        prompt_ids = prompt_ids.tolist()
    ids = list(prompt_ids)
    if ids and isinstance(ids[0], list):
        raise ValueError(f"prompt_ids: expected one flat sequence of token ids, got a batch of {len(ids)}")
    return [int(t) for t in ids]


def collapse_placeholders(prompt_ids: Sequence[int], token_ids: OmniTokenIds, use_audio_in_video: bool) -> list[int]:
    """HF-expanded prompt ids -> the ids vLLM 0.24.0 expands itself: one placeholder token per media item.

    Audio as its own item (either mode)::

        <|audio_bos|> <|AUDIO|> x n <|audio_eos|>         ->  <|audio_bos|><|AUDIO|><|audio_eos|>
        <|vision_bos|> <|VIDEO|> x m <|vision_eos|>       ->  <|vision_bos|><|VIDEO|><|vision_eos|>
        <|vision_bos|> <|IMAGE|> x k <|vision_eos|>       ->  <|vision_bos|><|IMAGE|><|vision_eos|>

    Audio interleaved in the video (``use_audio_in_video=True``; the processor's 2-second chunks)::

        <|vision_bos|><|audio_bos|> (<|VIDEO|>.. <|AUDIO|>..)* <|audio_eos|><|vision_eos|>
                                                          ->  <|vision_bos|><|VIDEO|><|vision_eos|>

    vLLM re-creates the interleaved body, ``<|audio_bos|>`` and ``<|audio_eos|>`` included
    (``omni_get_updates_use_audio_in_video``), so they must go. Every run must sit between its delimiters
    (that is what separates two items of one modality); a run of one token is kept as is, so collapsing is
    idempotent. Raises ``ValueError`` naming the position when the ids do not have this structure, e.g. an
    interleaved region with ``use_audio_in_video=False`` or a plain multi-token video run with it True.
    """
    ids = _int_ids(prompt_ids)
    t = token_ids
    delimiters = {t.audio: (t.audio_bos, t.audio_eos), t.image: (t.vision_bos, t.vision_eos)}
    delimiters[t.video] = (t.vision_bos, t.vision_eos)
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        tok = ids[i]
        if tok == t.vision_bos and i + 1 < n and ids[i + 1] == t.audio_bos:
            if not use_audio_in_video:
                raise ValueError(
                    f"prompt_ids[{i}]: an audio-in-video region (<|vision_bos|><|audio_bos|>...) but "
                    "use_audio_in_video=False; send the flag the processor used"
                )
            j, n_video = i + 2, 0
            while j < n and ids[j] in (t.video, t.audio):
                n_video += ids[j] == t.video
                j += 1
            if j + 1 >= n or ids[j] != t.audio_eos or ids[j + 1] != t.vision_eos:
                raise ValueError(
                    f"prompt_ids[{i}:{j + 2}]: an audio-in-video region must be <|VIDEO|>/<|AUDIO|> tokens "
                    f"closed by <|audio_eos|><|vision_eos|>; found {ids[j : j + 2]} at {j}"
                )
            if n_video == 0:
                raise ValueError(f"prompt_ids[{i}:{j + 2}]: an audio-in-video region without any <|VIDEO|> token")
            out += [t.vision_bos, t.video, t.vision_eos]
            i = j + 2
            continue
        if tok in delimiters:
            j = i
            while j < n and ids[j] == tok:
                j += 1
            opener, closer = delimiters[tok]
            before = ids[i - 1] if i > 0 else None
            after = ids[j] if j < n else None
            if before != opener or after != closer:
                raise ValueError(
                    f"prompt_ids[{i}:{j}]: a run of {j - i} x token {tok} must sit between tokens {opener} and "
                    f"{closer} (one media item each), found {before} before and {after} after"
                )
            if use_audio_in_video and tok == t.video and j - i > 1:
                raise ValueError(
                    f"prompt_ids[{i}:{j}]: a plain run of {j - i} <|VIDEO|> tokens with use_audio_in_video=True: "
                    "the processor that built these ids did not interleave the video's audio"
                )
            out.append(tok)
            i = j
            continue
        out.append(tok)
        i += 1
    return out


# ----------------------------------------------------------------------------------------------- media items
def _to_numpy(value: Any, what: str) -> np.ndarray:
    """A numpy view of an array-like (torch tensors without importing torch; bf16 widened to fp32)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: expected an array, got {type(value).__name__} ({error})") from None


def _audio_item(item: Any, index: int, sample_rate: int) -> tuple[np.ndarray, int]:
    """One audio item -> ``(float32 samples (T,), sample_rate)``, the tuple vLLM's parser accepts.

    The same samples must reach the actor's processor, so nothing is resampled or downmixed here: a
    different rate or a multi-channel array is an error (decode with ``verl_avconfuse.media.audio``).
    """
    what = f"audio_data[{index}]"
    if isinstance(item, (str, bytes, Mapping)):
        raise ValueError(
            f"{what}: got a {type(item).__name__}; vLLM needs decoded samples: pass float32 mono arrays at "
            f"{sample_rate} Hz (verl_avconfuse.media.audio.load_audio), the same the actor's processor gets"
        )
    item_rate = sample_rate
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[1], numbers.Real):
            raise ValueError(f"{what}: a tuple must be (samples, sample_rate), got {len(item)} elements")
        item, item_rate = item
    if int(item_rate) != int(sample_rate) or item_rate != int(item_rate):
        raise ValueError(
            f"{what}: sampled at {item_rate} Hz, but the processor's feature extractor reads {sample_rate} Hz; "
            "resample before the agent loop so rollout and training see the same samples"
        )
    samples = _to_numpy(item, what)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise ValueError(f"{what}: expected mono samples of shape (T,), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError(f"{what}: empty audio")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"{what}: expected float samples in [-1, 1], got dtype {samples.dtype}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise ValueError(f"{what}: samples contain NaN or inf")
    return samples, int(sample_rate)


def _check_whole_frames(audios: Sequence[tuple[np.ndarray, int]], family: OmniFamily) -> None:
    """Qwen3-Omni: every audio must be a whole number of mel frames (160 samples at 16 kHz).

    vLLM 0.24's ``Qwen3OmniMoeThinkerMultiModalProcessor._call_hf_processor`` zero-pads each audio up to a
    multiple of ``hop_length`` and counts ``len // hop_length`` frames; the actor's processor counts the
    frames of the unpadded samples, one fewer for any other length (32050 samples: 201 vs 200 frames, 27 vs
    26 audio tokens): the rollout's prompt would be one audio token longer than the actor's. Trim the decoded
    audio to whole frames before the agent loop, so both sides see the same samples.
    """
    frame = int(family.audio_frame_samples)
    for k, (samples, _) in enumerate(audios):
        if samples.shape[0] % frame:
            raise ValueError(
                f"audio_data[{k}]: {samples.shape[0]} samples is not a whole number of {frame}-sample mel frames; "
                f"vLLM 0.24's {family.name} pads it to {-(-samples.shape[0] // frame) * frame} and counts one "
                f"frame more than the actor's processor. Trim audio to a multiple of {frame} samples when decoding"
            )


def _video_item(item: Any, index: int) -> np.ndarray:
    """One video item -> its frames as a 4-D array, values and layout untouched.

    verl's dataset gives ``(frames, metadata)`` (qwen_vl_utils, ``return_video_metadata=True``);
    vLLM's Omni parser drops the metadata anyway, and the HF processor ignores it when frames are not
    re-sampled (``do_sample_frames=False``, what verl passes the actor's processor). Frames stay as given,
    ``(T, C, H, W)`` or ``(T, H, W, C)``, float or uint8: converting would change the pixels the encoder
    sees in rollout against training.
    """
    what = f"video_data[{index}]"
    if isinstance(item, tuple):
        if len(item) != 2 or not (item[1] is None or isinstance(item[1], Mapping)):
            raise ValueError(f"{what}: a tuple must be (frames, metadata dict), got {len(item)} elements")
        item = item[0]
    if isinstance(item, list):
        item = np.stack([_to_numpy(frame, f"{what} frame {k}") for k, frame in enumerate(item)])
    frames = _to_numpy(item, what)
    if frames.ndim != 4:
        raise ValueError(f"{what}: expected frames of shape (T, C, H, W) or (T, H, W, C), got {frames.shape}")
    if frames.shape[1] not in (1, 3) and frames.shape[3] not in (1, 3):
        raise ValueError(f"{what}: no channel axis of size 1 or 3 in shape {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError(f"{what}: no frames")
    return frames


def _items(data: Any, name: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{name}: expected a list of items, got {type(data).__name__}")
    if name == "audio_data" and len(data) == 2 and isinstance(data[1], numbers.Real):
        raise ValueError(f"{name}: got one (samples, sample_rate) pair; pass a list of items: [(samples, rate)]")
    return list(data)


def build_omni_prompt(
    prompt_ids: Sequence[int],
    *,
    token_ids: OmniTokenIds,
    audio_data: Sequence[Any] | None = None,
    video_data: Sequence[Any] | None = None,
    image_data: Sequence[Any] | None = None,
    use_audio_in_video: bool,
    audio_sample_rate: int = DEFAULT_AUDIO_SAMPLE_RATE,
    extra_mm_processor_kwargs: Mapping[str, Any] | None = None,
    family: OmniFamily = QWEN2_5_OMNI,
) -> dict[str, Any]:
    """The ``TokensPrompt`` fields verl must send vLLM 0.24.0's Omni thinker (either family) for one request.

    Args:
        prompt_ids: the agent loop's prompt, placeholders expanded by the HF processor.
        token_ids: the checkpoint's placeholder ids (:meth:`OmniTokenIds.from_tokenizer`).
        audio_data: one item per audio, in prompt order: float mono samples ``(T,)`` at
            ``audio_sample_rate`` or ``(samples, rate)``. With ``use_audio_in_video`` and videos, exactly one
            per video (the k-th is the k-th video's soundtrack) and no standalone audio: vLLM 0.24 pairs
            them that way (``_derive_audio_from_video_placeholders``).
        video_data: one item per video: frames ``(T, C, H, W)`` / ``(T, H, W, C)`` or verl's
            ``(frames, metadata)``.
        image_data: one item per image (PIL images or ``(H, W, C)`` arrays), passed through.
        use_audio_in_video: the flag the prompt was built with.
        audio_sample_rate: the rate of the feature extractor (16 kHz for Qwen2.5-Omni).
        extra_mm_processor_kwargs: the processor kwargs the actor used (verl's ``data.mm_processor_kwargs``:
            ``fps``, ``min_pixels``...), passed through; ``fps`` also sets ``second_per_grid_ts``.
        family: :data:`QWEN2_5_OMNI` or :data:`QWEN3_OMNI` (:func:`omni_family` of the config's model type):
            the processor's default fps, the audio-in-video layout and the video time checks differ.

    Returns:
        ``{"prompt_token_ids": [...], "multi_modal_data": {"audio": [...], "video": [...], "image": [...]},
        "mm_processor_kwargs": {...}}`` with only the modalities present; ready for ``TokensPrompt(**d)``.
    """
    collapsed = collapse_placeholders(prompt_ids, token_ids, use_audio_in_video)
    audios = _items(audio_data, "audio_data")
    videos = _items(video_data, "video_data")
    images = _items(image_data, "image_data")
    n_audio, n_image, n_video = (collapsed.count(x) for x in (token_ids.audio, token_ids.image, token_ids.video))
    interleaved = bool(use_audio_in_video and n_video)

    if interleaved:
        if n_audio:
            raise ValueError(
                f"prompt_ids: {n_audio} standalone <|AUDIO|> item(s) next to audio-in-video videos; vLLM 0.24 "
                "requires exactly one audio per video then (_derive_audio_from_video_placeholders)"
            )
        if len(audios) != n_video:
            raise ValueError(
                f"audio_data: {len(audios)} item(s) for {n_video} video(s) with use_audio_in_video=True; "
                "pass each video's soundtrack, in video order"
            )
    elif len(audios) != n_audio:
        raise ValueError(f"audio_data: {len(audios)} item(s) for {n_audio} <|AUDIO|> placeholder(s) in prompt_ids")
    if len(videos) != n_video:
        raise ValueError(f"video_data: {len(videos)} item(s) for {n_video} <|VIDEO|> placeholder(s) in prompt_ids")
    if len(images) != n_image:
        raise ValueError(f"image_data: {len(images)} item(s) for {n_image} <|IMAGE|> placeholder(s) in prompt_ids")

    kwargs = dict(extra_mm_processor_kwargs or {})
    if "use_audio_in_video" in kwargs and bool(kwargs["use_audio_in_video"]) != bool(use_audio_in_video):
        raise ValueError(
            f"extra_mm_processor_kwargs: use_audio_in_video={kwargs['use_audio_in_video']!r} contradicts "
            f"use_audio_in_video={use_audio_in_video!r}"
        )
    kwargs["use_audio_in_video"] = bool(use_audio_in_video)
    if audios:
        if "sampling_rate" in kwargs and int(kwargs["sampling_rate"]) != int(audio_sample_rate):
            raise ValueError(
                f"extra_mm_processor_kwargs: sampling_rate={kwargs['sampling_rate']!r} but audio_sample_rate="
                f"{audio_sample_rate}"
            )
        kwargs["sampling_rate"] = int(audio_sample_rate)
    if interleaved or (n_video and family.float_video_times):
        second_per_grid_ts = _second_per_grid_ts(kwargs, n_video, family, interleaved)
        if interleaved:
            kwargs["second_per_grid_ts"] = second_per_grid_ts

    multi_modal_data: dict[str, list[Any]] = {}
    if audios:
        multi_modal_data["audio"] = [_audio_item(a, k, int(audio_sample_rate)) for k, a in enumerate(audios)]
        if family.audio_frame_samples:
            _check_whole_frames(multi_modal_data["audio"], family)
    if videos:
        multi_modal_data["video"] = [_video_item(v, k) for k, v in enumerate(videos)]
    if images:
        multi_modal_data["image"] = images
    return {"prompt_token_ids": collapsed, "multi_modal_data": multi_modal_data, "mm_processor_kwargs": kwargs}


def _second_per_grid_ts(
    kwargs: Mapping[str, Any], n_video: int, family: OmniFamily = QWEN2_5_OMNI, interleaved: bool = True
) -> list[float]:
    """``temporal_patch_size / fps`` per video: the HF processor's ``video_second_per_grid``.

    vLLM lays out an audio-in-video replacement with ``mm_processor_kwargs["second_per_grid_ts"]`` (absent:
    1.0 for Qwen2.5-Omni, 2.0 for Qwen3-Omni) but computes TMRoPE from the processor's output, so both must
    agree. Qwen2.5-Omni: beyond one video grid per chunk (``second_per_grid * 25 > 50``) vLLM's layout keeps
    empty chunks and the HF processor's does not. Qwen3-Omni (any video): vLLM truncates the video times
    ``k * second_per_grid * position_id_per_seconds`` to ints, transformers keeps them as floats, so the step
    must be an integer (e.g. fps 1 or 2 with the released 13 per second; fps 3 gives 8.67).
    """
    fps = kwargs.get("fps", family.processor_default_fps)
    if not isinstance(fps, numbers.Real) or isinstance(fps, bool) or not fps > 0:
        raise ValueError(f"mm_processor_kwargs: fps must be one positive number (one rate per request), got {fps!r}")
    second_per_grid = VIDEO_TEMPORAL_PATCH_SIZE / float(fps)
    if family.float_video_times:
        step = second_per_grid * family.position_id_per_seconds
        if abs(step - round(step)) > 1e-9:
            raise ValueError(
                f"mm_processor_kwargs: fps={fps} gives a video time step of {step:g} position ids per grid; "
                f"vLLM 0.24's {family.name} truncates it to {int(step)} (get_mrope_input_positions) while the "
                f"actor keeps {step:g}. Sample frames at an fps for which 2 / fps * "
                f"{family.position_id_per_seconds:g} is an integer (e.g. 1 or 2)"
            )
    elif (
        family.chunked_audio_in_video
        and interleaved
        and second_per_grid * TOKENS_PER_SECOND > TOKENS_PER_SECOND * SECONDS_PER_CHUNK
    ):
        raise ValueError(
            f"mm_processor_kwargs: fps={fps} gives {second_per_grid:g} s per video grid, more than one "
            f"{SECONDS_PER_CHUNK:g} s chunk; vLLM 0.24 then lays out audio-in-video differently from the HF "
            f"processor. Sample frames at >= {VIDEO_TEMPORAL_PATCH_SIZE / SECONDS_PER_CHUNK:g} fps"
        )
    given = kwargs.get("second_per_grid_ts")
    expected = [second_per_grid] * n_video
    if given is not None and [float(x) for x in given] != expected:
        raise ValueError(f"mm_processor_kwargs: second_per_grid_ts={list(given)} but fps={fps} gives {expected}")
    return expected


# ----------------------------------------------------------------------------------------------- weights
def vllm_thinker_weight_name(hf_name: str) -> str:
    """The name a thinker parameter of the FSDP actor must carry in vLLM 0.24's ``load_weights``.

    The actor is transformers' ``Qwen2_5OmniThinkerForConditionalGeneration``: ``model.*`` (the Qwen2
    decoder, ``model.embed_tokens``), ``lm_head.*``, ``audio_tower.*``, ``visual.*``. vLLM's thinker
    (``hf_to_vllm_mapper``) maps only ``thinker.``-prefixed names to its ``language_model.model`` /
    ``language_model.lm_head``; a bare ``model.``/``lm_head.`` reaches ``AutoWeightsLoader`` unmapped and
    raises "There is no module or parameter named 'model'". So: ``thinker.`` + name, the full checkpoint's
    name (idempotent on names that already carry it). Tied embeddings need nothing here: vLLM's
    ``Qwen2ForCausalLM.load_weights`` skips ``lm_head.`` when its text config ties (see
    :func:`vllm_engine_overrides`, which makes that flag match the actor's).

    Qwen3-Omni's thinker has the same four submodules and vLLM the same prefix rule; its experts must arrive
    one tensor per expert (``model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight``), which verl's FSDP
    engine streams (``unfuse_moe_params``); a fused ``experts.gate_up_proj`` passes this function unchanged
    and would be dropped by vLLM's ``Qwen3MoeModel.load_weights`` (``if name not in params_dict: continue``).
    """
    if not isinstance(hf_name, str) or not hf_name:
        raise ValueError(f"weight name: expected a non-empty str, got {hf_name!r}")
    name = hf_name[len(THINKER_WEIGHT_PREFIX) :] if hf_name.startswith(THINKER_WEIGHT_PREFIX) else hf_name
    head = name.split(".", 1)[0]
    if head in HF_THINKER_SUBMODULES and "." in name:
        return THINKER_WEIGHT_PREFIX + name
    if any(head + "." in family.skipped_prefixes for family in OMNI_FAMILIES):
        raise ValueError(f"weight {hf_name!r}: a {head} parameter; the rollout runs the thinker only, send none")
    raise ValueError(
        f"weight {hf_name!r}: not an Omni thinker parameter; expected a name under "
        f"{', '.join(h + '.' for h in HF_THINKER_SUBMODULES)} (transformers' thinker state dict)"
    )


def vllm_internal_weight_name(vllm_name: str) -> str:
    """Where vLLM 0.24 puts a ``thinker.``-prefixed weight: its ``hf_to_vllm_mapper`` prefix rules.

    ``WeightsMapper._map_name`` (model_executor/models/utils.py) tries every ``orig_to_new_prefix`` rule in
    order on the running name, replacing the first occurrence. For checks; verl never calls this.
    """
    for old, new in VLLM_THINKER_PREFIX_MAP:
        if vllm_name.startswith(old):
            vllm_name = vllm_name.replace(old, new, 1)
    return vllm_name


# ----------------------------------------------------------------------------------------------- engine
#: transformers 5.10.4's Qwen3-Omni defaults: ``Qwen3OmniMoeThinkerConfig.tie_word_embeddings`` (the HF
#: actor's) and ``Qwen3OmniMoeTextConfig.tie_word_embeddings`` (what vLLM's ``Qwen3MoeLLMForCausalLM`` reads).
QWEN3_HF_THINKER_TIE_DEFAULT = False
QWEN3_HF_TEXT_TIE_DEFAULT = False


def _thinker_tie(thinker: Mapping[str, Any], family: OmniFamily = QWEN2_5_OMNI) -> tuple[bool, bool]:
    """(does the HF actor tie lm_head to embed_tokens, does vLLM) for a thinker config dict."""
    thinker_default, text_default = (
        (HF_THINKER_TIE_DEFAULT, HF_TEXT_TIE_DEFAULT)
        if family is QWEN2_5_OMNI
        else (QWEN3_HF_THINKER_TIE_DEFAULT, QWEN3_HF_TEXT_TIE_DEFAULT)
    )
    text = thinker.get("text_config") or {}
    return (
        bool(thinker.get("tie_word_embeddings", thinker_default)),
        bool(text.get("tie_word_embeddings", text_default)),
    )


def qwen3_vision_overrides(vision: Mapping[str, Any]) -> dict[str, Any]:
    """The two vision fields vLLM 0.24's Qwen3-Omni vision tower reads that a config may lack.

    ``Qwen3Omni_VisionTransformer.__init__`` reads ``vision_config.image_size`` (its position table has
    ``(image_size // patch_size) ** 2`` rows) and ``apply_vit_abs_pos_embed`` (True: an ``nn.Embedding``
    named ``pos_embed.weight``, the HF encoder's; False: a bare ``pos_embed`` parameter no checkpoint name
    reaches). The released config.json carries both (768, true); transformers 5.10.4's
    ``Qwen3OmniMoeVisionEncoderConfig`` declares neither (it sizes the table by ``num_position_embeddings``), so a
    config it writes from scratch (the tiny thinker's) has none and vLLM raises ``AttributeError``. Returns
    the values to set (``{}`` when both are there), derived from ``num_position_embeddings`` and
    ``patch_size``; raises when present values disagree with the HF encoder.
    """
    patch, positions = int(vision["patch_size"]), int(vision["num_position_embeddings"])
    side = int(np.sqrt(positions))
    if side * side != positions:
        raise ValueError(f"vision_config: num_position_embeddings={positions} is not a square grid")
    overrides: dict[str, Any] = {}
    if vision.get("image_size") is None:
        overrides["image_size"] = side * patch
    elif (int(vision["image_size"]) // patch) ** 2 != positions:
        raise ValueError(
            f"vision_config: image_size={vision['image_size']} // patch_size={patch} gives "
            f"{(int(vision['image_size']) // patch) ** 2} position rows in vLLM, the checkpoint has {positions}"
        )
    if vision.get("apply_vit_abs_pos_embed") is None:
        overrides["apply_vit_abs_pos_embed"] = True
    elif not vision["apply_vit_abs_pos_embed"]:
        raise ValueError("vision_config: apply_vit_abs_pos_embed=false; the HF encoder has a pos_embed table")
    return overrides


def wrap_thinker_config(config: Any) -> Any:
    """vLLM ``hf_overrides`` callable: serve a thinker-only checkpoint as the full config vLLM reads.

    vLLM's thinker class reads ``hf_config.thinker_config`` and its processing info asks for the full config
    class (``Qwen2_5OmniConfig`` / ``Qwen3OmniMoeConfig``; ``InputProcessingContext.get_hf_config`` raises
    ``TypeError`` otherwise), so a thinker config is wrapped in one (no talker output, a registered
    architecture); the text config's ``tie_word_embeddings`` is set to the thinker's (what the HF actor ties
    on), and a Qwen3-Omni vision config gets the fields of :func:`qwen3_vision_overrides`. vLLM also calls
    this on a dummy config to learn the model type (``HFConfigParser.parse``): anything that is not an Omni
    config comes back unchanged. Module-level, so it pickles by reference into vLLM's processes.
    """
    model_type = getattr(config, "model_type", None)
    if model_type not in [t for f in OMNI_FAMILIES for t in (f.full_model_type, f.thinker_model_type)]:
        return config
    family = omni_family(model_type)
    thinker = config if model_type == family.thinker_model_type else config.thinker_config
    thinker_default = HF_THINKER_TIE_DEFAULT if family is QWEN2_5_OMNI else QWEN3_HF_THINKER_TIE_DEFAULT
    thinker.text_config.tie_word_embeddings = bool(getattr(thinker, "tie_word_embeddings", thinker_default))
    if family is QWEN3_OMNI:
        vision = thinker.vision_config
        for key, value in qwen3_vision_overrides(vision.to_dict()).items():
            setattr(vision, key, value)
    if model_type == family.full_model_type:
        if not set(config.architectures or ()) & set(family.vllm_architectures):
            config.architectures = [family.vllm_architectures[0]]
        return config
    if family is QWEN2_5_OMNI:
        from transformers import Qwen2_5OmniConfig as FullConfig
    else:
        from transformers import Qwen3OmniMoeConfig as FullConfig
    wrapped = FullConfig(thinker_config=config, enable_audio_output=False)
    wrapped.architectures = [family.vllm_architectures[0]]
    return wrapped


def vllm_engine_overrides(hf_config_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Engine arguments vLLM 0.24.0 needs to serve this Omni ``config.json`` (either family) as the RL actor.

    - Full Omni config (``qwen2_5_omni`` / ``qwen3_omni_moe``): ``{}`` when its architecture is registered,
      vLLM's lm_head tying (``thinker_config.text_config.tie_word_embeddings``) equals the actor's
      (``thinker_config.tie_word_embeddings`` in transformers 5.10.4) and (Qwen3-Omni) the vision config has
      what :func:`qwen3_vision_overrides` asks; else a JSON-able ``{"hf_overrides": {...}}`` (nested dicts
      are applied by ``ModelConfig._apply_dict_overrides``).
    - Thinker-only config (``*_thinker``, what verl's actor loads): its architecture is not registered
      (vLLM falls back to the Transformers backend, image-only) and no dict override can change the config
      class, so ``{"hf_overrides": wrap_thinker_config}``. A callable cannot travel through verl's CLI
      arguments: set it on the parsed namespace before ``AsyncEngineArgs.from_cli_args``.
    """
    if not isinstance(hf_config_dict, Mapping):
        raise ValueError(f"config.json: expected a mapping, got {type(hf_config_dict).__name__}")
    model_type = hf_config_dict.get("model_type")
    family = omni_family(model_type)
    if model_type == family.thinker_model_type:
        return {"hf_overrides": wrap_thinker_config}
    thinker = hf_config_dict.get("thinker_config")
    if not isinstance(thinker, Mapping):
        raise ValueError(f"config.json: a {model_type} config without a thinker_config mapping")
    overrides: dict[str, Any] = {}
    if not set(hf_config_dict.get("architectures") or ()) & set(family.vllm_architectures):
        overrides["architectures"] = [family.vllm_architectures[0]]
    thinker_overrides: dict[str, Any] = {}
    actor_ties, vllm_ties = _thinker_tie(thinker, family)
    if actor_ties != vllm_ties:
        thinker_overrides["text_config"] = {"tie_word_embeddings": actor_ties}
    if family is QWEN3_OMNI:
        vision = qwen3_vision_overrides(thinker.get("vision_config") or {})
        if vision:
            thinker_overrides["vision_config"] = vision
    if thinker_overrides:
        overrides["thinker_config"] = thinker_overrides
    return {"hf_overrides": overrides} if overrides else {}


# ----------------------------------------------------------------------------------------------- M-RoPE
def _feature_value(feature: Any, key: str) -> Any:
    """``MultiModalFeatureSpec.data[key]`` as a plain value (vLLM wraps each in a field element's ``.data``)."""
    value = feature.data.get(key)
    value = getattr(value, "data", value)
    return value.tolist() if hasattr(value, "tolist") else value


def qwen3_omni_mrope_positions(
    num_tokens: int, mm_features: Sequence[Any], *, position_id_per_seconds: float, spatial_merge_size: int
) -> tuple[np.ndarray, int]:
    """Transformers' Qwen3-Omni TMRoPE positions ``(3, num_tokens)`` and delta, from vLLM's feature records.

    The replacement vLLM 0.24.0's ``Qwen3OmniMoeThinkerForConditionalGeneration.get_mrope_input_positions``
    needs (same arguments as it reads: ``mm_features`` with ``modality``, ``mm_position.offset`` and the
    processor outputs in ``data``). vLLM counts a start position at the placeholder's offset, the first
    replaced token, while transformers' ``get_rope_index`` puts it on ``<|vision_start|>`` / ``<|audio_start|>``
    one token earlier (docs/vllm_omni.md, "M-RoPE"). Here the delimiters are positioned as the text around
    them (consecutive, as transformers does), and each item as transformers does:

    - audio (offset = first ``<|audio_pad|>``): consecutive positions;
    - image / plain video (offset = first pad): the ``(t, h, w)`` grid, times ``t * t_factor`` (image:
      ``position_id_per_seconds``; video: ``second_per_grid_ts`` times it, 2.0 s when absent as vLLM);
    - audio in video (offset = the body's ``<|audio_start|>``; the k-th such video takes the k-th audio's
      length, as vLLM pairs them): video and audio positions merged by time, video first on ties; the end
      delimiters continue from the *last* merged position + 1 (transformers' ``llm_pos_ids_list[-1].max()``).

    vLLM's rotary cache is indexed by integer positions, so a fractional video time step is an error
    (:func:`build_omni_prompt` refuses such fps before a request is sent). Tested against transformers'
    ``get_rope_index`` on the tiny thinker and on random prompts. Not installed yet: it belongs in
    verl_avconfuse/integration/patches.py as a lazy patch of that method (signature ``(self, input_tokens, mm_features)``,
    returning ``(torch.from_numpy(positions), delta)``, with the thinker config's ``position_id_per_seconds``
    and ``vision_config.spatial_merge_size``), applied in vLLM's worker processes.
    """
    features = sorted(mm_features, key=lambda f: f.mm_position.offset)
    in_video = [f for f in features if f.modality == "video" and _feature_value(f, "use_audio_in_video")]
    audios = [f for f in features if f.modality == "audio"]
    audio_of_video = {id(v): a for v, a in zip(in_video, audios, strict=False)}
    paired_audio = {id(a) for a in audio_of_video.values()}
    blocks: list[np.ndarray] = []
    st = 0

    def line(start: int, n: int) -> np.ndarray:
        return np.broadcast_to(np.arange(n, dtype=np.int64), (3, n)) + start

    def text_until(index: int) -> int:
        start = int(blocks[-1].max()) + 1 if blocks else 0
        if index > st:
            blocks.append(line(start, index - st))
            start += index - st
        return start

    def grid(thw: Sequence[int], t_factor: float) -> np.ndarray:
        t, h, w = (int(x) for x in thw)
        times = np.arange(t) * float(t_factor)
        if not np.allclose(times, np.round(times)):
            raise ValueError(f"TMRoPE: video time step {t_factor:g} is not an integer; vLLM positions are integers")
        index = np.indices((t, h // spatial_merge_size, w // spatial_merge_size)).reshape(3, -1).astype(np.int64)
        index[0] = np.round(times).astype(np.int64)[index[0]]
        return index

    def audio_length(feature: Any) -> int:
        frames = int(_feature_value(feature, "audio_feature_lengths"))
        rest = (frames % 100 - 1) // 2 + 1  # Qwen3-Omni's _get_feat_extract_output_lengths
        return ((rest - 1) // 2 + 1 - 1) // 2 + 1 + (frames // 100) * 13

    for feature in features:
        offset = int(feature.mm_position.offset)
        if feature.modality == "audio":
            if id(feature) in paired_audio:
                continue
            n = audio_length(feature)
            blocks.append(line(text_until(offset), n))
            st = offset + n
            continue
        if feature.modality == "image":
            item = grid(_feature_value(feature, "image_grid_thw"), position_id_per_seconds)
        else:
            seconds = _feature_value(feature, "second_per_grid_ts") or QWEN3_VLLM_DEFAULT_SECOND_PER_GRID
            item = grid(_feature_value(feature, "video_grid_thw"), float(seconds) * position_id_per_seconds)
        if id(feature) not in audio_of_video:
            blocks.append(item + text_until(offset))
            st = offset + item.shape[1]
            continue
        start = text_until(offset + 1)  # <|vision_start|> and the body's <|audio_start|> are consecutive
        video, n_audio = item + start, audio_length(audio_of_video[id(feature)])
        audio = line(start, n_audio)
        v = a = 0
        while v < video.shape[1] and a < n_audio:
            if video[0, v] <= audio[0, a]:
                blocks.append(video[:, v : v + 1])
                v += 1
            else:
                blocks.append(audio[:, a : a + 1])
                a += 1
        for rest in (video[:, v:], audio[:, a:]):
            if rest.shape[1]:
                blocks.append(rest)
        st = offset + 1 + video.shape[1] + n_audio
    text_until(num_tokens)
    positions = np.concatenate(blocks, axis=1)
    if positions.shape[1] != num_tokens:
        raise ValueError(f"TMRoPE: {positions.shape[1]} positions for {num_tokens} tokens; features do not fit")
    return positions, int(positions.max()) + 1 - num_tokens


# ------------------------------------------------------------------------------------- embedding merge
#: Kinds of multimodal positions for :func:`interleaved_merge_order`.
OTHER_POSITION, VIDEO_POSITION, AUDIO_POSITION = 0, 1, 2


def interleaved_merge_order(
    kinds: Sequence[int], token_index: Sequence[int], chunk_sizes: Sequence[int]
) -> list[np.ndarray]:
    """Which multimodal positions each embedding chunk of a vLLM engine step fills, audio in video included.

    vLLM's model runner hands ``embed_input_ids`` the step's embeddings as chunks, request after request, each
    request's media items in prompt order (``gpu_model_runner._gather_mm_embeddings``): with the audio inside
    the video, a region gives a video chunk then an audio chunk whose tokens alternate in the prompt. vLLM
    0.24.0's Qwen2.5-Omni thinker merges them by its interleaving test (``check_interleaved_audio_video``),
    which looks at one span for the whole step: with two such regions in a step (two requests prefilled
    together: a GRPO group) the test fails and the chunks are scattered in plain position order, so video
    embeddings land on audio tokens and the other way round (prompt log-probs off per token:
    the lane's tests assert more than 0.1 nats on average; upstream fixed it in vLLM PR #46213, not in 0.24.0).

    Here each chunk takes the next positions of its own kind. ``kinds[i]`` is the kind of the i-th
    multimodal position of the step (:data:`VIDEO_POSITION`, :data:`AUDIO_POSITION`, :data:`OTHER_POSITION`),
    ``token_index[i]`` its index in the step's flat token tensor; a chunk's kind is that of the first unfilled
    position, except inside a region of adjacent video and audio tokens, where the video chunk comes first
    while the region has unfilled video positions. Returns, per chunk, the indices into the multimodal
    positions it fills. Raises when the chunks do not fit the positions (vLLM's merge would also fail then).
    """
    kinds = np.asarray(kinds, dtype=np.int64)
    token_index = np.asarray(token_index, dtype=np.int64)
    n = len(kinds)
    if len(token_index) != n:
        raise ValueError(f"{n} position kinds but {len(token_index)} token indices")
    # Regions: runs of video/audio positions at consecutive token indices (-1 for other positions).
    media = kinds != OTHER_POSITION
    breaks = np.ones(n, dtype=bool)
    if n > 1:
        breaks[1:] = ~(media[1:] & media[:-1] & (np.diff(token_index) == 1))
    region = np.where(media, np.cumsum(breaks) - 1, -1)
    by_kind = {kind: np.flatnonzero(kinds == kind) for kind in (OTHER_POSITION, VIDEO_POSITION, AUDIO_POSITION)}
    cursor = dict.fromkeys(by_kind, 0)

    def next_of(kind: int) -> int | None:
        return int(by_kind[kind][cursor[kind]]) if cursor[kind] < len(by_kind[kind]) else None

    order: list[np.ndarray] = []
    for size in chunk_sizes:
        heads = [head for head in map(next_of, by_kind) if head is not None]
        if not heads:
            raise ValueError(f"embedding chunk {len(order)} ({size} rows): no multimodal position left")
        first = min(heads)
        kind = int(kinds[first])
        if kind != OTHER_POSITION:
            video = next_of(VIDEO_POSITION)
            kind = VIDEO_POSITION if video is not None and region[video] == region[first] else AUDIO_POSITION
        take = by_kind[kind][cursor[kind] : cursor[kind] + int(size)]
        if len(take) != size or (kind != OTHER_POSITION and len(set(region[take].tolist())) != 1):
            raise ValueError(
                f"embedding chunk {len(order)} ({size} rows) does not fit the step's "
                f"{('other', 'video', 'audio')[kind]} positions"
            )
        cursor[kind] += int(size)
        order.append(take)
    if any(cursor[kind] != len(positions) for kind, positions in by_kind.items()):
        raise ValueError(f"{n} multimodal positions, {sum(map(int, chunk_sizes))} embedding rows")
    return order


def position_ordered_slices(order: Sequence[np.ndarray]) -> list[tuple[int, int, int]]:
    """Re-cut a step's embedding chunks so that, concatenated, their rows follow the positions they fill.

    ``order`` is :func:`interleaved_merge_order`'s answer. Returns ``(chunk, first_row, end_row)`` slices,
    each the rows of one chunk that fill consecutive multimodal positions, in position order. vLLM's plain
    merge (``_merge_multimodal_embeddings``: the chunks' rows, concatenated, over the multimodal positions in
    order) and Qwen3-Omni's DeepStack split (vision rows marked chunk by chunk, in position order) are then
    right for any number of audio-in-video regions in the step; every slice keeps its chunk's width.
    """
    owner = np.concatenate([np.full(len(rows), i, dtype=np.int64) for i, rows in enumerate(order)] or [np.zeros(0)])
    row = np.concatenate([np.arange(len(rows), dtype=np.int64) for rows in order] or [np.zeros(0)])
    by_position = np.argsort(np.concatenate(list(order) or [np.zeros(0)]), kind="stable")
    owner, row = owner[by_position], row[by_position]
    slices: list[tuple[int, int, int]] = []
    for chunk, first in zip(owner.tolist(), row.tolist(), strict=True):
        if slices and slices[-1][0] == chunk and slices[-1][2] == first:
            slices[-1] = (chunk, slices[-1][1], first + 1)
        else:
            slices.append((chunk, first, first + 1))
    return slices


#: ``iter_mm_features``: vLLM's seconds per video grid when ``second_per_grid_ts`` is absent (Qwen3-Omni).
QWEN3_VLLM_DEFAULT_SECOND_PER_GRID = 2.0


def qwen2_5_omni_mrope_positions(
    input_tokens: Sequence[int], mm_features: Sequence[Any], thinker_config: Any
) -> tuple[np.ndarray, int]:
    """Transformers' Qwen2.5-Omni TMRoPE positions ``(3, len(input_tokens))`` and delta, from vLLM's records.

    The replacement for vLLM 0.24.0's ``Qwen2_5OmniThinkerForConditionalGeneration.get_mrope_input_positions``
    (same arguments). With audio inside the video, vLLM gives ``<|vision_bos|>`` and ``<|audio_bos|>`` one
    position each and ``<|audio_eos|>``, ``<|vision_eos|>`` one each, where transformers' ``get_rope_index``
    (``modeling_qwen2_5_omni.py``) gives each pair a shared position: the interleaved body sits one position
    higher in vLLM and everything after it two (most positions of the tiny clip; docs/vllm_omni.md).
    Separate audio and video items agree. Rather than re-deriving transformers' layout, this calls
    transformers' own ``get_rope_index`` (the one the actor's processor calls, through
    :class:`~verl_avconfuse.omni.thinker.ThinkerRopeIndex`) with the grids, audio lengths, seconds per
    grid and ``use_audio_in_video`` flag that vLLM's feature records carry — the processor outputs of the
    request, the same numbers the actor got. ``input_tokens`` is the expanded prompt, as vLLM has it.
    """
    import torch

    from verl_avconfuse.omni.thinker import ThinkerRopeIndex

    features = sorted(mm_features, key=lambda f: f.mm_position.offset)

    def stacked(modality: str, key: str, dtype) -> Any:
        values = [_feature_value(f, key) for f in features if f.modality == modality]
        return torch.tensor(values, dtype=dtype) if values else None

    videos = [f for f in features if f.modality == "video"]
    use_audio_in_video = any(bool(_feature_value(f, "use_audio_in_video")) for f in videos)
    seconds = [_feature_value(f, "second_per_grid_ts") for f in videos]
    second_per_grids = (
        torch.tensor([float(x) if x is not None else 1.0 for x in seconds], dtype=torch.float32) if videos else None
    )
    positions, delta = ThinkerRopeIndex(thinker_config).get_rope_index(
        input_ids=torch.tensor([list(input_tokens)], dtype=torch.long),
        image_grid_thw=stacked("image", "image_grid_thw", torch.long),
        video_grid_thw=stacked("video", "video_grid_thw", torch.long),
        attention_mask=torch.ones(1, len(input_tokens), dtype=torch.long),
        use_audio_in_video=use_audio_in_video,
        audio_seqlens=stacked("audio", "audio_feature_lengths", torch.long),
        second_per_grids=second_per_grids,
    )
    return positions[:, 0, :].numpy().astype(np.int64), int(delta.reshape(-1)[0])


# ==================================================================================================
# Both Omni families: token ids read from the processor (added for Qwen3-Omni, issue 19)
# ==================================================================================================


def omni_token_ids(processor: Any) -> OmniTokenIds:
    """The media token ids of a Qwen2.5-Omni or Qwen3-Omni processor, by the token strings it names.

    :meth:`OmniTokenIds.from_tokenizer` looks up Qwen2.5-Omni's strings (``<|AUDIO|>``, ``<|vision_bos|>``);
    Qwen3-Omni renames every one (``<|audio_pad|>``, ``<|vision_start|>``). Both processors carry the seven
    names as attributes (``audio_token``, ``vision_bos_token``, ...), so they are read from there; a plain
    tokenizer (no such attributes) falls back to Qwen2.5-Omni's strings.
    """
    from verl_avconfuse.omni.qwen3_omni import TOKEN_ATTRIBUTES

    if not all(hasattr(processor, attribute) for attribute in TOKEN_ATTRIBUTES.values()):
        return OmniTokenIds.from_tokenizer(processor)
    tokenizer = getattr(processor, "tokenizer", processor)
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = {}
    for name, attribute in TOKEN_ATTRIBUTES.items():
        token = getattr(processor, attribute)
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or (unk is not None and token_id == unk):
            raise ValueError(f"{type(processor).__name__}.{attribute}={token!r} is not a token of its tokenizer")
        ids[name] = int(token_id)
    return OmniTokenIds(**ids)
