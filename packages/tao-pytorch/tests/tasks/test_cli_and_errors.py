"""Command wiring (`tao --help`, both networks' tasks), `convert` on KITTI folders, and the
bad inputs that must fail with a clear message before any model is built or data is read."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from detr_task_helpers import kitti_folder, make_checkpoint, status_lines

from tao_core.errors import TaoUserError
from tao_pytorch.deformable_detr.cli import CLI as DDETR_CLI
from tao_pytorch.detr.msda import ms_deform_attn_core
from tao_pytorch.detr.msda_trt import ms_deform_attn_trt_plugin
from tao_pytorch.detr.network import DetrNetwork
from tao_pytorch.dino.cli import CLI as DINO_CLI

TASKS = ["convert", "train", "evaluate", "inference", "export"]


def test_tao_help_lists_both_networks_and_their_tasks():
    tao = shutil.which("tao") or os.path.join(os.path.dirname(sys.executable), "tao")
    if not os.path.exists(tao):
        pytest.skip("the tao console script is not installed in this environment")
    out = subprocess.run([tao, "--help"], capture_output=True, text=True, timeout=60).stdout
    for network in ("dino", "deformable_detr"):
        line = next((row for row in out.splitlines() if row.split()[:1] == [network]), None)
        assert line is not None, out
        assert [t.strip() for t in line.split(None, 1)[1].split(",")] == TASKS
    assert DINO_CLI.tasks.keys() == DDETR_CLI.tasks.keys() == set(TASKS)


@pytest.mark.parametrize("cli", [DINO_CLI, DDETR_CLI], ids=["dino", "deformable_detr"])
def test_convert_kitti_folders(cli, tmp_path):
    folder = kitti_folder(tmp_path)
    (tmp_path / "sources.txt").write_text(str(folder) + "\n")
    n_images = len(os.listdir(folder / "images"))
    spec = tmp_path / "convert.yaml"
    spec.write_text(json.dumps({"input_source": str(tmp_path / "sources.txt"), "results_dir": str(tmp_path / "out"),
                                "image_dir_name": "images", "label_dir_name": "labels", "num_shards": 2,
                                "mapping_path": None}))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"raccoon": "raccoon"}))
    assert cli.run("convert", ["-e", str(spec), f"mapping_path={mapping}"]) == 0
    files = sorted((tmp_path / "out").rglob("*-shard-*.json"))
    assert len(files) == 2
    docs = [json.loads(f.read_text()) for f in files]
    assert sum(len(d["images"]) for d in docs) == n_images
    assert all([(c["id"], c["name"]) for c in d["categories"]] == [(1, "raccoon")] for d in docs)
    assert sum(len(d["annotations"]) for d in docs) >= n_images
    assert status_lines(tmp_path / "out", "convert")[-1]["status"] == "SUCCESS"


@pytest.fixture
def no_model_build(monkeypatch):
    """Fail the test if a task gets as far as building the model."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was built before the bad input was reported")

    monkeypatch.setattr(DetrNetwork, "build_model", forbidden)


@pytest.mark.parametrize("task", ["evaluate", "inference", "export"])
def test_missing_checkpoint(task, spec, tmp_path, no_model_build):
    extra = [f"export.onnx_file={tmp_path / 'm.onnx'}"] if task == "export" else []
    spec_file, results = spec("dino", checkpoint=tmp_path / "nope.pth")
    with pytest.raises(TaoUserError, match=f"{task}.checkpoint: .*nope.pth does not exist"):
        DINO_CLI.run(task, ["-e", str(spec_file), *extra])
    assert status_lines(results, task)[-1]["status"] == "FAILURE"
    assert not (tmp_path / "m.onnx").exists()


def test_encrypted_checkpoint_needs_the_right_key(spec, tmp_path, monkeypatch):
    spec_file, _ = spec("dino")
    locked = make_checkpoint("dino", spec_file, tmp_path / "locked.pth", key="right")
    spec_file, results = spec("dino", checkpoint=locked)
    real_build = DetrNetwork.build_model
    monkeypatch.setattr(DetrNetwork, "build_model", lambda *a: pytest.fail("model built before the key check"))
    with pytest.raises(TaoUserError, match="encrypted: pass its key"):
        DINO_CLI.run("evaluate", ["-e", str(spec_file)])
    with pytest.raises(TaoUserError, match="wrong key"):
        DINO_CLI.run("evaluate", ["-e", str(spec_file), "-k", "wrong"])
    assert not (results / "evaluate" / "results.json").exists()
    monkeypatch.setattr(DetrNetwork, "build_model", real_build)
    assert DINO_CLI.run("evaluate", ["-e", str(spec_file), "-k", "right"]) == 0
    assert (results / "evaluate" / "results.json").exists()


@pytest.mark.parametrize("task", ["evaluate", "inference"])
def test_trt_engine_belongs_to_tao_deploy(task, spec, tmp_path, no_model_build):
    spec_file, _ = spec("deformable_detr", **{task: {"trt_engine": str(tmp_path / "model.engine")}})
    with pytest.raises(TaoUserError, match=f"tao deploy deformable_detr {task}"):
        DDETR_CLI.run(task, ["-e", str(spec_file)])


def test_export_without_checkpoint_is_a_spec_error(spec, tmp_path, no_model_build):
    spec_file, _ = spec("dino", checkpoint="")
    with pytest.raises(TaoUserError, match="export.checkpoint"):
        DINO_CLI.run("export", ["-e", str(spec_file), "export.checkpoint=null",
                                f"export.onnx_file={tmp_path / 'm.onnx'}"])


def test_plugin_kernel_computes_the_pytorch_core():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 6), (2, 3)]
    value = torch.randn(2, 30, 4, 8, generator=g)
    loc = torch.rand(2, 5, 4, 2, 3, 2, generator=g)
    weights = torch.rand(2, 5, 4, 2, 3, generator=g).softmax(-1)
    starts = torch.tensor([0, 24])
    ref = ms_deform_attn_core(value, shapes, starts, loc, weights)
    assert torch.equal(ms_deform_attn_trt_plugin(value, shapes, starts, loc, weights), ref)
