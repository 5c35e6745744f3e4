"""Engine tasks facing bad input: an unreadable inference image is skipped and reported (the run
fails only when nothing could be read), an existing engine is never overwritten, evaluate refuses
to score nothing, an engine path that is a folder is one line."""

import json
import shutil
from pathlib import Path

import onnx
import pytest
import yaml

from tao_core.errors import TaoUserError
from tao_deploy.detr.testing import tiny_detr, write_detection_set
from tao_deploy.dino.cli import CLI

HW = (32, 48)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_detection_set(tmp_path_factory.mktemp("faults_data"), num_images=4)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("faults_engine")
    onnx.save_model(tiny_detr(*HW), root / "model.onnx")
    spec = _spec(root / "gen.yaml", data, root / "results", gen_trt_engine={
        "onnx_file": str(root / "model.onnx"), "trt_engine": str(root / "model.engine")})
    assert CLI.run("gen_trt_engine", ["-e", spec]) == 0
    return root / "model.engine"


def _spec(path, data, results, **sections):
    spec = {
        "results_dir": str(results),
        "model": {"num_queries": 10, "num_select": 10},
        "dataset": {"num_classes": 2, "batch_size": 2,
                    "val_data_sources": [{"image_dir": data["image_dir"], "json_file": data["json_file"]}],
                    "infer_data_sources": {"image_dir": data["image_dir"], "classmap": data["classmap"]}},
        "gen_trt_engine": {"input_height": HW[0], "input_width": HW[1],
                           "tensorrt": {"min_batch_size": 1, "opt_batch_size": 2, "max_batch_size": 4}},
    }
    for name, value in sections.items():
        spec[name] = {**spec.get(name, {}), **value}
    Path(path).write_text(yaml.safe_dump(spec))
    return str(path)


def _status(results, task):
    return [json.loads(line) for line in (Path(results) / task / "status.json").read_text().splitlines()]


def test_engine_inference_skips_an_unreadable_image(tmp_path, data, engine):
    folder = tmp_path / "images"
    shutil.copytree(data["image_dir"], folder)
    (folder / "zz_broken.jpg").write_bytes(b"\x00" * 80)
    total = len(list(folder.iterdir()))
    spec = _spec(tmp_path / "s.yaml", data, tmp_path / "results", inference={"trt_engine": str(engine)})
    assert CLI.run("inference", ["-e", spec, f"dataset.infer_data_sources.image_dir=[{folder}]"]) == 0
    labels = sorted(p.stem for p in (tmp_path / "results" / "inference" / "labels").iterdir())
    assert "zz_broken" not in labels and len(labels) == total - 1
    lines = _status(tmp_path / "results", "inference")
    skipped = [r["skipped"] for r in lines if "skipped" in r]
    assert skipped == [{"count": 1, "files": [str(folder / "zz_broken.jpg")]}]
    assert lines[-1]["status"] == "SUCCESS"

    for image in folder.iterdir():  # nothing readable: an error, the outputs above kept
        image.write_bytes(b"\x00" * 80)
    with pytest.raises(TaoUserError, match=rf"none of the {total} images could be read"):
        CLI.run("inference", ["-e", spec, f"dataset.infer_data_sources.image_dir=[{folder}]"])
    assert sorted(p.stem for p in (tmp_path / "results" / "inference" / "labels").iterdir()) == labels


def test_gen_trt_engine_never_overwrites_an_engine(tmp_path, data, engine):
    before = engine.read_bytes()
    spec = _spec(tmp_path / "gen.yaml", data, tmp_path / "results", gen_trt_engine={
        "onnx_file": str(engine.parent / "model.onnx"), "trt_engine": str(engine)})
    with pytest.raises(TaoUserError, match=r"gen_trt_engine.trt_engine: .*model.engine already exists"):
        CLI.run("gen_trt_engine", ["-e", spec])
    assert engine.read_bytes() == before


def test_engine_evaluate_with_no_ground_truth_box_is_an_error(tmp_path, data, engine):
    coco = json.loads(Path(data["json_file"]).read_text())
    coco["annotations"] = []
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(coco))
    spec = _spec(tmp_path / "s.yaml", data, tmp_path / "results", evaluate={"trt_engine": str(engine)},
                 dataset={"val_data_sources": [{"image_dir": data["image_dir"], "json_file": str(bare)}]})
    with pytest.raises(TaoUserError, match=r"bare.json: the \d+ images have no ground-truth box"):
        CLI.run("evaluate", ["-e", spec])
    assert not (tmp_path / "results" / "evaluate" / "results.json").exists()


def test_engine_path_that_is_a_folder_is_one_line(tmp_path, data):
    folder = tmp_path / "engine_dir"
    folder.mkdir()
    spec = _spec(tmp_path / "s.yaml", data, tmp_path / "results", evaluate={"trt_engine": str(folder)})
    with pytest.raises(TaoUserError, match=r"evaluate.trt_engine: .*engine_dir is a directory, expected"):
        CLI.run("evaluate", ["-e", spec])
