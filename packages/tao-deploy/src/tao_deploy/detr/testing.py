"""A tiny ONNX with TAO's DETR export contract, built with onnx.helper (tests, examples; no torch).

    inputs (B, 3, H, W) -> Conv(stride 2) -> Relu -> GlobalAveragePool -> Flatten
        -> Gemm -> Reshape          -> pred_logits (B, Q, C)  raw logits
        -> Gemm -> Sigmoid -> Reshape -> pred_boxes  (B, Q, 4)  cxcywh in [0, 1]
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_detr(height: int = 32, width: int = 48, num_queries: int = 10, num_classes: int = 2,
              batch: int | None = None, seed: int = 0) -> onnx.ModelProto:
    """`batch=None`: dynamic batch dim "batch" (export.batch_size -1), else that fixed batch."""
    rng = np.random.default_rng(seed)

    def init(name, shape, scale=0.5):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    q, c = num_queries, num_classes
    inits = [
        init("conv_w", (8, 3, 3, 3)),
        init("conv_b", (8,), 0.1),
        init("cls_w", (8, q * c), 1.0),
        init("cls_b", (q * c,), 1.0),
        init("box_w", (8, q * 4), 1.0),
        init("box_b", (q * 4,), 1.0),
        numpy_helper.from_array(np.array([0, q, c], np.int64), "logits_shape"),
        numpy_helper.from_array(np.array([0, q, 4], np.int64), "boxes_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["inputs", "conv_w", "conv_b"], ["c1"], name="conv", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r1"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["feat"], name="flatten"),
        helper.make_node("Gemm", ["feat", "cls_w", "cls_b"], ["cls_flat"], name="class_embed"),
        helper.make_node("Reshape", ["cls_flat", "logits_shape"], ["pred_logits"], name="logits_reshape"),
        helper.make_node("Gemm", ["feat", "box_w", "box_b"], ["box_flat"], name="bbox_embed"),
        helper.make_node("Sigmoid", ["box_flat"], ["box_sig"], name="box_sigmoid"),
        helper.make_node("Reshape", ["box_sig", "boxes_shape"], ["pred_boxes"], name="boxes_reshape"),
    ]
    b = "batch" if batch is None else int(batch)
    inputs = [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [b, 3, height, width])]
    outputs = [
        helper.make_tensor_value_info("pred_logits", TensorProto.FLOAT, [b, q, c]),
        helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, [b, q, 4]),
    ]
    graph = helper.make_graph(nodes, "tiny_detr", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tao_deploy.detr")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_detection_set(root, num_images: int = 4, seed: int = 0) -> dict:
    """Random RGB images of varied sizes with 1-2 boxes each of category 1 ("thing"), as a COCO
    json, plus a classmap. Returns {image_dir, json_file, classmap}."""
    import json
    from pathlib import Path

    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        w, h = int(rng.integers(40, 90)), int(rng.integers(30, 70))
        name = f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image_dir / name)
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        for _ in range(int(rng.integers(1, 3))):
            x, y = float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2))
            bw, bh = float(rng.uniform(5, w / 2)), float(rng.uniform(5, h / 2))
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 1, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0})
    json_file = root / "instances.json"
    json_file.write_text(json.dumps({"images": images, "annotations": anns,
                                     "categories": [{"id": 1, "name": "thing"}]}))
    classmap = root / "classmap.txt"
    classmap.write_text("thing\n")
    return {"image_dir": str(image_dir), "json_file": str(json_file), "classmap": str(classmap)}
