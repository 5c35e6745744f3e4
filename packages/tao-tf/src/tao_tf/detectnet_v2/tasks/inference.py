"""`detectnet_v2 inference -e INFER_SPEC -i INPUT -o OUTPUT -k KEY`: boxes on images.

inferencer_config.tlt_config.model is run on every image of INPUT (a file or a folder),
resized to image_width x image_height; the raw outputs are clustered per class with
bbox_handler_config.classwise_bbox_handler_config (the "default" entry covers unlisted
classes; clustering_config + confidence_model) through tao_core.processing.detectnet, boxes
are scaled back to the original image, renamed through output_map, and written as
`OUTPUT/images_annotated/<name>` (unless disable_overlay; bbox_color per class,
overlay_linewidth) and `OUTPUT/labels/<stem>.txt` (KITTI with score, when kitti_dump).
"""

from __future__ import annotations

import logging

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.errors import TaoUserError
from tao_core.results import setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC
from tao_core.tasks import detectnet_v2 as dn
from tao_core.tasks.detectnet_v2 import handler_settings, input_images  # noqa: F401 (re-exported)

log = logging.getLogger("tao_tf.detectnet_v2.inference")


def main(argv: list[str]) -> int:
    args = parse_args("inference", argv)
    results_dir = args.results_dir or args.inference_output
    setup_task_logging(results_dir, "inference")
    with task_run(results_dir, "inference", network="detectnet_v2"):
        spec = SPEC.load("inference", args.inference_spec)
        run_inference(spec, args.inference_input, args.inference_output, args.enc_key)
    return 0


def run_inference(spec, input_path: str, output_dir: str, key: str | None, predict=None, classes=None) -> int:
    """Run and write outputs; `predict` (NCHW float images -> (cov, bbox)) defaults to the tlt_config model.

    Returns the number of images processed.
    """
    ic = spec.inferencer_config
    c, h, w = dn.inference_input_shape(spec)
    if predict is None:
        if ic.WhichOneof("model_config_type") != "tlt_config":
            raise TaoUserError("inferencer_config: tao-tf runs tlt_config models; engines (tensorrt_config) run "
                               "with `tao deploy detectnet_v2 inference`")  # fmt: skip
        from tao_tf.detectnet_v2.evaluation import keras_predictor
        from tao_tf.detectnet_v2.model.io import load_model

        model, meta, _ = load_model(ic.tlt_config.model, key)
        if tuple(model.input_shape[1:]) != (c, h, w):
            raise TaoUserError(f"{ic.tlt_config.model}: the model takes input {tuple(model.input_shape[1:])} "
                               f"(C, H, W); inferencer_config asks for {(c, h, w)}")  # fmt: skip
        classes = list(ic.target_classes) or meta.get("classes")
        predict = keras_predictor(model)
    return dn.run_inference(spec, input_path, output_dir, predict, classes)
