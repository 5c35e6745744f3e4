"""`evaluate`: COCO mAP of a DINO / Deformable DETR engine (evaluate.trt_engine).

Data: dataset.test_data_sources, else dataset.val_data_sources, read and validated by
tao_core.data.coco.load_coco_sources exactly as the PyTorch evaluate reads them. Images are
resized to the engine's input size (see tao_deploy.detr.detector), decoded with
model.num_select, detections below evaluate.conf_threshold dropped, and scored with
tao_core.metrics.coco.evaluate (dataset.eval_class_ids restricts both sides).

tao_core.metrics.coco_report.write_coco_evaluation (the PyTorch task's writer too) writes into
<results_dir>/evaluate/ (or evaluate.results_dir):
    results.json       12 COCO stats, mAP / mAP50 / ..., per-class AP, run details
    detections.json    the COCO results list that was scored
    ground_truth.json  the ground truth it was scored against
and a status.json line with kpi {mAP, mAP50}.
"""

from __future__ import annotations

import logging
import time

from tao_core.data.coco import load_coco_sources
from tao_core.io.output_set import replace_outputs
from tao_core.metrics.coco_report import write_coco_evaluation
from tao_core.processing.detr import normalisation, to_coco_results
from tao_core.tasks.detr import batch_size_of, eval_sources, input_size_of, output_dir
from tao_core.tasks.evaluation import require_ground_truth
from tao_deploy.detr.detector import EngineDetector, require_engine

logger = logging.getLogger(__name__)


def predict_coco(detector: EngineDetector, index, conf_threshold: float) -> list[dict]:
    """COCO result dicts of every image of a CocoIndex (image ids are the index's)."""
    records = list(index)
    results = []
    found = detector.detect_files(rec["path"] for rec in records)
    for rec, (_path, _image, det) in zip(records, found, strict=True):
        results += to_coco_results([det], [rec["image_id"]], conf_threshold)
    return results


def run(cfg, ctx) -> dict:
    section = cfg.evaluate
    engine_path = require_engine(section, "evaluate")
    field, sources = eval_sources(cfg.dataset)
    input_size = input_size_of(section, "evaluate")
    out_dir = output_dir(section, ctx)
    index = load_coco_sources(sources, cfg.dataset.num_classes, check_images=True, dataset_type="default")
    require_ground_truth(index, field, cfg.dataset.get("eval_class_ids"))  # 0 images / 0 boxes: an error now
    mean, std = normalisation(cfg.dataset.augmentation)
    conf = float(section.conf_threshold)
    with EngineDetector(engine_path, mean, std, cfg.model.num_select, batch_size_of(section, cfg),
                        input_size) as detector:
        logger.info("evaluating %s (%s %s engine, input %dx%d) on %d images of %s", engine_path,
                    detector.engine.precision.upper(), detector.engine.backend, *detector.size_hw, len(index), field)
        start = time.time()
        detections = predict_coco(detector, index, conf)
        seconds = time.time() - start
        run_info = {
            "network": ctx.network,
            "trt_engine": str(engine_path),
            "precision": detector.engine.precision,
            "backend": detector.engine.backend,
            "input_size": list(detector.size_hw),
            "data": field,
            "conf_threshold": conf,
            "num_select": int(cfg.model.num_select),
            "seconds": round(seconds, 3),
        }
    with replace_outputs(out_dir) as staging:  # the three files replace a previous run's together
        return write_coco_evaluation(staging, index.to_coco_dict(), detections, run_info, ctx.status,
                                     cfg.dataset.get("eval_class_ids"))
