#!/usr/bin/env bash
# The self-trained alternative to the bundled model (which is the SqueezeDet authors' KITTI model, see
# scripts/import_reference_model.sh): every step from the ImageNet backbone and the bundled sample, on a CPU:
# train -> export int8 (calibrated on the 75 training images) -> evaluate Keras, fp32 and int8 on the
# 26 validation images. About 45 minutes on 2 cores. It scored Car moderate AP_R40 10.5 (int8) on the sample val split; the authors' model 96.8.
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
    --output "$RUN/squeezedet_demo_int8.tflite"
"$SD" val --weights "$W" --config configs/demo_model.yaml --data assets/kitti_sample --split val.txt \
    --output "$RUN/val_keras"
"$SD" val --model "$RUN/squeezedet_demo_int8.tflite" --config configs/demo_model.yaml \
    --data assets/kitti_sample --split val.txt --output "$RUN/val_int8"
log "model: $RUN/squeezedet_demo_int8.tflite; metrics: $RUN/val_keras, $RUN/val_int8"
