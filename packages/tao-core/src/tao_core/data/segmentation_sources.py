"""Class tables and the semantic JSON-lines source of the segmentation networks (no framework).

Classes (`ClassTable`): a segmentation model predicts class indices 0..N-1; files carry category
ids. The categories come from `dataset.label_map` (a json list of {id, name, isthing, color},
e.g. COCO's panoptic_coco_categories.json; a {"categories": [...]} object is accepted too) or,
without one, from the annotation json. Ids must be integers > 0. `dataset.contiguous_id`:
  True  -> class index = position of the category in that list (TAO's rule);
  False -> class index = id - 1, with unnamed placeholders for the ids the list skips.

Semantic JSON lines (seed 004): one object per line, {"img": image path, "segm": mask PNG path},
relative paths taken under the split's `images` directory. The mask is single-channel, each pixel
the category id of the label map; 0 (background), `ignore_value` and values the label map does not
list are ignored (the last with a warning at load naming them, so a label map that misses classes,
e.g. Cityscapes labelIds with only the 19 evaluated classes, is seen). Missing / unreadable images
and masks and masks whose size differs from their image are errors found at load time, all at once.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
from PIL import Image

from tao_core.data.coco import _few, read_json
from tao_core.data.coco_panoptic import parse_categories
from tao_core.data.images import decode_check
from tao_core.errors import TaoUserError

logger = logging.getLogger(__name__)

_LIMIT = 20  # problems listed per error; the count always gives the full number


class ClassTable:
    """Category ids <-> contiguous class indices, with names, thing flags and colours."""

    def __init__(self, categories: Sequence[dict], contiguous_id: bool = True, source: str = "categories"):
        cats = list(categories)
        if contiguous_id:
            self.category_ids = [c["id"] for c in cats]
            slots = cats
        else:
            by_id = {c["id"]: c for c in cats}
            n = max(by_id)
            self.category_ids = list(range(1, n + 1))
            slots = [by_id.get(i, {"id": i, "name": f"class_{i}", "isthing": 1}) for i in self.category_ids]
        self.names = [c["name"] for c in slots]
        self.isthing = np.array([bool(c.get("isthing", 1)) for c in slots])
        self.colors = [list(c["color"]) if "color" in c else None for c in slots]
        self.source = source
        self._lut = np.full(max(self.category_ids) + 1, -1, np.int64)
        self._lut[self.category_ids] = np.arange(len(self.category_ids))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def thing_ids(self) -> list[int]:
        """Class indices of the thing classes."""
        return np.flatnonzero(self.isthing).tolist()

    def index_of(self, category_ids: np.ndarray) -> np.ndarray:
        """Class index of each category id (-1 where the table has none)."""
        ids = np.asarray(category_ids, np.int64)
        out = np.full(ids.shape, -1, np.int64)
        ok = (ids > 0) & (ids < len(self._lut))
        out[ok] = self._lut[ids[ok]]
        return out

    def check_fits(self, num_classes: int, field: str = "model.sem_seg_head.num_classes") -> None:
        if len(self) > num_classes:
            raise TaoUserError(
                f"{self.source} defines {len(self)} classes but {field}={num_classes}; set {field}={len(self)}"
            )

    def categories(self) -> list[dict]:
        """The table as a json category list (json ids), e.g. for a panoptic or COCO results file."""
        return [{"id": cid, "name": n, "isthing": int(t), **({"color": c} if c else {})}
                for cid, n, t, c in zip(self.category_ids, self.names, self.isthing, self.colors, strict=True)]


def load_label_map(path: str) -> list[dict]:
    """Categories of a label-map json file (see the module docstring), checked."""
    if not os.path.isfile(path):
        raise TaoUserError(f"dataset.label_map: {path} is not a file (a json list of {{id, name, isthing, color}})")
    data = read_json(path)
    if isinstance(data, dict) and "categories" in data:
        data = data["categories"]
    if not isinstance(data, list):
        raise TaoUserError(f"{path}: a label map is a json list of {{id, name, isthing, color}} objects")
    return parse_categories(data, path)


def class_table(label_map: str | None, json_categories: Sequence[dict] | None, contiguous_id: bool,
                json_file: str | None = None) -> ClassTable:
    """The label map's table when given (then every json category id must be in it), else the json's."""
    if label_map:
        table = ClassTable(load_label_map(label_map), contiguous_id, source=f"dataset.label_map {label_map}")
        if json_categories:
            missing = sorted(c["id"] for c in json_categories if table.index_of(np.array([c["id"]]))[0] < 0)
            if missing:
                raise TaoUserError(f"{json_file}: category ids {_few(missing)} are not in dataset.label_map {label_map}; "
                                   "add them to the label map")
        return table
    if not json_categories:
        raise TaoUserError("dataset.label_map: needed to name the classes of a JSON-lines (semantic) dataset")
    return ClassTable(json_categories, contiguous_id, source=f"the categories of {json_file}")


def _resolve(root: str | None, path: str) -> str:
    return path if os.path.isabs(path) or not root else os.path.join(root, path)


def read_jsonl(jsonl_file: str, images_dir: str | None) -> list[dict]:
    """[{image_id, path, mask_path}] of a semantic JSON-lines file; every bad line in one error."""
    try:
        with open(jsonl_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise TaoUserError(f"{jsonl_file}: annotation file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaoUserError(f"{jsonl_file}: cannot read annotation file ({e})") from None
    records, problems = [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: invalid JSON ({e.msg})")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("img"), str) or not isinstance(obj.get("segm"), str):
            problems.append(f'line {n}: expected {{"img": image path, "segm": mask PNG path}}, got {line[:120]}')
            continue
        records.append({"image_id": len(records) + 1, "file_name": obj["img"], "path": _resolve(images_dir, obj["img"]),
                        "mask_path": _resolve(images_dir, obj["segm"]), "truncated": False})
    if problems:
        more = f"\n  ... and {len(problems) - _LIMIT} more" if len(problems) > _LIMIT else ""
        raise TaoUserError(f"{jsonl_file}: {len(problems)} bad lines:\n  " + "\n  ".join(problems[:_LIMIT]) + more)
    if not records:
        raise TaoUserError(f"{jsonl_file}: holds no lines: there is nothing to read in this split")
    return records


def read_class_mask(path: str) -> np.ndarray:
    """(H, W) int64 category-id mask of a single-channel PNG; TaoUserError naming the file."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise TaoUserError(f"{path}: a semantic mask must be a single-channel PNG of category ids, got mode {img.mode}")
            return np.asarray(img).astype(np.int64)
    except FileNotFoundError:
        raise TaoUserError(f"{path}: mask file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise TaoUserError(f"{path}: cannot read mask ({e})") from None


def check_semantic_files(records: list[dict], table: ClassTable, ignore_value: int, jsonl_file: str) -> None:
    """Decode every image and mask (in parallel); one error listing every file that cannot be used,
    one warning naming the mask values the label map does not list."""
    allowed = np.array(sorted({0, int(ignore_value)} | set(table.category_ids)))

    def one(rec):
        problems = []
        try:
            img = decode_check(rec["path"])
            rec["width"], rec["height"] = img.width, img.height
            rec["truncated"] = img.truncated is not None
        except TaoUserError as e:
            problems.append(f"image: {e}")
            img = None
        try:
            mask = read_class_mask(rec["mask_path"])
        except TaoUserError as e:
            return problems + [f"mask: {e}"]
        rec["_unknown"] = np.setdiff1d(np.unique(mask), allowed).tolist()
        if img is not None and mask.shape != (img.height, img.width):
            problems.append(f"mask: {rec['mask_path']} is {mask.shape[1]}x{mask.shape[0]} but its image "
                            f"{img.width}x{img.height}")
        return problems

    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        found = [p for ps in pool.map(one, records, chunksize=8) for p in ps]
    unknown: dict[int, int] = {}
    for rec in records:
        for v in rec.pop("_unknown", []):
            unknown[v] = unknown.get(v, 0) + 1
    if found:
        more = f"\n  ... and {len(found) - _LIMIT} more" if len(found) > _LIMIT else ""
        raise TaoUserError(f"{jsonl_file}: {len(found)} problems with the images / masks of {len(records)} lines:\n  "
                           + "\n  ".join(found[:_LIMIT]) + more)
    if unknown:
        logger.warning("%s: mask values %s are not category ids of the label map; they are ignored like 0 "
                       "(files holding each: %s)", jsonl_file, _few(sorted(unknown)),
                       _few([f"{v}: {unknown[v]}" for v in sorted(unknown)]))


def semantic_to_segments(mask: np.ndarray, table: ClassTable, ignore_value: int) -> tuple[np.ndarray, dict[str, Any]]:
    """A category-id mask as the segment form the targets use: (segment-id map with class index + 1,
    0 where ignored; {"ids", "classes", "iscrowd"} of one segment per class present)."""
    classes = table.index_of(mask)
    classes[(mask == 0) | (mask == ignore_value)] = -1
    ids = (classes + 1).astype(np.int32)
    present = np.unique(classes[classes >= 0])
    return ids, {"ids": (present + 1).astype(np.int64), "classes": present.astype(np.int64),
                 "iscrowd": np.zeros(len(present), np.uint8)}


def coco_segmentation_mask(segm: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of one COCO `segmentation`: polygons [[x1, y1, ...], ...], uncompressed RLE
    {"size", "counts": [...]} or compressed RLE {"size", "counts": "..."}, rasterised exactly as
    pycocotools does (faster-coco-eval's mask API, the engine of tao_core.metrics.coco)."""
    from faster_coco_eval.core import mask as mask_api

    if isinstance(segm, list):
        polygons = [p for p in segm if len(p) >= 6]  # fewer than 3 points enclose nothing
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_api.frPyObjects(segm, height, width)
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
        rle = {"size": list(segm["size"]), "counts": segm["counts"]}
    else:
        raise TaoUserError(f"unsupported COCO segmentation {str(segm)[:80]}: expected polygons or RLE")
    if list(rle["size"]) != [height, width]:
        raise TaoUserError(f"COCO RLE of size {list(rle['size'])} on an image of {height}x{width}")
    return mask_api.decode(rle).astype(bool)
