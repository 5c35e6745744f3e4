"""Per-sample OneFormer targets for one task, as SHI-Labs/OneFormer's unified dataset mapper builds them.

From a sample's segments ({"ids", "classes" (class index), "iscrowd"}) and their masks:
- semantic: one mask per class present (its segments merged), crowd segments left out;
- instance: one mask per non-crowd segment of a thing class;
- panoptic: one mask per non-crowd segment;
segments with no pixel left (after a crop) are dropped. `sem_seg` paints the kept masks with their
class, `ignore_value` elsewhere. The text queries (the contrastive branch's targets) are
"a photo with a {class}" once per kept mask, in class-index order, padded to num_text_queries
(= num_object_queries - n_ctx) with "a {task} photo" ("an instance photo").

The task is drawn per training sample from task probabilities (`choose_task`); CutMix (`cutmix`)
pastes a box of a second sample and keeps the masks left with more than CUTMIX_MIN_AREA pixels.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

TASKS = ("semantic", "instance", "panoptic")
# Which targets each annotation format can give (a JSON-lines mask has no instances).
TASKS_OF_FORMAT = {"semantic": ("semantic",), "instance": ("semantic", "instance"), "panoptic": TASKS}
# CutMix drops a mask cut down to this many pixels or fewer (TAO's rule).
CUTMIX_MIN_AREA = 10


def pad_text(task: str) -> str:
    return f"an {task} photo" if task[0] in "aeiou" else f"a {task} photo"


def choose_task(rng: np.random.Generator, task_prob: Mapping[str, float], allowed: Sequence[str]) -> str:
    """One task drawn with the given probabilities, renormalised over the tasks the format allows."""
    probs = np.array([max(0.0, float(task_prob.get(t, 0.0))) for t in allowed])
    if probs.sum() <= 0:
        return allowed[0]
    return str(allowed[int(rng.choice(len(allowed), p=probs / probs.sum()))])


def segment_masks(sample: dict, segments: dict) -> np.ndarray:
    """(n, H, W) bool masks of the segments, from the id map or the mask stack of the sample."""
    if sample.get("masks") is not None:
        return sample["masks"].astype(bool)
    seg = sample["seg"]
    ids = np.asarray(segments["ids"])
    if not len(ids):
        return np.zeros((0, *seg.shape), bool)
    return seg[None] == ids[:, None, None]


def texts_for(classes: Sequence[int], class_names: Sequence[str], task: str, num_text_queries: int) -> list[str]:
    counts = np.bincount(np.asarray(classes, np.int64), minlength=len(class_names)) if len(classes) else []
    texts = []
    for cls, count in enumerate(counts):
        texts += [f"a photo with a {class_names[cls]}"] * int(count)
    texts = texts[:num_text_queries]
    return texts + [pad_text(task)] * (num_text_queries - len(texts))


def build_targets(task: str, sample: dict, segments: dict, class_names: Sequence[str], isthing: np.ndarray,
                  num_text_queries: int, ignore_value: int) -> dict:
    """{"labels" int64 (n,), "masks" bool (n, H, W), "sem_seg" int64 (H, W), "texts" [str]} of `task`."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    masks_all = segment_masks(sample, segments)
    h, w = masks_all.shape[-2:] if masks_all.ndim == 3 else sample["image"].shape[:2]
    classes_all = np.asarray(segments["classes"], np.int64)
    crowd = np.asarray(segments["iscrowd"]).astype(bool)
    keep = ~crowd & masks_all.reshape(len(classes_all), -1).any(axis=1)
    if task == "instance":
        keep &= isthing[classes_all]
    labels, masks = [], []
    sem_seg = np.full((h, w), ignore_value, np.int64)
    for k in np.flatnonzero(keep):
        cls, m = int(classes_all[k]), masks_all[k]
        if task == "semantic" and cls in labels:
            masks[labels.index(cls)] |= m
        else:
            labels.append(cls)
            masks.append(m.copy())
        sem_seg[m] = cls
    return {
        "labels": np.array(labels, np.int64),
        "masks": np.stack(masks) if masks else np.zeros((0, h, w), bool),
        "sem_seg": sem_seg,
        "texts": texts_for(labels, class_names, task, num_text_queries),
    }


def cutmix(image1: np.ndarray, t1: dict, image2: np.ndarray, t2: dict, rng: np.random.Generator,
           class_names: Sequence[str], task: str, num_text_queries: int) -> tuple[np.ndarray, dict]:
    """TAO's CutMix of two augmented samples (uint8 images + targets of one task): a box of area
    share 1 - lam, lam ~ Beta(1, 1), centred at a random pixel, is taken from the second sample.
    Images of different sizes exchange only the box part both of them cover."""
    img_h, img_w = image1.shape[:2]
    lam = rng.beta(1.0, 1.0)
    ratio = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(img_w * ratio), int(img_h * ratio)
    cx, cy = int(rng.integers(img_w)), int(rng.integers(img_h))
    x1, y1 = np.clip(cx - cut_w // 2, 0, img_w), np.clip(cy - cut_h // 2, 0, img_h)
    x2 = min(np.clip(cx + cut_w // 2, 0, img_w), image2.shape[1])
    y2 = min(np.clip(cy + cut_h // 2, 0, img_h), image2.shape[0])
    x1, y1 = min(x1, x2), min(y1, y2)
    image = image1.copy()
    image[y1:y2, x1:x2] = image2[y1:y2, x1:x2]
    sem_seg = t1["sem_seg"].copy()
    sem_seg[y1:y2, x1:x2] = t2["sem_seg"][y1:y2, x1:x2]
    box = np.zeros((img_h, img_w), bool)
    box[y1:y2, x1:x2] = True
    other = np.zeros((len(t2["labels"]), img_h, img_w), bool)
    other[:, y1:y2, x1:x2] = t2["masks"][:, y1:y2, x1:x2]
    masks = np.concatenate([t1["masks"] & ~box, other])
    labels = np.concatenate([t1["labels"], t2["labels"]])
    keep = masks.reshape(len(labels), -1).sum(1) > CUTMIX_MIN_AREA
    labels, masks = labels[keep], masks[keep]
    if task == "semantic" and len(labels):
        # one mask per class, as for a single sample: a class present in both halves is merged
        classes = np.unique(labels)
        masks = np.stack([masks[labels == c].any(axis=0) for c in classes])
        labels = classes
    return image, {"labels": labels, "masks": masks, "sem_seg": sem_seg,
                   "texts": texts_for(labels.tolist(), class_names, task, num_text_queries)}
