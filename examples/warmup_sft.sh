#!/usr/bin/env bash
# RL-CoMM stage 1: warm-up SFT of the Qwen2.5-Omni-3B thinker on the release's warm-up answers
# (the paper's "+SFT" row), video + soundtrack as input, on one node with NGPUS GPUs.
#   MODEL_PATH  thinker-only checkpoint (avconfuse extract-thinker Qwen2.5-Omni-3B OUT)
#   DATA_DIR    holds warmup_sft_messages.json; VIDEO_DIR the Music-AVQA clips it names
#   OUT_DIR     checkpoints; the last one's huggingface/ folder is the stage-2 MODEL_PATH
# Hyperparameters are ours (the paper gives none for SFT): ~100 examples, 3 epochs, lr 1e-5, bf16.
# Extra arguments are Hydra overrides, e.g. bash examples/warmup_sft.sh trainer.total_epochs=5
set -euo pipefail

: "${MODEL_PATH:?set MODEL_PATH to the Qwen2.5-Omni-3B thinker directory}"
: "${DATA_DIR:?set DATA_DIR to the folder holding warmup_sft_messages.json}"
: "${VIDEO_DIR:?set VIDEO_DIR to the Music-AVQA video folder}"
NGPUS=${NGPUS:-8}
OUT_DIR=${OUT_DIR:-checkpoints/warmup_sft}
BATCH=${BATCH:-16}              # conversations per optimizer step (78 pairs -> 4 steps per epoch)

# Pairs the flat message list, checks every clip, writes train.parquet + train.report.json.
python data_preprocess/warmup_sft.py \
    --input "$DATA_DIR/warmup_sft_messages.json" --video-dir "$VIDEO_DIR" \
    --out "$DATA_DIR/warmup/train.parquet" --relative-paths

torchrun --standalone --nnodes=1 --nproc_per_node="$NGPUS" -m verl.trainer.sft_trainer \
    +recipe=sft_warmup \
    model.path="$MODEL_PATH" \
    data.train_files="$DATA_DIR/warmup/train.parquet" \
    data.media.root="$VIDEO_DIR" \
    data.train_batch_size="$BATCH" \
    data.micro_batch_size_per_gpu=1 \
    engine.dtype=bfloat16 \
    optim.lr=1e-5 \
    trainer.total_epochs=3 \
    trainer.n_gpus_per_node="$NGPUS" \
    trainer.default_local_dir="$OUT_DIR" \
    trainer.logger='[console]' \
    trainer.save_freq=after_each_epoch \
    "$@"
