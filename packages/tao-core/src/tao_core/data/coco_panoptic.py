"""COCO panoptic annotations (json + PNG segments) -> validated per-image records (no framework).

Format (cocodataset.org/#format-data): the json lists `images`, `categories` (id, name, isthing)
and one `annotations` entry per image with its PNG `file_name` and `segments_info` (id,
category_id, iscrowd, area, bbox). The PNG holds each pixel's segment id as RGB with
id = R + 256 G + 256^2 B; 0 is VOID (unlabelled).

`load_panoptic_json` finds every user mistake at load time, all of a kind in one TaoUserError
naming the file: category, segment (annotation) ids that are not > 0 (a segment id 0 would be
VOID in the PNG), unknown categories, images without annotation entries, missing / unreadable
images or PNGs (tao_core.data.images.decode_check, in parallel).

Record layout (one dict per image):
    image_id int (the json id), file_name str, path str (images dir / file_name), truncated bool,
    width, height int, pan_path str (panoptic dir / annotation file_name),
    segment_ids int64 (n,), category_ids int64 (n,) json ids, iscrowd uint8 (n,), area int64 (n,)
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from tao_core.data.coco import _category_id_name, _few, _int, _Problems, read_json
from tao_core.data.images import decode_check, truncation_warning
from tao_core.errors import TaoUserError

logger = logging.getLogger(__name__)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) int64 segment ids, id = R + 256 G + 256^2 B."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb2id expects an (H, W, 3) array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids (0 .. 2^24 - 1) -> (H, W, 3) uint8 RGB, the inverse of rgb2id."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError("segment ids must lie in 0 .. 256**3 - 1 to be stored as RGB")
    return np.stack([ids % 256, (ids // 256) % 256, ids // (256 * 256)], axis=-1).astype(np.uint8)


def read_panoptic_png(path: str | os.PathLike) -> np.ndarray:
    """Segment-id map (H, W) int64 of a COCO panoptic PNG; TaoUserError naming the file if unreadable."""
    try:
        with Image.open(path) as img:
            return rgb2id(np.asarray(img.convert("RGB")))
    except FileNotFoundError:
        raise TaoUserError(f"{path}: panoptic PNG not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise TaoUserError(f"{path}: cannot read panoptic PNG ({e})") from None


def write_panoptic_png(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Write a segment-id map as a COCO panoptic PNG (RGB)."""
    Image.fromarray(id2rgb(ids)).save(path)


def parse_categories(categories: Any, where: str) -> list[dict]:
    """[{id, name, isthing, color?}] checked: integer ids > 0, unique, string names (all problems at once)."""
    p = _Problems(where)
    if not isinstance(categories, list) or not categories:
        raise TaoUserError(f"{where}: 'categories' must be a non-empty list of {{id, name, isthing}}")
    out, seen = [], set()
    for k, c in enumerate(categories):
        parsed = _category_id_name(c, k, p)
        if parsed is None:
            continue
        cid, name = parsed
        if cid <= 0:
            p.add(f"categories[{k}] ({name!r}): category id {cid} is not > 0; ids must start at 1 (renumber the categories)")
        if cid in seen:
            p.add(f"categories[{k}]: duplicate category id {cid}")
        seen.add(cid)
        cat = {"id": cid, "name": name, "isthing": int(bool(c.get("isthing", 1)))}
        if "color" in c:
            cat["color"] = [int(v) for v in c["color"]]
        out.append(cat)
    p.raise_if_any()
    return out


def _check_files(items: list[tuple[str, str]], limit: int = 20) -> dict[str, Any]:
    """Decode every (kind, path) in parallel; one error listing every missing / unreadable file."""

    def one(item):
        kind, path = item
        try:
            return decode_check(path)
        except TaoUserError as e:
            return f"{kind}: {e}"

    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        results = list(pool.map(one, items, chunksize=8))
    bad = [r for r in results if isinstance(r, str)]
    if bad:
        missing = sum("not found" in r for r in bad)
        more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
        raise TaoUserError(
            f"{len(bad)} of {len(items)} files cannot be used ({missing} missing, {len(bad) - missing} unreadable); "
            "check the split's images / panoptic directories and the json file_name values:\n  "
            + "\n  ".join(bad[:limit]) + more
        )
    return {path: r for (_, path), r in zip(items, results, strict=True)}


def load_panoptic_json(json_file: str, images_dir: str, panoptic_dir: str, check_files: bool = True) -> tuple[list[dict], list[dict]]:
    """(records, categories) of a COCO panoptic split; see the module docstring."""
    data = read_json(json_file)
    if not isinstance(data, dict):
        raise TaoUserError(f"{json_file}: top level must be a JSON object with images/annotations/categories")
    p = _Problems(json_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            p.add(f"missing required key {key!r} (a list)" if key not in data else f"{key!r} must be a list")
    p.raise_if_any()
    categories = parse_categories(data["categories"], json_file)
    cat_ids = {c["id"] for c in categories}

    images = {}
    for k, im in enumerate(data["images"]):
        try:
            iid, fname = _int(im["id"]), im["file_name"]
            if not isinstance(fname, str) or not fname:
                raise TypeError
            images[iid] = {"file_name": fname, "width": im.get("width"), "height": im.get("height")}
        except (KeyError, TypeError, OverflowError):
            p.add(f"images[{k}]: needs integer 'id' and non-empty 'file_name', got {im!r:.200}")
    p.raise_if_any()

    records, bad_seg_ids, unknown_cats, seen_images = [], [], set(), set()
    for k, ann in enumerate(data["annotations"]):
        try:
            iid, pan_name, segs = _int(ann["image_id"]), ann["file_name"], ann["segments_info"]
            if not isinstance(pan_name, str) or not isinstance(segs, list):
                raise TypeError
            seg_ids = np.array([_int(s["id"]) for s in segs], np.int64)
            seg_cats = np.array([_int(s["category_id"]) for s in segs], np.int64)
            crowd = np.array([_int(s.get("iscrowd", 0)) != 0 for s in segs], np.uint8)
            area = np.array([_int(s["area"]) if "area" in s else -1 for s in segs], np.int64)
        except (KeyError, TypeError, OverflowError, AttributeError):
            p.add(f"annotations[{k}]: needs integer image_id, a PNG file_name and segments_info "
                  f"[{{id, category_id, iscrowd, area}}], got {str(ann)[:200]}")
            continue
        if iid not in images:
            p.add(f"annotations[{k}]: image_id {iid} is not listed in 'images'")
            continue
        if iid in seen_images:
            p.add(f"annotations[{k}]: a second annotation entry for image_id {iid}")
        seen_images.add(iid)
        bad_seg_ids += seg_ids[seg_ids <= 0].tolist()
        unknown_cats |= set(seg_cats[~np.isin(seg_cats, list(cat_ids))].tolist())
        if len(np.unique(seg_ids)) != len(seg_ids):
            p.add(f"annotations[{k}] (image {iid}): duplicate segment ids in segments_info")
        im = images[iid]
        records.append({
            "image_id": iid, "file_name": im["file_name"], "path": os.path.join(images_dir, im["file_name"]),
            "truncated": False, "width": im["width"], "height": im["height"],
            "pan_path": os.path.join(panoptic_dir, pan_name),
            "segment_ids": seg_ids, "category_ids": seg_cats, "iscrowd": crowd, "area": area,
        })
    if bad_seg_ids:
        p.add(f"segment (annotation) ids must be > 0, found {_few(sorted(set(bad_seg_ids)))}: id 0 is VOID "
              "in the panoptic PNG. Renumber the segments from 1 (the PNG colours and segments_info ids together).")
    if unknown_cats:
        p.add(f"segments use category ids not listed in 'categories': {_few(sorted(unknown_cats))}")
    without = [i for i in images if i not in seen_images]
    if without:
        p.add(f"images without an entry in 'annotations': {_few(without)} ({len(without)} in all); add them or remove them from 'images'")
    p.raise_if_any()
    if not records:
        raise TaoUserError(f"{json_file}: lists no annotated images: there is nothing to read in this split")

    if check_files:
        checked = _check_files([("image", r["path"]) for r in records] + [("panoptic PNG", r["pan_path"]) for r in records])
        mismatched = []
        for r in records:
            img, pan = checked[r["path"]], checked[r["pan_path"]]
            if img.truncated is not None:
                logger.warning("%s", truncation_warning(r["path"], img.truncated))
                r["truncated"] = True
            if (pan.width, pan.height) != (img.width, img.height):
                mismatched.append(f"{r['pan_path']} is {pan.width}x{pan.height} but {r['path']} {img.width}x{img.height}")
            r["width"], r["height"] = img.width, img.height
        if mismatched:
            raise TaoUserError(f"{json_file}: {len(mismatched)} panoptic PNGs differ in size from their images: "
                               + "; ".join(mismatched[:5]))
    return records, categories
