"""`detectnet_v2 export -m MODEL -k KEY [-o OUT] [-e SPEC] [--gen_ds_config] [--target_opset N]`.

Writes the ONNX graph (input `input_1`, outputs `output_cov/Sigmoid`, `output_bbox/BiasAdd`):
as plain `.onnx` when OUT ends in .onnx, else as a `.etlt` encrypted with KEY (default
`./<model name>.etlt`). ONNX Runtime is checked against Keras on a real image (the first
--cal_image_dir image, else the spec's first validation frame, else a fixed random image) and
the max abs difference per output is logged and written to status.json. --gen_ds_config writes
`nvinfer_config.txt` and `labels.txt` next to OUT (tao_core.deepstream). INT8 / FP16 engines
are tao-deploy's job (`tao deploy detectnet_v2 gen_trt_engine`); --data_type other than fp32,
--engine_file and calibration flags are rejected with a clear message for now.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.data.images import list_images, load_image_rgb
from tao_core.errors import TaoUserError
from tao_core.etlt import write_etlt
from tao_core.io.atomic import atomic_write_bytes
from tao_core.results import Status, setup_task_logging, task_run

log = logging.getLogger("tao_tf.detectnet_v2.export")


def main(argv: list[str]) -> int:
    args = parse_args("export", argv)
    if args.data_type != "fp32" or args.engine_file:
        raise TaoUserError("detectnet_v2 export: tao-tf writes the FP32 ONNX model; build FP16 / INT8 engines from it "
                           "with tao-deploy (--data_type int8/fp16 and --engine_file are not handled here yet)")
    output = args.output_file or os.path.join(os.getcwd(), os.path.splitext(os.path.basename(args.model))[0] + ".etlt")
    results_dir = args.results_dir or os.path.dirname(os.path.abspath(output))
    setup_task_logging(results_dir, "export")
    with task_run(results_dir, "export", network="detectnet_v2") as status:
        experiment = None
        if args.experiment_spec:
            from tao_core.specs.detectnet_v2 import SPEC

            experiment = SPEC.load("export", args.experiment_spec)
        diffs = export(args.model, args.key, output, experiment, args.cal_image_dir, args.target_opset,
                       args.static_batch_size, args.gen_ds_config)  # fmt: skip
        status.write(Status.RUNNING, "Export complete", kpi={f"max_abs_diff {k}": v for k, v in diffs.items()})
    return 0


def _parity_image(model, experiment, cal_image_dir):
    from PIL import Image

    c, h, w = model.input_shape[1:]
    if cal_image_dir:
        path = list_images(cal_image_dir, "--cal_image_dir")[0]
        img = Image.fromarray(load_image_rgb(path)).resize((w, h), Image.BILINEAR)
        return (np.asarray(img, np.float32) / 255.0).transpose(2, 0, 1)[None], path
    if experiment is not None:
        from tao_tf.detectnet_v2.data.pipeline import numpy_frames

        frame = next(numpy_frames(experiment, "val"))
        return frame["image"].transpose(2, 0, 1)[None].astype(np.float32), frame["image_path"]
    return np.random.default_rng(0).random((1, c, h, w), dtype=np.float32), "a fixed random image"


def export(model_path, key, output, experiment=None, cal_image_dir=None, opset=12, static_batch=-1,
           gen_ds_config=False) -> dict[str, float]:  # fmt: skip
    """Export and check; returns the ONNX Runtime vs Keras max abs difference per output."""
    from tao_tf.detectnet_v2.model.io import load_model
    from tao_tf.detectnet_v2.model.onnx_export import INPUT_NAME, keras_to_onnx, onnx_runtime_parity

    model, meta, _ = load_model(model_path, key)
    if not key and not output.lower().endswith(".onnx"):
        raise TaoUserError(f"-o {output}: an .etlt output is encrypted and needs -k KEY (or write a .onnx)")
    proto = keras_to_onnx(model, opset, static_batch if static_batch and static_batch > 0 else None)
    data = proto.SerializeToString()
    image, where = _parity_image(model, experiment, cal_image_dir)
    diffs = onnx_runtime_parity(data, model, image)
    log.info("ONNX Runtime vs Keras on %s: max abs diff %s", where, ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    if output.lower().endswith(".onnx"):
        atomic_write_bytes(output, data)
    else:
        write_etlt(output, data, INPUT_NAME, key)
    log.info("Exported %s", output)
    if gen_ds_config:
        from tao_core.deepstream import detectnet_v2_config, write_deepstream_files

        classes = list(meta.get("classes") or [])
        if experiment is not None:
            classes = [t.name for t in experiment.cost_function_config.target_classes]
        if not classes:
            raise TaoUserError("--gen_ds_config: the model file names no classes; pass -e with the training spec")
        cfg = detectnet_v2_config(len(classes), tuple(model.input_shape[1:]), onnx_file=os.path.basename(output))
        write_deepstream_files(os.path.dirname(os.path.abspath(output)), cfg, classes, formats=("txt",))
    return diffs
