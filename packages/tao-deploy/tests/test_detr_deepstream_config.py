"""gen_trt_engine writes the DeepStream nvinfer config of the engine it built (precision, engine,
calibration cache, batch, threshold), beside the engine, for every precision."""

import configparser
import json

import onnx
import pytest
import yaml

from tao_deploy.detr.testing import tiny_detr, write_detection_set
from tao_deploy.dino.cli import CLI

HW = (32, 48)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_detection_set(tmp_path_factory.mktemp("ds_data"), num_images=4)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds_model") / "export" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(tiny_detr(*HW), path)
    return path


def build(tmp_path, data, onnx_file, precision, conf_threshold=0.15, max_batch=4):
    engine_dir = tmp_path / f"engine_{precision.lower()}"
    trt = {"data_type": precision, "min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": max_batch}
    if precision == "INT8":
        trt["calibration"] = {"cal_image_dir": [data["image_dir"]], "cal_batch_size": 2, "cal_batches": 2,
                              "cal_cache_file": str(engine_dir / "cal.bin")}
    spec = {
        "results_dir": str(tmp_path / "results"),
        "model": {"num_queries": 10, "num_select": 10},
        "dataset": {"num_classes": 2, "batch_size": 2,
                    "val_data_sources": [{"image_dir": data["image_dir"], "json_file": data["json_file"]}]},
        "inference": {"conf_threshold": conf_threshold},
        "gen_trt_engine": {"onnx_file": str(onnx_file), "trt_engine": str(engine_dir / "model.engine"),
                           "input_height": HW[0], "input_width": HW[1], "tensorrt": trt},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert CLI.run("gen_trt_engine", ["-e", str(tmp_path / "spec.yaml")]) == 0
    return engine_dir


def read_txt(path):
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


@pytest.mark.parametrize("precision,mode", [("FP32", "0"), ("FP16", "2"), ("INT8", "1")])
def test_config_matches_the_built_engine(tmp_path, data, onnx_file, precision, mode):
    engine_dir = build(tmp_path, data, onnx_file, precision)
    txt = read_txt(engine_dir / "nvinfer_config.txt")
    p, attrs = txt["property"], txt["class-attrs-all"]
    assert p["network-mode"] == mode
    assert p["model-engine-file"] == "model.engine"  # relative to the config's folder, as nvinfer reads it
    assert (engine_dir / p["onnx-file"]).resolve() == onnx_file.resolve()
    assert p["batch-size"] == "4" and p["infer-dims"] == f"3;{HW[0]};{HW[1]}"
    assert float(attrs["pre-cluster-threshold"]) == 0.15
    if precision == "INT8":
        assert p["int8-calib-file"] == "cal.bin" and (engine_dir / "cal.bin").is_file()
    else:
        assert "int8-calib-file" not in p
    doc = yaml.safe_load((engine_dir / "nvdsinfer_config.yaml").read_text())
    assert doc["property"]["network-mode"] == int(mode) and doc["property"]["model-engine-file"] == "model.engine"
    labels = (engine_dir / p["labelfile-path"]).read_text().splitlines()
    assert len(labels) == int(p["num-detected-classes"])
    status = [json.loads(line) for line in (tmp_path / "results" / "gen_trt_engine" / "status.json").open()]
    assert status[-1]["status"] == "SUCCESS"


def test_threshold_and_batch_follow_the_spec(tmp_path, data, onnx_file):
    engine_dir = build(tmp_path, data, onnx_file, "FP32", conf_threshold=0.05, max_batch=2)
    txt = read_txt(engine_dir / "nvinfer_config.txt")
    assert float(txt["class-attrs-all"]["pre-cluster-threshold"]) == 0.05
    assert txt["property"]["batch-size"] == "2"
