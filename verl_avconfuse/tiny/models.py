"""Tiny, deterministic, offline stand-ins for the models RL-CoMM uses, saved as ordinary HF directories.

=================  ==============================================  ===========================================
name               class (what it stands in for)                    saved with
=================  ==============================================  ===========================================
``qwen2``          ``Qwen2ForCausalLM`` (a text-only policy)        the tokenizer
``omni_thinker``   ``Qwen2_5OmniThinkerForConditionalGeneration``   ``Qwen2_5OmniProcessor``
                   (the paper's policy, Qwen2.5-Omni-3B thinker)
``omni_full``      ``Qwen2_5OmniForConditionalGeneration``          ``Qwen2_5OmniProcessor``
                   (thinker + talker + token2wav)
``qwen2_audio``    ``Qwen2AudioForConditionalGeneration``           ``Qwen2AudioProcessor``
                   (the reference audio LM of Step-RR's ARR)
``embedder``       sentence-transformers over a ``Qwen3Model``      prompts ``arr``, ``avc``, ``query``
                   (Qwen3-Embedding, the ARR/AVC similarity)
=================  ==============================================  ===========================================

All share one byte-level BPE tokenizer (:mod:`verl_avconfuse.tiny.tokenizer`). Weights are fp32, drawn
from a fixed seed; the three generative models are then *warm-started*: ``WARM_START_STEPS`` AdamW steps
on synthetic chats (:mod:`verl_avconfuse.tiny.corpus`) with the loss on the assistant turn only, so that
sampling at temperature 1 yields RL-CoMM's three-part format part of the time and rewards vary
(the rates, over several sampling seeds, are in ``benchmarks/results/tiny_format_rates.json``, written by
``benchmarks/tiny_format_rates.py``; ``tests/test_tiny_models.py`` derives its bounds from them). ``warm_start_steps=0`` keeps the random model; ``omni_full`` is random.
Builds are deterministic on one machine (same seed, same bytes, also across processes) and atomic (built
in a temporary sibling directory, then renamed into place).

Processor notes:

- Qwen2.5-Omni: video/image frames are resized to between :data:`MIN_PIXELS` and :data:`MAX_PIXELS`
  without passing ``min_pixels``/``max_pixels`` (see :func:`omni_processor`; passing them still wins).
  A 2 s 64x48 clip at 2 fps is 8 video tokens; audio is 25 tokens per second, up to
  :data:`OMNI_AUDIO_SECONDS`. The processor assumes frames sampled at ``fps=2``: pass ``fps=`` for
  other rates, it sets ``video_second_per_grid`` (TMRoPE time positions, ``use_audio_in_video``).
- Qwen2-Audio: every clip is padded or cut to :data:`QWEN2_AUDIO_SECONDS` (the encoder takes exactly
  ``2 * max_source_positions`` mel frames); its tokenizer pads on the left.

Importing this module is cheap: torch and transformers are imported inside the builders.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_avconfuse.io import atomic_directory
from verl_avconfuse.method.prompts import ARR_INSTRUCTION, AVC_INSTRUCTION, embedding_query_prompt

#: AdamW steps of the warm start (batch :data:`WARM_START_BATCH`).
WARM_START_STEPS = 200
WARM_START_BATCH = 16
WARM_START_LR = 1e-2
#: Parameter-name prefixes of the media encoders, which the warm start leaves at their random init.
FROZEN_DURING_WARM_START = ("audio_tower.", "visual.", "model.audio_tower.", "model.visual.")
#: Distinct synthetic chats the warm start draws its batches from.
WARM_START_CHATS = 2048
#: Synthetic clips (1-3 s of tone + random frames) per media pool of the warm start.
MEDIA_CLIPS = 6
#: Threads the builders use: fixed, so a build gives the same bytes whatever the machine's core count.
BUILD_THREADS = 2

#: Qwen3-Embedding's query prompt format, ``Instruct: {task}\nQuery:``; documents are embedded bare.
EMBEDDING_PROMPTS: dict[str, str] = {
    "arr": embedding_query_prompt(ARR_INSTRUCTION),
    "avc": embedding_query_prompt(AVC_INSTRUCTION),
    "query": embedding_query_prompt(ARR_INSTRUCTION),
}

# The language model of every tiny model (Qwen2-style decoder).
TEXT_HIDDEN = 64
TEXT_LAYERS = 2
#: head_dim = 64 / 2 = 32: vLLM's CPU attention takes head_dim 32, 64, 80, ... (not 16), and the vLLM lane
#: rolls these same models out (vllm/v1/attention/backends/cpu_attn.py).
TEXT_HEADS = 2
TEXT_KV_HEADS = 1
TEXT_INTERMEDIATE = 128
MAX_POSITIONS = 2048
ROPE_THETA = 1_000_000.0
#: TMRoPE's (temporal, height, width) split of the rotary half-dimension; Qwen2.5-Omni uses [16, 24, 24]
#: for head_dim 128, we keep its 2:3:3 ratio for head_dim 32 (the sum must be head_dim / 2).
MROPE_SECTION = (4, 6, 6)
#: The full model's talker (head_dim 16; only the export runs it): the same ratio over 8 frequencies.
TALKER_HEAD_DIM = 16
TALKER_MROPE_SECTION = (2, 3, 3)

#: Video/image frame area bounds (pixels). A 64x48 frame becomes 56x56 = 4x4 patches = 4 tokens after the
#: 2x2 merge, so a 2 s clip at 2 fps (4 frames, 2 temporal patches) costs 8 tokens.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112
#: Whisper features: 16 kHz, 10 ms hop, so 25 audio tokens per second after the encoder's two halvings.
AUDIO_SAMPLING_RATE = 16_000
NUM_MEL_BINS = 128
#: Longest audio the Omni processor keeps (it pads every clip to this, with a mask).
OMNI_AUDIO_SECONDS = 30
#: Qwen2-Audio's encoder accepts exactly ``2 * max_source_positions`` mel frames (the real model: 1500,
#: i.e. 30 s), and so does the tiny one: vLLM's Qwen2-Audio takes exactly 3000 frames per clip
#: (``Qwen2AudioFeatureInputs``: ('na', 'nmb', 3000)), and the vLLM lane serves the tiny reference with it.
QWEN2_AUDIO_SECONDS = 30
QWEN2_AUDIO_MAX_SOURCE_POSITIONS = QWEN2_AUDIO_SECONDS * 100 // 2

# The full Omni model's speech side (talker codec vocabulary, token2wav mel bins, speaker embedding width).
TALKER_CODEC_VOCAB = 64
TOKEN2WAV_MEL_DIM = 80
SPEAKER_EMBEDDING_DIM = 16

DEFAULT_SET: tuple[str, ...] = ("qwen2", "omni_thinker", "qwen2_audio", "embedder")


#: Seconds each model of the last :func:`make_tiny_models` call took to build.
BUILD_SECONDS: dict[str, float] = {}

# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int = BUILD_THREADS) -> Iterator[None]:
    """Seed torch, fix the thread count and ask for deterministic kernels; restore all three on exit."""
    import torch

    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    old_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)
            torch.use_deterministic_algorithms(old_deterministic, warn_only=old_warn_only)


def _padded_vocab(tokenizer) -> int:
    """Embedding rows: the tokenizer's size rounded up to a multiple of 64, as Qwen pads its checkpoints.

    The spare rows hold the full Omni model's TTS text ids, which Qwen also keeps past the tokenizer.
    """
    return -(-(len(tokenizer) + 8) // 64) * 64


def _token_ids(tokenizer) -> dict[str, int]:
    from verl_avconfuse.tiny.tokenizer import SPECIAL_TOKENS

    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in SPECIAL_TOKENS.items()}
    user = tokenizer.encode("user", add_special_tokens=False)
    if len(user) != 1:
        raise ValueError(f"the tiny tokenizer must encode 'user' as one token (TMRoPE's user_token_id), got {user}")
    ids["user"] = user[0]
    return ids


def _text_config_kwargs(tokenizer, *, tie: bool, mrope: bool = False) -> dict[str, Any]:
    ids = _token_ids(tokenizer)
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": ROPE_THETA}
    if mrope:
        rope["mrope_section"] = list(MROPE_SECTION)
    return dict(
        vocab_size=_padded_vocab(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_INTERMEDIATE,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=TEXT_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rope_parameters=rope,
        tie_word_embeddings=tie,
        bos_token_id=ids["endoftext"],
        eos_token_id=ids["im_end"],
        pad_token_id=ids["endoftext"],
        use_cache=True,
    )


def _generation_config(ids: dict[str, int]):
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=ids["endoftext"], eos_token_id=[ids["im_end"], ids["endoftext"]], pad_token_id=ids["endoftext"]
    )


def _save_model(model, tokenizer_or_processor, out: Path, ids: dict[str, int] | None = None) -> None:
    """Save ``model`` with its generation config (from ``ids``, default the tiny tokenizer's) and its tokenizer
    or processor."""
    tokenizer = getattr(tokenizer_or_processor, "tokenizer", tokenizer_or_processor)
    model.generation_config = _generation_config(_token_ids(tokenizer) if ids is None else ids)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer_or_processor.save_pretrained(out)


# ----------------------------------------------------------------------------------------- warm start


@dataclass(frozen=True)
class MediaPrompt:
    """A media part of a warm-start prompt: its expanded placeholder ids and the processor's features.

    ``prefix_ids`` are the user-turn tokens the processor produced for the media items (``<|AUDIO|>``
    repeated once per audio token, ...); ``features`` are its other outputs with a leading item axis
    (``input_features`` (1, mel, frames), ``pixel_values_videos`` (patches, dim), ...), concatenated along
    dim 0 to batch; ``forward_kwargs`` are passed to the model as they are (``use_audio_in_video``).
    """

    prefix_ids: tuple[int, ...]
    features: dict[str, Any]
    forward_kwargs: dict[str, Any] = field(default_factory=dict)


def _synthetic_clip(rng, seconds: int, fps: int = 2, height: int = 48, width: int = 64):
    """A sine tone with noise (16 kHz mono float32) and random RGB frames (T, H, W, 3) uint8."""
    import numpy as np

    t = np.arange(seconds * AUDIO_SAMPLING_RATE) / AUDIO_SAMPLING_RATE
    audio = 0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t) + 0.05 * rng.standard_normal(t.shape)
    frames = rng.integers(0, 256, size=(seconds * fps, height, width, 3), dtype=np.uint8)
    return audio.astype(np.float32), frames


def _media_prompts(
    processor, items: list[list[dict]], *, seed: int, with_video: bool, **call_kwargs
) -> list[MediaPrompt]:
    """Run ``processor`` once per synthetic clip on the media-only user content ``items[k]``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tokenizer = processor.tokenizer
    prompts = []
    for k, content in enumerate(items):
        audio, frames = _synthetic_clip(rng, seconds=1 + k % 3)
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
        # Keep only the media placeholders (between the role line and <|im_end|>).
        media = text.split("\n", 1)[1].rsplit("<|im_end|>", 1)[0]
        kwargs = dict(
            text=[media], audio=[audio], sampling_rate=AUDIO_SAMPLING_RATE, return_tensors="pt", **call_kwargs
        )
        if with_video:
            kwargs["videos"] = [frames]
        out = processor(**kwargs)
        ids = tuple(out.pop("input_ids")[0].tolist())
        out.pop("attention_mask", None)
        forward_kwargs = (
            {"use_audio_in_video": call_kwargs["use_audio_in_video"]} if "use_audio_in_video" in call_kwargs else {}
        )
        prompts.append(MediaPrompt(ids, dict(out), forward_kwargs))
    return prompts


def _batch(examples, pad_id: int):
    """Right-padded ``input_ids``/``attention_mask``/``labels`` (-100 outside the responses)."""
    import torch

    length = max(len(p) + len(r) for p, r in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, (p, r) in enumerate(examples):
        n = len(p) + len(r)
        input_ids[row, :n] = torch.tensor(p + r)
        labels[row, len(p) : n] = torch.tensor(r)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


#: Per-item audio features that some processors pad only to the longest clip of the call (Qwen3-Omni's
#: ``padding=True``), not to a fixed length: right-padded with zeros (masked out) to batch them.
_PADDED_AUDIO_FEATURES = ("input_features", "feature_attention_mask")


def _cat_items(tensors, key: str):
    import torch

    if key in _PADDED_AUDIO_FEATURES:
        width = max(t.shape[-1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, width - t.shape[-1])) for t in tensors]
    return torch.cat(tensors)


def warm_start(
    model,
    tokenizer,
    chats,
    steps: int,
    *,
    seed: int,
    media_pools: tuple[list[MediaPrompt], ...] = (),
    batch_size: int = WARM_START_BATCH,
) -> list[float]:
    """Train ``model`` in place for ``steps`` AdamW steps on ``chats``; loss on the response tokens only.

    Prompts are ``<|im_start|>user\\n{media}{text}<|im_end|>\\n<|im_start|>assistant\\n`` and targets the
    response plus ``<|im_end|>``, tokenised apart as in a rollout. Steps cycle through text-only prompts
    and one step per pool of ``media_pools`` (a batch has one input mode, as ``use_audio_in_video`` is a
    per-call flag), so the model also keeps the format with (random) media embeddings in the prompt.
    Batches come from a seeded generator; the result depends only on the seed and the thread count.

    Returns:
        The loss of every step.
    """
    import torch

    if steps <= 0:
        return []
    head = tokenizer.encode("<|im_start|>user\n", add_special_tokens=False)
    tail = tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    texts = tokenizer([c.user for c in chats], add_special_tokens=False)["input_ids"]
    media_texts = tokenizer(["\n" + c.user for c in chats], add_special_tokens=False)["input_ids"]
    responses = [r + [eos] for r in tokenizer([c.response for c in chats], add_special_tokens=False)["input_ids"]]
    reference = tokenizer.apply_chat_template(
        [{"role": "user", "content": chats[0].user}], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    if head + texts[0] + tail != list(reference):
        raise AssertionError("the warm-start prompt layout differs from the chat template's")

    # The audio/vision towers stay as initialised (no gradient flows into them): the language model only
    # has to learn to write the format whatever (random) media embeddings precede the text.
    trained = [p for name, p in model.named_parameters() if not name.startswith(FROZEN_DURING_WARM_START)]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(trained, lr=WARM_START_LR, betas=(0.9, 0.98), weight_decay=0.0, foreach=True)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, 1.0 - step / steps)
    )
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(FROZEN_DURING_WARM_START))
    model.train()
    losses = []
    for step in range(steps):
        rows = torch.randint(len(chats), (batch_size,), generator=generator).tolist()
        pool = step % (len(media_pools) + 1) - 1
        if pool < 0:
            examples = [(head + texts[i] + tail, responses[i]) for i in rows]
            inputs = _batch(examples, tokenizer.pad_token_id)
        else:
            # Half-size batches: media prompts are longer and their steps cost twice a text step.
            rows = rows[: max(1, batch_size // 2)]
            picks = torch.randint(len(media_pools[pool]), (len(rows),), generator=generator).tolist()
            media = [media_pools[pool][k] for k in picks]
            examples = [
                (head + list(m.prefix_ids) + media_texts[i] + tail, responses[i])
                for i, m in zip(rows, media, strict=True)
            ]
            inputs = _batch(examples, tokenizer.pad_token_id)
            for key in media[0].features:
                inputs[key] = _cat_items([torch.as_tensor(m.features[key]) for m in media], key)
            inputs.update(media[0].forward_kwargs)
        loss = model(**inputs, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())
    model.eval()
    for name, p in model.named_parameters():
        p.requires_grad_(requires_grad[name])
    return losses


# ------------------------------------------------------------------------------------------- builders


def make_qwen2_policy(out_dir: str | Path, *, seed: int = 0, warm_start_steps: int = WARM_START_STEPS) -> Path:
    """A tiny ``Qwen2ForCausalLM`` (tied embeddings) saved with the tiny tokenizer, warm-started on chats."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from verl_avconfuse.tiny.corpus import policy_chats
    from verl_avconfuse.tiny.tokenizer import build_tokenizer

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(seed=seed)
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        model = Qwen2ForCausalLM(Qwen2Config(**_text_config_kwargs(tokenizer, tie=True)))
        warm_start(model, tokenizer, policy_chats(WARM_START_CHATS, seed), warm_start_steps, seed=seed)
        _save_model(model, tokenizer, tmp)
    return out_dir


def _media_processor(processor_cls, tokenizer, *, min_pixels: int, max_pixels: int, patch_size: int):
    """An Omni processor (either family) with the tiny pixel bounds and a Whisper extractor of
    ``OMNI_AUDIO_SECONDS``.

    The processors' built-in video defaults (128..768 patches of merged pixels) override the saved video
    processor size; only call kwargs and the tokenizer's init kwargs rank above them
    (ProcessorMixin._merge_kwargs), so the bounds also go to tokenizer_config.json and hold without
    passing min_pixels/max_pixels on each call.
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    tokenizer.init_kwargs.update(min_pixels=min_pixels, max_pixels=max_pixels)
    vision = dict(patch_size=patch_size, temporal_patch_size=2, merge_size=2)
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(size=dict(size), **vision),
        video_processor=Qwen2VLVideoProcessor(size=dict(size), **vision),
        feature_extractor=WhisperFeatureExtractor(
            feature_size=NUM_MEL_BINS, sampling_rate=AUDIO_SAMPLING_RATE, chunk_length=OMNI_AUDIO_SECONDS
        ),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def omni_processor(tokenizer):
    """``Qwen2_5OmniProcessor`` with the tiny pixel bounds (14-pixel patches), see :func:`_media_processor`."""
    from transformers import Qwen2_5OmniProcessor

    return _media_processor(
        Qwen2_5OmniProcessor, tokenizer, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14
    )


#: What both tiny Omni thinkers' audio and vision encoders share; each family adds its own keys.
_AUDIO_ENCODER: dict[str, Any] = dict(
    num_mel_bins=NUM_MEL_BINS,
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    d_model=32,
    max_source_positions=1500,
    output_dim=TEXT_HIDDEN,
)
_VISION_ENCODER: dict[str, Any] = dict(
    depth=2,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    in_channels=3,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=TEXT_HIDDEN,
)


def omni_thinker_config(tokenizer):
    """The tiny thinker's config; every token id is read from ``tokenizer``."""
    from transformers import Qwen2_5OmniThinkerConfig

    ids = _token_ids(tokenizer)
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(_AUDIO_ENCODER, n_window=100),
        vision_config=dict(_VISION_ENCODER, patch_size=14, window_size=112, fullatt_block_indexes=[1]),
        text_config=_text_config_kwargs(tokenizer, tie=False, mrope=True),
        audio_token_index=ids["audio"],
        image_token_index=ids["image"],
        video_token_index=ids["video"],
        audio_start_token_id=ids["audio_bos"],
        audio_end_token_id=ids["audio_eos"],
        user_token_id=ids["user"],
        tie_word_embeddings=False,
    )
    # Read by get_rope_index but not declared fields (Qwen2.5-Omni's own config.json carries them too).
    config.vision_start_token_id = ids["vision_bos"]
    config.vision_end_token_id = ids["vision_eos"]
    config.pad_token_id = ids["endoftext"]
    config.eos_token_id = ids["im_end"]
    return config


def _omni_media_pools(processor, seed: int, **call_kwargs) -> tuple[list[MediaPrompt], list[MediaPrompt]]:
    """Two warm-start pools: audio as its own item, and audio interleaved in the video (TMRoPE chunks)."""
    separate = [[{"type": "video"}, {"type": "audio"}]] * MEDIA_CLIPS
    in_video = [[{"type": "video"}]] * MEDIA_CLIPS
    return (
        _media_prompts(processor, separate, seed=seed, with_video=True, use_audio_in_video=False, **call_kwargs),
        _media_prompts(processor, in_video, seed=seed + 1, with_video=True, use_audio_in_video=True, **call_kwargs),
    )


def omni_full_config(tokenizer):
    """Thinker (as :func:`omni_thinker_config`) + a tiny talker + a tiny token2wav (DiT + BigVGAN)."""
    from transformers import Qwen2_5OmniConfig

    ids = _token_ids(tokenizer)
    thinker = omni_thinker_config(tokenizer)
    spare = len(tokenizer)  # first embedding row past the tokenizer: Qwen keeps its TTS ids there too
    talker = dict(
        vocab_size=TALKER_CODEC_VOCAB,
        tts_text_start_token_id=spare + 1,
        tts_text_end_token_id=spare + 2,
        tts_text_pad_token_id=spare,
        tts_codec_start_token_id=TALKER_CODEC_VOCAB - 3,
        tts_codec_end_token_id=TALKER_CODEC_VOCAB - 2,
        tts_codec_pad_token_id=TALKER_CODEC_VOCAB - 4,
        tts_codec_mask_token_id=TALKER_CODEC_VOCAB - 1,
        audio_token_index=ids["audio"],
        image_token_index=ids["image"],
        video_token_index=ids["video"],
        vision_start_token_id=ids["vision_bos"],
        vision_end_token_id=ids["vision_eos"],
        audio_start_token_id=ids["audio_bos"],
        audio_end_token_id=ids["audio_eos"],
        embedding_size=TEXT_HIDDEN,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=TALKER_HEAD_DIM,
        max_position_embeddings=MAX_POSITIONS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": list(TALKER_MROPE_SECTION)},
        spatial_merge_size=2,
    )
    token2wav = dict(
        dit_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            head_dim=16,
            ff_mult=2,
            emb_dim=16,
            block_size=24,
            look_ahead_layers=[1],
            look_backward_layers=[0],
            repeats=2,
            num_embeds=TALKER_CODEC_VOCAB,
            mel_dim=TOKEN2WAV_MEL_DIM,
            dropout=0.0,
            enc_emb_dim=SPEAKER_EMBEDDING_DIM,
            enc_dim=16,
            # ECAPA-TDNN: the last width is the sum of the middle ones (multi-layer feature aggregation).
            enc_channels=[16, 16, 16, 32],
            enc_kernel_sizes=[5, 3, 3, 1],
            enc_dilations=[1, 2, 3, 1],
            enc_attention_channels=8,
            enc_res2net_scale=2,
            enc_se_channels=8,
        ),
        bigvgan_config=dict(
            mel_dim=TOKEN2WAV_MEL_DIM,
            upsample_initial_channel=64,
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3, 5]],
            upsample_rates=[5, 3, 2, 2, 2, 2],
            upsample_kernel_sizes=[11, 7, 4, 4, 4, 4],
        ),
    )
    config = Qwen2_5OmniConfig(thinker_config=thinker.to_dict(), talker_config=talker, token2wav_config=token2wav)
    # get_rope_index reads these undeclared fields; set them on the nested thinker explicitly.
    config.thinker_config.vision_start_token_id = ids["vision_bos"]
    config.thinker_config.vision_end_token_id = ids["vision_eos"]
    return config


def make_full_omni(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny full ``Qwen2_5OmniForConditionalGeneration`` (thinker + talker + token2wav), random weights.

    Also writes ``spk_dict.pt`` (speakers ``Chelsie`` and ``Ethan`` with random conditioning), which
    ``Qwen2_5OmniForConditionalGeneration.from_pretrained`` requires. Used to test merging a trained thinker
    back into a full checkpoint, so it is not warm-started.
    """
    import torch
    from transformers import Qwen2_5OmniForConditionalGeneration

    from verl_avconfuse.tiny.tokenizer import build_tokenizer

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(seed=seed)
    processor = omni_processor(tokenizer)
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        config = omni_full_config(tokenizer)
        model = Qwen2_5OmniForConditionalGeneration(config)
        _save_model(model, processor, tmp)
        spare = len(tokenizer)
        speakers = {
            name: {
                "bos_token": spare + 3 + k,
                "cond": torch.randn(1, SPEAKER_EMBEDDING_DIM),
                "ref_mel": torch.randn(1, 48, TOKEN2WAV_MEL_DIM),
            }
            for k, name in enumerate(("Chelsie", "Ethan"))
        }
        torch.save(speakers, tmp / "spk_dict.pt")
    return out_dir


def qwen2_audio_processor(tokenizer):
    """``Qwen2AudioProcessor`` whose Whisper extractor pads/truncates to exactly ``QWEN2_AUDIO_SECONDS``."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    # Qwen2-Audio's encoder takes exactly 2 * max_source_positions mel frames; Whisper's extractor pads to
    # chunk_length * 100 frames (10 ms hop), so chunk_length must be max_source_positions / 50 seconds.
    return Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(
            feature_size=NUM_MEL_BINS, sampling_rate=AUDIO_SAMPLING_RATE, chunk_length=QWEN2_AUDIO_SECONDS
        ),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def make_qwen2_audio(out_dir: str | Path, *, seed: int = 0, warm_start_steps: int = WARM_START_STEPS) -> Path:
    """A tiny ``Qwen2AudioForConditionalGeneration`` + ``Qwen2AudioProcessor`` (the reference audio LM).

    Warm-started on :func:`~verl_avconfuse.tiny.corpus.reference_chats` (a question, its answer, and an
    ``<a-think>`` paragraph about the audio), half the steps with a synthetic audio item in the prompt.
    Audio is cut or padded to ``QWEN2_AUDIO_SECONDS`` (30 s, as the real model).
    """
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    from verl_avconfuse.tiny.corpus import reference_chats
    from verl_avconfuse.tiny.tokenizer import build_tokenizer

    out_dir = Path(out_dir)
    # A generation-only model: batched prompts must be left-padded (Qwen2AudioProcessor has no default).
    tokenizer = build_tokenizer(seed=seed, padding_side="left")
    processor = qwen2_audio_processor(tokenizer)
    ids = _token_ids(tokenizer)
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        text = _text_config_kwargs(tokenizer, tie=False)
        text["model_type"] = "qwen2"
        config = Qwen2AudioConfig(
            audio_config=dict(
                model_type="qwen2_audio_encoder",
                num_mel_bins=NUM_MEL_BINS,
                encoder_layers=1,
                encoder_attention_heads=2,
                encoder_ffn_dim=64,
                d_model=32,
                max_source_positions=QWEN2_AUDIO_MAX_SOURCE_POSITIONS,
            ),
            text_config=text,
            audio_token_index=ids["audio"],
        )
        config.pad_token_id = ids["endoftext"]
        model = Qwen2AudioForConditionalGeneration(config)
        pools = ()
        if warm_start_steps > 0:
            pools = (_media_prompts(processor, [[{"type": "audio"}]] * MEDIA_CLIPS, seed=seed, with_video=False),)
        warm_start(
            model, tokenizer, reference_chats(WARM_START_CHATS, seed), warm_start_steps, seed=seed, media_pools=pools
        )
        _save_model(model, processor, tmp)
    return out_dir


def make_embedder(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A Qwen3-Embedding-style sentence-transformers model over a tiny random ``Qwen3Model``.

    Modules: ``Transformer`` (left padding, so the last position is the last real token), ``Pooling``
    (``lasttoken``), ``Normalize``; prompts :data:`EMBEDDING_PROMPTS` (``arr``, ``avc``, ``query``) are saved
    in ``config_sentence_transformers.json``. Random weights: similarities are deterministic but carry no
    meaning.
    """
    from tokenizers import processors
    from transformers import Qwen3Config, Qwen3Model

    from verl_avconfuse.tiny.tokenizer import build_tokenizer

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(seed=seed, padding_side="left")
    # Plain text, no chat template (sentence-transformers would render inputs as chat messages), and an
    # <|endoftext|> appended to every input as Qwen3-Embedding's tokenizer does: last-token pooling reads it.
    tokenizer.chat_template = None
    eot = tokenizer.pad_token
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eot}", pair=f"$A {eot} $B {eot}", special_tokens=[(eot, tokenizer.convert_tokens_to_ids(eot))]
    )
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

        text = _text_config_kwargs(tokenizer, tie=True)
        text.update(head_dim=TEXT_HIDDEN // TEXT_HEADS)
        backbone = tmp / ".backbone"
        Qwen3Model(Qwen3Config(**text)).save_pretrained(backbone, safe_serialization=True)
        tokenizer.save_pretrained(backbone)
        transformer = Transformer(str(backbone), processor_kwargs={"padding_side": "left"}, max_seq_length=512)
        model = SentenceTransformer(
            modules=[transformer, Pooling(TEXT_HIDDEN, pooling_mode="lasttoken"), Normalize()],
            prompts=dict(EMBEDDING_PROMPTS),
            default_prompt_name=None,
            similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(tmp))
        shutil.rmtree(backbone)
    return out_dir


# ------------------------------------------------------------------------------- Qwen3-Omni thinker

#: The Qwen3-Omni media tokens (Qwen3's vocabulary: ``<|audio_pad|>`` ... ``<|vision_end|>``), by the names
#: of :data:`verl_avconfuse.tiny.tokenizer.SPECIAL_TOKENS`. Qwen3-Omni renames every one of Qwen2.5-Omni's.
QWEN3_OMNI_SPECIAL_TOKENS: dict[str, str] = {
    "endoftext": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "audio": "<|audio_pad|>",
    "audio_bos": "<|audio_start|>",
    "audio_eos": "<|audio_end|>",
    "vision_bos": "<|vision_start|>",
    "vision_eos": "<|vision_end|>",
    "image": "<|image_pad|>",
    "video": "<|video_pad|>",
}
#: Qwen3-Omni's vision encoder: 16-pixel patches merged 2x2, so one LLM token per 32x32 pixels. A 64x48
#: frame resizes to 64x64 = 4 tokens; a 2 s clip at 2 fps (2 temporal patches) is 8 video tokens.
QWEN3_OMNI_PATCH = 16
QWEN3_OMNI_MIN_PIXELS = 32 * 32 * 2
QWEN3_OMNI_MAX_PIXELS = 64 * 64
#: Position ids per second of TMRoPE's time axis. The released checkpoints use 13 (the processor's
#: default); ``Qwen3OmniMoeThinkerConfig`` defaults to 25, a Qwen2.5-Omni leftover that would make the
#: processor's audio/video interleaving and the thinker's ``get_rope_index`` disagree.
QWEN3_OMNI_POSITION_ID_PER_SECONDS = 13
#: The audio encoder's attention window (mel frames / 2); the processor sizes audio runs for 100-frame
#: chunks, which is n_window=50, as the released checkpoints.
QWEN3_OMNI_AUDIO_N_WINDOW = 50
#: Interleaved MRoPE over head_dim 32 (16 rotary frequencies): [T, H, W] = [6, 5, 5], the miniature of the
#: released [24, 20, 20] over 64 (H and W take every third frequency, T the rest).
QWEN3_OMNI_HEAD_DIM = 32
QWEN3_OMNI_MROPE_SECTION = (6, 5, 5)
#: The sparse MoE of the thinker's language model (the released one: 128 experts, 8 per token).
QWEN3_OMNI_EXPERTS = 4
QWEN3_OMNI_EXPERTS_PER_TOKEN = 2
QWEN3_OMNI_MOE_INTERMEDIATE = 32


def qwen3_omni_tokenizer(*, seed: int = 0, padding_side: str = "right"):
    """The tiny BPE (:func:`~verl_avconfuse.tiny.tokenizer.build_tokenizer`) with Qwen3-Omni's media tokens.

    Same vocabulary and merges as the other tiny models; the media tokens and the chat template's media
    markup are Qwen3-Omni's (``<|vision_start|><|video_pad|><|vision_end|>``,
    ``<|audio_start|><|audio_pad|><|audio_end|>``), registered as ``audio_token=``, ``vision_bos_token=``, ...
    as ``Qwen3OmniMoeProcessor`` reads them.
    """
    import json

    from transformers import Qwen2Tokenizer

    from verl_avconfuse.tiny import tokenizer as tiny_tokenizer

    vocab_json, merges_json = tiny_tokenizer._train_bpe(2000, seed)
    vocab = json.loads(vocab_json)
    for token in QWEN3_OMNI_SPECIAL_TOKENS.values():
        vocab[token] = len(vocab)
    template = tiny_tokenizer.CHAT_TEMPLATE
    for name, token in tiny_tokenizer.SPECIAL_TOKENS.items():
        template = template.replace(token, QWEN3_OMNI_SPECIAL_TOKENS[name])
    attributes = {
        attribute: QWEN3_OMNI_SPECIAL_TOKENS[name]
        for attribute, name in (
            ("audio_token", "audio"),
            ("audio_bos_token", "audio_bos"),
            ("audio_eos_token", "audio_eos"),
            ("image_token", "image"),
            ("video_token", "video"),
            ("vision_bos_token", "vision_bos"),
            ("vision_eos_token", "vision_eos"),
        )
    }
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in json.loads(merges_json)],
        unk_token=None,
        bos_token=None,
        eos_token=QWEN3_OMNI_SPECIAL_TOKENS["im_end"],
        pad_token=QWEN3_OMNI_SPECIAL_TOKENS["endoftext"],
        chat_template=template,
        extra_special_tokens={"im_start_token": QWEN3_OMNI_SPECIAL_TOKENS["im_start"]},
        padding_side=padding_side,
        **attributes,
    )


def _qwen3_omni_token_ids(tokenizer) -> dict[str, int]:
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in QWEN3_OMNI_SPECIAL_TOKENS.items()}
    user = tokenizer.encode("user", add_special_tokens=False)
    if len(user) != 1:
        raise ValueError(f"the tiny tokenizer must encode 'user' as one token (TMRoPE's user_token_id), got {user}")
    ids["user"] = user[0]
    return ids


def qwen3_omni_processor(tokenizer):
    """``Qwen3OmniMoeProcessor`` with the tiny pixel bounds and 16-pixel patches, see :func:`_media_processor`."""
    from transformers import Qwen3OmniMoeProcessor

    return _media_processor(
        Qwen3OmniMoeProcessor,
        tokenizer,
        min_pixels=QWEN3_OMNI_MIN_PIXELS,
        max_pixels=QWEN3_OMNI_MAX_PIXELS,
        patch_size=QWEN3_OMNI_PATCH,
    )


def qwen3_omni_thinker_config(tokenizer):
    """The tiny ``Qwen3OmniMoeThinkerConfig``: the released thinker's layout (sparse MoE in every layer,
    interleaved MRoPE, DeepStack vision features, Qwen3 q/k norms), every size shrunk, token ids from
    ``tokenizer``."""
    from transformers import Qwen3OmniMoeThinkerConfig

    ids = _qwen3_omni_token_ids(tokenizer)
    text = _text_config_kwargs(tokenizer, tie=False)
    text.pop("use_cache")
    text.update(
        head_dim=QWEN3_OMNI_HEAD_DIM,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": ROPE_THETA,
            "mrope_section": list(QWEN3_OMNI_MROPE_SECTION),
            "interleaved": True,
            "mrope_interleaved": True,
        },
        moe_intermediate_size=QWEN3_OMNI_MOE_INTERMEDIATE,
        num_experts=QWEN3_OMNI_EXPERTS,
        num_experts_per_tok=QWEN3_OMNI_EXPERTS_PER_TOKEN,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        bos_token_id=ids["endoftext"],
        eos_token_id=ids["im_end"],
        pad_token_id=ids["endoftext"],
    )
    config = Qwen3OmniMoeThinkerConfig(
        audio_config=dict(
            _AUDIO_ENCODER,
            n_window=QWEN3_OMNI_AUDIO_N_WINDOW,
            n_window_infer=4 * QWEN3_OMNI_AUDIO_N_WINDOW * 2,
            downsample_hidden_size=8,
        ),
        vision_config=dict(
            _VISION_ENCODER, patch_size=QWEN3_OMNI_PATCH, num_position_embeddings=64, deepstack_visual_indexes=[0]
        ),
        text_config=text,
        audio_token_id=ids["audio"],
        image_token_id=ids["image"],
        video_token_id=ids["video"],
        audio_start_token_id=ids["audio_bos"],
        user_token_id=ids["user"],
        position_id_per_seconds=QWEN3_OMNI_POSITION_ID_PER_SECONDS,
        tie_word_embeddings=False,
    )
    # Read by get_rope_index (vision_start) and vLLM but not declared fields; the released config carries them.
    config.vision_start_token_id = ids["vision_bos"]
    config.vision_end_token_id = ids["vision_eos"]
    config.audio_end_token_id = ids["audio_eos"]
    config.pad_token_id = ids["endoftext"]
    config.eos_token_id = ids["im_end"]
    return config


#: Warm-start steps of the tiny Qwen3-Omni thinker (its MoE steps cost about twice a dense one on CPU).
QWEN3_OMNI_WARM_START_STEPS = 120


@dataclass(frozen=True)
class ThinkerFamily:
    """What one Omni family's tiny thinker is made of; :func:`_make_thinker` builds either the same way."""

    #: The transformers class of the thinker.
    model_class: str
    tokenizer: Callable[[int], Any]
    processor: Callable[[Any], Any]
    config: Callable[[Any], Any]
    token_ids: Callable[[Any], dict[str, int]]
    #: Keyword arguments of the warm-start media pools' processor calls.
    pool_kwargs: dict[str, Any] = field(default_factory=dict)


def _tiny_tokenizer(seed: int):
    from verl_avconfuse.tiny.tokenizer import build_tokenizer

    return build_tokenizer(seed=seed)


QWEN2_5_OMNI = ThinkerFamily(
    model_class="Qwen2_5OmniThinkerForConditionalGeneration",
    tokenizer=_tiny_tokenizer,
    processor=omni_processor,
    config=omni_thinker_config,
    token_ids=_token_ids,
)
QWEN3_OMNI = ThinkerFamily(
    model_class="Qwen3OmniMoeThinkerForConditionalGeneration",
    tokenizer=lambda seed: qwen3_omni_tokenizer(seed=seed),
    processor=qwen3_omni_processor,
    config=qwen3_omni_thinker_config,
    token_ids=_qwen3_omni_token_ids,
    # The processor assumes 1 fps unless told; the tiny clips are sampled at 2 fps.
    pool_kwargs={"fps": 2.0},
)


def _make_thinker(family: ThinkerFamily, out_dir: str | Path, *, seed: int, warm_start_steps: int) -> Path:
    """A tiny thinker of ``family``, warm-started on the shared corpus with prompts carrying synthetic audio +
    video in both input modes (audio as a separate item; audio interleaved in the video), and its processor."""
    import transformers

    from verl_avconfuse.tiny.corpus import policy_chats

    out_dir = Path(out_dir)
    tokenizer = family.tokenizer(seed)
    processor = family.processor(tokenizer)
    with deterministic_torch(seed), atomic_directory(out_dir) as tmp:
        model = getattr(transformers, family.model_class)(family.config(tokenizer))
        pools = _omni_media_pools(processor, seed, **family.pool_kwargs) if warm_start_steps > 0 else ()
        warm_start(
            model, tokenizer, policy_chats(WARM_START_CHATS, seed), warm_start_steps, seed=seed, media_pools=pools
        )
        _save_model(model, processor, tmp, family.token_ids(tokenizer))
    return out_dir


def make_omni_thinker(out_dir: str | Path, *, seed: int = 0, warm_start_steps: int = WARM_START_STEPS) -> Path:
    """A tiny ``Qwen2_5OmniThinkerForConditionalGeneration`` + ``Qwen2_5OmniProcessor``, warm-started."""
    return _make_thinker(QWEN2_5_OMNI, out_dir, seed=seed, warm_start_steps=warm_start_steps)


def make_qwen3_omni_thinker(
    out_dir: str | Path, *, seed: int = 0, warm_start_steps: int = QWEN3_OMNI_WARM_START_STEPS
) -> Path:
    """A tiny ``Qwen3OmniMoeThinkerForConditionalGeneration`` + ``Qwen3OmniMoeProcessor``, warm-started: the
    Qwen2.5-Omni thinker's corpus and media pools, Qwen3-Omni's tokens, processor and MoE language model."""
    return _make_thinker(QWEN3_OMNI, out_dir, seed=seed, warm_start_steps=warm_start_steps)


TINY_MODELS: dict[str, Callable[..., Path]] = {
    "qwen2": make_qwen2_policy,
    "omni_thinker": make_omni_thinker,
    "omni_full": make_full_omni,
    "qwen3_omni_thinker": make_qwen3_omni_thinker,
    "qwen2_audio": make_qwen2_audio,
    "embedder": make_embedder,
}


def make_tiny_models(out_dir: str | Path, which: Iterable[str] = DEFAULT_SET, *, seed: int = 0) -> dict[str, Path]:
    """Build each model of ``which`` into ``out_dir/<name>``; returns name -> path (build order kept).

    Raises:
        ValueError: an unknown name (the known ones are the keys of :data:`TINY_MODELS`).
    """
    which = list(dict.fromkeys(which))
    unknown = [name for name in which if name not in TINY_MODELS]
    if unknown:
        raise ValueError(f"unknown tiny model(s) {unknown}; known: {sorted(TINY_MODELS)}")
    paths = {}
    for name in which:
        start = time.perf_counter()
        paths[name] = TINY_MODELS[name](Path(out_dir) / name, seed=seed)
        BUILD_SECONDS[name] = time.perf_counter() - start
    return paths
