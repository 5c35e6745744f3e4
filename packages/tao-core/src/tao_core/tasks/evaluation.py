"""What every evaluate task (checkpoint or engine, any network scored against COCO ground truth)
checks before compute: there is something to score. Without it COCO evaluation prints
`AP -1.0000` and the task looks like it succeeded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tao_core.errors import TaoUserError


def require_ground_truth(index: Any, field: str, class_ids: Iterable[int] | None = None) -> None:
    """A TaoUserError naming the cause when `index` (a tao_core CocoIndex of the evaluated split,
    read from spec field `field`) has no image, no box left, or none of `class_ids`."""
    where = ", ".join(jf for _, jf in index.sources)
    if len(index) == 0:
        raise TaoUserError(f"dataset.{field.removeprefix('dataset.')}: {where} lists no images: nothing to evaluate")
    stats = index.stats
    kept = int(stats.get("boxes", 0))
    dropped = {"with non-positive width or height": int(stats.get("dropped_degenerate", 0)),
               "lying entirely outside their image": int(stats.get("dropped_outside", 0))}
    if kept == 0:
        total = kept + sum(dropped.values())
        if total == 0:
            raise TaoUserError(
                f"{where}: the {len(index)} images have no ground-truth box (no annotation of a category in "
                f"1..num_classes-1): nothing to score; evaluate on an annotated split")
        why = ", ".join(f"{n} {what}" for what, n in dropped.items() if n)
        raise TaoUserError(
            f"{where}: every ground-truth box was dropped ({why}) so there is nothing to score; the bbox "
            f"values must be [x, y, width, height] in pixels of each image")
    if class_ids:
        wanted = {int(c) for c in class_ids}
        present = sorted({int(c) for rec in index for c in rec["category_ids"]})
        if not wanted & set(present):
            raise TaoUserError(
                f"dataset.eval_class_ids={sorted(wanted)}: no ground-truth box of these categories in {where} "
                f"(its boxes have category ids {present}): nothing to score")
