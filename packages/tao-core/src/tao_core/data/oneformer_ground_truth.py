"""OneFormer data without a framework: the records of one split (every file checked) and each
image's evaluation ground truth, in the form tao_core.tasks.oneformer.OneFormerEvaluation takes.
The one place for these rules: the PyTorch dataset (tao_pytorch.oneformer.data) and
`tao deploy oneformer evaluate` both call them, so both sides score the same pixels.

    fmt, records, table = load_split(cfg.dataset, "val", ignore_value)   # all files checked
    gt = ground_truth(fmt, records[i], table, ignore_value)              # {"image_id", "semantic", ["panoptic"]}
    coco_instances(fmt, records, table)                                  # COCO instance ground truth
    split = load_eval_split(cfg, "test")                                 # the three together (deploy)

semantic = class index per pixel, ignore_value elsewhere (from a panoptic source every segment is
painted, crowd included: the COCO semantic convention); panoptic = (segment-id map, segments_info
with json category ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tao_core.data.coco import load_coco_sources
from tao_core.data.coco_panoptic import load_panoptic_json, read_panoptic_png
from tao_core.data.segmentation_sources import (
    ClassTable,
    check_semantic_files,
    class_table,
    coco_segmentation_mask,
    read_class_mask,
    read_jsonl,
    semantic_to_segments,
)
from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get, spec_get_default
from tao_core.specs.oneformer_dataset import DatasetConfig, split_format
from tao_core.specs.oneformer_model import SemSegHeadConfig

SPLITS = ("train", "val", "test")


def load_split(dataset_cfg: Any, split: str, ignore_value: int = 255,
               check_files: bool = True) -> tuple[str, list[dict], ClassTable]:
    """(format, records, class table) of dataset.<split>, every file checked (check_files): one
    TaoUserError per kind of problem."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    split_cfg = spec_get(dataset_cfg, split)
    fmt = split_format(split_cfg) if split_cfg is not None else None
    if fmt is None:
        raise TaoUserError(f"dataset.{split}.annotations: no annotation file given for the {split} split")
    ann, images, panoptic = (spec_get(split_cfg, k) for k in ("annotations", "images", "panoptic"))
    label_map = spec_get(dataset_cfg, "label_map")
    contiguous = bool(spec_get_default(dataset_cfg, "contiguous_id", DatasetConfig))
    if fmt == "panoptic":
        records, cats = load_panoptic_json(str(ann), str(images), str(panoptic), check_files=check_files)
        table = class_table(label_map, cats, contiguous, str(ann))
    elif fmt == "instance":
        index = load_coco_sources([{"image_dir": str(images), "json_file": str(ann)}], None,
                                  check_images=check_files)
        table = class_table(label_map, index.categories, contiguous, str(ann))
        records = list(index.records)
        lacking = [r["file_name"] for r in records if len(r["category_ids"]) and (
            r["segmentation"] is None or any(s is None for s in r["segmentation"]))]
        if lacking:
            raise TaoUserError(f"{ann}: annotations of {len(lacking)} images have no 'segmentation' (polygons or RLE), "
                               f"which instance segmentation needs: {', '.join(lacking[:10])}")
    else:
        records = read_jsonl(str(ann), str(images) if images else None)
        table = class_table(label_map, None, contiguous, str(ann))
        if check_files:
            check_semantic_files(records, table, ignore_value, str(ann))
    return fmt, records, table


def ground_truth(fmt: str, rec: dict, table: ClassTable, ignore_value: int = 255) -> dict:
    """Evaluation ground truth of one record on the original image: "image_id", "semantic" (H, W)
    int64 class indices, and for a panoptic source "panoptic" (segment-id map, segments_info)."""
    out: dict[str, Any] = {"image_id": int(rec["image_id"])}
    if fmt == "semantic":
        seg, _ = semantic_to_segments(read_class_mask(rec["mask_path"]), table, ignore_value)
        out["semantic"] = np.where(seg > 0, seg.astype(np.int64) - 1, ignore_value)
        return out
    if fmt == "panoptic":
        ids = read_panoptic_png(rec["pan_path"])
        out["panoptic"] = (ids, [
            {"id": int(i), "category_id": int(c), "iscrowd": int(k), **({"area": int(a)} if a >= 0 else {})}
            for i, c, k, a in zip(rec["segment_ids"], rec["category_ids"], rec["iscrowd"], rec["area"], strict=True)])
        semantic = np.full(ids.shape, ignore_value, np.int64)
        classes = table.index_of(rec["category_ids"])
        for sid, cls in zip(np.asarray(rec["segment_ids"]).tolist(), classes.tolist(), strict=True):
            semantic[ids == sid] = cls
        out["semantic"] = semantic
        return out
    h, w = int(rec["height"]), int(rec["width"])
    semantic = np.full((h, w), ignore_value, np.int64)
    segm = rec["segmentation"] or []
    for s, cls in zip(segm, table.index_of(rec["category_ids"][:len(segm)]).tolist(), strict=True):
        semantic[coco_segmentation_mask(s, h, w)] = cls
    out["semantic"] = semantic
    return out


def coco_instances(fmt: str, records, table: ClassTable) -> dict:
    """COCO instance ground truth of an instance source (json category ids, the records' image ids),
    for tao_core.metrics.coco.evaluate(..., "segm")."""
    if fmt != "instance":
        raise ValueError(f"a {fmt} split has no COCO instance ground truth")
    images, anns = [], []
    for rec in records:
        images.append({"id": int(rec["image_id"]), "file_name": rec["file_name"],
                       "width": int(rec["width"]), "height": int(rec["height"])})
        xywh = np.asarray(rec["boxes"], np.float64).reshape(-1, 4)
        xywh[:, 2:] -= xywh[:, :2]
        for j, segm in enumerate(rec["segmentation"] or []):
            anns.append({"id": int(rec["ann_ids"][j]), "image_id": int(rec["image_id"]),
                         "category_id": int(rec["category_ids"][j]), "segmentation": segm,
                         "area": float(rec["area"][j]), "bbox": xywh[j].tolist(), "iscrowd": int(rec["iscrowd"][j])})
    return {"images": images, "annotations": anns, "categories": table.categories()}


@dataclass
class EvalSplit:
    fmt: str
    records: list[dict]
    table: ClassTable
    ignore_value: int = 255

    def __len__(self) -> int:
        return len(self.records)

    def ground_truth(self, idx: int) -> dict:
        return ground_truth(self.fmt, self.records[idx], self.table, self.ignore_value)

    def coco_instances(self) -> dict:
        return coco_instances(self.fmt, self.records, self.table)


def load_eval_split(cfg: Any, split: str) -> EvalSplit:
    """dataset.<split> of an experiment spec, every file checked (one TaoUserError per kind of problem)."""
    head = spec_get(spec_get(cfg, "model"), "sem_seg_head")
    ignore = int(spec_get_default(head, "ignore_value", SemSegHeadConfig))
    fmt, records, table = load_split(spec_get(cfg, "dataset"), split, ignore)
    return EvalSplit(fmt, records, table, ignore)
