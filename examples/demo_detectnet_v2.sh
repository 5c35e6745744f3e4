#!/usr/bin/env bash
# DetectNet_v2 end to end on the shipped raccoon KITTI labels, on CPU (measured on 2-core machines:
# 29 min under a load of 6-7 on an AVX2 one; 206 s wall, 205 CPU-s, on an AVX-512 VNNI one under a
# load of 2-3, training 88 s and the retrain 53 s of it):
#   dataset_convert -> train (resnet_10, 128x96, with an L1 regularizer that spreads the filter
#   norms so pruning has something to remove) -> evaluate -> prune (-pth 0.1) -> retrain (no
#   regularizer, as the seed advises) -> evaluate ->
#   export FP32 and INT8 engines (INT8 calibrated on a calibration_tensorfile) -> evaluate each engine
#   (through tao-tf on the same validation fold, and with `tao deploy` on the raccoon val folder,
#   no TensorFlow), then Keras / FP32 / INT8 latency side by side.
# Usage: bash examples/demo_detectnet_v2.sh [RESULTS_DIR]   (default results/demo_detectnet_v2)
#   DEMO_VENV=/path/to/venv reuses an environment that has tao-core, tao-deploy and tao-tf;
#   DEMO_EPOCHS (default 30), DEMO_RETRAIN_EPOCHS (20), DEMO_WIDTH x DEMO_HEIGHT (128 x 96),
#   DEMO_LAYERS (resnet depth, 10), DEMO_PTH (pruning threshold, 0.1: the issue's and TAO's default) change the recipe.
# The recipe (measured in December 2026 on the shared 2-core machine): learning rate up to 2e-3
# (soft start / annealing; the retrain 5e-4: with 2e-3 it lost 3.9 AP points, with 5e-4 none),
# L1 3e-5 (3e-9, TAO's default for pretrained models, leaves from-scratch filters of near-equal
# norm: -pth 0.3..0.7 then removes nothing), DBSCAN eps 0.5 (raccoons are mostly one large
# object per image: eps 0.15 split each into many boxes, AP 25 % instead of 65 %).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/demo_detectnet_v2}
VENV=${DEMO_VENV:-.venv-demo-tf}
EPOCHS=${DEMO_EPOCHS:-30}
RETRAIN_EPOCHS=${DEMO_RETRAIN_EPOCHS:-20}
WIDTH=${DEMO_WIDTH:-128}
HEIGHT=${DEMO_HEIGHT:-96}
LAYERS=${DEMO_LAYERS:-10}
PTH=${DEMO_PTH:-0.1}
KEY=tlt_encode
DATA=examples/data/raccoon
PACKAGES=(./packages/tao-core ./packages/tao-deploy ./packages/tao-tf)
START=$SECONDS
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2

if [ ! -x "$VENV/bin/tao" ] || [ ! -x "$VENV/bin/detectnet_v2" ]; then
  echo "== installing tao-core, tao-deploy, tao-tf (TensorFlow 2.21 + tf_keras) into $VENV"
  python3 -m venv "$VENV"
  if "$VENV/bin/pip" install -q uv==0.13.9 2>/dev/null; then
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "${PACKAGES[@]}"
  else
    "$VENV/bin/pip" install -q "${PACKAGES[@]}"
  fi
  echo "   installed in $((SECONDS - START)) s"
fi
TAO="$VENV/bin/tao"
mkdir -p "$OUT/specs"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$DATA/train" && pwd)
VAL=$(cd "$DATA/val" && pwd)
SPECS="$OUT/specs"

cat > "$SPECS/convert.txt" <<EOF
kitti_config {
  root_directory_path: "$ROOT"
  image_dir_name: "images"
  label_dir_name: "labels"
  image_extension: ".jpg"
  partition_mode: "random"
  num_partitions: 2
  val_split: 20
  num_shards: 2
}
image_directory_path: "$ROOT"
EOF

experiment_spec() {  # $1 epochs, $2 extra model_config lines, $3 regularizer, $4 maximum learning rate
  cat <<EOF
random_seed: 42
dataset_config {
  data_sources { tfrecords_path: "$OUT/tfrecords/raccoon*" image_directory_path: "$ROOT" }
  image_extension: "jpg"
  target_class_mapping { key: "raccoon" value: "raccoon" }
  validation_fold: 0
}
augmentation_config {
  preprocessing { output_image_width: $WIDTH output_image_height: $HEIGHT output_image_channel: 3
                  enable_auto_resize: true min_bbox_width: 1.0 min_bbox_height: 1.0 }
  spatial_augmentation { hflip_probability: 0.5 zoom_min: 0.9 zoom_max: 1.1 translate_max_x: 8.0 translate_max_y: 8.0 }
  color_augmentation { hue_rotation_max: 25.0 saturation_shift_max: 0.2 contrast_scale_max: 0.1 contrast_center: 0.5 }
}
postprocessing_config {
  target_class_config { key: "raccoon" value { clustering_config { coverage_threshold: 0.005 dbscan_eps: 0.5
      dbscan_min_samples: 0.05 minimum_bounding_box_height: 8 } } }
}
model_config {
  arch: "resnet" num_layers: $LAYERS use_batch_norm: true all_projections: true
  objective_set { cov {} bbox { scale: 35.0 offset: 0.5 } }
  $2
}
evaluation_config {
  average_precision_mode: INTEGRATE validation_period_during_training: $1 first_validation_epoch: $1
  minimum_detection_ground_truth_overlap { key: "raccoon" value: 0.5 }
  evaluation_box_config { key: "raccoon" value { minimum_height: 8 maximum_height: 9999 minimum_width: 8
                                                 maximum_width: 9999 } }
}
cost_function_config {
  target_classes { name: "raccoon" class_weight: 1.0 coverage_foreground_weight: 0.05
    objectives { name: "cov" initial_weight: 1.0 weight_target: 1.0 }
    objectives { name: "bbox" initial_weight: 10.0 weight_target: 1.0 } }
  enable_autoweighting: true max_objective_weight: 0.9999 min_objective_weight: 0.0001
}
training_config {
  batch_size_per_gpu: 8 num_epochs: $1
  learning_rate { soft_start_annealing_schedule { min_learning_rate: 5e-6 max_learning_rate: $4
                                                  soft_start: 0.1 annealing: 0.7 } }
  regularizer { $3 }
  optimizer { adam { epsilon: 1e-08 beta1: 0.9 beta2: 0.999 } }
  checkpoint_interval: 5
}
bbox_rasterizer_config {
  target_class_config { key: "raccoon" value { cov_center_x: 0.5 cov_center_y: 0.5 cov_radius_x: 0.4
                                               cov_radius_y: 0.4 bbox_min_radius: 1.0 } }
  deadzone_radius: 0.67
}
EOF
}
experiment_spec "$EPOCHS" "" "type: L1 weight: 3e-5" 2e-3 > "$SPECS/train.txt"
experiment_spec "$RETRAIN_EPOCHS" "load_graph: true pretrained_model_file: \"$OUT/prune/pruned.tlt\"" \
  "type: NO_REG" 5e-4 > "$SPECS/retrain.txt"

if [ ! -e "$OUT/tfrecords/raccoon-fold-000-of-002-shard-00000-of-00002" ]; then
  echo "== dataset_convert (KITTI -> TFRecords, 20% of the 160 training images as validation fold 0)"
  "$TAO" model detectnet_v2 dataset_convert -d "$SPECS/convert.txt" -o "$OUT/tfrecords/raccoon" -r "$OUT/convert"
fi
echo "== train resnet_$LAYERS at ${WIDTH}x${HEIGHT}, $EPOCHS epochs (resumes from the last checkpoint)"
T0=$SECONDS
"$TAO" model detectnet_v2 train -e "$SPECS/train.txt" -r "$OUT/train" -k "$KEY"
echo "   train: $((SECONDS - T0)) s"
echo "== evaluate (Keras)"
"$TAO" model detectnet_v2 evaluate -e "$SPECS/train.txt" -m "$OUT/train/weights/model.tlt" -k "$KEY" -r "$OUT/train"
echo "== prune (-pth $PTH)"
rm -f "$OUT/prune/pruned.tlt"
"$TAO" model detectnet_v2 prune -m "$OUT/train/weights/model.tlt" -o "$OUT/prune/pruned.tlt" -k "$KEY" \
  -pth "$PTH" -pg 8 -nf 16 -r "$OUT/prune"
echo "== retrain the pruned model, $RETRAIN_EPOCHS epochs"
rm -rf "$OUT/retrain"  # the retrain starts from this run's pruned model
T0=$SECONDS
"$TAO" model detectnet_v2 train -e "$SPECS/retrain.txt" -r "$OUT/retrain" -k "$KEY"
echo "   retrain: $((SECONDS - T0)) s"
MODEL="$OUT/retrain/weights/model.tlt"
echo "== evaluate the retrained model (Keras)"
"$TAO" model detectnet_v2 evaluate -e "$SPECS/retrain.txt" -m "$MODEL" -k "$KEY" -r "$OUT/retrain"
echo "== calibration_tensorfile (10 batches of 8 training images, no augmentation)"
rm -rf "$OUT/export"
mkdir -p "$OUT/export"
"$TAO" model detectnet_v2 calibration_tensorfile -e "$SPECS/retrain.txt" -o "$OUT/export/cal.tensorfile" -m 10 \
  -r "$OUT/export"
echo "== export: FP32 engine (+ DeepStream config)"
"$TAO" model detectnet_v2 export -m "$MODEL" -k "$KEY" -e "$SPECS/retrain.txt" -o "$OUT/export/fp32/model.onnx" \
  --engine_file "$OUT/export/fp32/model.engine" --max_batch_size 8 --gen_ds_config -r "$OUT/export/fp32"
echo "== export: INT8 engine, calibrated on the tensorfile (cache cal.bin)"
"$TAO" model detectnet_v2 export -m "$MODEL" -k "$KEY" -e "$SPECS/retrain.txt" -o "$OUT/export/int8/model.etlt" \
  --data_type int8 --cal_data_file "$OUT/export/cal.tensorfile" --batches 10 --batch_size 8 \
  --cal_cache_file "$OUT/export/int8/cal.bin" --engine_file "$OUT/export/int8/model.engine" --max_batch_size 8 \
  -r "$OUT/export/int8"
for p in fp32 int8; do
  echo "== evaluate the ${p^^} engine on the validation fold (tao-tf, -f tensorrt)"
  "$TAO" model detectnet_v2 evaluate -e "$SPECS/retrain.txt" -m "$OUT/export/$p/model.engine" -f tensorrt \
    -r "$OUT/eval_$p"
  echo "== evaluate the ${p^^} engine on the raccoon val folder (tao deploy: no TensorFlow)"
  "$TAO" deploy detectnet_v2 evaluate -e "$SPECS/retrain.txt" -m "$OUT/export/$p/model.engine" \
    -i "$VAL/images" -l "$VAL/labels" -r "$OUT/deploy_eval_$p"
done

echo "== latency (batch 1 and 8, alternating, median of 5; CPU)"
"$VENV/bin/python" - "$OUT" "$KEY" "$HEIGHT" "$WIDTH" > "$OUT/latency.json" <<'PY'
import json, statistics, sys, time
import numpy as np
import tao_tf  # noqa: F401  (tf_keras before TensorFlow)
from tao_deploy import load_engine
from tao_tf.detectnet_v2.model.io import load_model
out, key, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, _, _ = load_model(f"{out}/retrain/weights/model.tlt", key)
engines = {p: load_engine(f"{out}/export/{p}/model.engine") for p in ("fp32", "int8")}
runners = {"keras": lambda x: model(x, training=False), **{p: (lambda x, e=e: e.run({"input_1": x})) for p, e in engines.items()}}
res = {}
for batch in (1, 8):
    x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
    for fn in runners.values():
        fn(x)  # warm-up
    times = {k: [] for k in runners}
    for _ in range(5):
        for k, fn in runners.items():
            t = time.perf_counter()
            for _ in range(3):
                fn(x)
            times[k].append((time.perf_counter() - t) / 3 * 1000)
    res[f"batch{batch}"] = {k: {"median_ms": round(statistics.median(v), 2), "min_ms": round(min(v), 2),
                                "max_ms": round(max(v), 2)} for k, v in times.items()}
print(json.dumps(res))
PY

"$VENV/bin/python" - "$OUT" "$((SECONDS - START))" <<'PY'
import json, sys
out, seconds = sys.argv[1], int(sys.argv[2])
def ap(path):
    return 100 * json.load(open(path))["mAP"]
def last_kpi(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return [l["kpi"] for l in lines if l.get("kpi")][-1]
prune = last_kpi(f"{out}/prune/prune/status.json")
lat = json.load(open(f"{out}/latency.json"))
rows = [
    ("Keras, trained", ap(f"{out}/train/evaluate/results.json"), "validation fold 0 (32 images)"),
    ("Keras, pruned + retrained", ap(f"{out}/retrain/evaluate/results.json"), "validation fold 0"),
    ("FP32 engine (tao-tf -f tensorrt)", ap(f"{out}/eval_fp32/evaluate/results.json"), "validation fold 0"),
    ("INT8 engine (tao-tf -f tensorrt)", ap(f"{out}/eval_int8/evaluate/results.json"), "validation fold 0"),
    ("FP32 engine (tao deploy)", ap(f"{out}/deploy_eval_fp32/results.json"), "raccoon val folder (40 images)"),
    ("INT8 engine (tao deploy)", ap(f"{out}/deploy_eval_int8/results.json"), "raccoon val folder (40 images)"),
]
print("\n=== DetectNet_v2 demo (raccoon) ===")
print(f"{'model':36s} {'AP (%)':>8s}  data")
for name, value, data in rows:
    print(f"{name:36s} {value:8.2f}  {data}")
print(f"\nparameters: {int(prune['parameters_before']):,} before pruning, {int(prune['parameters_after']):,} after")
print(f"\nlatency, ms (median [min-max] of 5, CPU): {'':6s}" + "".join(f"{k:>22s}" for k in ("keras", "fp32", "int8")))
for batch, d in lat.items():
    cells = "".join(f"{d[k]['median_ms']:>9.1f} [{d[k]['min_ms']:.1f}-{d[k]['max_ms']:.1f}]".rjust(22) for k in ("keras", "fp32", "int8"))
    print(f"{batch:>48s}{cells}")
drops = {"fold 0": rows[3][1] - rows[2][1], "val folder": rows[5][1] - rows[4][1]}
print("\nINT8 - FP32 AP: " + ", ".join(f"{d:+.2f} points ({k})" for k, d in drops.items()))
missed = {k: d for k, d in drops.items() if d < -1.0}
if missed:  # the promise is INT8 within 1.0 AP point of FP32; say so when this run misses it
    print("WARNING: the INT8 engine is more than 1.0 AP point below FP32 on " + ", ".join(missed) + ". On 32 / 40 "
          "images one box crossing the IoU 0.5 line moves AP by 1.4-2.7 points: see the engine's agreement with "
          "FP32 in the INT8 export log (mean IoU of the boxes), and benchmarks/detectnet.py --demo-dir for both "
          "sets together. A QAT retrain (training_config.enable_qat) gives the engine the model's own scales.")
print(f"outputs in {out}; {seconds} s in all")
PY
