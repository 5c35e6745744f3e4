"""The DeepStream nvinfer config generator: documented keys only, values derived correctly."""

import configparser

import pytest
import yaml

from tao_core import deepstream as ds
from tao_core.errors import TaoUserError


def _detr(**kw):
    return ds.detr_config(3, (544, 960), **{"onnx_file": "model.onnx", **kw})


def _read_txt(path):
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # keep minBoxes' case
    parser.read(path)
    return parser


def test_every_written_key_is_documented(tmp_path):
    configs = [
        _detr(model_engine_file="model.engine", int8_calib_file="cal.bin", precision="int8"),
        ds.detectnet_v2_config(3, (3, 384, 1248), onnx_file="dn.onnx"),
        ds.NvInferConfig((1, 64, 64), ["out"], 1, model_engine_file="e.engine", extra={"gpu-id": 0, "interval": 0}),
    ]
    for i, cfg in enumerate(configs):
        out = tmp_path / str(i)
        files = ds.write_deepstream_files(out, cfg, [f"c{j}" for j in range(cfg.num_detected_classes)])
        txt = _read_txt(files["txt"])
        assert txt.sections() == ["property", "class-attrs-all"]
        doc = yaml.safe_load(files["yaml"].read_text())
        assert list(doc) == ["property", "class-attrs-all"]
        for section in ("property", "class-attrs-all"):
            keys = set(txt[section]) | set(doc[section])
            assert keys <= ds.DOCUMENTED_KEYS, keys - ds.DOCUMENTED_KEYS
            assert set(txt[section]) == set(doc[section])


def test_detr_values(tmp_path):
    files = ds.write_deepstream_files(tmp_path, _detr(), ["car", "person", "bike"])
    p = _read_txt(files["txt"])["property"]
    assert float(p["net-scale-factor"]) == pytest.approx(1 / (255 * 0.226))  # TAO's 0.01735...
    assert float(p["net-scale-factor"]) == pytest.approx(0.0173520735728, rel=1e-9)
    assert [float(x) for x in p["offsets"].split(";")] == pytest.approx([123.675, 116.28, 103.53])
    assert p["infer-dims"] == "3;544;960"
    assert p["output-blob-names"] == "pred_logits;pred_boxes"
    assert p["cluster-mode"] == "4" and p["network-mode"] == "0" and p["model-color-format"] == "0"
    assert p["parse-bbox-func-name"] == "NvDsInferParseCustomDDETRTAO"
    assert p["custom-lib-path"].endswith("libnvds_infercustomparser_tao.so")
    assert p["num-detected-classes"] == "3" and p["labelfile-path"] == "labels.txt"
    assert "model-engine-file" not in p and "int8-calib-file" not in p  # None values are left out
    assert _read_txt(files["txt"])["class-attrs-all"]["topk"] == "20"
    assert files["labels"].read_text() == "car\nperson\nbike\n"
    doc = yaml.safe_load(files["yaml"].read_text())
    assert doc["property"]["offsets"] == p["offsets"] and doc["property"]["onnx-file"] == "model.onnx"


def test_detectnet_v2_values(tmp_path):
    cfg = ds.detectnet_v2_config(
        3, (3, 544, 960), model_engine_file="dn.engine", precision="int8", int8_calib_file="cal.bin"
    )
    files = ds.write_deepstream_files(tmp_path, cfg, ["person", "bag", "face"], formats=("txt",))
    assert set(files) == {"txt", "labels"} and not (tmp_path / ds.YAML_NAME).exists()
    txt = _read_txt(files["txt"])
    p, attrs = txt["property"], txt["class-attrs-all"]
    assert p["net-scale-factor"] == "0.00392156862745098"  # the seed's value, exactly
    assert p["offsets"] == "0.0;0.0;0.0" and p["network-mode"] == "1" and p["int8-calib-file"] == "cal.bin"
    assert p["output-blob-names"] == "output_cov/Sigmoid;output_bbox/BiasAdd" and p["cluster-mode"] == "1"
    assert attrs["minBoxes"] == "1" and float(attrs["eps"]) == 0.13


def test_scale_and_offsets_approximation():
    scale, offsets, worst = ds.scale_and_offsets((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert scale == pytest.approx(2 / 255) and offsets == [127.5] * 3 and worst == 0
    _, _, worst = ds.scale_and_offsets((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert 0 < worst < 0.015
    with pytest.raises(TaoUserError, match="std must be positive"):
        ds.scale_and_offsets((0.5,), (0.0,))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"extra": {"not-a-key": 1}}, "not Gst-nvinfer keys"),
        ({"class_attrs": {"topK": 3}}, "not Gst-nvinfer keys"),
        ({"precision": "bf16"}, "precision"),
        ({"cluster_mode": "kmeans"}, "cluster_mode"),
        ({"infer_dims": (3, 0, 10)}, "infer_dims"),
        ({"onnx_file": None}, "onnx_file and/or model_engine_file"),
    ],
)
def test_invalid_configs_write_nothing(tmp_path, kwargs, message):
    with pytest.raises(TaoUserError, match=message):
        ds.write_deepstream_files(tmp_path, _detr(**kwargs), ["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


def test_labels_must_match_classes(tmp_path):
    with pytest.raises(TaoUserError, match="must match"):
        ds.write_deepstream_files(tmp_path, _detr(), ["a"])
    with pytest.raises(TaoUserError, match="formats"):
        ds.write_deepstream_files(tmp_path, _detr(), ["a", "b", "c"], formats=("json",))


def test_no_framework_import():
    # tao-core rule: the generator imports only the standard library, yaml and tao_core
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ds))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "os", "dataclasses", "pathlib", "yaml", "tao_core"}
