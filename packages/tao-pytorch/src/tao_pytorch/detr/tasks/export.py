"""`export`: a DETR-family checkpoint to ONNX (TAO's contract, for TensorRT / DeepStream).

Graph: input `inputs` float (B, export.input_channel, export.input_height, export.input_width),
normalised like the evaluation transform, no padding-mask channel; outputs `pred_logits`
(B, num_queries, num_classes) raw logits and `pred_boxes` (B, num_queries, 4) normalised cxcywh.
B is the symbolic dim "batch" when export.batch_size is -1, else fixed. Opset
export.opset_version (17); the legacy TorchScript exporter with constant folding.

export.on_cpu
    True   deformable attention as standard ONNX ops (GridSample, opset >= 16; a lower opset is
           raised to 17): runs in ONNX Runtime and in TensorRT without plugins. The exported
           graph is run in ONNX Runtime on a real image, preprocessed as inference does, and
           the largest |ORT - PyTorch| is logged and put in status.json.
    False  every MSDA core becomes one `nvidia::MultiscaleDeformableAttnPlugin_TRT` node (see
           tao_pytorch.detr.msda_trt): TensorRT's fast plugin, no ONNX Runtime check possible.

Files: export.onnx_file (an existing file is never overwritten; written atomically after
onnx.checker passed). A name ending in .etlt writes TAO's .etlt container encrypted with the
key (-k / encryption_key), readable by tao_core.etlt.read_etlt. Next to it: labels.txt (one
name per output class) and, for .onnx, DeepStream's nvinfer_config.txt and nvdsinfer_config.yaml
(TAO's DDETR bbox parser, no clustering) from tao_core.deepstream.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import numpy as np
import torch

from tao_core.data.classmap import label_names
from tao_core.data.images import list_images, load_image_rgb
from tao_core.deepstream import write_detr_deepstream_files
from tao_core.errors import SpecError, TaoUserError
from tao_core.io.atomic import atomic_write_bytes, atomic_write_text
from tao_core.processing.detr import normalisation, preprocess_image
from tao_pytorch.detr.export import INPUT_NAMES, OUTPUT_NAMES, DetrExportWrapper
from tao_pytorch.detr.msda_trt import KERNEL_NAME, PLUGIN_DOMAIN, PLUGIN_OP, msda_kernel
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.detr.tasks.common import device_for, load_task_model, read_model_checkpoint

logger = logging.getLogger(__name__)

MIN_CPU_OPSET = 16  # GridSample
DEFAULT_CPU_OPSET = 17
PLUGIN_OPSET_VERSION = 1  # version of the custom "nvidia" domain


def check_output_path(onnx_file, key: str | None) -> str:
    if not onnx_file:
        raise SpecError("export.onnx_file", None, "the path of the .onnx (or .etlt) file to write")
    path = str(onnx_file)
    if os.path.exists(path):
        raise TaoUserError(f"export.onnx_file: {path} already exists; refusing to overwrite it (remove it or pick another name)")
    if path.endswith(".etlt") and not key:
        raise TaoUserError(f"export.onnx_file: {path} is an .etlt file, which is encrypted: pass its key with -k")
    if not path.endswith((".onnx", ".etlt")):
        raise SpecError("export.onnx_file", path, "a file name ending in .onnx (or .etlt)")
    return path


def sample_image_path(cfg) -> str | None:
    """The first image of the inference folders, else of the evaluation / validation data."""
    ds = cfg.dataset
    infer = ds.get("infer_data_sources")
    if infer is not None and infer.get("image_dir"):
        with contextlib.suppress(TaoUserError):
            return list_images(list(infer.image_dir))[0]
    for field in ("test_data_sources", "val_data_sources", "train_data_sources"):
        sources = ds.get(field)
        if not sources:
            continue
        first = sources if hasattr(sources, "get") and "image_dir" in sources else sources[0]
        image_dir = first.get("image_dir")
        if image_dir and os.path.isdir(str(image_dir)):
            with contextlib.suppress(TaoUserError):
                return list_images(str(image_dir))[0]
    return None


def export_input(cfg, height: int, width: int, channels: int) -> tuple[np.ndarray, str]:
    """(1, C, H, W) float32 input for the ORT check: a real image preprocessed exactly as for
    a fixed-size engine (tao_core.processing.detr.preprocess_image), or noise if none exists."""
    mean, std = normalisation(cfg.dataset.augmentation)
    path = sample_image_path(cfg)
    if path is None or channels != 3:
        rng = np.random.default_rng(0)
        return rng.standard_normal((1, channels, height, width)).astype(np.float32), "random input"
    x = preprocess_image(load_image_rgb(path), size=(height, width), mean=mean, std=std)
    return x[None], path


def to_onnx_bytes(wrapper, dummy: torch.Tensor, opset: int, dynamic_batch: bool, plugin: bool, verbose: bool) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}
    if plugin:
        kwargs["custom_opsets"] = {PLUGIN_DOMAIN: PLUGIN_OPSET_VERSION}
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")  # tracer warnings on python-int shapes are expected
        torch.onnx.export(
            wrapper,
            (dummy,),
            buf,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            opset_version=opset,
            do_constant_folding=True,  # False leaves the frozen-BN arithmetic that ORT cannot load
            dynamo=False,
            verbose=verbose,
            **kwargs,
        )
    return buf.getvalue()


def plugin_nodes(model_proto) -> list:
    return [n for n in model_proto.graph.node if n.op_type == PLUGIN_OP]


def ort_max_abs_diff(onnx_bytes: bytes, wrapper, x: np.ndarray) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| per output on input x."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(OUTPUT_NAMES, {INPUT_NAMES[0]: x})
    with torch.no_grad():
        ref = wrapper(torch.from_numpy(x).to(next(wrapper.parameters()).device))
    return {name: float(np.max(np.abs(g - r.cpu().numpy()))) for name, g, r in zip(OUTPUT_NAMES, got, ref, strict=True)}


def run_export(network: DetrNetwork, cfg, ctx) -> dict:
    import onnx

    section = cfg.export
    path = check_output_path(section.onnx_file, ctx.key)
    checkpoint = read_model_checkpoint(section.checkpoint, ctx.key, "export")
    on_cpu = bool(section.on_cpu)
    opset = int(section.opset_version)
    if on_cpu and opset < MIN_CPU_OPSET:
        logger.warning("export.opset_version %d has no GridSample (opset >= %d): exporting with opset %d",
                       opset, MIN_CPU_OPSET, DEFAULT_CPU_OPSET)
        opset = DEFAULT_CPU_OPSET
    batch = int(section.batch_size)
    height, width, channels = int(section.input_height), int(section.input_width), int(section.input_channel)

    device = device_for(section, on_cpu=on_cpu)
    model = load_task_model(network, cfg, checkpoint, section.checkpoint, "export", device)
    wrapper = DetrExportWrapper(model).eval()
    dummy = torch.ones(1 if batch == -1 else batch, channels, height, width, device=device)

    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # exact fp32 trace
    try:
        with msda_kernel(model, KERNEL_NAME if not on_cpu else "pytorch") as n_msda:
            onnx_bytes = to_onnx_bytes(wrapper, dummy, opset, batch == -1, not on_cpu, bool(section.verbose))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto)
    n_plugins = len(plugin_nodes(proto))
    if not on_cpu and n_plugins != n_msda:
        raise RuntimeError(f"expected {n_msda} {PLUGIN_OP} nodes in the exported graph, found {n_plugins}")

    summary = {"onnx_file": path, "opset": opset, "dynamic_batch": batch == -1, "on_cpu": on_cpu,
               "plugin_nodes": n_plugins, "input_shape": ["batch" if batch == -1 else batch, channels, height, width]}
    if on_cpu:
        x, source = export_input(cfg, height, width, channels)
        if batch > 1:
            x = np.repeat(x, batch, axis=0)
        diffs = ort_max_abs_diff(onnx_bytes, wrapper, x)
        summary["ort_max_abs_diff"] = max(diffs.values())
        summary["ort_max_abs_diff_per_output"] = diffs
        summary["ort_check_input"] = source
        logger.info("ONNX Runtime vs PyTorch on %s: max abs diff %.3g (%s)", source, summary["ort_max_abs_diff"],
                    ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    else:
        logger.info("%d deformable-attention cores exported as %s::%s nodes (TensorRT plugin; no ONNX Runtime check)",
                    n_plugins, PLUGIN_DOMAIN, PLUGIN_OP)

    if path.endswith(".etlt"):
        from tao_core.etlt import write_etlt

        write_etlt(path, onnx_bytes, "", ctx.key)  # input-name length 0 marks an ONNX payload, as in TAO
    else:
        atomic_write_bytes(path, onnx_bytes, overwrite=False)
    summary.update(write_sidecar_files(cfg, path, height, width, max(batch, 1)))

    message = f"Exported {path} (opset {opset}, {'dynamic' if batch == -1 else batch} batch"
    message += ", standard ONNX ops)" if on_cpu else f", {n_plugins} {PLUGIN_OP} nodes)"
    if on_cpu:
        message += f"; ONNX Runtime vs PyTorch max abs diff {summary['ort_max_abs_diff']:.3g}"
    logger.info(message)
    kpi = {"ort_max_abs_diff": summary["ort_max_abs_diff"]} if on_cpu else None
    ctx.status.write("RUNNING", message, kpi=kpi)
    return summary


def write_sidecar_files(cfg, model_path: str, height: int, width: int, batch_size: int = 1) -> dict:
    """labels.txt, and for an .onnx the DeepStream nvinfer configs, next to the model file.

    The nvinfer config builds from the ONNX in the precision of the spec's
    gen_trt_engine.tensorrt.data_type (FP32 for INT8, which needs gen_trt_engine's calibration:
    gen_trt_engine writes the config of the engine it builds), with pre-cluster-threshold =
    inference.conf_threshold, so DeepStream shows what `inference` shows."""
    out_dir = os.path.dirname(os.path.abspath(model_path))
    names = label_names(cfg)
    if model_path.endswith(".etlt"):
        # DeepStream cannot decrypt tao-core's .etlt payload: no nvinfer config for it.
        atomic_write_text(os.path.join(out_dir, "labels.txt"), "\n".join(names) + "\n")
        return {"labels_file": os.path.join(out_dir, "labels.txt")}
    mean, std = normalisation(cfg.dataset.augmentation)
    precision = str(cfg.gen_trt_engine.tensorrt.data_type).lower()
    written = write_detr_deepstream_files(
        out_dir, names, (height, width), mean, std, onnx_file=model_path,
        precision="fp32" if precision == "int8" else precision, batch_size=batch_size,
        pre_cluster_threshold=float(cfg.inference.conf_threshold),
    )
    return {"labels_file": str(written["labels"]), "deepstream_files": [str(written["txt"]), str(written["yaml"])]}
