"""Framework-free task helpers that tao_pytorch.detr.tasks has too: they belong in tao-core.

Everything here is plain Python / numpy on a loaded spec, used identically by the PyTorch
tasks (tao_pytorch/detr/tasks/{common,evaluate,inference}.py) and the engine tasks. Until they
move down (proposed home in brackets), this module holds the deploy side's copy with the SAME
semantics; once tao-core has them, delete this file and import from there:

    read_classmap, names_by_id, label_names    [tao_core.data.classmap]
    eval_sources, restrict_classes             [tao_core.metrics.coco / tao_core.specs.detr_common]
    output_dir, batch_size_of, input_size_of   [tao_core.specs.detr_common]
    write_coco_evaluation                      [tao_core.metrics.coco]  (results.json & co, status kpi)
    write_detr_detections                      [tao_core.visualize.outputs] (classmap id rule + writer)
    list_images                                [tao_core.data.images] (from tao_pytorch.detr.data.dataset)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from tao_core.errors import SpecError, TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.metrics.coco import STAT_NAMES
from tao_core.metrics.coco import evaluate as coco_evaluate

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _get(node, name: str, default=None):
    if node is None:
        return default
    if hasattr(node, "get"):
        return node.get(name, default)
    return getattr(node, name, default)


# ----------------------------------------------------------------------------- class names


def read_classmap(path: str | os.PathLike) -> list[str]:
    """Class names of a classmap file: one per line, line i (0-based) = category id i + 1."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f]
    except FileNotFoundError:
        raise TaoUserError(f"dataset.infer_data_sources.classmap: {path} does not exist") from None
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise TaoUserError(f"dataset.infer_data_sources.classmap: {path} must list one class name per line, no blanks")
    return names


def names_by_id(cfg) -> dict[int, str]:
    """Category id -> name from the spec's data: the first COCO json of test/val/train sources,
    else the inference classmap. Empty when there is none."""
    from tao_core.data.coco import read_json

    ds = cfg.dataset
    sources = []
    for field in ("test_data_sources", "val_data_sources", "train_data_sources"):
        value = _get(ds, field)
        if value is None:
            continue
        sources += [value] if hasattr(value, "get") and "json_file" in value else list(value)
    for src in sources:
        json_file = _get(src, "json_file")
        if json_file and os.path.isfile(str(json_file)):
            cats = read_json(str(json_file)).get("categories", [])
            return {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    classmap = _get(_get(ds, "infer_data_sources"), "classmap")
    if classmap and os.path.isfile(str(classmap)):
        return {i + 1: n for i, n in enumerate(read_classmap(classmap))}
    return {}


def label_names(cfg) -> list[str]:
    """One name per model output class (index = category id), as in TAO's labels.txt:
    'background' at 0 when ids start at 1, 'unknown' where the data names no class."""
    names = names_by_id(cfg)
    out = []
    for i in range(int(cfg.dataset.num_classes)):
        if i in names:
            out.append(names[i])
        elif i == 0 and (not names or min(names) > 0):
            out.append("background")
        else:
            out.append("unknown")
    return out


# ----------------------------------------------------------------------------- task sections


def output_dir(section, ctx) -> str:
    """`<task>.results_dir` when the spec sets it, else <results_dir>/<task> (ctx.results_dir)."""
    out = str(_get(section, "results_dir") or ctx.results_dir)
    os.makedirs(out, exist_ok=True)
    return out


def batch_size_of(section, cfg) -> int:
    """`<task>.batch_size`, or dataset.batch_size when it is -1."""
    bs = int(_get(section, "batch_size", -1) or -1)
    return bs if bs > 0 else int(cfg.dataset.batch_size)


def input_size_of(section, task: str) -> tuple[int, int] | None:
    """(h, w) from `<task>.input_height/input_width`, or None."""
    h, w = _get(section, "input_height"), _get(section, "input_width")
    if (h is None) != (w is None):
        missing = "input_width" if w is None else "input_height"
        raise SpecError(f"{task}.{missing}", None, "a value: input_height and input_width are given together")
    return None if h is None else (int(h), int(w))


# ----------------------------------------------------------------------------- evaluation


def eval_sources(dataset_cfg):
    """(spec field, sources): test_data_sources when given, else val_data_sources."""
    test = _get(dataset_cfg, "test_data_sources")
    if test is not None and _get(test, "json_file"):
        return "dataset.test_data_sources", test
    val = _get(dataset_cfg, "val_data_sources")
    if val:
        return "dataset.val_data_sources", val
    raise TaoUserError("dataset.test_data_sources: give {image_dir, json_file} of the data to evaluate on")


def restrict_classes(gt: dict, detections: list[dict], class_ids) -> tuple[dict, list[dict]]:
    """Ground truth and detections limited to the categories in class_ids (eval_class_ids)."""
    keep = {int(c) for c in class_ids}
    gt = dict(gt)
    gt["categories"] = [c for c in gt["categories"] if c["id"] in keep]
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] in keep]
    return gt, [d for d in detections if d["category_id"] in keep]


def write_coco_evaluation(out_dir: str, gt: dict, detections: list[dict], run_info: dict, status=None,
                          class_ids=None) -> dict:
    """Score `detections` against `gt` (restricted to `class_ids` when given), write
    ground_truth.json, detections.json and results.json (run_info + the metrics) into out_dir,
    log the stats and add a status line with kpi {mAP, mAP50}. Returns the results dict."""
    if class_ids:
        gt, detections = restrict_classes(gt, detections, class_ids)
    metrics = coco_evaluate(gt, detections)
    results = {**run_info, **metrics}
    atomic_write_text(os.path.join(out_dir, "ground_truth.json"), json.dumps(gt))
    atomic_write_text(os.path.join(out_dir, "detections.json"), json.dumps(detections))
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2))
    for name in STAT_NAMES:
        logger.info("%-10s %.4f", name, metrics[name])
    for name, ap in metrics["per_class_ap"].items():
        logger.info("AP %-20s %.4f (AP50 %.4f)", name, ap, metrics["per_class_ap50"][name])
    if status is not None:
        status.write(
            "RUNNING",
            f"Evaluated {metrics['num_images']} images: mAP {metrics['mAP']:.4f}, mAP50 {metrics['mAP50']:.4f}",
            kpi={"mAP": metrics["mAP"], "mAP50": metrics["mAP50"]},
        )
    return results


# ----------------------------------------------------------------------------- inference


def write_detr_detections(writer, image_path: str, image, det: dict, class_names: Sequence[str]) -> int:
    """One image's decoded DETR detections through an InferenceWriter, TAO's classmap rule:
    label l is named class_names[l - 1], labels the classmap does not name are dropped.
    Returns how many detections reach the writer's conf_threshold."""
    scores, labels, boxes = (np.asarray(det[k]) for k in ("scores", "labels", "boxes"))
    named = [i for i, lab in enumerate(labels.tolist()) if 1 <= lab <= len(class_names)]
    names = [class_names[labels[i] - 1] for i in named]
    writer.write(image_path, image, boxes[named], scores[named], names)
    return int((scores[named] >= writer.conf_threshold).sum())


def list_images(image_dirs: str | Sequence[str]) -> list[str]:
    """Image files (by extension, case-insensitive) under each directory, recursively, sorted per
    directory (the inference image list; tao_pytorch.detr.data.dataset.list_images)."""
    dirs = [image_dirs] if isinstance(image_dirs, (str, os.PathLike)) else list(image_dirs)
    paths = []
    for d in map(str, dirs):
        if not os.path.isdir(d):
            raise TaoUserError(f"dataset.infer_data_sources.image_dir: {d} is not a directory")
        found = [os.path.join(root, f) for root, _, files in os.walk(d) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise TaoUserError(f"dataset.infer_data_sources.image_dir: no {'/'.join(IMAGE_EXTENSIONS)} images in {d}")
        paths += sorted(found)
    return paths
