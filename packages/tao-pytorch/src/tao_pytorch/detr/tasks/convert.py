"""`convert`: KITTI folders -> sharded COCO json, tao-core's converter as a task of the DETR networks.

The spec is the flat ConvertConfig (input_source, results_dir, image_dir_name, label_dir_name,
num_shards, num_partitions, mapping_path, ...); see tao_core.data.kitti_to_coco for the layout
of the files it writes under results_dir.
"""

from __future__ import annotations

import logging

from tao_core.data.kitti_to_coco import convert

logger = logging.getLogger(__name__)


def run_convert(cfg, ctx) -> dict:
    summary = convert(cfg)
    names = ", ".join(f"{c['id']}: {c['name']}" for c in summary.categories)
    message = (
        f"Converted {summary.num_images} images and {summary.num_annotations} boxes into "
        f"{len(summary.files)} COCO json files under {cfg.results_dir} (categories {names})"
    )
    if summary.dropped_degenerate or summary.skipped_unmapped:
        message += (
            f"; dropped {summary.dropped_degenerate} zero-size boxes and {summary.skipped_unmapped} objects "
            "of classes not in the mapping"
        )
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {"files": [str(f) for f in summary.files], "num_images": summary.num_images,
            "num_annotations": summary.num_annotations, "categories": summary.categories}
