"""The tiny models' tokenizer: byte-level BPE trained here on the synthetic corpus, Qwen2-style.

It is a ``Qwen2Tokenizer`` (Qwen's pre-tokenizer regex, byte-level BPE, NFC) built from the trained
``vocab``/``merges``, so ``AutoTokenizer`` and the Qwen processors load it back. It carries the Qwen
special tokens with the Qwen2.5-Omni names (``<|AUDIO|>``, ``<|vision_bos|>``, ...), appended after the
BPE vocabulary in Qwen's order, and registers them as ``audio_token=``, ``image_token=``, ... so that
``Qwen2_5OmniProcessor`` / ``Qwen2AudioProcessor`` find the attributes they read. The Qwen2-VL names
(``<|vision_start|>``, ``<|image_pad|>``, ...) are *not* included: neither processor needs them.

RL-CoMM's tags ``<a-think> </a-think> <v-think> </v-think> <answer> </answer>`` are ordinary text: BPE
splits and merges them like any other text (``<answer`` + ``>``, ``>`` + newline, ...), as with the real
Qwen tokenizer, and code that finds them must work on decoded text.

``vocab_size`` is an upper bound: training stops when every word of the corpus is a single token, which
for the tiny corpus is well below 2,000 (see :func:`build_tokenizer`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

#: name -> token, in Qwen's id order (they follow the BPE vocabulary).
SPECIAL_TOKENS: dict[str, str] = {
    "endoftext": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "audio": "<|AUDIO|>",
    "audio_bos": "<|audio_bos|>",
    "audio_eos": "<|audio_eos|>",
    "vision_bos": "<|vision_bos|>",
    "vision_eos": "<|vision_eos|>",
    "image": "<|IMAGE|>",
    "video": "<|VIDEO|>",
}
#: The tokenizer attributes the Qwen2.5-Omni / Qwen2-Audio processors read, and their tokens.
PROCESSOR_TOKEN_ATTRIBUTES: dict[str, str] = {
    "audio_token": SPECIAL_TOKENS["audio"],
    "audio_bos_token": SPECIAL_TOKENS["audio_bos"],
    "audio_eos_token": SPECIAL_TOKENS["audio_eos"],
    "image_token": SPECIAL_TOKENS["image"],
    "video_token": SPECIAL_TOKENS["video"],
    "vision_bos_token": SPECIAL_TOKENS["vision_bos"],
    "vision_eos_token": SPECIAL_TOKENS["vision_eos"],
}

#: Qwen-style ChatML. Content may be a string or a list of items; media items render the way the
#: Qwen2.5-Omni template does (``<|audio_bos|><|AUDIO|><|audio_eos|>``, ``<|vision_bos|><|VIDEO|>
#: <|vision_eos|>``, ``<|vision_bos|><|IMAGE|><|vision_eos|>``), which is also what Qwen2AudioProcessor
#: expects. No default system prompt: the tiny prompts stay short.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'audio' or 'audio' in item or 'audio_url' in item -%}"
    "{{- '<|audio_bos|><|AUDIO|><|audio_eos|>' -}}"
    "{%- elif item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{{- '<|vision_bos|><|IMAGE|><|vision_eos|>' -}}"
    "{%- elif item['type'] == 'video' or 'video' in item -%}"
    "{{- '<|vision_bos|><|VIDEO|><|vision_eos|>' -}}"
    "{%- elif 'text' in item -%}"
    "{{- item['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

#: Lines of the synthetic corpus the BPE is trained on (more only slows training: the vocabulary is
#: saturated long before).
CORPUS_CHATS = 600


@functools.lru_cache(maxsize=4)
def _train_bpe(vocab_size: int, seed: int) -> tuple[str, str]:
    """Train the byte-level BPE; returns (vocab JSON, merges JSON) so the cache holds immutable values."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from verl_avconfuse.tiny.corpus import corpus_lines

    n_special = len(SPECIAL_TOKENS)
    if vocab_size <= 256 + n_special:
        raise ValueError(f"vocab_size={vocab_size}: must exceed the 256 byte tokens plus {n_special} special tokens")
    bpe = Tokenizer(BPE())
    # Same normaliser and pre-tokeniser as Qwen2Tokenizer, so the merges are the ones it would apply.
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_special,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_lines(seed=seed, n_chats=CORPUS_CHATS), trainer)
    model = json.loads(bpe.to_str())["model"]
    return json.dumps(model["vocab"]), json.dumps(model["merges"])


def build_tokenizer(out_dir: str | Path | None = None, *, vocab_size: int = 2000, seed: int = 0, **init_kwargs: Any):
    """Train (once per process and arguments) and return the tiny ``Qwen2Tokenizer``.

    Args:
        out_dir: if given, the tokenizer is also saved there (atomically).
        vocab_size: upper bound on ``len(tokenizer)`` (BPE tokens + special tokens).
        seed: seed of the synthetic corpus.
        init_kwargs: extra ``tokenizer_config.json`` entries.

    Returns:
        A ``Qwen2Tokenizer``: eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos/unk, the ChatML template.
    """
    from transformers import Qwen2Tokenizer

    vocab_json, merges_json = _train_bpe(vocab_size, seed)
    vocab = json.loads(vocab_json)
    for token in SPECIAL_TOKENS.values():
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in json.loads(merges_json)],
        unk_token=None,
        bos_token=None,
        eos_token=SPECIAL_TOKENS["im_end"],
        pad_token=SPECIAL_TOKENS["endoftext"],
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"im_start_token": SPECIAL_TOKENS["im_start"]},
        **PROCESSOR_TOKEN_ATTRIBUTES,
        **init_kwargs,
    )
    if out_dir is not None:
        from verl_avconfuse.io import atomic_directory

        with atomic_directory(out_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    return tokenizer
