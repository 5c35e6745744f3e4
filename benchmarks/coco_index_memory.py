"""RAM of a COCO index shared with forked DataLoader-style workers: default vs serialized.

A synthetic COCO json (no image files) is written once; then, for each dataset_type and worker
count, a fresh Python process loads it with `load_coco_sources(check_images=False)`, forks the
workers (multiprocessing 'fork', as torch's DataLoader does on Linux), and every worker reads
every record once, like an epoch over the dataset. While the workers are still alive the
parent reads /proc/<pid>/smaps_rollup of itself and of each worker:

    Pss  proportional set size: shared pages divided among the processes sharing them, so the sum
         over processes is the honest total RAM; this is the headline figure.
    Uss  private pages (Private_Clean + Private_Dirty): for a worker, what copy-on-write copied.

Usage: python benchmarks/coco_index_memory.py [--images 200000] [--boxes-per-image 5]
Prints one JSON object. Linux only (needs /proc/<pid>/smaps_rollup).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

MB = 1024 * 1024


def make_coco_json(path: str, n_images: int, boxes_per_image: int, n_classes: int = 80, seed: int = 0) -> None:
    """A synthetic COCO detection json: random image sizes, boxes inside their image."""
    rng = np.random.default_rng(seed)
    w = rng.integers(320, 1280, n_images)
    h = rng.integers(240, 960, n_images)
    images = [{"id": i + 1, "file_name": f"{i:012d}.jpg", "width": int(w[i]), "height": int(h[i])}
              for i in range(n_images)]
    n = n_images * boxes_per_image
    img = np.repeat(np.arange(n_images), boxes_per_image)
    x = rng.uniform(0, 0.8, n) * w[img]
    y = rng.uniform(0, 0.8, n) * h[img]
    bw = rng.uniform(0.02, 0.2, n) * w[img]
    bh = rng.uniform(0.02, 0.2, n) * h[img]
    cat = rng.integers(1, n_classes + 1, n)
    anns = [{"id": k + 1, "image_id": int(img[k]) + 1, "category_id": int(cat[k]),
             "bbox": [round(float(x[k]), 2), round(float(y[k]), 2), round(float(bw[k]), 2), round(float(bh[k]), 2)],
             "area": round(float(bw[k] * bh[k]), 2), "iscrowd": 0} for k in range(n)]
    cats = [{"id": c, "name": f"class_{c}", "supercategory": "thing"} for c in range(1, n_classes + 1)]
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)


def smaps(pid: int) -> dict[str, float]:
    """Rss / Pss / Uss of one process in MiB, from /proc/<pid>/smaps_rollup."""
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                vals[parts[0].rstrip(":")] = int(parts[1]) * 1024
    uss = vals["Private_Clean"] + vals["Private_Dirty"]
    return {"rss": vals["Rss"] / MB, "pss": vals["Pss"] / MB, "uss": uss / MB}


def _worker(index, done, release) -> None:
    # One DataLoader worker's epoch: fetch every record and use its arrays.
    total = 0.0
    for i in range(len(index)):
        rec = index[i]
        total += float(rec["boxes"][:, 2].sum()) + len(rec["category_ids"])
    done.put((os.getpid(), total))
    release.wait()


def run_one(json_file: str, dataset_type: str, workers: int) -> dict:
    """One configuration, run in a fresh interpreter so earlier configurations leave no heap behind."""
    from tao_core.data.coco import load_coco_sources

    base = smaps(os.getpid())
    t0 = time.perf_counter()
    index = load_coco_sources([{"image_dir": "/nonexistent", "json_file": json_file}], num_classes=91,
                              check_images=False, dataset_type=dataset_type)
    load_s = time.perf_counter() - t0
    gc.collect()
    parent_before = smaps(os.getpid())

    ctx = mp.get_context("fork")
    done, release = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_worker, args=(index, done, release)) for _ in range(workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for _ in procs:
        done.get()
    epoch_s = time.perf_counter() - t0
    parent = smaps(os.getpid())
    per_worker = [smaps(p.pid) for p in procs]
    release.set()
    for p in procs:
        p.join()

    return {
        "dataset_type": dataset_type,
        "workers": workers,
        "images": len(index),
        "boxes": int(index.stats["boxes"]),
        "load_s": round(load_s, 2),
        "epoch_all_workers_s": round(epoch_s, 2),
        "interpreter_baseline_rss_mb": round(base["rss"], 1),
        "parent_rss_after_load_mb": round(parent_before["rss"], 1),
        "serialized_buffer_mb": round(index.records.nbytes / MB, 1) if dataset_type == "serialized" else None,
        "parent_pss_mb": round(parent["pss"], 1),
        "workers_pss_mb": round(sum(w["pss"] for w in per_worker), 1),
        "total_pss_mb": round(parent["pss"] + sum(w["pss"] for w in per_worker), 1),
        "worker_uss_mb_each": [round(w["uss"], 1) for w in per_worker],
        "total_uss_mb": round(parent["uss"] + sum(w["uss"] for w in per_worker), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--boxes-per-image", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--one", nargs=3, metavar=("JSON", "TYPE", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        json_file = os.path.join(tmp, "instances_synthetic.json")
        t0 = time.perf_counter()
        make_coco_json(json_file, args.images, args.boxes_per_image)
        gen_s = time.perf_counter() - t0
        runs = []
        for dataset_type in ("default", "serialized"):
            for workers in args.workers:
                out = subprocess.run([sys.executable, __file__, "--one", json_file, dataset_type, str(workers)],
                                     check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
        result = {
            "python": sys.version.split()[0],
            "images": args.images,
            "boxes": args.images * args.boxes_per_image,
            "json_mb": round(os.path.getsize(json_file) / MB, 1),
            "json_generate_s": round(gen_s, 1),
            "runs": runs,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
