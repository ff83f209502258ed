#!/usr/bin/env bash
# The paper's "+GRPO" row: stage 2's setup with the reward reduced to format + accuracy
# (recipes/grpo_baseline.yaml: no reference audio LM, no ARR/AVC). Same data and hyperparameters as
# examples/stage2_step_rr.sh (examples/_rl_common.sh), so the two runs differ only in the reward.
#   MODEL_PATH, DATA_DIR, VIDEO_DIR, NGPUS, NNODES, OUT_DIR, GRAD_ACCUM as in stage2_step_rr.sh
set -euo pipefail

: "${MODEL_PATH:?}" "${DATA_DIR:?}" "${VIDEO_DIR:?}"
OUT_DIR=${OUT_DIR:-checkpoints/grpo_baseline}
DATA=${OUT_DIR}/data
source "$(dirname "$0")/_rl_common.sh"

prepare_music_avqa "$DATA"

python -m verl.trainer.main_ppo \
    +recipe=grpo_baseline \
    data.train_files="$DATA/train.parquet" \
    data.val_files="$DATA/val.parquet" \
    "${RL_OVERRIDES[@]}" \
    `# release: 3 epochs` \
    trainer.total_epochs=3 \
    "$@"
