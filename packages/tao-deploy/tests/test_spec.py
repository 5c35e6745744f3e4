"""build_from_spec: the gen_trt_engine spec section drives build_engine."""

import numpy as np
import onnx
import pytest
from PIL import Image

from tao_core.errors import TaoUserError
from tao_core.specs.common import GenTrtEngineConfig
from tao_deploy import build_from_spec, load_engine
from tao_deploy.engine import calibration as cal


def _spec(tmp_path, cnn_path, **trt):
    spec = GenTrtEngineConfig(
        onnx_file=str(cnn_path), trt_engine=str(tmp_path / "m.engine"), input_width=16, input_height=16
    )
    for k, v in trt.items():
        setattr(spec.tensorrt, k, v)
    spec.tensorrt.max_batch_size = 2
    return spec


def test_int8_from_spec_with_image_dir(tmp_path, cnn_path, sample):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 60, 10, 200)).save(imgs / f"{i}.jpg")
    spec = _spec(tmp_path, cnn_path, data_type="INT8")
    spec.tensorrt.calibration.cal_image_dir = [str(imgs)]
    spec.tensorrt.calibration.cal_batch_size = 2
    spec.tensorrt.calibration.cal_batches = 2
    spec.tensorrt.calibration.cal_cache_file = str(tmp_path / "cal.bin")

    def preprocess(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0

    info = build_from_spec(spec, preprocess=preprocess, class_names=["a"])
    assert info.precision == "int8" and (tmp_path / "cal.bin").is_file()
    assert load_engine(info.path).run({"input": sample})["logits"].shape == (2, 5)
    # second time: the cache is enough, the image folder may be gone
    for p in imgs.iterdir():
        p.unlink()
    assert build_from_spec(spec).precision == "int8"


def test_spec_checks_image_count_before_building(tmp_path, cnn_path, no_build):
    spec = _spec(tmp_path, cnn_path, data_type="int8")
    (tmp_path / "imgs").mkdir()
    spec.tensorrt.calibration.cal_image_dir = [str(tmp_path / "imgs")]
    spec.tensorrt.calibration.cal_batch_size = 2
    with pytest.raises(TaoUserError, match="needs cal_batch_size x cal_batches"):
        build_from_spec(spec, preprocess=lambda p: None)


def test_layers_precision_fp32_nodes(tmp_path, cnn_path):
    spec = _spec(tmp_path, cnn_path, data_type="FP16", layers_precision=["conv2:fp32"])
    info = build_from_spec(spec)
    from tao_deploy.engine.engine_file import read_engine

    model = onnx.load_model_from_string(read_engine(info.path)[1])
    inits = {i.name: i.data_type for i in model.graph.initializer}
    conv2 = next(n for n in model.graph.node if n.name == "conv2")
    assert inits[conv2.input[1]] == onnx.TensorProto.FLOAT
    spec.tensorrt.layers_precision = ["conv2:int8"]
    with pytest.raises(TaoUserError, match="only '<node name>:fp32'"):
        build_from_spec(spec)


def test_list_images_helper_is_exported():
    assert cal.IMAGE_EXTENSIONS and callable(cal.list_calibration_images)
