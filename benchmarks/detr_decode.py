"""Top-k decode of DETR outputs: tao-core's numpy `decode_topk` (what the engines use) against
the torch version the PyTorch tasks used before (sigmoid, torch.topk, gather, scale, clip), on CPU.

Shapes: DINO's defaults (Q = 900 queries, C = 91 classes, num_select = 300) and Deformable
DETR's (Q = 300, num_select = 100), batch 1 and 8; the numpy side includes the tensor -> numpy
copy the tasks do. Each repeat times both variants alternately (order swapped every repeat), each
as the median of --iters calls. Reported: median and min-max (ms per batch) over --repeats, and
the largest |difference| between the two decodes' boxes and scores once equal scores are put in
one order (labels must be equal).

    python benchmarks/detr_decode.py [--repeats 5] [--iters 20] [--threads 1]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def torch_decode(logits, boxes, sizes, num_select):
    """The torch decode of tao_pytorch.detr.postprocess before it moved to tao-core's numpy one."""
    import torch

    bs, nq, nc = logits.shape
    prob = logits.sigmoid().reshape(bs, nq * nc)
    scores, idx = torch.topk(prob, min(num_select, nq * nc), dim=1)
    query = torch.div(idx, nc, rounding_mode="floor")
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    out = torch.gather(xyxy, 1, query.unsqueeze(-1).repeat(1, 1, 4))
    hh, ww = sizes.to(out.dtype).unbind(1)
    scale = torch.stack([ww, hh, ww, hh], 1)[:, None, :]
    out = torch.minimum((out * scale).clamp(min=0), scale)
    return [{"scores": s.numpy(), "labels": (i % nc).numpy(), "boxes": b.numpy()} for s, i, b in zip(scores, idx, out)]


def numpy_decode(logits, boxes, sizes, num_select):
    from tao_pytorch.detr.postprocess import PostProcess

    return PostProcess(num_select)({"pred_logits": logits, "pred_boxes": boxes}, sizes)


def _canonical(det):
    """The detections in one order whatever order equal scores came out in (torch.topk's is arbitrary)."""
    import numpy as np

    order = np.lexsort((det["boxes"][:, 1], det["boxes"][:, 0], det["labels"], -det["scores"]))
    return {k: v[order] for k, v in det.items()}


def _median_ms(fn, iters):
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cases = [("dino", 900, 91, 300), ("deformable_detr", 300, 91, 100)]
    results = []
    for name, nq, nc, k in cases:
        for batch in (1, 8):
            g = torch.Generator().manual_seed(0)
            logits = torch.randn(batch, nq, nc, generator=g) * 3
            boxes = torch.rand(batch, nq, 4, generator=g)
            sizes = torch.tensor([[480, 640]] * batch)
            args_k = (logits, boxes, sizes, k)
            variants = {"torch": lambda a=args_k: torch_decode(*a), "numpy": lambda a=args_k: numpy_decode(*a)}
            runs = {v: [] for v in variants}
            for r in range(args.repeats):
                order = list(variants) if r % 2 == 0 else list(variants)[::-1]
                for v in order:
                    variants[v]()  # warm-up
                    runs[v].append(_median_ms(variants[v], args.iters))
            a = [_canonical(d) for d in torch_decode(logits, boxes, sizes, k)]
            b = [_canonical(d) for d in numpy_decode(logits, boxes, sizes, k)]
            labels_equal = all(np.array_equal(x["labels"], y["labels"]) for x, y in zip(a, b))
            results.append({
                "case": name, "queries": nq, "classes": nc, "num_select": k, "batch": batch,
                **{f"{v}_ms": {"median": round(statistics.median(t), 3), "min": round(min(t), 3),
                               "max": round(max(t), 3)} for v, t in runs.items()},
                "labels_equal": labels_equal,
                "max_abs_diff_boxes_px": float(max(np.abs(x["boxes"] - y["boxes"]).max() for x, y in zip(a, b))),
                "max_abs_diff_scores": float(max(np.abs(x["scores"] - y["scores"]).max() for x, y in zip(a, b))),
            })
    print(json.dumps({"threads": args.threads, "repeats": args.repeats, "iters": args.iters,
                      "load_avg_1m": os.getloadavg()[0], "results": results}, indent=1))


if __name__ == "__main__":
    main()
