#!/usr/bin/env bash
# Evaluate a thinker checkpoint on every benchmark of the paper's tables (docs/evaluation.md).
#   MODEL_PATH   thinker directory (or BACKEND=openai:http://HOST:PORT/v1#NAME for a served model)
#   PROMPT       paper (default: the benchmarks' questions verbatim, the base-model protocol) or rl-comm
#                (+ the training format instruction: use it for RL-CoMM / GRPO checkpoints)
#   MATCH        both (default: strict and the release's substring rule, side by side), strict or release
#   MUSIC_AVQA_JSON, MUSIC_AVQA_VIDEOS   avqa-test.json (data/json or data/json_update) and its clips
#   AVQA_JSON, AVQA_VIDEOS               val_qa.json and its clips
#   AVHBENCH_QA, AVHBENCH_VIDEOS         AVHBench's QA.json and its clips
#   MUTED_VIDEOS                         AV-ConfuseBench muted clips ({video_id}.mp4; the published questions)
#   MODIFIED_VIDEOS, JUDGE               modified clips (the published file names) and --judge (default offline)
#   OUT_DIR      results: TASK.results.json, TASK.md, TASK.png, TASK.predictions.jsonl (re-running resumes)
# Benchmarks whose variables are unset are skipped. Extra arguments go to every `avconfuse eval`.
set -euo pipefail

BACKEND=${BACKEND:-hf:${MODEL_PATH:?set MODEL_PATH or BACKEND}}
OUT_DIR=${OUT_DIR:-eval/$(basename "${MODEL_PATH:-served}")}
# Inputs as in training (recipes/avconfuse.yaml): fps 2, <= 32 frames of <= 100352 pixels.
MEDIA=(--fps 2 --max-frames 32 --max-pixels 100352 --dtype bfloat16 --attn-implementation flash_attention_2)
COMMON=(--backend "$BACKEND" --out "$OUT_DIR" --prompt "${PROMPT:-paper}" --match "${MATCH:-both}" "${MEDIA[@]}")

if [ -n "${MUSIC_AVQA_JSON:-}" ]; then
    avconfuse eval music-avqa --data "$MUSIC_AVQA_JSON" --video-dir "$MUSIC_AVQA_VIDEOS" "${COMMON[@]}" "$@"
fi
if [ -n "${AVQA_JSON:-}" ]; then
    avconfuse eval avqa --data "$AVQA_JSON" --video-dir "$AVQA_VIDEOS" "${COMMON[@]}" "$@"
fi
if [ -n "${AVHBENCH_QA:-}" ]; then
    avconfuse eval avhbench --data "$AVHBENCH_QA" --video-dir "$AVHBENCH_VIDEOS" "${COMMON[@]}" "$@"
fi
if [ -n "${MUTED_VIDEOS:-}" ]; then
    avconfuse eval avconfuse-muted --data published --video-dir "$MUTED_VIDEOS" "${COMMON[@]}" "$@"
fi
if [ -n "${MODIFIED_VIDEOS:-}" ]; then
    avconfuse eval avconfuse-modified --data published --video-dir "$MODIFIED_VIDEOS" \
        --judge "${JUDGE:-offline}" "${COMMON[@]}" "$@"
fi
