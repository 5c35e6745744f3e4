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

As in the PyTorch task: an image that cannot be read is skipped and reported (count and names in
the log and status.json), the task fails only when none could be read, and a previous run's
outputs in the same folder are replaced as a whole once this run's are complete.
"""

from __future__ import annotations

import logging

from tao_core.data.classmap import read_classmap
from tao_core.data.images import list_images
from tao_core.io.output_set import replace_outputs
from tao_core.processing.detr import normalisation
from tao_core.tasks.detr import batch_size_of, input_size_of, output_dir
from tao_core.tasks.inputs import SkippedInputs, readable_batches
from tao_core.visualize.outputs import InferenceWriters, write_detr_detections
from tao_deploy.detr.detector import EngineDetector, require_engine

logger = logging.getLogger(__name__)


def run(cfg, ctx) -> dict:
    section = cfg.inference
    engine_path = require_engine(section, "inference")
    class_names = read_classmap(cfg.dataset.infer_data_sources.classmap)
    input_size = input_size_of(section, "inference")
    paths = list_images(list(cfg.dataset.infer_data_sources.image_dir))
    out_dir = output_dir(section, ctx)
    # a bad color_map or threshold fails now, before the engine is loaded
    InferenceWriters(out_dir, dict(section.color_map or {}), section.outline_width, float(section.conf_threshold))
    mean, std = normalisation(cfg.dataset.augmentation)
    num_kept = 0
    skipped = SkippedInputs()
    with EngineDetector(engine_path, mean, std, cfg.model.num_select, batch_size_of(section, cfg),
                        input_size) as detector, replace_outputs(out_dir) as staging:
        writers = InferenceWriters(staging, dict(section.color_map or {}), section.outline_width,
                                   float(section.conf_threshold), per_source_folder=bool(section.get("is_internal")))
        logger.info("running %s (%s %s engine) on %d images", engine_path, detector.engine.precision.upper(),
                    detector.engine.backend, len(paths))
        for chunk in readable_batches(paths, detector.batch_size, skipped):
            found = detector.detect([image for _, image in chunk])
            for (path, image), det in zip(chunk, found, strict=True):
                num_kept += write_detr_detections(writers.for_image(path), path, image, det, class_names)
        skipped_report = skipped.report(len(paths), ctx.status)  # all skipped: an error, the old outputs kept

    done = len(paths) - len(skipped)
    message = (f"Inference on {done} of {len(paths)} images: {num_kept} detections with score >= "
               f"{section.conf_threshold} written to {out_dir}")
    logger.info(message)
    ctx.status.write("RUNNING", message)
    return {"num_images": done, "num_detections": num_kept, "results_dir": out_dir, "skipped": skipped_report}
