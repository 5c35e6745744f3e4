"""torch.onnx.export of tiny models (TAO contract: inputs -> pred_logits, pred_boxes) runs in
ONNX Runtime and matches PyTorch. MSDA lowers to the standard GridSample op."""

import warnings

import numpy as np
import pytest
import torch
from model_helpers import NUM_CLASSES, tiny_ddetr, tiny_dino

from tao_pytorch.deformable_detr.model import build_deformable_detr
from tao_pytorch.detr.export import INPUT_NAMES, OUTPUT_NAMES, DetrExportWrapper
from tao_pytorch.dino.model import build_dino

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# one decoder layer and 2 levels (strides 16 and 32: 30 tokens >= 12 queries) keep the dynamo export fast
SMALL = dict(dec_layers=1, num_feature_levels=2, return_interm_indices=[2, 3])

MODELS = {
    "dino": lambda: build_dino(tiny_dino(aux_loss=False, **SMALL), NUM_CLASSES),
    "ddetr": lambda: build_deformable_detr(tiny_ddetr(aux_loss=False, **SMALL), NUM_CLASSES),
}


def _export_and_compare(model, path, dynamo):
    torch.manual_seed(0)
    wrapper = DetrExportWrapper(model).eval()  # eval on the wrapper: export restores its mode
    x = torch.randn(1, 3, 64, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                wrapper,
                (x,),
                str(path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamo=True,
                opset_version=18,
            )
        else:
            torch.onnx.export(
                wrapper,
                (x,),
                str(path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamo=False,
                opset_version=17,
                dynamic_axes={"inputs": {0: "batch"}, "pred_logits": {0: "batch"}, "pred_boxes": {0: "batch"}},
            )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert "GridSample" in {n.op_type for n in graph.graph.node} | {n.op_type for f in graph.functions for n in f.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == INPUT_NAMES
    assert [o.name for o in sess.get_outputs()] == OUTPUT_NAMES
    batches = [x] if dynamo else [x, torch.randn(2, 3, 64, 96)]  # legacy export: dynamic batch
    for inp in batches:
        with torch.no_grad():
            ref = wrapper(inp)
        got = sess.run(None, {"inputs": inp.numpy()})
        for r, g in zip(ref, got):
            assert g.shape == tuple(r.shape)
            np.testing.assert_allclose(g, r.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_legacy_export_matches(name, tmp_path):
    _export_and_compare(MODELS[name](), tmp_path / f"{name}.onnx", dynamo=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dynamo_export_matches(name, tmp_path):
    _export_and_compare(MODELS[name](), tmp_path / f"{name}.onnx", dynamo=True)
