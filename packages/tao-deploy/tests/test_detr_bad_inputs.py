"""DETR engine tasks: every bad input is a clear error before any building or running."""

import onnx
import pytest
import yaml

from tao_core.errors import SpecError, TaoUserError
from tao_deploy.detr.testing import tiny_detr, write_detection_set
from tao_deploy.dino.cli import CLI
from tao_deploy.testing import tiny_cnn

HW = (32, 48)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_detection_set(tmp_path_factory.mktemp("detr_bad"), num_images=3)


@pytest.fixture
def spec(tmp_path, data):
    onnx_file = tmp_path / "model.onnx"
    onnx.save_model(tiny_detr(*HW), onnx_file)

    def make(**sections):
        body = {
            "results_dir": str(tmp_path / "results"),
            "model": {"num_queries": 10, "num_select": 10},
            "dataset": {
                "num_classes": 2,
                "val_data_sources": [{"image_dir": data["image_dir"], "json_file": data["json_file"]}],
                "infer_data_sources": {"image_dir": data["image_dir"], "classmap": data["classmap"]},
            },
            "gen_trt_engine": {"onnx_file": str(onnx_file), "trt_engine": str(tmp_path / "m.engine"),
                               "input_height": HW[0], "input_width": HW[1]},
        }
        for name, value in sections.items():
            body[name] = {**body.get(name, {}), **value}
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(body))
        return ["-e", str(path)]

    return make


def gen_spec(spec, **gen):
    return spec(gen_trt_engine=gen)


def test_missing_onnx(spec, tmp_path, no_build):
    with pytest.raises(TaoUserError, match="model file not found"):
        CLI.run("gen_trt_engine", gen_spec(spec, onnx_file=str(tmp_path / "nope.onnx")))


def test_missing_trt_engine_path(spec, no_build):
    with pytest.raises(SpecError, match="gen_trt_engine.trt_engine"):
        CLI.run("gen_trt_engine", gen_spec(spec, trt_engine=None))


def test_model_off_the_detr_contract(spec, tmp_path, no_build):
    other = tmp_path / "cnn.onnx"
    onnx.save_model(tiny_cnn(), other)
    with pytest.raises(TaoUserError, match="pred_logits"):
        CLI.run("gen_trt_engine", gen_spec(spec, onnx_file=str(other)))


def test_input_channel_mismatch(spec, no_build):
    with pytest.raises(SpecError, match="input_channel"):
        CLI.run("gen_trt_engine", gen_spec(spec, input_channel=1))


def test_int8_without_images_or_cache(spec, no_build):
    with pytest.raises(TaoUserError, match="cal_image_dir"):
        CLI.run("gen_trt_engine", gen_spec(spec, tensorrt={"data_type": "INT8"}))


def test_int8_with_too_few_images(spec, data, no_build):
    cal = {"cal_image_dir": [data["image_dir"]], "cal_batch_size": 2, "cal_batches": 5}
    with pytest.raises(TaoUserError, match="2 x 5 = 10 images"):
        CLI.run("gen_trt_engine", gen_spec(spec, tensorrt={"data_type": "INT8", "calibration": cal}))


def test_int8_with_missing_image_dir(spec, tmp_path, no_build):
    cal = {"cal_image_dir": [str(tmp_path / "nowhere")]}
    with pytest.raises(TaoUserError, match="does not exist"):
        CLI.run("gen_trt_engine", gen_spec(spec, tensorrt={"data_type": "INT8", "calibration": cal}))


def test_encrypted_etlt_without_key(spec, tmp_path, no_build):
    from tao_core.etlt import write_etlt

    etlt = tmp_path / "model.etlt"
    write_etlt(etlt, tiny_detr(*HW).SerializeToString(), "", "secret")
    with pytest.raises(TaoUserError, match="key"):
        CLI.run("gen_trt_engine", gen_spec(spec, onnx_file=str(etlt)))


def test_etlt_with_key_builds(spec, tmp_path):
    from tao_core.etlt import write_etlt
    from tao_deploy import load_engine

    etlt = tmp_path / "model.etlt"
    write_etlt(etlt, tiny_detr(*HW).SerializeToString(), "", "secret")
    assert CLI.run("gen_trt_engine", [*gen_spec(spec, onnx_file=str(etlt)), "-k", "secret"]) == 0
    assert load_engine(tmp_path / "m.engine").metadata["precision"] == "fp32"


def test_evaluate_engine_missing(spec, tmp_path):
    with pytest.raises(TaoUserError, match="does not exist"):
        CLI.run("evaluate", spec(evaluate={"trt_engine": str(tmp_path / "none.engine")}))


def test_evaluate_with_only_a_checkpoint_points_to_tao_model(spec, tmp_path):
    with pytest.raises(SpecError, match="tao model"):
        CLI.run("evaluate", spec(evaluate={"checkpoint": str(tmp_path / "m.pth")}))


def test_evaluate_input_size_other_than_the_engine(spec, tmp_path):
    assert CLI.run("gen_trt_engine", spec()) == 0
    with pytest.raises(TaoUserError, match="64 x 64"):
        CLI.run("evaluate", spec(evaluate={"trt_engine": str(tmp_path / "m.engine"), "input_height": 64,
                                           "input_width": 64}))


def test_inference_bad_color_fails_before_loading_the_engine(spec, tmp_path):
    with pytest.raises(TaoUserError):
        CLI.run("inference", spec(inference={"trt_engine": str(tmp_path / "m.engine"),
                                             "color_map": {"thing": "not-a-colour"}}))
