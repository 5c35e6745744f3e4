"""`oneformer train` on the shipped COCO panoptic sample with a tiny Swin OneFormer: checkpoints,
latest link, status lines with val_PQ, evaluate of the result, a SIGTERM that leaves a resumable
checkpoint the rerun continues from, and bad data refused before the model exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oneformer_task_helpers import COCO, copy_sample, sample_split, status_lines, write_spec

from tao_core.errors import TaoUserError
from tao_core.specs.oneformer import SPEC
from tao_pytorch.common.checkpoint import load_checkpoint
from tao_pytorch.oneformer.cli import CLI
from tao_pytorch.oneformer.network import OneFormerNetwork

KEY = "tlt_encode"
pytestmark = pytest.mark.skipif(COCO is None, reason="shared/data/coco_panoptic_sample not present")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """results_dir of a finished 2-epoch run (1 step per epoch: 2 images, batch 2) through the command."""
    root = tmp_path_factory.mktemp("oneformer_run")
    spec = write_spec(root / "spec.yaml", root / "results", train={"num_epochs": 2})
    assert CLI.run("train", ["-e", str(spec)]) == 0
    return root / "results"


def test_training_writes_checkpoints_the_latest_link_and_val_pq(trained):
    task_dir = trained / "train"
    names = sorted(p.name for p in task_dir.glob("model_epoch_*.pth"))
    assert names == ["model_epoch_000_step_00001.pth", "model_epoch_001_step_00002.pth"]
    latest = task_dir / "oneformer_model_latest.pth"
    assert latest.exists() and os.path.realpath(latest) == str(task_dir / names[-1])
    ckpt = load_checkpoint(latest)
    assert ckpt["tao_model"] == "oneformer" and ckpt["global_step"] == 2
    keys = set(ckpt["state_dict"])
    assert "criterion.logit_scale" in keys and any(k.startswith("model.text_encoder.") for k in keys)
    epochs = [r for r in status_lines(trained, "train") if r.get("message") == "Training loop in progress"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    kpi = epochs[-1]["kpi"]
    assert {"train_loss", "val_loss", "val_PQ", "val_SQ", "val_RQ"} <= set(kpi) and 0.0 <= kpi["val_PQ"] <= 1.0
    assert status_lines(trained, "train")[-1]["status"] == "SUCCESS"


def test_evaluate_scores_the_trained_checkpoint(trained, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", trained)
    latest = trained / "train" / "oneformer_model_latest.pth"
    assert CLI.run("evaluate", ["-e", str(spec), f"evaluate.checkpoint={latest}"]) == 0
    res = json.loads((trained / "evaluate" / "results.json").read_text())
    assert res["kinds"] == ["panoptic", "semantic"]  # model.mode, then model.test.semantic_on (default on)
    assert res["data"] == "dataset.test" and res["num_images"] == 2 and res["checkpoint"] == str(latest)
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "All", "Things", "Stuff", "per_class"} <= set(res["panoptic"])
    assert {"mIoU", "fwIoU", "pACC", "mACC", "per_class_iou"} <= set(res["semantic"])
    assert set(res["kpi"]) == {"PQ", "SQ", "RQ", "PQ_th", "PQ_st", "mIoU", "fwIoU", "pACC"}
    kpi_lines = [r for r in status_lines(trained, "evaluate") if "kpi" in r]
    assert kpi_lines[-1]["kpi"] == res["kpi"]


def test_pretrained_model_of_another_num_classes_and_iters_per_epoch(trained, tmp_path, caplog):
    """train.pretrained_model (the sample spec's spelling) loads all but the class head; 2 images at
    batch 1 would be 2 steps an epoch, train.iters_per_epoch=1 makes it 1."""
    pretrained = trained / "train" / "oneformer_model_latest.pth"
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results", {**sample_split(), "batch_size": 1},
                      train={"pretrained_model": str(pretrained), "iters_per_epoch": 1},
                      model={"sem_seg_head": {"num_classes": 140, "convs_dim": 64, "mask_dim": 64,
                                              "transformer_enc_layers": 1}})
    with caplog.at_level("INFO"):
        assert CLI.run("train", ["-e", str(spec)]) == 0
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and "shape differs" in r.getMessage()]
    assert skipped and "class_embed" in skipped[0] and "(134, 64) -> (141, 64)" in skipped[0]
    assert [p.name for p in (tmp_path / "results" / "train").glob("model_epoch_*.pth")] == ["model_epoch_000_step_00001.pth"]


def _wait_for_epoch(results: Path, proc, timeout=300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (results / "train" / "status.json").exists() and any(
                r.get("message") == "Training loop in progress" for r in status_lines(results, "train")):
            return
        time.sleep(0.1)
    raise AssertionError(f"training did not reach an epoch end (exit code {proc.poll()})")


def test_sigterm_leaves_a_resumable_checkpoint_and_the_rerun_continues(tmp_path):
    results = tmp_path / "results"
    spec = write_spec(tmp_path / "spec.yaml", results, train={"num_epochs": 100})
    cmd = [sys.executable, "-c", "from tao_pytorch.oneformer.cli import main; main()", "train", "-e", str(spec),
           "-k", KEY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_epoch(results, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "error: oneformer train stopped by SIGTERM" in err.strip().splitlines()[-1]
    last = status_lines(results, "train")[-1]
    assert last["status"] == "FAILURE" and last["stopped_by"] == "SIGTERM"
    latest = results / "train" / "oneformer_model_latest.pth"
    with pytest.raises(TaoUserError):  # written encrypted with -k
        load_checkpoint(latest)
    stopped_at = load_checkpoint(latest, KEY)["global_step"]
    assert stopped_at == last["step"] >= 1

    # the same command (two more epochs) resumes: its first epoch line is the one after the stop
    before = len(status_lines(results, "train"))
    assert CLI.run("train", ["-e", str(spec), "-k", KEY, f"train.num_epochs={stopped_at + 2}"]) == 0
    new = [r for r in status_lines(results, "train")[before:] if r.get("message") == "Training loop in progress"]
    assert [r["epoch"] for r in new] == [stopped_at + 1, stopped_at + 2]
    assert load_checkpoint(latest, KEY)["global_step"] == stopped_at + 2
    assert "resuming training from" in (results / "train" / "train.log").read_text()


@pytest.fixture
def no_model(monkeypatch):
    """Building the model is an assertion failure: the data errors must come before it."""
    def refuse(self, cfg, with_text=True):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(OneFormerNetwork, "build_model", refuse)


def test_a_missing_image_is_named_before_the_model(tmp_path, no_model):
    data = copy_sample(tmp_path / "data")
    missing = data / "val2017" / "000000439180.jpg"
    missing.unlink()
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results", sample_split(data))
    with pytest.raises(TaoUserError) as err:
        CLI.run("train", ["-e", str(spec)])
    # the data layer's form: one summary line, then one line per file that cannot be used
    first, *files = str(err.value).splitlines()
    assert first.startswith("1 of 4 files cannot be used (1 missing") and files == [f"  image: {missing}: image file not found"]
    assert not list((tmp_path / "results" / "train").glob("*.pth"))


def test_a_missing_annotation_file_is_one_line_naming_it(tmp_path, no_model):
    split = {**sample_split(), "annotations": str(tmp_path / "nope" / "panoptic.json")}
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results", split)
    with pytest.raises(TaoUserError, match=r"nope/panoptic\.json") as err:
        CLI.run("train", ["-e", str(spec)])
    assert "\n" not in str(err.value)


def test_module_options_freeze_optimizer_schedule_and_clipping(tmp_path):
    import pytorch_lightning as pl
    import torch

    from tao_pytorch.oneformer.lightning_module import OneFormerLightningModule

    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "results",
                      train={"freeze": ["backbone"], "clip_grad_norm": 0.5,
                             "optim": {"type": "SGD", "lr_scheduler": "StepLR", "milestones": [3], "gamma": 0.5}},
                      model={"backbone": {"freeze_at": 0, "swin": {"embed_dim": 32, "depths": [1, 1, 1, 1],
                                                                     "num_heads": [1, 2, 4, 8], "window_size": 4}}})
    cfg = SPEC.load("train", str(spec), [])
    module = OneFormerLightningModule(cfg)
    assert not any(p.requires_grad for p in module.model.backbone.parameters())
    conf = module.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert isinstance(optimizer, torch.optim.SGD) and id(module.criterion.logit_scale) in trained
    assert not trained & {id(p) for p in module.model.backbone.parameters()}
    lrs = []
    for _ in range(7):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing moves, but the scheduler sees the usual order
        scheduler.step()
    assert lrs == pytest.approx([2e-4] * 3 + [1e-4] * 3 + [5e-5])  # x gamma every milestones[0] epochs

    module.trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    params = [p for g in optimizer.param_groups for p in g["params"]][:2]

    def clipped(kind):
        for p, fill in zip(params, (3.0, 4.0), strict=True):
            p.grad = torch.full_like(p, fill)
        module.cfg = SPEC.load("train", str(spec), [f"train.clip_grad_type={kind}"])
        module.configure_gradient_clipping(optimizer, 0.5, "norm")
        return [p.grad for p in params]

    per_tensor = clipped("norm")  # each tensor's own L2 norm is 0.5
    assert [float(g.norm()) for g in per_tensor] == pytest.approx([0.5, 0.5], rel=1e-4)
    full = clipped("full")  # the two together have norm 0.5, in their 3 : 4 proportion
    assert float(torch.sqrt(sum(g.norm() ** 2 for g in full))) == pytest.approx(0.5, rel=1e-4)
    assert float(full[0].flatten()[0] / full[1].flatten()[0]) == pytest.approx(0.75)
    assert all(float(g.abs().max()) == pytest.approx(0.5) for g in clipped("value"))
