#!/usr/bin/env bash
# Reproduces the bundled demo model (assets/models/) from the bundled sample data, on a CPU:
# train -> export int8 (calibrated on the 75 training images) -> evaluate Keras, fp32 and int8 on the
# 26 validation images. About 45 minutes on 2 cores. MODEL_CARD.md quotes the printed numbers.
#   ./scripts/train_demo_model.sh [RUN_DIR]
source "$(dirname "$0")/_env.sh"
ensure_venv "train-cpu,edge,dev"
cd "$REPO_ROOT"
RUN="${1:-runs/demo_model}"
SD="$VENV/bin/squeezedet"

# Two cosine cycles of 100 epochs (1,000 steps each): the second is a warm restart from the first
# (--resume with more epochs stretches the schedule, so the learning rate rises again to ~0.011).
"$SD" train --config configs/demo_model.yaml --output "$RUN"
"$SD" train --config configs/demo_model.yaml --output "$RUN" --resume --epochs 200
# last, not best: "best" is chosen on the val split, which would flatter the numbers below.
W="$RUN/last.weights.h5"
"$SD" export --weights "$W" --config configs/demo_model.yaml --quantize int8 \
    --calib-data assets/kitti_sample --calib-split train.txt --calib-images 75 \
    --output assets/models/squeezedet_kitti_int8.tflite
"$SD" val --weights "$W" --config configs/demo_model.yaml --data assets/kitti_sample --split val.txt \
    --output "$RUN/val_keras"
"$SD" val --model assets/models/squeezedet_kitti_int8.tflite --config configs/demo_model.yaml \
    --data assets/kitti_sample --split val.txt --output "$RUN/val_int8"
log "model: assets/models/squeezedet_kitti_int8.tflite; metrics: $RUN/val_keras, $RUN/val_int8"
