"""Latency, throughput and mAP of a DINO model: PyTorch eager vs ONNX Runtime engines (FP32, INT8).

The model goes through the real pipeline: tao-pytorch `export` (on_cpu, fixed H x W, dynamic
batch) -> tao-deploy `gen_trt_engine` (FP32, and INT8 calibrated on raccoon train images with
the spec's defaults: on ONNX Runtime that is the CPU INT8 graph, `ort_int8_cpu_graph`) ->
tao-deploy `evaluate`, next to tao-pytorch `evaluate` at the same exact input size. The
TensorRT-shaped INT8 graph is built from the same calibration cache and run on ONNX Runtime too
(`ort_int8_trt_graph`). `int8_vs_fp32` gives each INT8 variant's throughput ratio to FP32 and mAP
drop, and a WARNING (stderr, and in the JSON) for each one under the CPU targets (1.5x at batch
8, 1.2x at batch 1) or more than 0.010 mAP below FP32.

Speed: for each batch size, every repeat times all variants one after the other (alternating,
order rotated per repeat, --pause seconds between), each as the mean of --iters runs after one
warm-up run on a fixed preprocessed batch of raccoon images. Reported: median and min-max over
repeats of the latency per batch (ms) and throughput (images/s). PyTorch runs --threads intra-op
threads (default: all cores), ONNX Runtime its default (one per physical core).

Accuracy: COCO mAP on raccoon val (`mAP`), and mAP against PyTorch's own top-3 boxes per image
(`mAP_vs_pytorch`: how close each variant stays to the PyTorch model; a random model has ~0 real mAP).

Usage:
    python benchmarks/engine.py                                  # small random demo DINO, 256x320
    python benchmarks/engine.py --spec dino.yaml --checkpoint model.pth --input-size 544x960
Prints one JSON object. Needs tao-pytorch and tao-deploy in the same environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tao_core.testing import find_dataset

REPO = Path(__file__).resolve().parents[1]
# The default model: DINO small enough for a laptop CPU, every code path of the real one.
DEMO_MODEL = {
    "backbone": "resnet_18",
    "hidden_dim": 64,
    "nheads": 4,
    "enc_layers": 2,
    "dec_layers": 2,
    "dim_feedforward": 128,
    "num_queries": 100,
    "num_select": 100,
    "num_feature_levels": 2,
    "return_interm_indices": [1, 2],
}


def find_raccoon(explicit: str | None) -> Path:
    found = Path(explicit) if explicit else find_dataset("raccoon", REPO)
    if found is None or not (found / "annotations" / "instances_val.json").is_file():
        sys.exit("raccoon data not found: pass --data /path/to/raccoon")
    return found


def parse_hw(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def write_spec(path: Path, args, raccoon: Path, work: Path, hw) -> Path:
    """The user's spec with data, sizes and paths set for this run (or the demo spec)."""
    import yaml

    spec = yaml.safe_load(Path(args.spec).read_text()) if args.spec else {"model": dict(DEMO_MODEL)}
    ds = spec.setdefault("dataset", {})
    ds.update({
        "num_classes": ds.get("num_classes", 2) if args.spec else 2,
        "batch_size": 8,
        "workers": 0,
        "val_data_sources": [{"image_dir": str(raccoon / "val" / "images"),
                              "json_file": str(raccoon / "annotations" / "instances_val.json")}],
    })
    ds.pop("test_data_sources", None)
    spec["results_dir"] = str(work / "results")
    spec["evaluate"] = {"input_height": hw[0], "input_width": hw[1], "batch_size": 8}
    spec["export"] = {"input_height": hw[0], "input_width": hw[1], "on_cpu": True, "batch_size": -1}
    spec["gen_trt_engine"] = {"input_height": hw[0], "input_width": hw[1], "backend": args.backend,
                              "tensorrt": {"min_batch_size": 1, "opt_batch_size": 8, "max_batch_size": 8}}
    path.write_text(yaml.safe_dump(spec))
    return path


def _plain(value):
    """Spec values (OmegaConf lists included) as JSON-able Python values."""
    return list(value) if not isinstance(value, (str, int, float, bool, type(None))) else value


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def pseudo_gt(detections: list[dict], gt_file: Path, out: Path, per_image: int = 3) -> Path:
    gt = json.loads(gt_file.read_text())
    known = {c["id"] for c in gt["categories"]}
    best: dict[int, list[dict]] = {}
    for d in sorted((d for d in detections if d["category_id"] in known), key=lambda d: -d["score"]):
        best.setdefault(d["image_id"], []).append(d)
    anns = []
    for new_id, im in enumerate(gt["images"], start=1):  # evaluate renumbers ids 1..n in file order
        for d in best.get(new_id, [])[:per_image]:
            x, y, w, h = d["bbox"]
            if w > 1 and h > 1:
                anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": d["category_id"],
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    out.write_text(json.dumps({"images": gt["images"], "annotations": anns, "categories": gt["categories"]}))
    return out


# The CPU INT8 promise (issue 7): throughput vs FP32 at batch 8 and 1, mAP within 0.010.
SPEEDUP_TARGETS = {8: 1.5, 1: 1.2}
MAX_MAP_DROP = 0.010


def judge(speed: dict, accuracy: dict, batch_sizes: list[int]) -> dict:
    """INT8 / FP32 throughput ratios (median over repeats) and mAP differences, with a warning
    for each INT8 variant that is slower than its target or less accurate than the bound."""
    out: dict = {"warnings": []}
    base = speed["ort_fp32"]
    for name in (n for n in speed if "int8" in n):
        row = {}
        for bs in batch_sizes:
            ratio = speed[name][f"batch_{bs}"]["throughput_img_s"]["median"] / \
                base[f"batch_{bs}"]["throughput_img_s"]["median"]
            row[f"speedup_batch_{bs}"] = round(ratio, 3)
            target = SPEEDUP_TARGETS.get(bs)
            if target and ratio < target:
                out["warnings"].append(f"{name}: {ratio:.2f}x FP32 throughput at batch {bs}, target {target}x")
        drop = accuracy["ort_fp32"]["mAP"] - accuracy[name]["mAP"]
        row["mAP_drop"] = round(drop, 4)
        if drop > MAX_MAP_DROP:
            out["warnings"].append(f"{name}: mAP {accuracy[name]['mAP']:.4f} is {drop:.4f} below FP32's "
                                   f"{accuracy['ort_fp32']['mAP']:.4f} (bound {MAX_MAP_DROP})")
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", help="DINO experiment spec (model and dataset.augmentation are used)")
    ap.add_argument("--checkpoint", help="trained DINO checkpoint; default: random initialisation (seed 0)")
    ap.add_argument("--key", help="key of an encrypted checkpoint")
    ap.add_argument("--data", help="raccoon folder (default: shared/data/raccoon or examples/data/raccoon)")
    ap.add_argument("--input-size", default="256x320", help="H x W of the exported model (default 256x320)")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5, help="timed runs per repeat (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--pause", type=float, default=0.5,
                    help="seconds of idle between variants, so one runtime's spinning worker threads have "
                         "gone to sleep before the next is timed")
    ap.add_argument("--cal-images", type=int, default=32, help="raccoon train images for INT8 calibration")
    ap.add_argument("--cal-method", default=None, choices=["minmax", "entropy", "percentile"],
                    help="INT8 calibration method (default: the spec's default)")
    ap.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"])
    ap.add_argument("--workdir", help="keep the exported model and engines here (default: a temp dir)")
    args = ap.parse_args()

    import torch

    from tao_core.data.coco import load_coco_sources
    from tao_core.processing.detr import normalisation
    from tao_core.specs import get_spec
    from tao_deploy import Calibration, build_engine, load_engine
    from tao_deploy.detr.detector import EngineDetector
    from tao_deploy.dino.cli import CLI as DEPLOY
    from tao_deploy.engine.engine_file import read_engine
    from tao_pytorch.common.checkpoint import load_model_weights, save_checkpoint
    from tao_pytorch.detr.network import detr_network
    from tao_pytorch.dino.cli import CLI as MODEL

    logging.disable(logging.WARNING)  # the tasks' INFO/WARNING logs would drown the JSON
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    raccoon = find_raccoon(args.data)
    hw = parse_hw(args.input_size)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tao-engine-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = write_spec(work / "spec.yaml", args, raccoon, work, hw)
    key_args = ["-k", args.key] if args.key else []
    timings: dict = {"setup_s": {}}

    # Model: the given checkpoint, or a random one written as a checkpoint file.
    cfg = get_spec("dino").load("export", str(spec), ["export.checkpoint=unused"])
    ckpt = Path(args.checkpoint) if args.checkpoint else work / "random.pth"
    if not args.checkpoint:
        torch.manual_seed(0)
        model = detr_network("dino").build_model(cfg)
        save_checkpoint({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    model = detr_network("dino").build_model(cfg)
    load_model_weights(model, str(ckpt), key=args.key) if args.key else load_model_weights(model, str(ckpt))
    model.eval()

    onnx_file = work / "model.onnx"
    t = time.perf_counter()
    if not onnx_file.exists():
        MODEL.run("export", ["-e", str(spec), f"export.checkpoint={ckpt}", f"export.onnx_file={onnx_file}",
                             *key_args])
    timings["setup_s"]["export"] = round(time.perf_counter() - t, 2)
    cal_dir = work / "cal"
    shutil.rmtree(cal_dir, ignore_errors=True)
    cal_dir.mkdir()
    for p in sorted((raccoon / "train" / "images").iterdir())[:args.cal_images]:
        shutil.copy(p, cal_dir / p.name)
    engines = {"ort_fp32": work / "fp32.engine", "ort_int8_cpu_graph": work / "int8_cpu.engine"}
    for name, precision in (("ort_fp32", "FP32"), ("ort_int8_cpu_graph", "INT8")):
        t = time.perf_counter()
        extra = []
        if precision == "INT8":
            cache = work / f"cal_{args.cal_method or 'default'}.bin"
            cache.unlink(missing_ok=True)
            extra = [f"gen_trt_engine.tensorrt.calibration.cal_image_dir=[{cal_dir}]",
                     "gen_trt_engine.tensorrt.calibration.cal_batch_size=8",
                     f"gen_trt_engine.tensorrt.calibration.cal_batches={max(1, args.cal_images // 8)}",
                     *([f"gen_trt_engine.tensorrt.calibration.method={args.cal_method}"] if args.cal_method else []),
                     f"gen_trt_engine.tensorrt.calibration.cal_cache_file={cache}"]
        DEPLOY.run("gen_trt_engine", ["-e", str(spec), f"gen_trt_engine.onnx_file={onnx_file}",
                                      f"gen_trt_engine.trt_engine={engines[name]}",
                                      f"gen_trt_engine.tensorrt.data_type={precision}", *extra])
        timings["setup_s"][f"gen_trt_engine_{precision.lower()}"] = round(time.perf_counter() - t, 2)
    # The TensorRT-shaped INT8 graph (what a TensorRT build gets) from the same calibration cache,
    # run on ONNX Runtime: what the CPU graph is compared with.
    t = time.perf_counter()
    cpu_meta = read_engine(engines["ort_int8_cpu_graph"])[0]
    engines["ort_int8_trt_graph"] = work / "int8_trt.engine"
    engines["ort_int8_trt_graph"].unlink(missing_ok=True)
    build_engine(str(onnx_file), engines["ort_int8_trt_graph"], "int8", backend="onnxruntime",
                 calibration=Calibration(cache_file=cache, keep_float=tuple(cpu_meta["int8_graph"]["keep_float"])),
                 int8_graph="tensorrt", min_batch=1, opt_batch=8, max_batch=8, class_names=cpu_meta["class_names"],
                 metadata={k: cpu_meta[k] for k in ("network", "input_mean", "input_std", "num_select")})
    timings["setup_s"]["build_int8_trt_graph"] = round(time.perf_counter() - t, 2)

    # One fixed batch of real images, preprocessed by tao-core (the engines' and PyTorch's input).
    mean, std = normalisation(cfg.dataset.augmentation)
    index = load_coco_sources(cfg.dataset.val_data_sources, cfg.dataset.num_classes, check_images=False)
    from tao_core.data.images import load_image_rgb

    images = [load_image_rgb(index[i]["path"]) for i in range(max(batch_sizes))]
    detectors = {name: EngineDetector(load_engine(path), mean, std, cfg.model.num_select, max(batch_sizes))
                 for name, path in engines.items()}
    full = detectors["ort_fp32"].preprocess(images)

    def pytorch_run(batch):
        with torch.no_grad():
            model(torch.from_numpy(batch))

    runners = {"pytorch_eager": pytorch_run}
    for name, det in detectors.items():
        runners[name] = det.run_raw

    speed: dict = {name: {} for name in runners}
    names = list(runners)
    for bs in batch_sizes:
        batch = np.ascontiguousarray(full[:bs])
        samples: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.repeats):
            order = names[rep % len(names):] + names[:rep % len(names)]  # rotate who goes first
            for n in order:
                time.sleep(args.pause)
                runners[n](batch)  # warm-up
                t = time.perf_counter()
                for _ in range(args.iters):
                    runners[n](batch)
                samples[n].append((time.perf_counter() - t) / args.iters)
        for n in names:
            speed[n][f"batch_{bs}"] = {
                "latency_ms": spread([s * 1e3 for s in samples[n]]),
                "throughput_img_s": spread([bs / s for s in samples[n]]),
            }

    # Accuracy through the real evaluate tasks (PyTorch at the engines' exact input size).
    accuracy: dict = {}

    def evaluate(kind: str, name: str, json_file: Path | None = None) -> dict:
        out = work / "eval" / name
        extra = [f"dataset.val_data_sources=[{{image_dir: {raccoon / 'val' / 'images'}, json_file: {json_file}}}]"
                 ] if json_file else []
        if kind == "pytorch_eager":
            MODEL.run("evaluate", ["-e", str(spec), f"evaluate.checkpoint={ckpt}", f"results_dir={out}", *extra,
                                   *key_args])
        else:
            DEPLOY.run("evaluate", ["-e", str(spec), f"evaluate.trt_engine={engines[kind]}", f"results_dir={out}",
                                    *extra])
        return json.loads((out / "evaluate" / "results.json").read_text()) | {
            "_detections": json.loads((out / "evaluate" / "detections.json").read_text())}

    real = {n: evaluate(n, n) for n in names}
    gt = pseudo_gt(real["pytorch_eager"]["_detections"], raccoon / "annotations" / "instances_val.json",
                   work / "pseudo_gt.json")
    for n in names:
        agree = evaluate(n, f"{n}_vs_pytorch", gt)
        accuracy[n] = {"mAP": round(real[n]["mAP"], 4), "mAP50": round(real[n]["mAP50"], 4),
                       "mAP_vs_pytorch": round(agree["mAP"], 4), "eval_seconds": real[n]["seconds"]}

    verdict = judge(speed, accuracy, batch_sizes)
    for line in verdict["warnings"]:
        print(f"WARNING: {line}", file=sys.stderr)
    result = {
        "model": "demo DINO (random init)" if not args.checkpoint else str(ckpt),
        "model_config": {k: _plain(getattr(cfg.model, k)) for k in DEMO_MODEL},
        "input_hw": list(hw),
        "backend": load_engine(engines["ort_fp32"]).backend,
        "int8_calibration": {"method": cpu_meta["int8_graph"]["calibration_method"], "images": args.cal_images},
        "threads": args.threads,
        "repeats": args.repeats,
        "iters_per_repeat": args.iters,
        "val_images": len(index),
        "int8_graphs": {n: read_engine(engines[n])[0].get("int8_graph") for n in engines if "int8" in n},
        "speed": speed,
        "accuracy": accuracy,
        "int8_vs_fp32": verdict,
        **timings,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
    }
    for det in detectors.values():
        det.close()
    print(json.dumps(result, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
