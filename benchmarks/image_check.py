"""Time of the load-time image check (every image fully decoded) on generated images.

`load_coco_sources` decides every image before compute (tao_core.data.images.decode_check,
threads, JPEGs decoded at 1/8 scale: every byte of the entropy-coded data is still decoded,
which is what finds truncation and corruption). This script writes `--images` (10,000) random
`--size` x `--size` (64) JPEGs and one COCO json into a temporary folder (under /tmp, removed
afterwards), then times, alternating, `--repeats` (3) times each:

    decode_check   load_coco_sources(check_images=True), the default, with its default workers
    header_only    load_coco_sources(check_images="header"): what was checked before
    full_scale     the same threads, each image decoded at full scale (load_image_rgb), to show
                   what the 1/8-scale decode saves

The in-process decision cache is cleared before every run (a second split / task of the same
process reuses it; that case costs nothing). Prints one JSON object: median [min, max] seconds
and images/s per variant, the worker count, cpu count and load average.

Usage: python benchmarks/image_check.py [--images 10000] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

import tao_core.data.images as images
from tao_core.data.coco import load_coco_sources


def write_set(root: str, n: int, size: int) -> dict:
    rng = np.random.default_rng(0)
    folder = os.path.join(root, "images")
    os.makedirs(folder)
    entries, anns = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{i:06d}.jpg"), quality=90)
        entries.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "width": size, "height": size})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, size / 2, size / 2],
                     "area": size * size / 4, "iscrowd": 0})
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w") as f:
        json.dump({"images": entries, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}, f)
    return {"image_dir": folder, "json_file": json_file}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    workers = min(32, 4 * (os.cpu_count() or 1))  # what the reader uses
    root = tempfile.mkdtemp(prefix="tao_image_check_", dir="/tmp")
    try:
        t0 = time.perf_counter()
        src = write_set(root, args.images, args.size)
        print(f"wrote {args.images} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        paths = [os.path.join(src["image_dir"], f"{i:06d}.jpg") for i in range(args.images)]

        def full_scale():
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(images.load_image_rgb, paths, chunksize=16))

        variants = {
            "decode_check": lambda: load_coco_sources([src], 2),
            "header_only": lambda: load_coco_sources([src], 2, check_images="header"),
            "full_scale": full_scale,
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():  # alternating, so drifting load hits all alike
                images._CHECKED.clear()
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
                print(f"{name}: {times[name][-1]:.2f} s", file=sys.stderr)
        result = {
            "images": args.images, "size": args.size, "repeats": args.repeats, "workers": workers,
            "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
        }
        for name, values in times.items():
            median = statistics.median(values)
            result[name] = {"median_s": round(median, 3), "min_s": round(min(values), 3),
                            "max_s": round(max(values), 3), "images_per_s": round(args.images / median)}
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
