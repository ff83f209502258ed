#!/usr/bin/env bash
# RL-CoMM stage 3 (Ans-CO, recipes/avconfuse_ansco.yaml) on top of stage 2: the Step-RR policy
# gradient plus the answer-confidence loss, starting from the stage-2 checkpoint.
#   STAGE2_CKPT   a stage-2 step folder (OUT_DIR/global_step_N of stage2_step_rr.sh)
#   VIDEO_DIR, EMBEDDING_MODEL, NGPUS, NNODES, GRAD_ACCUM as in stage 2; STAGE2_DATA its data folder
#   (train.ref.parquet already holds the reference a-thinks); EPOCHS (1)
set -euo pipefail

: "${STAGE2_CKPT:?set STAGE2_CKPT to a stage-2 global_step_N folder}" "${VIDEO_DIR:?}"
EMBEDDING_MODEL=${EMBEDDING_MODEL:-Qwen/Qwen3-Embedding-0.6B}
OUT_DIR=${OUT_DIR:-checkpoints/rl_comm_ans_co}
STAGE2_DATA=${STAGE2_DATA:-checkpoints/rl_comm_step_rr/data}
MODEL_PATH=${MODEL_PATH:-$OUT_DIR/stage2_hf}
source "$(dirname "$0")/_rl_common.sh"

# The stage-2 actor shards as one HF thinker directory.
if [ ! -f "$MODEL_PATH/config.json" ]; then
    python -m verl.model_merger merge --backend fsdp --local_dir "$STAGE2_CKPT/actor" --target_dir "$MODEL_PATH"
fi

python -m verl.trainer.main_ppo \
    +recipe=avconfuse_ansco \
    data.train_files="$STAGE2_DATA/train.ref.parquet" \
    data.val_files="$STAGE2_DATA/val.parquet" \
    "${RL_OVERRIDES[@]}" \
    `# references come from extra_info (precomputed in stage 2): no reference worker needs a GPU` \
    avconfuse.reference.placement=none \
    avconfuse.similarity.model="$EMBEDDING_MODEL" \
    trainer.total_epochs=${EPOCHS:-1} \
    "$@"
