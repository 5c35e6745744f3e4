#!/usr/bin/env bash
# OneFormer end to end on the shipped COCO panoptic sample (2 images), on CPU, in a few minutes:
#   train a small Swin OneFormer (panoptic task) -> evaluate (PQ / SQ / RQ, mIoU, mask AP) ->
#   inference in the three modes (semantic, instance, panoptic: overlays + raw outputs) ->
#   export (ONNX) -> FP32 and FP16 engines (ONNX Runtime here; TensorRT where it and an NVIDIA
#   GPU exist) -> evaluate each engine, printed side by side.
# Usage: bash examples/demo_oneformer.sh [RESULTS_DIR]   (default results/demo_oneformer)
#   DEMO_VENV=/path/to/venv reuses an environment with tao-core, tao-pytorch, tao-deploy (the DINO
#   demo's .venv-demo by default: the same packages); DEMO_SPEC=my.yaml runs the same steps on
#   another spec of the same shape.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/demo_oneformer}
VENV=${DEMO_VENV:-.venv-demo}
SPEC=${DEMO_SPEC:-examples/specs/oneformer_coco_panoptic.yaml}
START=$SECONDS

if [ ! -x "$VENV/bin/tao" ]; then
  DEMO_INSTALL_ONLY=1 DEMO_VENV="$VENV" bash examples/demo.sh dino "$OUT"  # the DINO demo's install step
fi
TAO="$VENV/bin/tao"
CKPT="$OUT/train/oneformer_model_latest.pth"
ONNX="$OUT/export/oneformer.onnx"

echo "== train (resumes from $CKPT if a previous run left one)"
"$TAO" model oneformer train -e "$SPEC" -r "$OUT"
echo "== evaluate (PyTorch: panoptic PQ, semantic mIoU, instance mask AP on the sample)"
"$TAO" model oneformer evaluate -e "$SPEC" -r "$OUT" evaluate.checkpoint="$CKPT"
for mode in semantic instance panoptic; do
  echo "== inference ($mode mode)"
  "$TAO" model oneformer inference -e "$SPEC" -r "$OUT" inference.checkpoint="$CKPT" \
    inference.mode=$mode inference.results_dir="$OUT/inference/$mode"
done
echo "== export (ONNX)"
rm -f "$ONNX"   # export refuses to overwrite; the demo rebuilds it from the latest checkpoint
"$TAO" model oneformer export -e "$SPEC" -r "$OUT" export.checkpoint="$CKPT" export.onnx_file="$ONNX"
for precision in FP32 FP16; do
  p=$(echo "$precision" | tr A-Z a-z)
  echo "== gen_trt_engine $precision"
  rm -f "$OUT/engine_$p/oneformer_$p.engine"  # gen_trt_engine refuses to overwrite an engine
  "$TAO" deploy oneformer gen_trt_engine -e "$SPEC" -r "$OUT/engine_$p" \
    gen_trt_engine.onnx_file="$ONNX" gen_trt_engine.trt_engine="$OUT/engine_$p/oneformer_$p.engine" \
    gen_trt_engine.tensorrt.data_type="$precision"
  echo "== evaluate the $precision engine"
  "$TAO" deploy oneformer evaluate -e "$SPEC" -r "$OUT/engine_$p" \
    evaluate.trt_engine="$OUT/engine_$p/oneformer_$p.engine"
done

"$VENV/bin/python" - "$OUT" "$SPEC" "$((SECONDS - START))" <<'PY'
import json, sys
import yaml
out, spec_file, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = yaml.safe_load(open(spec_file))
aug, ex = spec["dataset"]["augmentation"], spec["export"]
size = f"shorter side {aug['test_min_size']}, padded to {ex['input_height']}x{ex['input_width']}"
rows = [("PyTorch evaluate", size, f"{out}/evaluate/results.json"),
        ("engine FP32", size, f"{out}/engine_fp32/evaluate/results.json"),
        ("engine FP16", size, f"{out}/engine_fp16/evaluate/results.json")]
names = ("PQ", "SQ", "RQ", "mIoU", "mAP")
print("\n== COCO panoptic sample (2 images, the training images), the last checkpoint")
print(f"{'model':<18} {'input':<40}" + "".join(f"{n:>9}" for n in names))
for name, size, path in rows:
    kpi = json.load(open(path))["kpi"]
    cells = "".join(f"{kpi[n]:9.4f}" if isinstance(kpi.get(n), (int, float)) else f"{'-':>9}" for n in names)
    print(f"{name:<18} {size:<40}{cells}")
print(f"""
All three see the same pixels (the engines resize as the checkpoint's evaluation does and pad
to their fixed input, which is the evaluation batch's padded size), so the rows compare directly:
FP32 equals PyTorch up to float rounding; FP16 differs by what half precision changes. Mask mAP
is the instance task on thing classes (the sample has few). The model memorised 2 images: the
figures show the path works, not what OneFormer reaches on COCO.

where everything went ({out}/):
  train/            checkpoints (model_epoch_*.pth, oneformer_model_latest.pth), status.json, TensorBoard logs
  evaluate/         results.json (PQ / SQ / RQ overall, things, stuff, per class; mIoU; mask AP)
  inference/<mode>/ images_annotated/ (overlays with legends), semantic/ PNGs of class ids,
                    panoptic/ PNGs + panoptic.json (COCO panoptic), instances.json (COCO results)
  export/           oneformer.onnx (inputs images 0..255 + task_tokens; outputs pred_logits, pred_masks)
  engine_fp32/      oneformer_fp32.engine and its evaluate/ results
  engine_fp16/      oneformer_fp16.engine and its evaluate/ results
demo finished in {seconds} s""")
PY
