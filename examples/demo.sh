#!/usr/bin/env bash
# End to end on the shipped raccoon set, on CPU, in a few minutes:
#   train (small DINO) -> evaluate -> inference -> export (ONNX) -> FP32 and INT8 engines
#   (ONNX Runtime here; TensorRT where it and an NVIDIA GPU exist) -> evaluate each engine.
# Usage: bash examples/demo.sh [RESULTS_DIR]      (default results/demo; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/demo}
VENV=${DEMO_VENV:-.venv-demo}
SPEC=examples/specs/dino_raccoon.yaml

if [ ! -x "$VENV/bin/tao" ]; then
  echo "== installing tao-core, tao-pytorch, tao-deploy into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -c constraints/torch.txt ./packages/tao-core ./packages/tao-pytorch ./packages/tao-deploy
fi
TAO="$VENV/bin/tao"
CKPT="$OUT/train/dino_model_latest.pth"
ONNX="$OUT/export/dino.onnx"

echo "== train (resumes from $CKPT if a previous run left one)"
"$TAO" model dino train -e "$SPEC" -r "$OUT"
echo "== evaluate (PyTorch)"
"$TAO" model dino evaluate -e "$SPEC" -r "$OUT" evaluate.checkpoint="$CKPT"
echo "== inference (PyTorch)"
"$TAO" model dino inference -e "$SPEC" -r "$OUT" inference.checkpoint="$CKPT"
echo "== export (ONNX)"
rm -f "$ONNX"   # export refuses to overwrite; the demo rebuilds it from the latest checkpoint
"$TAO" model dino export -e "$SPEC" -r "$OUT" export.checkpoint="$CKPT" export.onnx_file="$ONNX"
for precision in FP32 INT8; do
  p=$(echo "$precision" | tr A-Z a-z)
  echo "== gen_trt_engine $precision (INT8 calibrates on the raccoon training images)"
  "$TAO" deploy dino gen_trt_engine -e "$SPEC" -r "$OUT/engine_$p" \
    gen_trt_engine.onnx_file="$ONNX" gen_trt_engine.trt_engine="$OUT/engine_$p/dino_$p.engine" \
    gen_trt_engine.tensorrt.data_type="$precision" \
    gen_trt_engine.tensorrt.calibration.cal_cache_file="$OUT/engine_$p/cal.bin"
  echo "== evaluate the $precision engine"
  "$TAO" deploy dino evaluate -e "$SPEC" -r "$OUT/engine_$p" evaluate.trt_engine="$OUT/engine_$p/dino_$p.engine"
done

"$VENV/bin/python" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("PyTorch (FP32)", f"{out}/evaluate/results.json"),
        ("engine FP32", f"{out}/engine_fp32/evaluate/results.json"),
        ("engine INT8", f"{out}/engine_int8/evaluate/results.json")]
print("\n== raccoon val (40 images)")
print(f"{'model':<16} {'mAP':>7} {'mAP50':>7}")
for name, path in rows:
    r = json.load(open(path))
    print(f"{name:<16} {r['mAP']:7.4f} {r['mAP50']:7.4f}")
print(f"""
where everything went ({out}/):
  train/            checkpoints (model_epoch_*.pth, dino_model_latest.pth), status.json, TensorBoard logs
  evaluate/         results.json, detections.json
  inference/        images_annotated/, labels/ (KITTI with scores)
  export/           dino.onnx, labels.txt, nvinfer_config.txt (DeepStream)
  engine_fp32/      dino_fp32.engine and its evaluate/ results
  engine_int8/      dino_int8.engine, cal.bin (TensorRT-format calibration cache), evaluate/ results""")
PY
