#!/usr/bin/env bash
# Makes the bundled model (assets/models/squeezedet_kitti_int8.tflite) from the SqueezeDet authors' published
# KITTI weights, and measures both published variants (MODEL_CARD.md quotes the printed table):
#   1. import  the float32 small model (lossless), the 8-bit small graph and the 8-bit full graph
#   2. export  fp32 and int8 TFLite of each (int8 calibrated on the 75 bundled training images)
#   3. val     Keras fp32, TFLite fp32, TFLite int8 on the sample's val and train splits
# About 15 minutes on 2 cores.
#   ./scripts/import_reference_model.sh [REFERENCE_WEIGHTS_DIR] [RUN_DIR]
source "$(dirname "$0")/_env.sh"
ensure_venv "train-cpu,edge,dev"
cd "$REPO_ROOT"
REF="${1:-../shared/data/reference_weights}"
RUN="${2:-runs/reference}"
SD="$VENV/bin/squeezedet"
DATA=assets/kitti_sample
BASE=configs/kitti_reference_small.yaml
[ -d "$REF" ] || { log "$REF: reference weights not found (pass the folder as the first argument)"; exit 2; }

"$SD" import "$REF/forge_small_float32" --like "$REF/quant_small_sqdt.pb" --config "$BASE" --output "$RUN/small_float32"
"$SD" import "$REF/quant_small_sqdt.pb" --config "$BASE" --output "$RUN/small_8bit"
"$SD" import "$REF/quantized_opt_sqdt.pb" --config "$BASE" --output "$RUN/full_8bit"

for variant in small_float32 small_8bit full_8bit; do
  W="$RUN/$variant/model.weights.h5"
  for q in fp32 int8; do
    "$SD" export --weights "$W" --quantize "$q" --calib-data "$DATA" --calib-split train.txt --calib-images 75 \
      --check-data "$DATA" --check-split val.txt --output "$RUN/$variant/model_$q.tflite"
  done
  for split in val train; do
    "$SD" val --weights "$W" --data "$DATA" --split "$split.txt" --output "$RUN/$variant/val_keras_$split"
    for q in fp32 int8; do
      "$SD" val --model "$RUN/$variant/model_$q.tflite" --config "$RUN/$variant/config.yaml" --data "$DATA" \
        --split "$split.txt" --output "$RUN/$variant/val_${q}_$split"
    done
  done
done

# The shipped model: the lossless float import, int8 (why: MODEL_CARD.md). Same calibration as above.
rm -f assets/models/export_report.json
"$SD" export --weights "$RUN/small_float32/model.weights.h5" --quantize int8 --calib-data "$DATA" \
  --calib-split train.txt --calib-images 75 --check-data "$DATA" --check-split val.txt \
  --output assets/models/squeezedet_kitti_int8.tflite
"$VENV/bin/python" scripts/model_card_table.py "$RUN" --write MODEL_CARD.md
log "bundled assets/models/squeezedet_kitti_int8.tflite; metrics under $RUN"
