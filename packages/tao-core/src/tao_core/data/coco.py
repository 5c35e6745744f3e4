"""COCO detection annotations -> a validated per-image index (no framework).

Every COCO-based network (DINO, Deformable DETR, OneFormer) reads its `*_data_sources` through
`load_coco_sources`. All user mistakes are found here, before any training, and reported as one
TaoUserError per kind naming file / field / value and the fix. The one that matters most: TAO
uses `category_id` directly as the class index, so an id of 0 (background) or >= num_classes
only surfaced deep into training as CUDA "device-side assert triggered".

Record layout (one dict per image; `CocoIndex[i]`, image ids are `i + 1`):
    image_id       int, unique across all sources (1..N in load order)
    source         int, index of the source the image came from
    orig_image_id  int, the id in that source's json
    file_name      str, as written in the json;  path  str, image_dir / file_name
    truncated      bool, the file is cut short but usable (tao_core.data.images: decode_check); load it
                   with load_image_rgb(path, allow_truncated=True)
    width, height  int, of the upright (EXIF-rotated) image
    boxes          float32 (n, 4) **xyxy** in pixels, clipped to the image, degenerate ones dropped
    category_ids   int64 (n,), the json ids unchanged (they are the class indices)
    iscrowd        uint8 (n,);  area  float32 (n,), the json `area` (else box w*h)
    ann_ids        int64 (n,), unique across sources;  orig_ann_ids  int64 (n,), the json ids
    segmentation   list of n json segmentations (polygons / RLE, None where absent), or None
                   when no annotation of the image has one
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tao_core.data.images import decode_check, image_size, truncation_warning
from tao_core.data.serialized import SerializedList
from tao_core.errors import TaoUserError
from tao_core.spec.access import spec_get

logger = logging.getLogger(__name__)

DATASET_TYPES = ("default", "serialized")
_SHOW = 10  # offending values listed per message; the count always gives the full number


def _few(values: Sequence, n: int = _SHOW) -> str:
    shown = ", ".join(str(v) for v in list(values)[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")


def _expand_sources(sources: Any) -> list[tuple[str, str]]:
    """[(image_dir, json_file)]; a single dict is accepted, and a json_file glob expands (shards)."""
    if isinstance(sources, dict) or not isinstance(sources, Sequence):
        sources = [sources]
    out = []
    for i, src in enumerate(sources):
        image_dir, json_file = spec_get(src, "image_dir"), spec_get(src, "json_file")
        if not image_dir or not json_file:
            raise TaoUserError(f"data source {i}: needs both image_dir and json_file, got {src!r}")
        if glob.has_magic(str(json_file)):
            matches = sorted(glob.glob(str(json_file)))
            if not matches:
                raise TaoUserError(f"data source {i}: json_file pattern {json_file} matches no file")
            out += [(str(image_dir), m) for m in matches]
        else:
            out.append((str(image_dir), str(json_file)))
    if not out:
        raise TaoUserError("no data sources given: expected a list of {image_dir, json_file}")
    return out


def read_json(path: str | os.PathLike) -> Any:
    """Parse a json file; errors name the file and the line/column of a syntax error."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise TaoUserError(f"{path}: annotation file not found") from None
    except OSError as e:
        raise TaoUserError(f"{path}: cannot read annotation file ({e})") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise TaoUserError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise TaoUserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _int(v: Any) -> int:
    """JSON integer (an integral float such as 3.0 is tolerated); anything else -> TypeError."""
    if type(v) is int:
        return v
    if type(v) is float and v.is_integer():
        return int(v)
    raise TypeError


def _num(v: Any) -> float:
    if type(v) in (int, float) and math.isfinite(v):
        return float(v)
    raise TypeError


def _category_id_name(c: Any, k: int, p: _Problems) -> tuple[int, str] | None:
    """(id, name) of categories[k]; None, with the problem noted in `p`, when it has no integer
    'id' and string 'name'."""
    try:
        cid, name = _int(c["id"]), c["name"]
        if not isinstance(name, str):
            raise TypeError
    except (KeyError, TypeError, OverflowError):
        p.add(f"categories[{k}]: needs integer 'id' and string 'name', got {c!r:.200}")
        return None
    return cid, name


class _Problems:
    """Collects problems of one file so they are all reported in a single error."""

    def __init__(self, where: str):
        self.where, self.items = where, []

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def raise_if_any(self) -> None:
        if self.items:
            n = len(self.items)
            head = f"{self.where}: {n} problem{'s' if n > 1 else ''} in the COCO annotations:\n  "
            tail = f"\n  ... and {n - 2 * _SHOW} more" if n > 2 * _SHOW else ""
            raise TaoUserError(head + "\n  ".join(self.items[: 2 * _SHOW]) + tail)


def _parse_file(json_file: str, need_size: bool) -> dict:
    """Structural validation of one COCO json; returns its images, categories and annotation columns."""
    data = read_json(json_file)
    p = _Problems(json_file)
    if not isinstance(data, dict):
        raise TaoUserError(f"{json_file}: top level must be a JSON object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            p.add(f"missing required key {key!r} (a list)" if key not in data else f"{key!r} must be a list")
    p.raise_if_any()

    cats: dict[int, dict] = {}
    for k, c in enumerate(data["categories"]):
        parsed = _category_id_name(c, k, p)
        if parsed is None:
            continue
        cid, name = parsed
        if cid in cats:
            p.add(f"categories[{k}]: duplicate category id {cid}")
        cats[cid] = {"id": cid, "name": name, **({"supercategory": c["supercategory"]} if "supercategory" in c else {})}

    images: list[dict] = []
    seen_img: set[int] = set()
    for k, im in enumerate(data["images"]):
        try:
            iid, fname = _int(im["id"]), im["file_name"]
            w, h = im.get("width"), im.get("height")
            if not isinstance(fname, str) or not fname:
                raise TypeError
            if w is not None or h is not None or need_size:
                w, h = _int(w), _int(h)
                if w <= 0 or h <= 0:
                    raise TypeError
        except KeyError as e:
            p.add(f"images[{k}]: missing required key {e}")
            continue
        except (TypeError, AttributeError, OverflowError):
            p.add(f"images[{k}]: needs integer 'id', non-empty 'file_name' and positive integer width/height, got {im!r:.200}")
            continue
        if iid in seen_img:
            p.add(f"images[{k}]: duplicate image id {iid}")
        seen_img.add(iid)
        images.append({"id": iid, "file_name": fname, "width": w, "height": h})

    anns = data["annotations"]
    n = len(anns)
    ann_id, img_id, cat_id = (np.zeros(n, np.int64) for _ in range(3))
    bbox = np.zeros((n, 4), np.float64)
    iscrowd = np.zeros(n, np.uint8)
    area = np.full(n, np.nan, np.float64)
    segm: list = [None] * n
    for k, a in enumerate(anns):
        try:
            ann_id[k], img_id[k], cat_id[k] = _int(a["id"]), _int(a["image_id"]), _int(a["category_id"])
            b = a["bbox"]
            if type(b) is not list or len(b) != 4:
                raise TypeError
            bbox[k] = [_num(v) for v in b]
            iscrowd[k] = _int(a.get("iscrowd", 0)) != 0
            if a.get("area") is not None:
                area[k] = _num(a["area"])
            segm[k] = a.get("segmentation")
        except KeyError as e:
            p.add(f"annotations[{k}] (id {a.get('id') if isinstance(a, dict) else '?'}): missing required key {e}")
        except (TypeError, AttributeError, OverflowError):
            p.add(
                f"annotations[{k}]: needs integer id/image_id/category_id and bbox [x, y, width, height] "
                f"of finite numbers, got {a!r:.200}"
            )
    p.raise_if_any()

    bad = np.unique(ann_id[ann_id <= 0])
    if bad.size:
        p.add(
            f"annotation ids must be positive integers, found {_few(bad.tolist())} "
            f"({int(np.isin(ann_id, bad).sum())} annotations); pycocotools' COCOeval treats id 0 as "
            f"'unmatched' and would count a correct detection as a false positive. Renumber them from 1."
        )
    ids, counts = np.unique(ann_id, return_counts=True)
    if (counts > 1).any():
        p.add(f"duplicate annotation ids: {_few(ids[counts > 1].tolist())}; each annotation needs its own id")
    orphan = np.unique(img_id[~np.isin(img_id, np.fromiter(seen_img, np.int64, len(seen_img)))])
    if orphan.size:
        p.add(f"annotations refer to image ids not listed in 'images': {_few(orphan.tolist())}")
    unknown = np.unique(cat_id[~np.isin(cat_id, np.fromiter(cats, np.int64, len(cats)))])
    if unknown.size:
        p.add(f"annotations use category ids not listed in 'categories': {_few(unknown.tolist())}")
    p.raise_if_any()
    return {"images": images, "categories": cats, "ann_id": ann_id, "img_id": img_id, "cat_id": cat_id,
            "bbox": bbox, "iscrowd": iscrowd, "area": area, "segm": segm}


def _merge_categories(files: list[dict], json_files: list[str], num_classes: int | None) -> list[dict]:
    """Check category ids against num_classes across all sources; return the categories kept."""
    merged: dict[int, tuple[dict, str]] = {}
    for f, jf in zip(files, json_files, strict=True):
        for cid, c in f["categories"].items():
            if cid in merged and merged[cid][0]["name"] != c["name"]:
                raise TaoUserError(
                    f"category id {cid} is {merged[cid][0]['name']!r} in {merged[cid][1]} but {c['name']!r} in {jf}; "
                    "all sources of a dataset must use the same category ids"
                )
            merged.setdefault(cid, (c, jf))

    used: Counter = Counter()
    where: dict[int, str] = {}
    for f, jf in zip(files, json_files, strict=True):
        ids, counts = np.unique(f["cat_id"], return_counts=True)
        for cid, cnt in zip(ids.tolist(), counts.tolist(), strict=True):
            used[cid] += cnt
            where.setdefault(cid, jf)
    max_id = max(used, default=0)
    fix = f"dataset.num_classes={max_id + 1}"
    lines = []
    for cid in sorted(i for i in used if i <= 0):
        lines.append(
            f"category_id {cid} ({merged[cid][0]['name']!r}, {used[cid]} annotations, in {where[cid]}): id 0 is "
            "reserved for background, so category ids must start at 1. Renumber the categories (e.g. add 1 to "
            f"every category id) and then set dataset.num_classes to the largest id + 1."
        )
    too_big = sorted(i for i in used if num_classes is not None and i >= num_classes)
    if too_big:
        lines.append(
            f"category_id {_few(too_big)} (in {where[too_big[0]]}) >= dataset.num_classes={num_classes}. "
            "Category ids are used directly as class indices and 0 is background, so num_classes must be "
            f"the largest category id + 1: set {fix}."
        )
    if lines:
        raise TaoUserError(
            "category ids do not fit the model's classes (this would otherwise crash training with "
            "CUDA 'device-side assert triggered'):\n  " + "\n  ".join(lines)
        )
    keep = []
    for cid in sorted(merged):
        if cid <= 0 or (num_classes is not None and cid >= num_classes):
            logger.warning("%s: unused category %s (id %d) is outside 1..num_classes-1; dropped",
                           merged[cid][1], merged[cid][0]["name"], cid)
        else:
            keep.append(merged[cid][0])
    return keep


def _check_images(paths: list[str], decode: bool, limit: int) -> list[tuple[int, int, bool]]:
    """Upright (width, height, truncated) of every image, or one error listing every missing /
    unreadable file. decode: every image fully decoded (tao_core.data.images.decode_check: a
    tolerated truncation is a warning naming the file, anything worse an error); else headers only."""

    def one(path: str):
        try:
            if not decode:
                return (*image_size(path), False)
            checked = decode_check(path)
            if checked.truncated is not None:
                logger.warning("%s", truncation_warning(path, checked.truncated))
            return checked.width, checked.height, checked.truncated is not None
        except TaoUserError as e:
            return str(e)

    # Threads: file I/O (often network storage) plus Pillow's decoders, which release the GIL.
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        results = list(pool.map(one, paths, chunksize=16))
    bad = [r for r in results if isinstance(r, str)]
    if bad:
        missing = sum("not found" in r for r in bad)
        shown = "\n  ".join(bad[:limit])
        more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
        raise TaoUserError(
            f"{len(bad)} of {len(paths)} images cannot be used ({missing} missing, {len(bad) - missing} unreadable); "
            f"check each data source's image_dir and the json file_name values, or remove those images "
            f"from the json:\n  {shown}{more}"
        )
    return results


class CocoIndex:
    """Validated per-image records of one split (see the module docstring for the record layout)."""

    def __init__(self, records: list[dict] | SerializedList, categories: list[dict],
                 sources: list[tuple[str, str]], stats: dict[str, int]):
        self.records = records
        self.categories = categories
        self.sources = sources  # [(image_dir, json_file)], indexed by record["source"]
        self.stats = stats

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int) -> dict:
        return self.records[idx]

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    @property
    def dataset_type(self) -> str:
        return "serialized" if isinstance(self.records, SerializedList) else "default"

    @property
    def max_category_id(self) -> int:
        return max((c["id"] for c in self.categories), default=0)

    def original_image_id(self, image_id: int) -> tuple[str, int]:
        """(json_file, id in that json) of an index image id, e.g. to write predictions back."""
        rec = self.records[image_id - 1]
        return self.sources[rec["source"]][1], rec["orig_image_id"]

    def serialized(self) -> CocoIndex:
        """The same index with its records packed into one shared byte buffer."""
        if isinstance(self.records, SerializedList):
            return self
        return CocoIndex(SerializedList(self.records), self.categories, self.sources, self.stats)

    def to_coco_dict(self) -> dict:
        """COCO ground truth with the index's unique ids, e.g. for pycocotools / faster-coco-eval.

        Boxes are the validated ones (clipped, degenerate dropped), written back as xywh.
        """
        images, anns = [], []
        for rec in self.records:
            images.append({"id": rec["image_id"], "file_name": rec["file_name"],
                           "width": rec["width"], "height": rec["height"]})
            xywh = rec["boxes"].astype(np.float64)
            xywh[:, 2:] -= xywh[:, :2]
            for j in range(len(xywh)):
                ann = {"id": int(rec["ann_ids"][j]), "image_id": rec["image_id"],
                       "category_id": int(rec["category_ids"][j]), "bbox": [round(float(v), 4) for v in xywh[j]],
                       "area": float(rec["area"][j]), "iscrowd": int(rec["iscrowd"][j])}
                if rec["segmentation"] is not None and rec["segmentation"][j] is not None:
                    ann["segmentation"] = rec["segmentation"][j]
                anns.append(ann)
        return {"images": images, "annotations": anns, "categories": [dict(c) for c in self.categories]}

    def write_coco_json(self, path: str | os.PathLike) -> None:
        from tao_core.io.atomic import atomic_write

        with atomic_write(path, "w") as f:
            json.dump(self.to_coco_dict(), f)


def _boxes_to_xyxy(bbox: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xywh -> xyxy clipped to each box's image. Returns (xyxy, keep mask, clipped mask)."""
    xyxy = bbox.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    clipped = np.clip(xyxy, 0.0, np.concatenate([wh, wh], axis=1))
    changed = (clipped != xyxy).any(axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep, changed


def load_coco_sources(sources: Any, num_classes: int | None, check_images: bool | str = True,
                      max_missing_report: int = 20, dataset_type: str = "default") -> CocoIndex:
    """Read and validate the COCO json files of one split into a CocoIndex.

    sources: list of dicts / objects with `image_dir` and `json_file` (a json_file glob expands
    to every matching shard). num_classes: the spec's dataset.num_classes (None skips the upper
    bound check). check_images: True (or "decode") fully decodes every image, in parallel and
    once per process (a truncated or corrupt file is found before compute, all of them in one
    error; a tolerated truncation is a warning and the record's `truncated` is True), "header"
    reads only the headers (exists, known format, upright size), False trusts the json
    width/height. dataset_type: "default" (list of dicts) or "serialized" (shared buffer).
    A split with no image at all is an error naming its json files.
    """
    if dataset_type not in DATASET_TYPES:
        raise TaoUserError(f"dataset.dataset_type: got {dataset_type!r}; expected one of {list(DATASET_TYPES)}")
    srcs = _expand_sources(sources)
    files = [_parse_file(jf, need_size=not check_images) for _, jf in srcs]
    categories = _merge_categories(files, [jf for _, jf in srcs], num_classes)

    # Image table across sources; the new image id is the row number + 1.
    rows = [(s, im) for s, f in enumerate(files) for im in f["images"]]
    if not rows:
        names = ", ".join(jf for _, jf in srcs)
        raise TaoUserError(f"{names}: lists no images ('images' is empty): there is nothing to read in this split")
    paths = [os.path.join(srcs[s][0], im["file_name"]) for s, im in rows]
    stats = Counter(images=len(rows))
    truncated = [False] * len(rows)
    if check_images:
        sizes = _check_images(paths, check_images != "header", max_missing_report)
        truncated = [t for _, _, t in sizes]
        if any(truncated):
            stats["truncated"] = sum(truncated)
        mismatched = []
        for (_, im), (w, h, _t) in zip(rows, sizes, strict=True):
            if im["width"] is not None and (im["width"], im["height"]) != (w, h):
                mismatched.append(f"{im['file_name']} json {im['width']}x{im['height']} vs file {w}x{h}")
            im["width"], im["height"] = w, h
        if mismatched:
            stats["size_mismatch"] = len(mismatched)
            logger.warning("%d images have a json width/height different from the (EXIF-upright) file; "
                           "using the file's size: %s", len(mismatched), _few(mismatched, 5))

    records: list[dict] = []
    next_ann = 1
    for s, f in enumerate(files):
        jf = srcs[s][1]
        row_of = {im["id"]: r for r, im in enumerate(f["images"])}
        ims = f["images"]
        img_row = np.fromiter((row_of[i] for i in f["img_id"].tolist()), np.int64, len(f["img_id"]))
        img_wh = np.array([[im["width"], im["height"]] for im in ims], np.float64).reshape(-1, 2)
        wh = img_wh[img_row]
        degenerate = (f["bbox"][:, 2] <= 0) | (f["bbox"][:, 3] <= 0)
        xyxy, inside, changed = _boxes_to_xyxy(f["bbox"], wh)
        keep = ~degenerate & inside
        n_out, n_clip = int((~degenerate & ~inside).sum()), int((keep & changed).sum())
        if degenerate.any():
            logger.warning("%s: dropped %d boxes with non-positive width or height (annotation ids %s)",
                           jf, int(degenerate.sum()), _few(f["ann_id"][degenerate].tolist(), 5))
        if n_out:
            logger.warning("%s: dropped %d boxes lying entirely outside their image (annotation ids %s)",
                           jf, n_out, _few(f["ann_id"][~degenerate & ~inside].tolist(), 5))
        if n_clip:
            logger.warning("%s: clipped %d boxes extending outside their image (annotation ids %s)",
                           jf, n_clip, _few(f["ann_id"][keep & changed].tolist(), 5))
        stats.update(boxes=int(keep.sum()), dropped_degenerate=int(degenerate.sum()),
                     dropped_outside=n_out, clipped=n_clip)
        area = np.where(np.isnan(f["area"]), f["bbox"][:, 2] * f["bbox"][:, 3], f["area"])

        # Group the kept annotations by image row; a stable sort keeps json order within an image.
        kept = np.flatnonzero(keep)
        kept = kept[np.argsort(img_row[kept], kind="stable")]
        bounds = np.searchsorted(img_row[kept], np.arange(len(ims) + 1))
        for r, im in enumerate(ims):
            sel = kept[bounds[r]:bounds[r + 1]]
            segm = [f["segm"][k] for k in sel.tolist()]
            records.append({
                "image_id": len(records) + 1, "source": s, "orig_image_id": im["id"],
                "file_name": im["file_name"], "path": paths[len(records)], "truncated": truncated[len(records)],
                "width": im["width"], "height": im["height"],
                "boxes": xyxy[sel].astype(np.float32).reshape(-1, 4),
                "category_ids": f["cat_id"][sel],
                "iscrowd": f["iscrowd"][sel], "area": area[sel].astype(np.float32),
                "ann_ids": np.arange(next_ann, next_ann + len(sel), dtype=np.int64),
                "orig_ann_ids": f["ann_id"][sel],
                "segmentation": segm if any(x is not None for x in segm) else None,
            })
            next_ann += len(sel)
    index = CocoIndex(records, categories, srcs, dict(stats))
    return index.serialized() if dataset_type == "serialized" else index
