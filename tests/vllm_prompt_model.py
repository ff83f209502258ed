"""Models of vLLM 0.24.0's Omni thinkers (Qwen2.5-Omni, Qwen3-Omni), for the main suite's contract tests only.

Not the oracle: vLLM itself is, in the vLLM lane (``tests/test_vllm_engine_qwen2_5_omni.py``,
``tests/test_vllm_engine_qwen3_omni.py``: prompt ids, processor features, positions, log-probs and weight names
from the real engine, CPU build). These models stay for what the lane does not do: the main suite has no vLLM,
and the property tests here run hundreds of random layouts (item counts, fps, leftover audio, empty chunks)
that would cost an engine call each. Where a model and the engine disagree, the engine wins; the lane checks the
request shapes the rollout sends. ``tests/test_omni_vllm_contract.py`` checks that the collapsed prompt the rollout
sends (``verl_avconfuse.omni.vllm_contract.collapse_placeholders``), expanded the way vLLM expands it
(:func:`predict_vllm_prompt_ids`), is exactly the prompt the actor trains on. For Qwen3-Omni
(``tests/test_qwen3_omni_vllm_contract.py``) the module also re-states vLLM's M-RoPE rule
(:func:`vllm_qwen3_mrope_positions`), the parameters its thinker declares (:func:`vllm_qwen3_omni_parameters`)
and where its loaders put each sent tensor (:func:`vllm_qwen3_omni_load_target`). Nothing in the package
needs these models, so they live with the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verl_avconfuse.omni.vllm_contract import SECONDS_PER_CHUNK, TOKENS_PER_SECOND, OmniTokenIds

#: ``vision_config.spatial_merge_size`` of Qwen2.5-Omni: 2x2 patches per video/image token.
SPATIAL_MERGE_SIZE = 2


def audio_token_count(num_mel_frames: int) -> int:
    """Audio tokens the thinker's encoder makes from ``num_mel_frames`` Whisper frames (10 ms each).

    Two stride-2 stages: ``((L - 1) // 2 + 1 - 2) // 2 + 1``, as in ``Qwen2_5OmniProcessor.__call__`` and
    vLLM's ``qwen2_audio._get_feat_extract_output_lengths``: 25 tokens per second of audio.
    """
    return ((int(num_mel_frames) - 1) // 2 + 1 - 2) // 2 + 1


def _interleaved_region(
    token_ids: OmniTokenIds,
    grid_thw: Sequence[int],
    n_audio: int,
    second_per_grid: float,
    spatial_merge_size: int,
    tokens_per_second: int,
    seconds_per_chunk: float,
) -> list[int]:
    """vLLM 0.24's audio-in-video replacement of one ``<|VIDEO|>`` (``omni_get_updates_use_audio_in_video``).

    Video grids are bucketed by their TMRoPE time ``int(k * second_per_grid * tokens_per_second)`` into
    chunks of ``tokens_per_second * seconds_per_chunk``; empty buckets count (``split_list_into_ranges``),
    each bucket is followed by up to one chunk of audio, and leftover audio goes at the end.
    """
    grid_t, grid_h, grid_w = (int(x) for x in grid_thw)
    per_chunk = int(tokens_per_second * seconds_per_chunk)
    times = [int(k * second_per_grid * tokens_per_second) for k in range(grid_t)]
    buckets = [0] * (max(times) // per_chunk + 1)
    for time in times:
        buckets[time // per_chunk] += 1
    region, added = [token_ids.audio_bos], 0
    for grids_in_bucket in buckets:
        region += [token_ids.video] * (grids_in_bucket * grid_h * grid_w // spatial_merge_size**2)
        take = min(per_chunk, n_audio - added)
        region += [token_ids.audio] * take
        added += take
    region += [token_ids.audio] * (n_audio - added)
    region.append(token_ids.audio_eos)
    return region


def predict_vllm_prompt_ids(
    collapsed_ids: Sequence[int],
    token_ids: OmniTokenIds,
    *,
    audio_token_counts: Sequence[int] = (),
    image_token_counts: Sequence[int] = (),
    video_grid_thw: Sequence[Sequence[int]] = (),
    use_audio_in_video: bool = False,
    second_per_grid_ts: Sequence[float] | None = None,
    spatial_merge_size: int = SPATIAL_MERGE_SIZE,
    tokens_per_second: int = TOKENS_PER_SECOND,
    seconds_per_chunk: float = SECONDS_PER_CHUNK,
) -> list[int]:
    """The prompt vLLM 0.24.0 builds from ``collapsed_ids`` (a model of its prompt updates, for checks).

    ``audio_token_counts[k]``: tokens of the k-th audio item (:func:`audio_token_count`); with
    ``use_audio_in_video`` the k-th audio belongs to the k-th video. ``image_token_counts[k]``:
    ``prod(image_grid_thw[k]) // merge**2``. ``video_grid_thw[k]``: ``(t, h, w)`` in patches, as the HF
    processor returns it. ``second_per_grid_ts[k]``: what vLLM reads from ``mm_processor_kwargs`` (1.0 when
    None, as vLLM). When the HF processor's chunking agrees (``second_per_grid <= seconds_per_chunk``), the
    result equals the HF-expanded prompt the actor trains on.
    """
    t = token_ids
    seconds = list(second_per_grid_ts) if second_per_grid_ts else [1.0] * len(video_grid_thw)
    out: list[int] = []
    n_audio = n_image = n_video = 0
    try:
        for tok in collapsed_ids.tolist() if hasattr(collapsed_ids, "tolist") else collapsed_ids:
            tok = int(tok)
            if tok == t.audio:
                out += [t.audio] * int(audio_token_counts[n_audio])
                n_audio += 1
            elif tok == t.image:
                out += [t.image] * int(image_token_counts[n_image])
                n_image += 1
            elif tok == t.video:
                grid = video_grid_thw[n_video]
                if use_audio_in_video:
                    out += _interleaved_region(
                        t,
                        grid,
                        int(audio_token_counts[n_video]),
                        float(seconds[n_video]),
                        spatial_merge_size,
                        tokens_per_second,
                        seconds_per_chunk,
                    )
                else:
                    out += [t.video] * (int(np.prod([int(x) for x in grid])) // spatial_merge_size**2)
                n_video += 1
            else:
                out.append(tok)
    except IndexError:
        raise ValueError(
            f"collapsed_ids has more placeholders than media: {n_audio} audio, {n_image} image, {n_video} video "
            f"consumed, given {len(audio_token_counts)} / {len(image_token_counts)} / {len(video_grid_thw)}"
        ) from None
    expected_audio = n_video if use_audio_in_video else n_audio
    if (len(audio_token_counts), len(image_token_counts), len(video_grid_thw)) != (expected_audio, n_image, n_video):
        raise ValueError(
            f"collapsed_ids has {expected_audio} audio, {n_image} image, {n_video} video placeholders; given "
            f"{len(audio_token_counts)} / {len(image_token_counts)} / {len(video_grid_thw)} media"
        )
    return out


# ==================================================================================================
# Qwen3-Omni (MoE) thinker: vLLM 0.24.0's vllm/model_executor/models/qwen3_omni_moe_thinker.py
# ==================================================================================================
#: Qwen3-Omni's ``position_id_per_seconds`` in the released checkpoints (and the tiny thinker's).
QWEN3_POSITION_ID_PER_SECONDS = 13
#: ``Qwen3OmniMoeThinkerMultiModalProcessor._get_prompt_updates`` and ``iter_mm_features``: the seconds per
#: video grid vLLM assumes when ``second_per_grid_ts`` is absent (Qwen2.5-Omni: 1.0).
QWEN3_VLLM_DEFAULT_SECOND_PER_GRID = 2.0


def qwen3_audio_token_count(num_mel_frames: int) -> int:
    """Audio tokens of Qwen3-Omni's encoder for ``num_mel_frames`` frames: 13 per full 100 frames, plus the
    three stride-2 convolutions on the remainder (``_get_feat_extract_output_lengths``, the same formula in
    transformers' processor and vLLM's thinker)."""
    n = int(num_mel_frames)
    rest = (n % 100 - 1) // 2 + 1
    return ((rest - 1) // 2 + 1 - 1) // 2 + 1 + (n // 100) * 13


def qwen3_interleaved_region(
    token_ids: OmniTokenIds,
    grid_thw: Sequence[int],
    n_audio: int,
    second_per_grid: float,
    position_id_per_seconds: float = QWEN3_POSITION_ID_PER_SECONDS,
    spatial_merge_size: int = SPATIAL_MERGE_SIZE,
) -> list[int]:
    """vLLM 0.24's audio-in-video replacement of one ``<|video_pad|>`` (``get_updates_use_audio_in_video``).

    ``<|audio_start|>``, then video and audio tokens merged by time: the k-th temporal patch's tokens are at
    ``k * second_per_grid * position_id_per_seconds`` (a float), the j-th audio token at ``j``, a video token
    first on ties; the rest of either at the end; ``<|audio_end|>``. No 2-second chunks (Qwen2.5-Omni's).
    """
    grid_t, grid_h, grid_w = (int(x) for x in grid_thw)
    per_grid = grid_h * grid_w // spatial_merge_size**2
    video_times = [k * float(second_per_grid) * position_id_per_seconds for k in range(grid_t) for _ in range(per_grid)]
    region, v, a = [token_ids.audio_bos], 0, 0
    while v < len(video_times) and a < n_audio:
        if video_times[v] <= a:
            region.append(token_ids.video)
            v += 1
        else:
            region.append(token_ids.audio)
            a += 1
    region += [token_ids.video] * (len(video_times) - v) + [token_ids.audio] * (n_audio - a)
    return region + [token_ids.audio_eos]


def predict_qwen3_vllm_prompt_ids(
    collapsed_ids: Sequence[int],
    token_ids: OmniTokenIds,
    *,
    audio_token_counts: Sequence[int] = (),
    image_token_counts: Sequence[int] = (),
    video_grid_thw: Sequence[Sequence[int]] = (),
    use_audio_in_video: bool = False,
    second_per_grid_ts: Sequence[float] | None = None,
    position_id_per_seconds: float = QWEN3_POSITION_ID_PER_SECONDS,
    spatial_merge_size: int = SPATIAL_MERGE_SIZE,
) -> list[int]:
    """The prompt vLLM 0.24.0's Qwen3-Omni thinker builds from ``collapsed_ids`` (its ``_get_prompt_updates``).

    Same arguments as :func:`predict_vllm_prompt_ids`; audio counts from :func:`qwen3_audio_token_count`;
    ``second_per_grid_ts`` None means vLLM's default of 2.0 s per grid.
    """
    seconds = (
        list(second_per_grid_ts) if second_per_grid_ts else [QWEN3_VLLM_DEFAULT_SECOND_PER_GRID] * len(video_grid_thw)
    )
    t, out = token_ids, []
    counters = {"audio": 0, "image": 0, "video": 0}
    for tok in collapsed_ids.tolist() if hasattr(collapsed_ids, "tolist") else collapsed_ids:
        tok = int(tok)
        if tok == t.audio:
            out += [t.audio] * int(audio_token_counts[counters["audio"]])
            counters["audio"] += 1
        elif tok == t.image:
            out += [t.image] * int(image_token_counts[counters["image"]])
            counters["image"] += 1
        elif tok == t.video:
            k = counters["video"]
            if use_audio_in_video:
                out += qwen3_interleaved_region(
                    t,
                    video_grid_thw[k],
                    int(audio_token_counts[k]),
                    seconds[k],
                    position_id_per_seconds,
                    spatial_merge_size,
                )
            else:
                out += [t.video] * (int(np.prod([int(x) for x in video_grid_thw[k]])) // spatial_merge_size**2)
            counters["video"] += 1
        else:
            out.append(tok)
    return out


@dataclass(frozen=True)
class MMFeature:
    """What vLLM's ``get_mrope_input_positions`` reads of one ``MultiModalFeatureSpec``.

    ``offset``: ``mm_position.offset``, the index of the placeholder's first token in the expanded prompt
    (``PlaceholderFeaturesInfo.start_idx``: the first ``<|video_pad|>``, or the ``<|audio_start|>`` of an
    audio-in-video body; a derived audio shares its video's). ``data``: the HF processor's outputs for the
    item as vLLM keeps them: ``video_grid_thw`` / ``image_grid_thw``, ``second_per_grid_ts`` (renamed from
    ``video_second_per_grid``), ``use_audio_in_video``, ``audio_feature_lengths`` (mel frames).
    """

    modality: str
    offset: int
    data: dict


def vllm_qwen3_mrope_positions(
    num_tokens: int,
    features: Sequence[MMFeature],
    *,
    position_id_per_seconds: float = QWEN3_POSITION_ID_PER_SECONDS,
    spatial_merge_size: int = SPATIAL_MERGE_SIZE,
) -> np.ndarray:
    """vLLM 0.24.0's Qwen3-Omni M-RoPE positions ``(3, num_tokens)`` for a prompt: our re-statement of
    ``Qwen3OmniMoeThinkerForConditionalGeneration.get_mrope_input_positions`` with ``iter_mm_features``,
    ``_get_audio_for_video_mapping`` and ``_compute_interleaved_positions``.

    Features in offset order; the k-th audio-in-video video takes the k-th audio's length and that audio is
    not visited on its own. Per feature: the text before it, then ONE "start" position counted *at the
    feature's offset*, then the item, then one "end" position:

    - audio: ``n`` consecutive positions; the next text starts at ``offset + n + 2``;
    - image / plain video: a ``(t, h, w)`` grid with time ``int(k * t_factor)`` (image: ``t_factor`` =
      ``position_id_per_seconds``; video: ``second_per_grid_ts`` (2.0 when absent) times it); next text at
      ``offset + t*h*w + 2``;
    - audio-in-video: a second start equal to the first, video and audio positions merged by time (video
      first on ties), the end position twice; next text at ``offset + V + A + 4``.

    Each new block starts one past the largest position so far. vLLM raises when the count differs from
    ``num_tokens``; so does this.
    """
    features = sorted(features, key=lambda f: f.offset)
    in_video = [f for f in features if f.modality == "video" and f.data.get("use_audio_in_video")]
    audios = [f for f in features if f.modality == "audio"]
    paired = {v.offset: a for v, a in zip(in_video, audios, strict=False)}  # vLLM pairs as far as both go
    paired_audio_offsets = {a.offset for a in paired.values()}
    blocks: list[np.ndarray] = []

    def next_start() -> int:
        return int(blocks[-1].max()) + 1 if blocks else 0

    def line(start: int, n: int) -> np.ndarray:
        return np.broadcast_to(np.arange(n), (3, n)) + start

    def grid(data: dict, t_factor: float) -> np.ndarray:
        t, h, w = (int(x) for x in data)
        index = np.indices((t, h // spatial_merge_size, w // spatial_merge_size)).reshape(3, -1)
        index[0] = (index[0] * t_factor).astype(np.int64)
        return index

    st = 0
    for f in features:
        if f.modality == "audio" and f.offset in paired_audio_offsets:
            continue
        start = next_start()
        if f.offset > st:
            blocks.append(line(start, f.offset - st))
            start += f.offset - st
        blocks.append(line(start, 1))
        start += 1
        if f.modality == "audio":
            n = qwen3_audio_token_count(f.data["audio_feature_lengths"])
            blocks.append(line(start, n))
            blocks.append(line(next_start(), 1))
            st = f.offset + n + 2
            continue
        if f.modality == "image":
            item = grid(f.data["image_grid_thw"], position_id_per_seconds)
        else:
            seconds = f.data.get("second_per_grid_ts") or QWEN3_VLLM_DEFAULT_SECOND_PER_GRID
            item = grid(f.data["video_grid_thw"], float(seconds) * position_id_per_seconds)
        if f.modality == "video" and f.data.get("use_audio_in_video"):
            blocks.append(line(start - 1, 1))
            video = item + start
            n_audio = qwen3_audio_token_count(paired[f.offset].data["audio_feature_lengths"])
            audio = line(start, n_audio)
            merged, v, a = [], 0, 0
            while v < video.shape[1] and a < n_audio:
                if video[0, v] <= audio[0, a]:
                    merged.append(video[:, v : v + 1])
                    v += 1
                else:
                    merged.append(audio[:, a : a + 1])
                    a += 1
            merged += [video[:, v:], audio[:, a:]]
            blocks.append(np.concatenate(merged, axis=1))
            end = line(next_start(), 1)
            blocks += [end, end]
            st = f.offset + video.shape[1] + n_audio + 4
        else:
            blocks.append(item + start)
            blocks.append(line(next_start(), 1))
            st = f.offset + item.shape[1] + 2
    if st < num_tokens:
        blocks.append(line(next_start(), num_tokens - st))
    positions = np.concatenate(blocks, axis=1)
    if positions.shape[1] != num_tokens:
        raise RuntimeError(f"vLLM: {positions.shape[1]} positions for {num_tokens} tokens (length mismatch)")
    return positions


# -------------------------------------------------------------------------------------- Qwen3-Omni weights
def vllm_qwen3_omni_parameters(thinker: dict) -> dict[str, tuple[int, ...]]:
    """``named_parameters()`` of vLLM 0.24.0's ``Qwen3OmniMoeThinkerForConditionalGeneration`` (TP 1, no
    expert parallelism, unquantized), name -> shape, for a thinker config dict.

    Read from the ``__init__`` of each module: ``Qwen3OmniMoeAudioEncoder`` (q/k/v fused into
    ``self_attn.qkv``; the sinusoid table is a buffer), ``Qwen3Omni_VisionTransformer`` (``pos_embed`` an
    ``nn.Embedding`` when ``apply_vit_abs_pos_embed``; ``merger_list`` normalises after the 2x2 shuffle),
    ``Qwen3MoeLLMForCausalLM`` -> ``Qwen3MoeModel`` (``qkv_proj``; every layer sparse when
    ``decoder_sparse_step`` is 1 and ``mlp_only_layers`` empty; ``FusedMoE`` keeps the experts as
    ``experts.routed_experts.w13_weight`` (E, 2I, H) and ``w2_weight`` (E, H, I)
    (``UnquantizedFusedMoEMethod.create_weights``); its ``gate`` is the block's own ``mlp.gate``, listed once).
    """
    audio, vision, text = thinker["audio_config"], thinker["vision_config"], thinker["text_config"]
    p: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out: int, inp: int, bias: bool = True) -> None:
        p[f"{name}.weight"] = (out, inp)
        if bias:
            p[f"{name}.bias"] = (out,)

    def norm(name: str, dim: int, bias: bool = True) -> None:
        p[f"{name}.weight"] = (dim,)
        if bias:
            p[f"{name}.bias"] = (dim,)

    d, down, mel = audio["d_model"], audio["downsample_hidden_size"], audio["num_mel_bins"]
    for k, inp in ((1, 1), (2, down), (3, down)):
        p[f"audio_tower.conv2d{k}.weight"] = (down, inp, 3, 3)
        p[f"audio_tower.conv2d{k}.bias"] = (down,)
    linear("audio_tower.conv_out", d, down * ((((mel + 1) // 2 + 1) // 2 + 1) // 2), bias=False)
    for i in range(audio["encoder_layers"]):
        layer = f"audio_tower.layers.{i}"
        linear(f"{layer}.self_attn.qkv", 3 * d, d)
        linear(f"{layer}.self_attn.out_proj", d, d)
        norm(f"{layer}.self_attn_layer_norm", d)
        linear(f"{layer}.fc1", audio["encoder_ffn_dim"], d)
        linear(f"{layer}.fc2", d, audio["encoder_ffn_dim"])
        norm(f"{layer}.final_layer_norm", d)
    norm("audio_tower.ln_post", d)
    linear("audio_tower.proj1", d, d)
    linear("audio_tower.proj2", audio["output_dim"], d)

    h, patch, t_patch = vision["hidden_size"], vision["patch_size"], vision["temporal_patch_size"]
    p["visual.patch_embed.proj.weight"] = (h, vision["in_channels"], t_patch, patch, patch)
    p["visual.patch_embed.proj.bias"] = (h,)
    side = vision["image_size"] // patch
    if vision["apply_vit_abs_pos_embed"]:
        p["visual.pos_embed.weight"] = (side * side, h)
    else:
        p["visual.pos_embed"] = (1, side * side, h)
    for i in range(vision["depth"]):
        block = f"visual.blocks.{i}"
        norm(f"{block}.norm1", h)
        norm(f"{block}.norm2", h)
        linear(f"{block}.attn.qkv", 3 * h, h)
        linear(f"{block}.attn.proj", h, h)
        linear(f"{block}.mlp.linear_fc1", vision["intermediate_size"], h)
        linear(f"{block}.mlp.linear_fc2", h, vision["intermediate_size"])
    shuffled = h * vision["spatial_merge_size"] ** 2
    mergers = [("visual.merger", h)] + [
        (f"visual.merger_list.{k}", shuffled) for k in range(len(vision["deepstack_visual_indexes"]))
    ]
    for merger, norm_dim in mergers:
        norm(f"{merger}.ln_q", norm_dim)
        linear(f"{merger}.mlp.0", shuffled, shuffled)
        linear(f"{merger}.mlp.2", vision["out_hidden_size"], shuffled)

    hidden, head = text["hidden_size"], text["head_dim"]
    heads, kv_heads = text["num_attention_heads"], text["num_key_value_heads"]
    experts, moe = text["num_experts"], text["moe_intermediate_size"]
    lm = "language_model.model"
    p[f"{lm}.embed_tokens.weight"] = (text["vocab_size"], hidden)
    for i in range(text["num_hidden_layers"]):
        layer = f"{lm}.layers.{i}"
        linear(f"{layer}.self_attn.qkv_proj", (heads + 2 * kv_heads) * head, hidden, bias=text["attention_bias"])
        linear(f"{layer}.self_attn.o_proj", hidden, heads * head, bias=False)
        norm(f"{layer}.self_attn.q_norm", head, bias=False)
        norm(f"{layer}.self_attn.k_norm", head, bias=False)
        sparse = i not in text.get("mlp_only_layers", []) and (i + 1) % text["decoder_sparse_step"] == 0
        if not sparse or text.get("shared_expert_intermediate_size", 0):
            raise NotImplementedError("dense or shared-expert layers: not in Qwen3-Omni's thinker")
        linear(f"{layer}.mlp.gate", experts, hidden, bias=False)
        p[f"{layer}.mlp.experts.routed_experts.w13_weight"] = (experts, 2 * moe, hidden)
        p[f"{layer}.mlp.experts.routed_experts.w2_weight"] = (experts, hidden, moe)
        norm(f"{layer}.input_layernorm", hidden, bias=False)
        norm(f"{layer}.post_attention_layernorm", hidden, bias=False)
    norm(f"{lm}.norm", hidden, bias=False)
    if not text["tie_word_embeddings"]:
        p["language_model.lm_head.weight"] = (text["vocab_size"], hidden)
    return p


#: ``hf_to_vllm_mapper.orig_to_new_prefix`` of vLLM 0.24.0's Qwen3-Omni thinker, in order (Qwen2.5-Omni's too).
QWEN3_VLLM_PREFIX_MAP = (
    ("thinker.lm_head.", "language_model.lm_head."),
    ("thinker.model.", "language_model.model."),
    ("thinker.", ""),
)
_AUDIO_STACKED = (("self_attn.q_proj.", "q"), ("self_attn.k_proj.", "k"), ("self_attn.v_proj.", "v"))
_VISION_STACKED = (("attn.q.", "q"), ("attn.k.", "k"), ("attn.v.", "v"))
_TEXT_STACKED = (("q_proj", "qkv_proj", "q"), ("k_proj", "qkv_proj", "k"), ("v_proj", "qkv_proj", "v"),
                 ("gate_proj", "gate_up_proj", 0), ("up_proj", "gate_up_proj", 1))  # fmt: skip


def vllm_qwen3_omni_load_target(sent_name: str, num_experts: int) -> tuple[str, object, int | None] | None:
    """Where vLLM 0.24.0's ``load_weights`` puts one sent tensor: ``(parameter, shard, expert)``, or None when
    the loader drops it without an error.

    ``AutoWeightsLoader`` with ``hf_to_vllm_mapper`` (each prefix rule in order, first occurrence), then the
    child's loader: ``Qwen3OmniMoeAudioEncoder.load_weights`` (q/k/v_proj -> ``qkv``; an unknown name is
    skipped), ``Qwen3Omni_VisionTransformer.load_weights`` (``attn.q/k/v.`` -> ``attn.qkv.``; unknown names
    raise ``KeyError``, returned here as the name itself), ``Qwen3MoeForCausalLM`` -> ``lm_head`` directly and
    ``Qwen3MoeModel.load_weights``: q/k/v_proj -> ``qkv_proj`` and gate/up_proj -> ``gate_up_proj`` except
    under ``mlp.experts``; then the expert mapping (``RoutedExperts.make_expert_params_mapping``:
    ``experts.{e}.gate_proj.`` -> ``experts.routed_experts.w13_`` shard ``w1``, ``up_proj`` -> ``w13_`` ``w3``,
    ``down_proj`` -> ``w2_`` ``w2``); else the name itself, skipped when it is not a parameter.
    """
    name = sent_name
    for old, new in QWEN3_VLLM_PREFIX_MAP:
        if name.startswith(old):
            name = name.replace(old, new, 1)
    if name.startswith(("talker.", "code2wav.")):
        return None
    head, _, rest = name.partition(".")
    if head == "audio_tower":
        for part, shard in _AUDIO_STACKED:
            if part in rest:
                return f"audio_tower.{rest.replace(part, 'self_attn.qkv.')}", shard, None
        return name, None, None
    if head == "visual":
        for part, shard in _VISION_STACKED:
            if part in rest:
                return f"visual.{rest.replace(part, 'attn.qkv.')}", shard, None
        return name, None, None
    if head != "language_model":
        raise KeyError(f"There is no module or parameter named {head!r}")  # AutoWeightsLoader._load_module
    child, _, rest = rest.partition(".")
    if child == "lm_head":
        return name, None, None
    lm = "language_model.model."
    for part, stacked, shard in _TEXT_STACKED:
        if part not in rest:
            continue
        if "mlp.experts" in rest:
            continue
        return lm + rest.replace(part, stacked), shard, None
    for expert in range(num_experts):
        for ckpt, param, shard in (("gate_proj", "w13_", "w1"), ("down_proj", "w2_", "w2"), ("up_proj", "w13_", "w3")):
            part = f"experts.{expert}.{ckpt}."
            if part in rest:
                return lm + rest.replace(part, f"experts.routed_experts.{param}"), shard, expert
    return lm + rest, None, None
