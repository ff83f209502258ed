#!/usr/bin/env bash
# RL-CoMM stage 2 (Step-RR GRPO) for Qwen2.5-Omni-3B on one node (recipes/avconfuse.yaml).
#   MODEL_PATH       thinker directory (after warm-up SFT: OUT_DIR/global_step_N/huggingface)
#   DATA_DIR         Music-AVQA json folder (avqa-train.json, avqa-val.json); VIDEO_DIR its clips
#   REFERENCE_MODEL  the reference audio LM (paper: Qwen2-Audio-7B-Instruct)
#   EMBEDDING_MODEL  the similarity model (paper: Qwen3-Embedding-0.6B)
#   NGPUS, NNODES, GRAD_ACCUM  see examples/_rl_common.sh (the hyperparameters shared by every RL stage)
# The references are generated once before training (resumable cache), so no reference worker
# competes with the rollout for GPU memory. Extra arguments are Hydra overrides.
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}" "${REFERENCE_MODEL:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_step_rr}
DATA=${OUT_DIR}/data
source "$(dirname "$0")/_rl_common.sh"

prepare_music_avqa "$DATA"
# extra_info.reference_a_think for every question (temperature 0.5, top-p 0.95, sampled once).
avconfuse reference precompute --data "$DATA/train.parquet" --out "$DATA/train.ref.parquet" \
    --model "$REFERENCE_MODEL" --backend vllm --media-root "$VIDEO_DIR" --batch-size 32

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    data.train_files="$DATA/train.ref.parquet" \
    data.val_files="$DATA/val.parquet" \
    "${RL_OVERRIDES[@]}" \
    `# references come from extra_info (precomputed above): no reference worker needs a GPU` \
    avconfuse.reference.enable=false \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    `# release: 3 epochs` \
    trainer.total_epochs=3 \
    "$@"
