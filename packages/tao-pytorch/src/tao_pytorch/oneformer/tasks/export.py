"""`oneformer export`: a OneFormer checkpoint -> ONNX for tao deploy / TensorRT.

Graph contract (TAO's OneFormer export: the same input and output names and shapes):
    inputs   images       float32 (B, 3, export.input_height, export.input_width): RGB on the
                          0..255 scale. Unlike TAO's file, which takes pre-normalised images, the
                          graph normalises with dataset.pixel_mean / pixel_std itself, as the model
                          does, so every caller feeds the same pixels; the ONNX says so in its
                          metadata (INPUT_RANGE_KEY), and tao deploy normalises only for a file
                          without it (TAO's own).
             task_tokens  float32 (B, L): the CLIP ids of "The task is {semantic|instance|
                          panoptic}" (tao_core.tasks.oneformer_outputs.task_tokens), L =
                          model.text_encoder.context_length. A runtime input, not baked from
                          model.mode, as TAO does: one engine serves the three modes, and the model
                          reads the ids as numbers (its task MLP), hence float.
    outputs  pred_logits  (B, Q, C + 1) class logits of the last decoder stage (last = no object)
             pred_masks   (B, Q, H / 4, W / 4) mask logits
B is the symbolic dim "batch" when export.batch_size is -1. H and W must be multiples of
model.one_former.size_divisibility (a spec rule): the graph has no padding step to rely on.
Multi-scale deformable attention is exported as standard ops (GridSample), so the opset is at
least 16 (a lower export.opset_version is raised to 17 with a warning); export.on_cpu False
traces on the GPU (export.gpu_id) when there is one.

The exported graph is run in ONNX Runtime on a real image (the first of inference.images_dir /
dataset.test.images, resized as inference does; random pixels when there is none) with the task
of inference.mode, and the largest |ORT - PyTorch| is logged and put in status.json.
export.onnx_file is never overwritten and is written atomically once onnx.checker passed; a
name ending in .etlt writes TAO's encrypted container (-k). labels.txt (one class name per line)
goes next to it.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
import torch
from torch import nn

from tao_core.data.images import list_images, load_image_rgb
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes, atomic_write_text
from tao_core.tasks.oneformer_outputs import (
    INPUT_NAMES,
    INPUT_RANGE,
    INPUT_RANGE_KEY,
    OUTPUT_NAMES,
    inference_classes,
    network_input,
    task_tokens,
)
from tao_pytorch.detr.tasks.export import check_output_path
from tao_pytorch.oneformer.tasks.common import load_oneformer_for_task

logger = logging.getLogger(__name__)

INPUT_NAMES, OUTPUT_NAMES = list(INPUT_NAMES), list(OUTPUT_NAMES)
MIN_OPSET = 16  # GridSample
DEFAULT_OPSET = 17


class OneFormerExportWrapper(nn.Module):
    """(images 0..255, task token ids as floats) -> (pred_logits, pred_masks) of the last stage."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, task_tokens: torch.Tensor):
        out = self.model(images, task_tokens)
        return out["pred_logits"], out["pred_masks"]


def sample_input(cfg, height: int, width: int) -> tuple[np.ndarray, str]:
    """(1, 3, H, W) float32 0..255 for the ORT check: the first inference image, else noise."""
    for field, folder in (("inference.images_dir", cfg.inference.images_dir),
                          ("dataset.test.images", cfg.dataset.test.images)):
        if not folder:
            continue
        try:
            path = list_images(str(folder), field)[0]
            return network_input(load_image_rgb(path), (height, width))[None], path
        except TaoUserError:
            continue
    rng = np.random.default_rng(0)
    return (rng.random((1, 3, height, width), dtype=np.float32) * 255).astype(np.float32), "random input"


def to_onnx_bytes(wrapper: nn.Module, dummy: tuple, opset: int, dynamic_batch: bool, verbose: bool) -> bytes:
    buf = io.BytesIO()
    kwargs = {"dynamic_axes": {name: {0: "batch"} for name in INPUT_NAMES + OUTPUT_NAMES}} if dynamic_batch else {}
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore")  # tracer warnings on python-int shapes are expected
        torch.onnx.export(wrapper, dummy, buf, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          opset_version=opset, do_constant_folding=True, dynamo=False, verbose=verbose, **kwargs)
    return buf.getvalue()


def ort_max_abs_diff(onnx_bytes: bytes, wrapper: nn.Module, feed: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch| per output on `feed`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(OUTPUT_NAMES, feed)
    device = next(wrapper.parameters()).device
    with torch.no_grad():
        ref = wrapper(*(torch.from_numpy(feed[n]).to(device) for n in INPUT_NAMES))
    return {n: float(np.max(np.abs(g - r.cpu().numpy()))) for n, g, r in zip(OUTPUT_NAMES, got, ref, strict=True)}


def run(cfg, ctx) -> dict:
    import onnx

    section = cfg.export
    path = check_output_path(section.onnx_file, ctx.key)
    opset = int(section.opset_version)
    if opset < MIN_OPSET:
        logger.warning("export.opset_version %d has no GridSample (opset >= %d): exporting with opset %d",
                       opset, MIN_OPSET, DEFAULT_OPSET)
        opset = DEFAULT_OPSET
    batch = int(section.batch_size)
    height, width = int(section.input_height), int(section.input_width)
    model, _ = load_oneformer_for_task(cfg, "export", key=ctx.key)
    device = next(model.parameters()).device
    wrapper = OneFormerExportWrapper(model).eval()
    n = 1 if batch == -1 else batch
    tokens = task_tokens(cfg.inference.mode or cfg.model.mode, model.task_seq_len, n)
    dummy = (torch.full((n, 3, height, width), 128.0, device=device), torch.from_numpy(tokens).to(device))

    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # exact fp32 trace
    try:
        onnx_bytes = to_onnx_bytes(wrapper, dummy, opset, batch == -1, bool(section.verbose))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    proto = onnx.load_from_string(onnx_bytes)
    onnx.helper.set_model_props(proto, {INPUT_RANGE_KEY: INPUT_RANGE, "tao.network": "oneformer",
                                        "tao.task_seq_len": str(model.task_seq_len)})
    onnx.checker.check_model(proto)
    onnx_bytes = proto.SerializeToString()

    x, source = sample_input(cfg, height, width)
    feed = {"images": np.repeat(x, n, axis=0), "task_tokens": tokens}
    diffs = ort_max_abs_diff(onnx_bytes, wrapper, feed)
    diff = max(diffs.values())
    logger.info("ONNX Runtime vs PyTorch on %s (%s task): max abs diff %.3g (%s)", source,
                cfg.inference.mode or cfg.model.mode, diff, ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))

    if path.endswith(".etlt"):
        from tao_core.etlt import write_etlt

        write_etlt(path, onnx_bytes, "", ctx.key)  # input-name length 0 marks an ONNX payload, as in TAO
    else:
        atomic_write_bytes(path, onnx_bytes, overwrite=False)
    num_classes = int(cfg.model.sem_seg_head.num_classes)
    labels = os.path.join(os.path.dirname(os.path.abspath(path)), "labels.txt")
    atomic_write_text(labels, "\n".join(inference_classes(cfg, num_classes).names) + "\n")

    summary = {"onnx_file": path, "opset": opset, "dynamic_batch": batch == -1, "labels_file": labels,
               "input_shape": ["batch" if batch == -1 else batch, 3, height, width],
               "task_seq_len": int(model.task_seq_len), "ort_max_abs_diff": diff,
               "ort_max_abs_diff_per_output": diffs, "ort_check_input": source}
    message = (f"Exported {path} (opset {opset}, {'dynamic' if batch == -1 else batch} batch, inputs images "
               f"{height}x{width} + task_tokens [{model.task_seq_len}]); ONNX Runtime vs PyTorch max abs diff {diff:.3g}")
    logger.info(message)
    ctx.status.write("RUNNING", message, kpi={"ort_max_abs_diff": diff})
    return summary
