#!/usr/bin/env bash
# RL-CoMM stage 2 (Step-RR GRPO) for Qwen2.5-Omni-3B on one node (recipes/avconfuse.yaml).
#   MODEL_PATH       thinker directory (after warm-up SFT: OUT_DIR/global_step_N/huggingface)
#   DATA_DIR         Music-AVQA json folder (avqa-train.json, avqa-val.json); VIDEO_DIR its clips
#   REFERENCE_MODEL  the reference audio LM (paper: Qwen2-Audio-7B-Instruct)
#   EMBEDDING_MODEL  the similarity model (paper: Qwen3-Embedding-0.6B)
#   NGPUS, NNODES, GRAD_ACCUM  see examples/_rl_common.sh (the hyperparameters shared by every RL stage)
#   REFERENCE        where the reference audio LM runs (docs/deployment.md):
#                    precomputed (default): generated once before training on all GPUs (resumable cache),
#                      then no reference worker; colocated: a worker sharing the first actor GPU
#                      (REFERENCE_MEMORY of its memory, default 0.3); separate: REFERENCE_GPUS (1) GPUs of
#                      each node's NGPUS form the reference's own pool, the actor gets the rest.
# The run's preflight prints where every role goes and stops at once if the node cannot hold them.
# Extra arguments are Hydra overrides.
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}" "${REFERENCE_MODEL:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_step_rr}
DATA=${OUT_DIR}/data
REFERENCE=${REFERENCE:-precomputed}
REFERENCE_GPUS=${REFERENCE_GPUS:-1}
case "$REFERENCE" in
    precomputed) ;;
    colocated) ;;
    separate) ACTOR_GPUS=$((${NGPUS:-8} - REFERENCE_GPUS)) ;;
    *) echo "stage2_step_rr.sh: REFERENCE=$REFERENCE: expected precomputed, colocated or separate" >&2; exit 2 ;;
esac
source "$(dirname "$0")/_rl_common.sh"

prepare_music_avqa "$DATA"
if [ "$REFERENCE" = precomputed ]; then
    # extra_info.reference_a_think for every question (temperature 0.5, top-p 0.95, sampled once).
    avconfuse reference precompute --data "$DATA/train.parquet" --out "$DATA/train.ref.parquet" \
        --model "$REFERENCE_MODEL" --backend vllm --media-root "$VIDEO_DIR" --batch-size 32
    TRAIN_FILE=$DATA/train.ref.parquet
    # references come from extra_info (precomputed above): no reference worker needs a GPU
    REFERENCE_OVERRIDES=(avconfuse.reference.placement=none)
else
    TRAIN_FILE=$DATA/train.parquet
    REFERENCE_OVERRIDES=(
        avconfuse.reference.placement="$REFERENCE"
        avconfuse.reference.model_path="$REFERENCE_MODEL"
        avconfuse.reference.num_gpus=$((REFERENCE_GPUS * NNODES))
        avconfuse.reference.nnodes="$NNODES"
        avconfuse.reference.gpu_memory_fraction="${REFERENCE_MEMORY:-0.3}"
        `# vLLM on a GPU of its own; HF generate when it shares an actor GPU (capped by the memory fraction)`
        avconfuse.reference.backend="$([ "$REFERENCE" = separate ] && echo vllm || echo hf)"
    )
fi

python -m verl.trainer.main_ppo \
    +recipe=avconfuse \
    data.train_files="$TRAIN_FILE" \
    data.val_files="$DATA/val.parquet" \
    "${RL_OVERRIDES[@]}" \
    "${REFERENCE_OVERRIDES[@]}" \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    `# release: 3 epochs` \
    trainer.total_epochs=3 \
    "$@"
