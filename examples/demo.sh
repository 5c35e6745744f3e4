#!/usr/bin/env bash
# End to end on the shipped raccoon set, on CPU, in a few minutes:
#   train (small DINO) -> evaluate -> inference -> export (ONNX) -> FP32 and INT8 engines
#   (ONNX Runtime here; TensorRT where it and an NVIDIA GPU exist) -> evaluate each engine.
# Usage: bash examples/demo.sh [dino|detectnet_v2|oneformer] [RESULTS_DIR]   (default dino, results/demo; from anywhere)
#   detectnet_v2: the TensorFlow path instead (examples/demo_detectnet_v2.sh: convert, train, prune,
#   retrain, INT8 export, engines; its own venv and results/demo_detectnet_v2);
#   oneformer: segmentation instead (examples/demo_oneformer.sh: train on the COCO panoptic sample,
#   PQ, inference in three modes, FP32 / FP16 engines; the same venv, results/demo_oneformer);
#   DEMO_VENV=/path/to/venv reuses a virtual environment that already has the packages;
#   DEMO_SPEC=my.yaml runs the same steps on another spec of the same shape.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  detectnet_v2) shift; exec bash examples/demo_detectnet_v2.sh "$@" ;;
  oneformer) shift; exec bash examples/demo_oneformer.sh "$@" ;;
  dino) shift ;;
esac
OUT=${1:-results/demo}
VENV=${DEMO_VENV:-.venv-demo}
SPEC=${DEMO_SPEC:-examples/specs/dino_raccoon.yaml}
PACKAGES=(./packages/tao-core ./packages/tao-pytorch ./packages/tao-deploy ./packages/tao-convert)
START=$SECONDS

if [ ! -x "$VENV/bin/tao" ] || [ ! -x "$VENV/bin/tao-converter" ]; then
  echo "== installing tao-core, tao-pytorch, tao-deploy, tao-convert into $VENV"
  python3 -m venv "$VENV"
  # uv resolves and installs the same pins several times faster than pip. It reads no pip
  # config, so it is shown the folder holding the local CPU torch wheel when the machine has one.
  FIND_LINKS=()
  if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi
  if "$VENV/bin/pip" install -q uv==0.13.9 2>/dev/null; then
    "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" "${FIND_LINKS[@]}" -c constraints/torch.txt "${PACKAGES[@]}"
  else  # no uv to be had: pip, with the machine's pip config
    "$VENV/bin/pip" install -q -c constraints/torch.txt "${PACKAGES[@]}"
  fi
  echo "   installed in $((SECONDS - START)) s"
fi
if [ -n "${DEMO_INSTALL_ONLY:-}" ]; then exit 0; fi  # demo_oneformer.sh shares this install
TAO="$VENV/bin/tao"
CKPT="$OUT/train/dino_model_latest.pth"
ONNX="$OUT/export/dino.onnx"

echo "== train (resumes from $CKPT if a previous run left one)"
"$TAO" model dino train -e "$SPEC" -r "$OUT"
echo "== evaluate (PyTorch, at the export size: the input the engines get)"
"$TAO" model dino evaluate -e "$SPEC" -r "$OUT" evaluate.checkpoint="$CKPT"
echo "== inference (PyTorch)"
"$TAO" model dino inference -e "$SPEC" -r "$OUT" inference.checkpoint="$CKPT"
echo "== export (ONNX)"
rm -f "$ONNX"   # export refuses to overwrite; the demo rebuilds it from the latest checkpoint
"$TAO" model dino export -e "$SPEC" -r "$OUT" export.checkpoint="$CKPT" export.onnx_file="$ONNX"
for precision in FP32 INT8; do
  p=$(echo "$precision" | tr A-Z a-z)
  echo "== gen_trt_engine $precision (INT8 calibrates on the raccoon training images)"
  # gen_trt_engine refuses to overwrite an engine; the demo rebuilds both (and recalibrates) from this ONNX
  rm -f "$OUT/engine_$p/dino_$p.engine" "$OUT/engine_$p/cal.bin"
  "$TAO" deploy dino gen_trt_engine -e "$SPEC" -r "$OUT/engine_$p" \
    gen_trt_engine.onnx_file="$ONNX" gen_trt_engine.trt_engine="$OUT/engine_$p/dino_$p.engine" \
    gen_trt_engine.tensorrt.data_type="$precision" \
    gen_trt_engine.tensorrt.calibration.cal_cache_file="$OUT/engine_$p/cal.bin"
  echo "== evaluate the $precision engine"
  "$TAO" deploy dino evaluate -e "$SPEC" -r "$OUT/engine_$p" evaluate.trt_engine="$OUT/engine_$p/dino_$p.engine"
done

"$VENV/bin/python" - "$OUT" "$SPEC" "$((SECONDS - START))" <<'PY'
import json, sys
import yaml
out, spec_file, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = yaml.safe_load(open(spec_file))
aug, ev = spec["dataset"]["augmentation"], spec["evaluate"]
fixed = f"{ev['input_height']}x{ev['input_width']} exactly"
kept = f"shorter side {aug['test_random_resize']}, aspect kept"
# The last validation of training (its status.json line with val_mAP): same checkpoint, other input.
val = [json.loads(line) for line in open(f"{out}/train/status.json")]
val = [s for s in val if "val_mAP" in (s.get("kpi") or {})][-1]
rows = [(f"PyTorch, validation in training (epoch {val['epoch']})", kept, val["kpi"]["val_mAP"], val["kpi"]["val_mAP50"])]
for name, path in (("PyTorch evaluate", f"{out}/evaluate/results.json"),
                   ("engine FP32", f"{out}/engine_fp32/evaluate/results.json"),
                   ("engine INT8", f"{out}/engine_int8/evaluate/results.json")):
    r = json.load(open(path))
    rows.append((name, fixed, r["mAP"], r["mAP50"]))
print("\n== raccoon val (40 images), the last checkpoint")
print(f"{'model':<44} {'input':<30} {'mAP':>7} {'mAP50':>7}")
for name, size, m, m50 in rows:
    print(f"{name:<44} {size:<30} {m:7.4f} {m50:7.4f}")
print(f"""
The last three rows see the exported model's fixed {fixed.split()[0]} input (images squashed to it)
and compare with each other; validation during training resizes keeping the aspect ratio, a
different input, hence a different mAP.

where everything went ({out}/):
  train/            checkpoints (model_epoch_*.pth, dino_model_latest.pth), status.json, TensorBoard logs
  evaluate/         results.json, detections.json
  inference/        images_annotated/, labels/ (KITTI with scores)
  export/           dino.onnx, labels.txt, nvinfer_config.txt (DeepStream, builds from the ONNX)
  engine_fp32/      dino_fp32.engine, nvinfer_config.txt (DeepStream, this engine) and its evaluate/ results
  engine_int8/      dino_int8.engine, cal.bin (TensorRT-format calibration cache), nvinfer_config.txt, evaluate/
the same engines from the command line: {sys.prefix}/bin/tao-converter --help
demo finished in {seconds} s""")
PY
