"""OneFormer evaluation without a framework: shared by `oneformer evaluate` (PyTorch checkpoint),
training's validation and `tao deploy oneformer evaluate` (engine), so all three score alike.

    kinds = evaluation_kinds(cfg, "panoptic")          # which results to score (see below)
    ev = OneFormerEvaluation(kinds, categories, num_classes=C, ignore_value=255,
                             object_mask_threshold=0.8, overlap_threshold=0.8, test_topk_per_image=100)
    for each image:
        ev.add(mask_cls, mask_pred, padded_hw=(Hp, Wp), valid_hw=(h, w), ground_truth=gt)
    results = ev.compute()       # {"semantic": {...}, "panoptic": {...}, "instance": {...}} (the kinds asked)
    kpi(results)                 # {"PQ": ..., "mIoU": ..., "mAP": ...} flat, for status lines
    write_oneformer_evaluation(out_dir, results, run_info, status)     # results.json + a kpi status line

Per image, the raw outputs of one image are what the network returns for it: class logits
`mask_cls` (Q, C+1) (last = no object) and mask logits `mask_pred` (Q, h, w) at the network
resolution; `padded_hw` is the network input size (after padding), `valid_hw` the resized image
inside it. tao_core.processing.oneformer brings the masks to the original image once
(`upsample_to_image`) and derives each result kind from them.

`ground_truth` of one image, on the original image (what OneFormerDataset.ground_truth gives):
    "image_id"  int
    "semantic"  (H, W) integer class indices 0..len(categories)-1, `ignore_value` elsewhere
                (always present: it also gives the original size)
    "panoptic"  (segment-id map (H, W), segments_info [{id, category_id (json id), iscrowd, area?}])
                (panoptic sources; needed for the panoptic kind, and for the instance kind
                when no COCO instance ground truth is given)
`categories`: the json categories in class-index order ([{id, name, isthing}], ClassTable.categories()).

Result kinds (semantic / panoptic / instance):
- semantic: tao_core.metrics.segmentation (mIoU, fwIoU, pixel accuracy, mean accuracy, per class IoU);
- panoptic: tao_core.metrics.panoptic (PQ / SQ / RQ of All, Things, Stuff, per class);
- instance: COCO mask AP (tao_core.metrics.coco, "segm") against `instances_gt` (a COCO dict, e.g.
  OneFormerDataset.coco_instances() of an instance source) or, when None, the thing segments of
  each image's panoptic ground truth (crowd ones as iscrowd); predictions are then limited to
  thing classes, as the reference does when panoptic evaluation is on.
Predicted class indices the category list has no entry for (a num_classes larger than the
dataset's classes) never match: semantic pixels count as wrong, panoptic segments and instances
are dropped.

With several processes each one accumulates its share and `merge` adds another's evaluation
(a DistributedSampler's padding repeats up to world_size - 1 images, which then count twice).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.metrics.coco import evaluate as coco_evaluate
from tao_core.metrics.panoptic import PanopticEvaluator
from tao_core.metrics.segmentation import SemanticEvaluator
from tao_core.processing.oneformer import (
    MODES,
    instance_inference,
    instances_to_coco,
    panoptic_inference,
    panoptic_to_coco,
    semantic_inference,
    upsample_to_image,
)
from tao_core.spec.access import spec_get

logger = logging.getLogger(__name__)

# Which result kinds a source format can be scored on (the spec rules allow the same).
KINDS_OF_FORMAT = {"semantic": ("semantic",), "instance": ("semantic", "instance"),
                   "panoptic": ("semantic", "instance", "panoptic")}
# model.test flags -> result kind (TAO's evaluation switches)
EVAL_FLAGS = {"semantic_on": "semantic", "instance_on": "instance", "panoptic_on": "panoptic"}
# The headline metric of each kind: training's val_<name> and the first kpi of a status line.
MAIN_METRIC = {"semantic": "mIoU", "panoptic": "PQ", "instance": "mAP"}


# ----------------------------------------------------------------------------- what to evaluate


def eval_split(cfg: Any) -> str:
    """The dataset split `evaluate` scores: dataset.test when it names annotations, else dataset.val."""
    dataset = spec_get(cfg, "dataset")
    for split in ("test", "val"):
        if spec_get(spec_get(dataset, split), "annotations"):
            return split
    raise TaoUserError("dataset.test.annotations: give the annotated data to evaluate on (dataset.test or dataset.val)")


def evaluation_kinds(cfg: Any, fmt: str) -> list[str]:
    """Result kinds `evaluate` scores on a source of format `fmt`: model.mode first, then every kind
    model.test switches on (semantic_on, instance_on, panoptic_on), each once. A kind the format
    cannot give is a TaoUserError naming the field."""
    model = spec_get(cfg, "model")
    mode = str(spec_get(model, "mode", "semantic"))
    test = spec_get(model, "test")
    wanted = [("model.mode", mode)] + [(f"model.test.{flag}", kind) for flag, kind in EVAL_FLAGS.items()
                                       if spec_get(test, flag, False)]
    kinds: list[str] = []
    for field, kind in wanted:
        if kind not in KINDS_OF_FORMAT[fmt]:
            fix = f"one of {list(KINDS_OF_FORMAT[fmt])}" if field == "model.mode" else "false"
            raise TaoUserError(f"{field}: {kind} evaluation cannot be scored on {fmt} annotations (the evaluated "
                               f"split); set {field} to {fix}")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def postprocess_settings(cfg: Any) -> dict:
    """object_mask_threshold, overlap_threshold and test_topk_per_image of the spec's model section."""
    model = spec_get(cfg, "model")
    return {"object_mask_threshold": float(spec_get(model, "object_mask_threshold", 0.4)),
            "overlap_threshold": float(spec_get(model, "overlap_threshold", 0.8)),
            "test_topk_per_image": int(spec_get(model, "test_topk_per_image", 100))}


# ----------------------------------------------------------------------------- instance ground truth


def panoptic_things_to_coco(image_id: int, ids: np.ndarray, segments: Sequence[Mapping[str, Any]],
                            thing_category_ids: set[int], first_ann_id: int) -> list[dict]:
    """COCO instance annotations (RLE) of the thing segments of one panoptic ground truth; ids
    from first_ann_id on (COCO evaluation treats an annotation id 0 as unmatched, so ids start at 1)."""
    things = [s for s in segments if int(s["category_id"]) in thing_category_ids and (ids == int(s["id"])).any()]
    if not things:
        return []
    masks = np.stack([ids == int(s["id"]) for s in things])
    # the RLE encoding of predicted instances, with each segment as its own "class"
    encoded = instances_to_coco({"masks": masks, "scores": np.ones(len(things), np.float32),
                                 "labels": np.arange(len(things))}, image_id, [int(s["category_id"]) for s in things])
    anns = []
    for n, (s, mask, enc) in enumerate(zip(things, masks, encoded, strict=True)):
        ys, xs = np.nonzero(mask)
        bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        anns.append({"id": first_ann_id + n, "image_id": int(image_id), "category_id": enc["category_id"],
                     "segmentation": enc["segmentation"], "area": float(mask.sum()), "bbox": bbox,
                     "iscrowd": int(s.get("iscrowd", 0))})
    return anns


# ----------------------------------------------------------------------------- the evaluation


class OneFormerEvaluation:
    """Accumulates the asked result kinds image by image; see the module docstring."""

    def __init__(self, kinds: Sequence[str], categories: Sequence[Mapping[str, Any]], num_classes: int,
                 ignore_value: int = 255, object_mask_threshold: float = 0.4, overlap_threshold: float = 0.8,
                 test_topk_per_image: int = 100, instances_gt: Mapping[str, Any] | None = None):
        unknown = [k for k in kinds if k not in MODES]
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {MODES}, got {list(kinds)}")
        self.kinds = list(dict.fromkeys(kinds))
        self.categories = [dict(c) for c in categories]
        if len(self.categories) > num_classes:
            raise TaoUserError(f"the data has {len(self.categories)} classes but the model {num_classes}; "
                               f"set model.sem_seg_head.num_classes={len(self.categories)}")
        self.num_classes = int(num_classes)
        self.ignore_value = int(ignore_value)
        self.category_ids = [int(c["id"]) for c in self.categories]
        self.thing_ids = [i for i, c in enumerate(self.categories) if int(c.get("isthing", 1))]
        self.object_mask_threshold = float(object_mask_threshold)
        self.overlap_threshold = float(overlap_threshold)
        self.test_topk_per_image = int(test_topk_per_image)
        names = [str(c["name"]) for c in self.categories]
        names += [f"class_{i}" for i in range(len(names), self.num_classes)]  # model slots without a category
        self.semantic = SemanticEvaluator(self.num_classes, self.ignore_value, names) if "semantic" in kinds else None
        self.panoptic = PanopticEvaluator(self.categories) if "panoptic" in kinds else None
        self.instances_gt = dict(instances_gt) if instances_gt is not None else None
        # without COCO instance ground truth, the panoptic thing segments are the instances
        self._gt_images: list[dict] = []
        self._gt_anns: list[dict] = []
        self.detections: list[dict] = []
        self.image_ids: list[int] = []
        self._seen: set[int] = set()

    # -------------------------------------------------------------- per image

    def add(self, mask_cls: np.ndarray, mask_pred: np.ndarray, *, padded_hw: Sequence[int], valid_hw: Sequence[int],
            ground_truth: Mapping[str, Any], output_hw: Sequence[int] | None = None,
            kinds: Sequence[str] | None = None) -> dict:
        """Score one image (see the module docstring for the arguments); output_hw defaults to the
        ground truth's size; kinds: the result kinds these outputs are scored for (default: all of
        this evaluation's; OneFormer's outputs depend on the task token, so an evaluation may run
        the network once per kind with "The task is {kind}"). Returns {kind: this image's result}."""
        gt_sem = np.asarray(ground_truth["semantic"])
        out_hw = tuple(int(v) for v in (output_hw or gt_sem.shape))
        if out_hw != gt_sem.shape:
            raise TaoUserError(f"image {ground_truth.get('image_id')}: output size {out_hw} differs from its ground "
                               f"truth {gt_sem.shape}")
        mask_cls = np.asarray(mask_cls, np.float32)
        if mask_cls.ndim != 2 or mask_cls.shape[1] != self.num_classes + 1:
            raise ValueError(f"mask_cls must be (Q, {self.num_classes + 1}) for {self.num_classes} classes, "
                             f"got {mask_cls.shape}")
        masks = upsample_to_image(mask_pred, padded_hw, valid_hw, out_hw)
        image_id = int(ground_truth.get("image_id", len(self.image_ids) + 1))
        kinds = self.kinds if kinds is None else list(kinds)
        unknown = [k for k in kinds if k not in self.kinds]
        if unknown:
            raise ValueError(f"kinds {unknown} are not evaluated here ({self.kinds})")
        if image_id not in self._seen:
            self._seen.add(image_id)
            self.image_ids.append(image_id)
        out: dict[str, Any] = {}
        if "semantic" in kinds:
            pred = semantic_inference(mask_cls, masks).argmax(axis=0)
            self.semantic.update(pred, gt_sem)
            out["semantic"] = pred
        if "panoptic" in kinds:
            if ground_truth.get("panoptic") is None:
                raise TaoUserError(f"image {image_id}: panoptic evaluation needs panoptic ground truth")
            seg, info = panoptic_inference(mask_cls, masks, self.thing_ids, self.object_mask_threshold,
                                           self.overlap_threshold)
            seg, info = self._known_segments(seg, info)
            gt_ids, gt_segments = ground_truth["panoptic"]
            self.panoptic.update(gt_ids, gt_segments, seg, panoptic_to_coco(info, self.category_ids),
                                 image=f"image {image_id}")
            out["panoptic"] = (seg, info)
        if "instance" in kinds:
            from_panoptic = self.instances_gt is None
            if from_panoptic:
                self._add_instance_gt(image_id, ground_truth, out_hw)
            inst = instance_inference(mask_cls, masks, self.test_topk_per_image,
                                      self.thing_ids if from_panoptic else None)
            known = inst["labels"] < len(self.categories)
            inst = {k: v[known] for k, v in inst.items()}
            self.detections += instances_to_coco(inst, image_id, self.category_ids)
            out["instance"] = inst
        return out

    def _known_segments(self, seg: np.ndarray, info: list[dict]) -> tuple[np.ndarray, list[dict]]:
        unknown = [s["id"] for s in info if s["category_id"] >= len(self.categories)]
        if unknown:
            seg = np.where(np.isin(seg, unknown), 0, seg)
            info = [s for s in info if s["id"] not in unknown]
        return seg, info

    def _add_instance_gt(self, image_id: int, ground_truth: Mapping[str, Any], hw: tuple[int, int]) -> None:
        if ground_truth.get("panoptic") is None:
            raise TaoUserError(f"image {image_id}: instance evaluation needs COCO instance or panoptic ground truth")
        ids, segments = ground_truth["panoptic"]
        things = {self.category_ids[i] for i in self.thing_ids}
        self._gt_images.append({"id": image_id, "width": int(hw[1]), "height": int(hw[0]), "file_name": str(image_id)})
        self._gt_anns += panoptic_things_to_coco(image_id, np.asarray(ids), segments, things, len(self._gt_anns) + 1)

    # -------------------------------------------------------------- totals

    def merge(self, other: OneFormerEvaluation) -> None:
        """Add another process's evaluation of the same kinds (its images follow this one's)."""
        if other.kinds != self.kinds:
            raise ValueError(f"cannot merge an evaluation of {other.kinds} into one of {self.kinds}")
        if self.semantic is not None:
            self.semantic.conf += other.semantic.conf
            self.semantic.num_images += other.semantic.num_images
        if self.panoptic is not None:
            for cid, st in other.panoptic.stats.items():
                mine = self.panoptic.stats[cid]
                mine.iou, mine.tp, mine.fp, mine.fn = mine.iou + st.iou, mine.tp + st.tp, mine.fp + st.fp, mine.fn + st.fn
            self.panoptic.num_images += other.panoptic.num_images
        offset = len(self._gt_anns)
        self._gt_images += other._gt_images
        self._gt_anns += [{**a, "id": a["id"] + offset} for a in other._gt_anns]
        self.detections += other.detections
        self.image_ids += other.image_ids
        self._seen |= other._seen

    def instance_ground_truth(self) -> dict:
        if self.instances_gt is not None:
            return self.instances_gt
        things = [c for c in self.categories if int(c.get("isthing", 1))]
        return {"images": self._gt_images, "annotations": self._gt_anns, "categories": things}

    def compute(self) -> dict[str, Any]:
        """{kind: metrics} of the kinds asked, plus "num_images"."""
        if not self.image_ids:
            raise TaoUserError("no image was evaluated: the evaluated split is empty")
        results: dict[str, Any] = {"kinds": list(self.kinds), "num_images": len(self.image_ids)}
        if self.semantic is not None:
            sem = self.semantic.compute()
            # classes without any ground-truth pixel (None) are left out, as the means leave them out
            sem["per_class_iou"] = {k: v for k, v in sem["per_class_iou"].items() if v is not None}
            sem["per_class_acc"] = {k: v for k, v in sem["per_class_acc"].items() if v is not None}
            results["semantic"] = sem
        if self.panoptic is not None:
            pq = self.panoptic.compute()
            names = {int(c["id"]): str(c["name"]) for c in self.categories}
            seen = {int(c) for c in pq["per_class_stats"]}
            results["panoptic"] = {
                "PQ": pq["All"]["pq"], "SQ": pq["All"]["sq"], "RQ": pq["All"]["rq"],
                "PQ_th": pq["Things"]["pq"], "SQ_th": pq["Things"]["sq"], "RQ_th": pq["Things"]["rq"],
                "PQ_st": pq["Stuff"]["pq"], "SQ_st": pq["Stuff"]["sq"], "RQ_st": pq["Stuff"]["rq"],
                "All": pq["All"], "Things": pq["Things"], "Stuff": pq["Stuff"],
                # categories with a TP, FP or FN (the ones averaged), by name
                "per_class": {names[c]: v for c, v in pq["per_class"].items() if c in seen},
            }
        if "instance" in self.kinds:
            gt = self.instance_ground_truth()
            if not gt["annotations"]:
                raise TaoUserError("instance evaluation: the evaluated images have no instance (thing) annotation")
            results["instance"] = coco_evaluate(gt, self.detections, "segm")
        return results


# ----------------------------------------------------------------------------- outputs


def kpi(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The headline numbers of compute()'s results, flat: PQ SQ RQ PQ_th PQ_st, mIoU fwIoU pACC, mAP mAP50
    (each kind that was evaluated), every name with `prefix` (training uses "val_")."""
    out: dict[str, float] = {}
    picks = {"panoptic": ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"), "semantic": ("mIoU", "fwIoU", "pACC"),
             "instance": ("mAP", "mAP50")}
    for kind in results.get("kinds", MODES):
        for name in picks[kind] if kind in results else ():
            # COCO's -1 (undefined) reads as 0 in a KPI
            out[prefix + name] = max(float(results[kind][name]), 0.0)
    return out


def metric_table(results: Mapping[str, Any]) -> list[str]:
    """The results as text lines (a table per kind), for the log and the console."""
    lines: list[str] = []
    if "panoptic" in results:
        p = results["panoptic"]
        lines += [f"{'':8}{'PQ':>8}{'SQ':>8}{'RQ':>8}{'n':>6}"]
        for name in ("All", "Things", "Stuff"):
            r = p[name]
            lines.append(f"{name:8}{100 * r['pq']:8.2f}{100 * r['sq']:8.2f}{100 * r['rq']:8.2f}{r['n']:6d}")
    if "semantic" in results:
        s = results["semantic"]
        lines.append(f"{'mIoU':>8}{'fwIoU':>8}{'mACC':>8}{'pACC':>8}")
        lines.append(f"{100 * s['mIoU']:8.2f}{100 * s['fwIoU']:8.2f}{100 * s['mACC']:8.2f}{100 * s['pACC']:8.2f}")
        lines += [f"  IoU {name:24} {100 * v:6.2f}" for name, v in s["per_class_iou"].items()]
    if "instance" in results:
        m = results["instance"]
        lines.append(f"mask {'mAP':>7}{'mAP50':>8}{'mAP75':>8}")
        lines.append(f"     {100 * m['mAP']:7.2f}{100 * max(m['mAP50'], 0):8.2f}{100 * max(m['mAP75'], 0):8.2f}")
    return lines


def write_oneformer_evaluation(out_dir: str | os.PathLike, results: Mapping[str, Any], run_info: Mapping[str, Any],
                               status: Any = None) -> dict:
    """results.json ({**run_info, **results, "kpi": kpi(results)}) written atomically into out_dir,
    the metric table logged, and a RUNNING status line with the kpi when `status` (a
    tao_core.results.status writer) is given. Returns what results.json holds."""
    flat = kpi(results)
    record = {**run_info, **results, "kpi": flat}
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(record, indent=2, default=_plain))
    for line in metric_table(results):
        logger.info("%s", line)
    if status is not None:
        main = [f"{name} {flat[name]:.4f}" for kind in results["kinds"] for name in (MAIN_METRIC[kind],)]
        status.write("RUNNING", f"Evaluated {results['num_images']} images: {', '.join(main)}", kpi=flat)
    return record


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
