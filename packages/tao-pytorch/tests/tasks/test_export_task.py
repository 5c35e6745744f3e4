"""`export`: TAO's ONNX contract (inputs -> pred_logits, pred_boxes), dynamic or static batch,
ONNX Runtime == PyTorch on a real image, no overwrite, .etlt, TensorRT plugin nodes, sidecar files."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from detr_task_helpers import EXPORT_HW, status_lines
from model_helpers import build_model

from tao_core.errors import TaoUserError
from tao_core.etlt import read_etlt
from tao_core.specs import get_spec
from tao_pytorch.common.checkpoint import load_model_weights
from tao_pytorch.deformable_detr.cli import CLI as DDETR_CLI
from tao_pytorch.detr.export import DetrExportWrapper
from tao_pytorch.detr.msda import MSDeformAttn
from tao_pytorch.dino.cli import CLI as DINO_CLI

CLIS = {"dino": DINO_CLI, "deformable_detr": DDETR_CLI}


def _pytorch_model(network, spec_file, checkpoint):
    cfg = get_spec(network).load("export", str(spec_file), [])
    model = build_model(network, cfg)
    load_model_weights(model, str(checkpoint))
    return DetrExportWrapper(model.eval())


@pytest.mark.parametrize("network", ["dino", "deformable_detr"])
def test_export_on_cpu_runs_in_onnxruntime(network, spec, checkpoints, tmp_path):
    onnx_file = tmp_path / "out" / "model.onnx"
    spec_file, results = spec(network, export={"onnx_file": str(onnx_file)})
    assert CLIS[network].run("export", ["-e", str(spec_file)]) == 0

    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert "GridSample" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "inputs" and inp.shape == ["batch", 3, *EXPORT_HW]
    assert [o.name for o in sess.get_outputs()] == ["pred_logits", "pred_boxes"]

    # Dynamic batch: a batch of 2 gives what PyTorch gives.
    wrapper = _pytorch_model(network, spec_file, checkpoints(network))
    x = torch.randn(2, 3, *EXPORT_HW, generator=torch.Generator().manual_seed(0))
    logits, boxes = sess.run(None, {"inputs": x.numpy()})
    with torch.no_grad():
        ref_logits, ref_boxes = wrapper(x)
    assert logits.shape == (2, 20, 2) and boxes.shape == (2, 20, 4)
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-4, rtol=0)

    # The task's own check on a real image is logged and in status.json.
    kpi = [s["kpi"] for s in status_lines(results, "export") if "kpi" in s]
    assert kpi and 0 <= kpi[-1]["ort_max_abs_diff"] < 1e-4
    print(f"{network}: ONNX Runtime vs PyTorch max abs diff {kpi[-1]['ort_max_abs_diff']:.3g}")

    # Sidecar files: labels (index = class id) and DeepStream configs naming this ONNX.
    assert (onnx_file.parent / "labels.txt").read_text().splitlines() == ["background", "raccoon"]
    ds = yaml.safe_load((onnx_file.parent / "nvdsinfer_config.yaml").read_text())
    assert ds["property"]["onnx-file"] == "model.onnx"
    assert ds["property"]["output-blob-names"] == "pred_logits;pred_boxes"
    assert ds["property"]["parse-bbox-func-name"] == "NvDsInferParseCustomDDETRTAO"
    assert ds["property"]["infer-dims"] == f"3;{EXPORT_HW[0]};{EXPORT_HW[1]}"
    assert "onnx-file=model.onnx" in (onnx_file.parent / "nvinfer_config.txt").read_text()

    # An existing file is never overwritten.
    before = onnx_file.read_bytes()
    with pytest.raises(TaoUserError, match="already exists"):
        CLIS[network].run("export", ["-e", str(spec_file)])
    assert onnx_file.read_bytes() == before


def test_export_static_batch(spec, tmp_path):
    onnx_file = tmp_path / "static.onnx"
    spec_file, _ = spec("dino", export={"onnx_file": str(onnx_file), "batch_size": 2})
    assert DINO_CLI.run("export", ["-e", str(spec_file)]) == 0
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [2, 3, *EXPORT_HW]
    assert sess.get_outputs()[0].shape[0] == 2


def test_export_etlt_round_trips_with_key(spec, tmp_path):
    etlt = tmp_path / "model.etlt"
    spec_file, _ = spec("dino", export={"onnx_file": str(etlt)})
    with pytest.raises(TaoUserError, match="-k"):
        DINO_CLI.run("export", ["-e", str(spec_file)])
    assert not etlt.exists()
    assert DINO_CLI.run("export", ["-e", str(spec_file), "-k", "s3cret"]) == 0
    name, payload = read_etlt(etlt, "s3cret")
    assert name == ""
    model = onnx.load_from_string(payload)
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert (tmp_path / "labels.txt").is_file()


@pytest.mark.parametrize("network", ["dino", "deformable_detr"])
def test_export_trt_plugin_graph(network, spec, tmp_path):
    onnx_file = tmp_path / "trt.onnx"
    spec_file, results = spec(network, export={"onnx_file": str(onnx_file), "on_cpu": False})
    assert CLIS[network].run("export", ["-e", str(spec_file)]) == 0
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)  # the custom domain is declared, the rest is standard
    assert {o.domain: o.version for o in model.opset_import} == {"": 17, "nvidia": 1}
    nodes = [n for n in model.graph.node if n.op_type == "MultiscaleDeformableAttnPlugin_TRT"]
    cfg = get_spec(network).load("export", str(spec_file), [])
    expected = sum(isinstance(m, MSDeformAttn) for m in build_model(network, cfg).modules())
    assert len(nodes) == expected == 3  # 1 encoder + 2 decoder layers
    assert "GridSample" not in {n.op_type for n in model.graph.node}

    constants = {i.name: i for i in model.graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"})
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input)}
    for node in nodes:
        assert node.domain == "nvidia" and len(node.input) == 5 and len(node.output) == 1
        attrs = {a.name: a.s.decode() for a in node.attribute}
        assert attrs == {"plugin_version": "1", "plugin_namespace": ""}
        shapes, starts = constants[node.input[1]], constants[node.input[2]]
        assert shapes.data_type == starts.data_type == onnx.TensorProto.INT32
        assert list(shapes.dims) == [2, 2] and list(starts.dims) == [2]
        assert ranks.get(node.input[3]) == 6 and ranks.get(node.input[4]) == 5  # (N,Lq,M,L,P,2), (N,Lq,M,L,P)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail, match="not a registered function/op"):
        ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert not any("kpi" in s for s in status_lines(results, "export"))
    assert status_lines(results, "export")[-1]["status"] == "SUCCESS"
