"""DetectNet_v2 speed figures (JSON on stdout): clustering per frame, Keras vs ONNX Runtime FP32
latency / throughput at batch 1 and 8, unpruned vs pruned ONNX Runtime, and training images/s.

    /work/venv-tf/bin/python benchmarks/detectnet.py [--height 384 --width 640 --layers 18 --repeats 5]
    /work/venv-tf/bin/python benchmarks/detectnet.py --demo-dir results/demo_detectnet_v2 \
        --skip clustering inference training          # the demo's trained models only

Every variant pair runs alternating in this one process, `--repeats` times; figures are the
median with [min, max]. The load average is recorded: on a shared machine only differences
larger than the spread mean anything.

- clustering: `tao_core.processing.detectnet.postprocess_detectnet` on a synthetic frame
  (one class, `--objects` boxes rasterized by the training rasterizer, coverage noise on the
  whole grid), DBSCAN vs NMS, ms per frame.
- inference: a resnet model with random weights (speed does not depend on the values) through
  Keras (`model(x)`) and through ONNX Runtime on its tf2onnx export.
- pruning: the same model pruned with -pth `--prune-threshold` (0.1, the issue's comparison and
  TAO's default) after giving its filters spread-out norms (a trained model's norms are spread;
  random init's are not), ONNX Runtime. AP after retraining is not measured here.
- trained (with `--demo-dir DIR`, the output folder of `bash examples/demo.sh detectnet_v2 DIR`):
  the demo's trained models, not random ones; the demo must have pruned with -pth
  `--prune-threshold` (read from its prune log; the demo's default DEMO_PTH is 0.1). Four ONNX
  Runtime engines built here through tao-deploy from the unpruned model (train/weights/model.tlt)
  and the pruned + retrained one (retrain/weights/model.tlt), each FP32 and INT8 (calibrated on
  the demo's calibration tensorfile); AP of each on the validation fold (tao-tf's evaluation, the
  spec of its training, 32 images) and on the raccoon val folder (40 images, tao-deploy's
  evaluation), and on both together: one object of the fold is ~2.7 AP points, so a box crossing
  the IoU 0.5 line moves the fold's AP by more than the 1-point target; the INT8 build's
  agreement with FP32; latency at batch 1 and 8 of the four, alternating; and the ratios against
  the targets (INT8 >= 1.5x FP32 throughput at batch 8 within 1 AP point; pruned >= 1.5x faster
  within 2), judged on the AP of both sets together.
- training: images/s of the compiled train step (forward, TAO cost, backward, Adam) on
  synthetic batches; the tf.data input pipeline is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import tao_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)


def _summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _timed(fn, repeats_inner: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats_inner):
        fn()
    return (time.perf_counter() - start) / repeats_inner


def clustering(args) -> dict:
    from tao_core.processing.detectnet import ClusteringParams, postprocess_detectnet
    from tao_tf.detectnet_v2.model.rasterizer import ClassRaster, rasterize

    rng = np.random.default_rng(0)
    h, w = args.height, args.width
    boxes = []
    for _ in range(args.objects):
        x1, y1 = rng.uniform(0, w - 80), rng.uniform(0, h - 80)
        boxes.append([x1, y1, x1 + rng.uniform(30, 80), y1 + rng.uniform(30, 80)])
    cov, bbox, _ = rasterize(boxes, [0] * len(boxes), 1, (h, w), [ClassRaster()])
    cov = np.clip(cov + rng.uniform(0, 0.02, cov.shape), 0, 1).astype(np.float32)[None]
    bbox = (bbox + rng.normal(0, 0.02, bbox.shape)).astype(np.float32)[None]
    algos = {
        "dbscan": ClusteringParams(algorithm="dbscan", coverage_threshold=0.005, dbscan_eps=0.15,
                                   minimum_bounding_box_height=4),
        "nms": ClusteringParams(algorithm="nms", coverage_threshold=0.005, nms_iou_threshold=0.3,
                                minimum_bounding_box_height=4),
    }  # fmt: skip
    times = {k: [] for k in algos}
    found = {}
    for _ in range(args.repeats):
        for name, params in algos.items():
            times[name].append(1000 * _timed(lambda p=params: postprocess_detectnet(cov, bbox, ["a"], (h, w), p), 5))
            found[name] = len(postprocess_detectnet(cov, bbox, ["a"], (h, w), params)[0])
    return {"ms_per_frame": {k: _summary(v) for k, v in times.items()}, "detections": found,
            "candidates": int((cov > 0.005).sum()), "objects": args.objects}  # fmt: skip


def _onnx_session(model):
    import onnxruntime as ort

    from tao_tf.detectnet_v2.model.onnx_export import keras_to_onnx

    data = keras_to_onnx(model, 13).SerializeToString()
    opts = ort.SessionOptions()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def inference_and_pruning(args) -> dict:
    from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
    from tao_tf.detectnet_v2.model.build import build_model
    from tao_tf.detectnet_v2.model.prune import apply_pruning, plan_pruning

    mc = ModelConfig(arch="resnet", num_layers=args.layers, use_batch_norm=True)
    model = build_model(mc, 1, (3, args.height, args.width))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # spread filter norms (as training does), so pruning has something to remove
        if layer.name.startswith(("conv1", "block_")) and hasattr(layer, "filters"):
            kernel, *rest = layer.get_weights()
            kernel = kernel * rng.uniform(0.01, 1.0, kernel.shape[-1]).astype(np.float32)
            layer.set_weights([kernel, *rest])
    keep, _ = plan_pruning(model, threshold=args.prune_threshold)
    pruned = apply_pruning(model, keep)
    sessions = {"onnxruntime_fp32": _onnx_session(model), "onnxruntime_fp32_pruned": _onnx_session(pruned)}
    out = {"parameters": {"unpruned": model.count_params(), "pruned": pruned.count_params()}}
    for batch in (1, 8):
        x = rng.random((batch, 3, args.height, args.width), dtype=np.float32)
        model(x)  # warm-up (graph building)
        for s in sessions.values():
            s.run(None, {"input_1": x})
        times = {"keras": [], **{k: [] for k in sessions}}
        for _ in range(args.repeats):
            times["keras"].append(_timed(lambda x=x: model(x, training=False)))
            for name, s in sessions.items():
                times[name].append(_timed(lambda s=s, x=x: s.run(None, {"input_1": x})))
        out[f"batch_{batch}"] = {
            name: {"latency_ms": _summary([1000 * t for t in v]), "images_per_s": _summary([batch / t for t in v])}
            for name, v in times.items()
        }
    return out


def trained_models(args) -> dict:
    import tempfile
    from pathlib import Path

    from tao_core.specs.detectnet_v2 import SPEC
    from tao_core.tasks import detectnet_v2 as dn
    from tao_deploy.detectnet_v2.engine import EnginePredictor, build_detectnet_engine
    from tao_deploy.engine.builder import CHECK_IMAGES
    from tao_deploy.engine.precision import cpu_has_vnni
    from tao_tf.detectnet_v2.data.pipeline import split_image_paths
    from tao_tf.detectnet_v2.model.io import load_model
    from tao_tf.detectnet_v2.model.onnx_export import keras_to_onnx

    demo = Path(args.demo_dir)
    models = {"unpruned": (demo / "train/weights/model.tlt", demo / "specs/train.txt"),
              "pruned": (demo / "retrain/weights/model.tlt", demo / "specs/retrain.txt")}  # fmt: skip
    tensorfile = demo / "export/cal.tensorfile"
    pth = demo_prune_threshold(demo)
    if pth is None or abs(pth - args.prune_threshold) > 1e-9:
        sys.exit(f"{demo}/prune/prune/prune.log: the demo pruned with -pth {pth}; this comparison is -pth "
                 f"{args.prune_threshold}: rerun it with DEMO_PTH={args.prune_threshold} (or pass --prune-threshold)")
    val_folder = Path(__file__).resolve().parents[1] / "examples/data/raccoon/val"
    out = {"demo_dir": str(demo), "prune_threshold": pth, "cpu_has_vnni": cpu_has_vnni(), "variants": {}}
    engines, sets = {}, {}
    with tempfile.TemporaryDirectory(prefix="dn-bench-") as tmp:
        for name, (path, spec_path) in models.items():
            experiment = SPEC.load("evaluate", str(spec_path))
            model, _, _ = load_model(str(path), args.key)
            onnx_bytes = keras_to_onnx(model, 13).SerializeToString()
            common = dict(max_batch_size=8, opt_batch_size=8, class_names=dn.class_names(experiment),
                          clustering=dn.clustering_params(experiment), backend="onnxruntime",
                          check_images=split_image_paths(experiment, "val", CHECK_IMAGES))  # fmt: skip
            for precision in ("fp32", "int8"):
                engine = os.path.join(tmp, f"{name}_{precision}.engine")
                extra = {} if precision == "fp32" else dict(cal_data_file=str(tensorfile), batch_size=8, batches=10,
                                                            cal_cache_file=os.path.join(tmp, f"{name}.cal.bin"))
                info = build_detectnet_engine(onnx_bytes, engine, precision, **common, **extra)
                key = f"{name}_{precision}"
                engines[key] = EnginePredictor(engine)
                aps = engine_aps(engines[key], experiment, val_folder)
                sets[key] = aps.pop("_sets")
                if precision == "int8":
                    aps["iou_threshold_crossings_vs_fp32"] = threshold_crossings(sets[f"{name}_fp32"], sets[key],
                                                                                 experiment)
                out["variants"][key] = {"parameters": model.count_params(), **aps,
                                        "engine_agreement_with_fp32": info.agreement,
                                        "engine_degraded": list(info.degraded)}  # fmt: skip
            del model
        shape = engines["unpruned_fp32"].input_chw
        rng = np.random.default_rng(0)
        for batch in (1, 8):
            x = rng.random((batch, *shape), dtype=np.float32)
            for predict in engines.values():
                predict(x)  # warm-up
            times = {k: [] for k in engines}
            for _ in range(args.repeats):  # alternating variants
                for k, predict in engines.items():
                    times[k].append(_timed(lambda p=predict, x=x: p(x), 5))
            for k, v in times.items():
                out["variants"][k][f"batch_{batch}"] = {"latency_ms": _summary([1000 * t for t in v]),
                                                        "images_per_s": _summary([batch / t for t in v])}  # fmt: skip
        for predict in engines.values():
            predict.close()
    v = out["variants"]

    def ap(key, where="both"):
        return v[key]["AP_percent"][where]

    def ratio(a, b, batch):  # throughput of a over b (medians)
        return v[a][f"batch_{batch}"]["images_per_s"]["median"] / v[b][f"batch_{batch}"]["images_per_s"]["median"]

    out["targets"] = {
        "int8_vs_fp32_throughput_b8": {p: round(ratio(f"{p}_int8", f"{p}_fp32", 8), 3) for p in models},
        "int8_minus_fp32_AP_points": {p: {w: round(ap(f"{p}_int8", w) - ap(f"{p}_fp32", w), 3) for w in AP_SETS}
                                      for p in models},
        "int8_target_met": all(ratio(f"{p}_int8", f"{p}_fp32", 8) >= 1.5 and
                               abs(ap(f"{p}_int8") - ap(f"{p}_fp32")) <= 1.0 for p in models),
        "pruned_vs_unpruned_speedup_fp32": {f"batch_{b}": round(ratio("pruned_fp32", "unpruned_fp32", b), 3)
                                            for b in (1, 8)},
        "pruned_minus_unpruned_AP_points": {w: round(ap("pruned_fp32", w) - ap("unpruned_fp32", w), 3)
                                            for w in AP_SETS},
    }  # fmt: skip
    t = out["targets"]
    t["pruned_target_met"] = (min(t["pruned_vs_unpruned_speedup_fp32"].values()) >= 1.5
                              and t["pruned_minus_unpruned_AP_points"]["both"] >= -2.0)  # fmt: skip
    return out


AP_SETS = ("fold0", "val_folder", "both")


def demo_prune_threshold(demo) -> float | None:
    """The -pth the demo's prune ran with, from its log ('... (threshold 0.1, normalizer ...')."""
    import re

    log = demo / "prune/prune/prune.log"
    found = re.search(r"\(threshold ([0-9.]+),", log.read_text()) if log.is_file() else None
    return float(found.group(1)) if found else None


def engine_aps(predict, experiment, val_folder) -> dict:
    """AP (%) of an engine on the validation fold (32 images), the raccoon val folder (40) and both."""
    from tao_core.metrics.detectnet import evaluate_detections
    from tao_core.tasks import detectnet_v2 as dn
    from tao_deploy.detectnet_v2.tasks import kitti_frames
    from tao_tf.detectnet_v2.evaluation import run_model

    sets = {"fold0": run_model(predict, experiment, "val", 8)}
    frames = kitti_frames(experiment, str(val_folder / "images"), str(val_folder / "labels"))
    sets["val_folder"] = ({f"val_folder/{f['frame_id']}": [(n, b.tolist()) for n, b in zip(f["classes"], f["boxes"],
                                                                                           strict=True)]
                           for f in frames}, folder_predictions(predict, experiment, frames))  # fmt: skip
    sets["both"] = tuple({**a, **b} for a, b in zip(sets["fold0"], sets["val_folder"], strict=True))
    names, options = dn.class_names(experiment), dn.metric_options(experiment)
    return {"AP_percent": {k: 100 * evaluate_detections(gt, preds, names, **options)["mAP"]
                           for k, (gt, preds) in sets.items()},
            "ground_truth_objects": {k: sum(map(len, gt.values())) for k, (gt, _) in sets.items()},
            "_sets": sets}  # fmt: skip


def threshold_crossings(ref_sets, cand_sets, experiment) -> dict:
    """Detections whose best IoU with the ground truth falls on the other side of the class's
    minimum overlap in the candidate than in the reference (each matched to the reference
    detection it overlaps most): the TP <-> FP flips that move a small set's AP in steps."""
    from tao_core.metrics.detectnet import box_iou
    from tao_core.tasks import detectnet_v2 as dn

    overlap = dn.metric_options(experiment)["iou_thresholds"]  # class -> minimum overlap
    out = {}
    for where, (gt, ref_preds) in ref_sets.items():
        flips = []
        for frame, dets in ref_preds.items():
            cand = cand_sets[where][1].get(frame, [])
            for name, box, _ in dets:
                truth = np.array([b for n, b in gt[frame] if n == name], np.float64).reshape(-1, 4)
                mine = np.array([b for n, b, _ in cand if n == name], np.float64).reshape(-1, 4)
                if not len(truth) or not len(mine):
                    continue
                partner = mine[box_iou(np.array([box], np.float64), mine)[0].argmax()]
                before, after = (float(box_iou(np.array([b]), truth).max()) for b in (box, partner))
                if (before >= overlap[name]) != (after >= overlap[name]):
                    flips.append({"frame": frame, "iou_with_truth": [round(before, 4), round(after, 4)]})
        out[where] = flips
    return out


def folder_predictions(predict, experiment, frames) -> dict:
    from tao_core.data.images import load_image_rgb
    from tao_core.processing.detectnet import postprocess_detectnet
    from tao_core.tasks import detectnet_v2 as dn

    names, (c, h, w) = dn.class_names(experiment), dn.input_shape(experiment)
    scale, offset = dn.bbox_scale_offset(experiment)
    out = {}
    for start in range(0, len(frames), 8):
        chunk = frames[start : start + 8]
        images = np.stack([dn.preprocess_image(load_image_rgb(f["image_path"]), (h, w), c) for f in chunk])
        cov, bbox = predict(images)
        dets = postprocess_detectnet(cov, bbox, names, (h, w), dn.clustering_params(experiment), scale, offset)
        for f, d in zip(chunk, dets, strict=True):
            out[f"val_folder/{f['frame_id']}"] = [(x.class_name, x.bbox.tolist(), float(x.confidence)) for x in d]
    return out


def training(args) -> dict:
    import tensorflow as tf
    import tf_keras as keras

    from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
    from tao_tf.detectnet_v2.model.build import build_model
    from tao_tf.detectnet_v2.model.cost import class_costs, total_cost
    from tao_tf.detectnet_v2.model.rasterizer import ClassRaster, rasterize

    h, w, batch = args.height, args.width, args.train_batch
    model = build_model(ModelConfig(arch="resnet", num_layers=args.layers, use_batch_norm=True), 1, (3, h, w))
    opt = keras.optimizers.Adam(1e-4)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((batch, 3, h, w), dtype=np.float32))
    cov, bbox, norm = rasterize([[40, 40, 200, 200]], [0], 1, (h, w), [ClassRaster()])
    targets = [tf.constant(np.repeat(t[None], batch, 0)) for t in (cov, bbox, norm)]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            c, b = model(images, training=True)
            loss = total_cost(class_costs(targets[0], c, targets[1], b, targets[2], [0.05]), [1.0], [[0.1, 0.9]])
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step()  # trace
    rates = [batch / _timed(lambda: float(step()), 3) for _ in range(args.repeats)]
    return {"images_per_s": _summary(rates), "batch": batch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--layers", type=int, default=18)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--prune-threshold", type=float, default=0.1, help="-pth of the pruning comparison")
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--skip", nargs="*", default=[], choices=["clustering", "inference", "training", "trained"])
    p.add_argument("--demo-dir", default=None, help="output folder of the DetectNet_v2 demo: benchmark its models")
    p.add_argument("--key", default="tlt_encode", help="key of the demo's models")
    args = p.parse_args()
    result = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
              "config": vars(args)}  # fmt: skip
    sections = (("clustering", clustering), ("inference", inference_and_pruning), ("training", training),
                ("trained", trained_models))  # fmt: skip
    for name, fn in sections:
        if name == "trained" and not args.demo_dir:
            continue
        if name not in args.skip:
            print(f"running {name} ...", file=sys.stderr)
            result[name] = fn(args)
    result["machine"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
