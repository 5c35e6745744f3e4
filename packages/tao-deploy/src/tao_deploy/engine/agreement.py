"""How closely a reduced-precision (INT8 / FP16) graph follows its FP32 graph, on given batches.

Network-agnostic: the two graphs are run as callables `batch -> {output name: array}`, and the
network's own `decode(outputs, batch) -> [per-image dict(scores, labels, boxes xyxy)]` turns raw
outputs into detections. What is compared, per image, over the reference's `top_k` detections:

- `mean_iou`: for each reference detection, the best IoU with a candidate detection of the same
  class (0 when none): the boxes the user sees, whatever order near-equal scores fall in;
- `top1_iou`: the same for each image's best reference detection alone;
- `score_abs_diff`: mean |score_ref - score_candidate| of the i-th best reference and i-th best
  candidate score, i < top_k (rank to rank: a box's best-IoU partner may be a lower-scored
  duplicate, so pairing scores by IoU would measure the duplicates, not the engine);
- `output_rel_err`: max |candidate - reference| / max |reference| of every raw output tensor;
- `speedup`: reference run time / candidate run time over the batches after the first (warm-up),
  run in turn on the same batches (None with a single batch): a rough figure, not a benchmark.

`Agreement.degraded(thresholds)` names what falls below the thresholds (empty when none does).
The generic thresholds below were measured on DETR-family detectors. A network measured to
need others (DetectNet_v2: steadier boxes, confidences that are sums of coverage rather than
probabilities) gives its `decode` a `thresholds` attribute (a Thresholds); `measure_agreement`
keeps it with the figures (`network_thresholds`) and `degraded` uses it in place of the generic
defaults, so every caller of the check (the build, status.json) warns at the level measured for
that network. Thresholds a caller chooses (anything but the generic defaults) still win.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from tao_core.metrics.detectnet import box_iou

Outputs = dict[str, np.ndarray]
Decode = Callable[[Outputs, np.ndarray], list[dict[str, np.ndarray]]]

TOP_K = 10
# An engine is reported degraded below these. Measured (see the package README, "INT8 accuracy"):
# INT8 engines that keep COCO mAP within 0.01 of FP32 score mean_iou >= 0.90 on the demo and test
# models; the collapsed ones of issue 7 scored 0.18 - 0.5.
MIN_MEAN_IOU = 0.8
MIN_TOP1_IOU = 0.8
MAX_SCORE_ABS_DIFF = 0.05


@dataclass(frozen=True)
class Thresholds:
    min_mean_iou: float = MIN_MEAN_IOU
    min_top1_iou: float = MIN_TOP1_IOU
    max_score_abs_diff: float = MAX_SCORE_ABS_DIFF


@dataclass(frozen=True)
class Agreement:
    images: int
    top_k: int
    mean_iou: float
    top1_iou: float
    score_abs_diff: float
    output_rel_err: dict[str, float]
    speedup: float | None = None
    network_thresholds: dict | None = None  # the decode's own Thresholds (asdict), see the module docstring

    def degraded(self, thresholds: Thresholds = Thresholds()) -> list[str]:
        """One phrase per measure below its threshold (empty list: the engine agrees)."""
        if self.network_thresholds and thresholds == Thresholds():
            thresholds = Thresholds(**self.network_thresholds)
        bad = []
        if self.mean_iou < thresholds.min_mean_iou:
            bad.append(f"mean IoU of the top-{self.top_k} boxes {self.mean_iou:.3f} < {thresholds.min_mean_iou}")
        if self.top1_iou < thresholds.min_top1_iou:
            bad.append(f"IoU of the best box {self.top1_iou:.3f} < {thresholds.min_top1_iou}")
        if self.score_abs_diff > thresholds.max_score_abs_diff:
            bad.append(f"mean score difference {self.score_abs_diff:.4f} > {thresholds.max_score_abs_diff}")
        return bad

    def kpi(self, prefix: str = "agreement_") -> dict[str, float]:
        """Flat float figures for status.json's kpi."""
        out = {f"{prefix}mean_iou": self.mean_iou, f"{prefix}top1_iou": self.top1_iou,
               f"{prefix}score_abs_diff": self.score_abs_diff, f"{prefix}images": float(self.images)}
        out.update({f"{prefix}rel_err_{k}": v for k, v in self.output_rel_err.items()})
        if self.speedup is not None:
            out[f"{prefix}speedup_vs_fp32"] = self.speedup
        return out

    def to_json(self) -> dict:
        return asdict(self)


def compare_detections(ref: list[dict], cand: list[dict], top_k: int = TOP_K) -> tuple[list, list, list]:
    """(IoUs of every reference top-k detection, of each image's best one, score differences)."""
    ious, top1, diffs = [], [], []
    for r, c in zip(ref, cand, strict=True):
        order = np.argsort(-np.asarray(r["scores"]), kind="stable")[:top_k]
        if len(order) == 0:
            continue
        rb = np.asarray(r["boxes"], np.float64)[order]
        rl, rs = np.asarray(r["labels"])[order], np.asarray(r["scores"], np.float64)[order]
        cb, cl = np.asarray(c["boxes"], np.float64).reshape(-1, 4), np.asarray(c["labels"])
        cs = np.asarray(c["scores"], np.float64)
        iou = box_iou(rb, cb) if len(cb) else np.zeros((len(rb), 0))
        iou = np.where(rl[:, None] == cl[None, :], iou, -1.0)  # same class only
        best = np.clip(iou.max(axis=1), 0.0, None) if iou.shape[1] else np.zeros(len(rb))
        ious += best.tolist()
        top1.append(float(best[0]))
        ranked = np.sort(cs)[::-1][: len(rs)]
        ranked = np.pad(ranked, (0, len(rs) - len(ranked)))  # missing candidates score 0
        diffs += np.abs(rs - ranked).tolist()
    return ious, top1, diffs


def measure_agreement(reference: Callable[[np.ndarray], Outputs], candidate: Callable[[np.ndarray], Outputs],
                      batches: Iterable[np.ndarray], decode: Decode, top_k: int = TOP_K) -> Agreement:
    """Agreement of `candidate` with `reference` over `batches` (see the module docstring)."""
    ious, top1, diffs, rel, images = [], [], [], {}, 0
    seconds = [0.0, 0.0]
    for n, batch in enumerate(batches):
        t0 = time.perf_counter()
        ref_out = reference(batch)
        t1 = time.perf_counter()
        cand_out = candidate(batch)
        if n:  # the first batch warms both up
            seconds[0] += t1 - t0
            seconds[1] += time.perf_counter() - t1
        for name, r in ref_out.items():
            r, c = np.asarray(r, np.float64), np.asarray(cand_out[name], np.float64)
            err = float(np.max(np.abs(c - r)) / max(float(np.max(np.abs(r))), 1e-12)) if r.size else 0.0
            rel[name] = max(rel.get(name, 0.0), err)
        a, b, d = compare_detections(decode(ref_out, batch), decode(cand_out, batch), top_k)
        ious += a
        top1 += b
        diffs += d
        images += len(batch)
    if images == 0:
        raise ValueError("measure_agreement got no batches")
    speedup = round(seconds[0] / seconds[1], 3) if seconds[1] > 0 else None
    own = getattr(decode, "thresholds", None)
    return Agreement(images=images, top_k=top_k, mean_iou=_mean(ious), top1_iou=_mean(top1),
                     score_abs_diff=_mean(diffs), output_rel_err={k: round(v, 6) for k, v in rel.items()},
                     speedup=speedup, network_thresholds=asdict(own) if own is not None else None)


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 6) if values else 1.0
