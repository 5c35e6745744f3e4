"""`inference`: run a DINO / Deformable DETR engine (inference.trt_engine) on folders of images.

Images: every .jpg/.jpeg/.png/.bmp under dataset.infer_data_sources.image_dir (one folder or a
list, recursively, sorted). Class names: dataset.infer_data_sources.classmap (line i = category
id i + 1); detections of ids the classmap does not name are dropped, as in TAO and the PyTorch task.

Writes with tao_core.visualize.outputs.InferenceWriter, into <results_dir>/inference/ (or
inference.results_dir), the layout of the PyTorch task:
    images_annotated/<stem>.jpg|.png   boxes with "name: score", inference.color_map / outline_width
    labels/<stem>.txt                  KITTI lines with the score as 16th field
keeping detections scoring >= inference.conf_threshold; with inference.is_internal the two
folders go under <out>/<name of the image's parent folder>/.
"""

from __future__ import annotations

import logging

from tao_core.data.classmap import read_classmap
from tao_core.data.images import list_images
from tao_core.tasks.detr import batch_size_of, input_size_of, output_dir
from tao_core.visualize.outputs import InferenceWriters, write_detr_detections
from tao_deploy.detr.detector import EngineDetector, normalisation, require_engine

logger = logging.getLogger(__name__)


def run(cfg, ctx) -> dict:
    section = cfg.inference
    engine_path = require_engine(section, "inference")
    class_names = read_classmap(cfg.dataset.infer_data_sources.classmap)
    input_size = input_size_of(section, "inference")
    paths = list_images(list(cfg.dataset.infer_data_sources.image_dir))
    out_dir = output_dir(section, ctx)
    writers = InferenceWriters(out_dir, dict(section.color_map or {}), section.outline_width,
                               float(section.conf_threshold), per_source_folder=bool(section.get("is_internal")))
    mean, std = normalisation(cfg)
    num_kept = 0
    with EngineDetector(engine_path, mean, std, cfg.model.num_select, batch_size_of(section, cfg),
                        input_size) as detector:
        logger.info("running %s (%s %s engine) on %d images", engine_path, detector.engine.precision.upper(),
                    detector.engine.backend, len(paths))
        for path, image, det in detector.detect_files(paths):
            num_kept += write_detr_detections(writers.for_image(path), path, image, det, class_names)

    message = f"Inference on {len(paths)} images: {num_kept} detections with score >= {section.conf_threshold} written to {out_dir}"
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {"num_images": len(paths), "num_detections": num_kept, "results_dir": out_dir}
